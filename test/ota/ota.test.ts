/**
 * `omie ota`, `omie extract-ota --source` and `omie ota publish / verify-feed` on real builds of the
 * sample product: version 1.0.0, and 1.0.1 with one app changed. Oracles: AOSP's paycheck.py
 * (payload metadata, operations, signatures with -k, its applier), python's zipfile (entry offsets
 * for the property files), avbtool (the care map's image sizes), openssl cms (the signapk -w
 * whole-file signature), Debian's bspatch (through paycheck).
 */
import { createHash, X509Certificate } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { getProp } from '../../scripts/build/props.ts';
import { payloadProtos } from '../../scripts/formats/payload/proto.ts';
import { locatePayload, readPayload } from '../../scripts/formats/payload/reader.ts';
import { openFilesystem } from '../../scripts/fs/index.ts';
import { omie, ROOT } from '../helpers.ts';
import { AOSP_TESTKEYS, AVBTOOL, PAYCHECK } from '../oracles.ts';
import { B1, B2, FIX, KEY, OTA_WORK, openssl, otaBuilds, PRODUCT } from './fixtures.ts';

const W = OTA_WORK;
const at = (...p: string[]) => join(W, ...p);
const PARTS = ['vbmeta', 'system', 'product', 'vendor'];
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** openssl cms checks the package's detached PKCS#7 (sig.p7) over `content`. */
const cmsVerify = (content: string) =>
  openssl([
    'cms',
    '-verify',
    '-inform',
    'DER',
    '-in',
    at('sig.p7'),
    '-binary',
    '-content',
    content,
    '-noverify',
    '-out',
    '/dev/null',
  ]);

/** The build's partition images as the OTA carries them (vbmeta.img padded to whole blocks). */
function imagesOf(buildDir: string, dir: string): Record<string, string> {
  mkdirSync(dir, { recursive: true });
  const out: Record<string, string> = {};
  for (const p of PARTS) {
    const img = readFileSync(join(buildDir, `${p}.img`));
    const padded = Buffer.concat([img, Buffer.alloc((4096 - (img.length % 4096)) % 4096)]);
    out[p] = join(dir, `${p}.img`);
    writeFileSync(out[p], padded);
  }
  return out;
}

/** payload.bin of an OTA zip, cut out at the offset the zip gives. */
async function payloadOf(zip: string): Promise<string> {
  const loc = await locatePayload(zip);
  const out = `${zip}.payload.bin`;
  writeFileSync(out, readFileSync(zip).subarray(loc.offset, loc.offset + loc.size));
  return out;
}

async function paycheck(args: string[]) {
  return execa('/usr/bin/python3', [PAYCHECK.path, ...args], { reject: false, all: true });
}

const FULL = at('omie-1.0.0.zip');
const INCR = at('omie-1.0.0-to-1.0.1.zip');
let full: Record<string, unknown>;
let incr: Record<string, unknown>;

beforeAll(async () => {
  await otaBuilds();
  const f = await omie(['--json', 'ota', B1, '--out', FULL]);
  expect(f.exitCode, f.stderr).toBe(0);
  full = JSON.parse(f.stdout);
  const i = await omie(['--json', 'ota', B2, '--from', B1, '--out', INCR]);
  expect(i.exitCode, i.stderr).toBe(0);
  incr = JSON.parse(i.stdout);
}, 1_800_000);

describe('omie build: the image trusts the OTA key', () => {
  it("writes the OTA certificate into system/etc/security/otacerts.zip, replacing the base's", async () => {
    const fs = await openFilesystem(join(B1, 'system.img'));
    const zip = await fs.readFile('/system/etc/security/otacerts.zip');
    await fs.close();
    writeFileSync(at('otacerts.zip'), zip);
    // python's zipfile is the oracle for the archive
    const py = await execa('/usr/bin/python3', [
      '-c',
      'import sys,zipfile;z=zipfile.ZipFile(sys.argv[1]);print("\\n".join(z.namelist()));sys.stdout.write(z.read(z.namelist()[0]).decode())',
      at('otacerts.zip'),
    ]);
    const [name, ...pem] = py.stdout.split('\n');
    expect(name).toBe('ota.x509.pem');
    expect(pem.join('\n').trim()).toBe(readFileSync(`${KEY}.x509.pem`, 'utf8').trim());
    const record = JSON.parse(readFileSync(join(B1, 'build-record.json'), 'utf8'));
    const certSha = sha(new X509Certificate(readFileSync(`${KEY}.x509.pem`)).raw);
    expect(record.keys.otaCertSha256).toBe(certSha);
    expect(record.keys.otaCertSha256).not.toBe(record.keys.apkCertSha256);
    const add = record.plan.partitions
      .find((p: { partition: string }) => p.partition === 'system')
      .additions.find((a: { path: string }) => a.path === '/system/etc/security/otacerts.zip');
    expect(add.reason).toContain(certSha);
  });
});

describe('omie ota: full package', () => {
  it.skipIf(!PAYCHECK.present)(
    `paycheck verifies it with the OTA key and applies it to exactly the build's images ${PAYCHECK.reason}`,
    async () => {
      expect(full).toMatchObject({ kind: 'full', release: true, product: { version: '1.0.0' } });
      const payload = await payloadOf(FULL);
      await execa('openssl', [
        'x509',
        '-in',
        `${KEY}.x509.pem`,
        '-pubkey',
        '-noout',
        '-out',
        at('ota.pub.pem'),
      ]);
      const check = await paycheck([payload, '-c', '-k', at('ota.pub.pem')]);
      expect(check.exitCode, check.all).toBe(0);
      const images = imagesOf(B1, at('b1-images'));
      const apply = await paycheck([
        payload,
        '--part_names',
        ...PARTS,
        '--dst_part_paths',
        ...PARTS.map((p) => images[p]),
      ]);
      expect(apply.exitCode, apply.all).toBe(0);
      const p = await readPayload(FULL);
      expect(p.manifest.minorVersion).toBe(0);
      const types = new Set(p.manifest.partitions.flatMap((x) => x.operations.map((o) => o.type)));
      expect([...types].every((t) => t === 'REPLACE_XZ' || t === 'REPLACE')).toBe(true);
      expect(p.manifest.dynamicPartitions?.groups).toEqual([
        {
          name: 'omie_dynamic_partitions',
          size: 1500 * 1024 * 1024,
          partitionNames: ['system', 'product', 'vendor'],
        },
      ]);
      const fs = await openFilesystem(join(B1, 'system.img'));
      const props = (await fs.readFile('/system/build.prop')).toString('utf8');
      await fs.close();
      expect(p.manifest.maxTimestamp).toBe(Number(getProp(props, 'ro.build.date.utc')));
    },
  );

  it('extract-ota gives back the images, after checking both signatures against the OTA certificate', async () => {
    const out = at('full-out');
    const r = await omie(['--json', 'extract-ota', FULL, out, '--cert', `${KEY}.x509.pem`]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).signatures).toMatchObject({ metadata: 'valid', payload: 'valid' });
    const images = imagesOf(B1, at('b1-images'));
    for (const p of PARTS)
      expect(readFileSync(join(out, `${p}.img`)).equals(readFileSync(images[p])), p).toBe(true);
  });

  it('metadata as ota_from_target_files writes it, with exact property-file offsets (oracle: python zipfile)', async () => {
    const fs = await openFilesystem(join(B1, 'system.img'));
    const props = (await fs.readFile('/system/build.prop')).toString('utf8');
    await fs.close();
    const py = await execa('/usr/bin/python3', [
      '-c',
      [
        'import sys,zipfile,struct,json',
        'z=zipfile.ZipFile(sys.argv[1])',
        'def span(n):',
        ' i=z.getinfo(n);z.fp.seek(i.header_offset);h=struct.unpack(zipfile.structFileHeader,z.fp.read(zipfile.sizeFileHeader))',
        ' return [i.header_offset+zipfile.sizeFileHeader+h[-2]+h[-1],i.file_size,i.compress_type]',
        'print(json.dumps({"names":z.namelist(),"spans":{n:span(n) for n in z.namelist()},"meta":z.read("META-INF/com/android/metadata").decode(),"comment":z.comment[:18].decode("latin1")}))',
      ].join('\n'),
      FULL,
    ]);
    const z = JSON.parse(py.stdout);
    expect(z.names).toEqual([
      'META-INF/com/android/metadata',
      'META-INF/com/android/metadata.pb',
      'META-INF/com/omie/release.json',
      'care_map.pb',
      'payload.bin',
      'payload_properties.txt',
      'META-INF/com/android/otacert',
    ]);
    for (const n of z.names.slice(0, -1)) expect(z.spans[n][2], `${n} is stored`).toBe(0);
    expect(z.comment).toBe('signed by SignApk\0');
    const meta = Object.fromEntries(
      (z.meta as string)
        .trim()
        .split('\n')
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    expect(meta).toMatchObject({
      'ota-type': 'AB',
      'ota-required-cache': '0',
      'pre-device': 'tablet',
      'post-build': getProp(props, 'ro.build.fingerprint'),
      'post-timestamp': getProp(props, 'ro.build.date.utc'),
      'post-sdk-level': getProp(props, 'ro.build.version.sdk'),
    });
    expect(meta['pre-build']).toBeUndefined();
    const payload = readPayload(FULL);
    const p = await payload;
    for (const key of ['ota-property-files', 'ota-streaming-property-files']) {
      const tokens = (meta[key] as string).trim().split(',');
      expect(tokens.map((t) => t.split(':')[0])).toEqual([
        ...(key === 'ota-property-files' ? ['payload_metadata.bin'] : []),
        'payload.bin',
        'payload_properties.txt',
        'care_map.pb',
        'metadata',
        'metadata.pb',
      ]);
      for (const t of tokens) {
        const [name, off, size] = t.split(':');
        const entry =
          { metadata: 'META-INF/com/android/metadata', 'metadata.pb': 'META-INF/com/android/metadata.pb' }[
            name
          ] ?? name;
        if (name === 'payload_metadata.bin')
          expect([Number(off), Number(size)]).toEqual([
            z.spans['payload.bin'][0],
            24 + p.manifestSize + p.metadataSignatureSize,
          ]);
        else expect([Number(off), Number(size)], name).toEqual(z.spans[entry].slice(0, 2));
      }
    }
    // metadata.pb says the same as the text.
    expect(p.location.otaMetadataPb).toMatchObject({
      type: 'AB',
      postcondition: { build: [meta['post-build']], timestamp: Number(meta['post-timestamp']) },
      precondition: { device: ['tablet'] },
    });
    expect(p.location.otaMetadataPb?.propertyFiles['ota-property-files']).toBe(meta['ota-property-files']);
  });

  it.skipIf(!AVBTOOL.present)(
    `care_map.pb names the verified partitions and their filesystem blocks (oracle: avbtool) ${AVBTOOL.reason}`,
    async () => {
      const py = await execa(
        '/usr/bin/python3',
        [
          '-c',
          'import sys,zipfile;sys.stdout.buffer.write(zipfile.ZipFile(sys.argv[1]).read("care_map.pb"))',
          FULL,
        ],
        { encoding: 'buffer', stripFinalNewline: false },
      );
      const { CareMapMessage } = payloadProtos();
      const care = CareMapMessage.toObject(CareMapMessage.decode(Buffer.from(py.stdout as Uint8Array))) as {
        partitions: { name: string; ranges: string; id: string; fingerprint: string }[];
      };
      expect(care.partitions.map((x) => x.name)).toEqual(['system', 'product', 'vendor']);
      for (const c of care.partitions) {
        const info = await execa('python3', [
          AVBTOOL.path,
          'info_image',
          '--image',
          join(B1, `${c.name}.img`),
        ]);
        const original = Number(/Original image size:\s+(\d+)/.exec(info.stdout)![1]);
        expect(c.ranges).toBe(`2,0,${original / 4096}`);
        expect(c.id).toBe(`ro.${c.name}.build.fingerprint`);
      }
    },
  );

  it('is signed whole-file as signapk -w signs OTA packages (oracle: openssl cms)', async () => {
    const zip = readFileSync(FULL);
    const commentSize = zip.readUInt16LE(zip.length - 2);
    const start = zip.readUInt16LE(zip.length - 6);
    expect(zip.subarray(zip.length - 4, zip.length - 2)).toEqual(Buffer.from([0xff, 0xff]));
    const eocd = zip.length - commentSize - 22;
    expect(zip.readUInt32LE(eocd)).toBe(0x06054b50);
    expect(zip.readUInt16LE(eocd + 20)).toBe(commentSize);
    writeFileSync(at('signed.bin'), zip.subarray(0, eocd + 20)); // all but the comment length and comment
    writeFileSync(at('sig.p7'), zip.subarray(zip.length - start, zip.length - 6));
    const v = await cmsVerify(at('signed.bin'));
    expect(v.exitCode, String(v.stderr)).toBe(0);
    const signer = await openssl(['pkcs7', '-inform', 'DER', '-in', at('sig.p7'), '-print_certs']);
    expect(new X509Certificate(Buffer.from(signer.stdout as Uint8Array)).fingerprint256).toBe(
      new X509Certificate(readFileSync(`${KEY}.x509.pem`)).fingerprint256,
    );
    // One changed byte anywhere before the comment and the signature no longer verifies.
    const bad = Buffer.from(zip.subarray(0, eocd + 20));
    bad[100] ^= 1;
    writeFileSync(at('signed-bad.bin'), bad);
    const b = await cmsVerify(at('signed-bad.bin'));
    expect(b.exitCode).not.toBe(0);
  });
});

describe('omie ota --from: incremental package', () => {
  it.skipIf(!PAYCHECK.present)(
    `paycheck verifies it and applies it over the old images to exactly the new ones ${PAYCHECK.reason}`,
    async () => {
      expect(incr).toMatchObject({ kind: 'incremental', product: { version: '1.0.1' } });
      const payload = await payloadOf(INCR);
      const check = await paycheck([payload, '-c', '-k', at('ota.pub.pem')]);
      expect(check.exitCode, check.all).toBe(0);
      const old = imagesOf(B1, at('b1-images'));
      const next = imagesOf(B2, at('b2-images'));
      const apply = await paycheck([
        payload,
        '--bspatch-path',
        join(ROOT, 'test/payload/bspatch-extents.py'),
        '--part_names',
        ...PARTS,
        '--src_part_paths',
        ...PARTS.map((p) => old[p]),
        '--dst_part_paths',
        ...PARTS.map((p) => next[p]),
      ]);
      expect(apply.exitCode, apply.all).toBe(0);
    },
  );

  it('extract-ota --source applies it over the old build to exactly the new images; it is a tenth of the full one', async () => {
    const old = imagesOf(B1, at('b1-images'));
    const next = imagesOf(B2, at('b2-images'));
    const out = at('incr-out');
    const r = await omie([
      '--json',
      'extract-ota',
      INCR,
      out,
      '--source',
      at('b1-images'),
      '--cert',
      `${KEY}.x509.pem`,
    ]);
    expect(r.exitCode, r.stderr).toBe(0);
    for (const p of PARTS)
      expect(readFileSync(join(out, `${p}.img`)).equals(readFileSync(next[p])), p).toBe(true);
    expect(Object.keys(old)).toEqual(PARTS);
    const p = await readPayload(INCR);
    expect(p.manifest.minorVersion).toBe(6);
    const types = new Set(p.manifest.partitions.flatMap((x) => x.operations.map((o) => o.type)));
    for (const t of ['SOURCE_COPY', 'BROTLI_BSDIFF']) expect(types).toContain(t);
    for (const part of p.manifest.partitions) {
      expect(part.oldSha256).toBe(sha(readFileSync(old[part.name])));
      // never a whole-partition bsdiff (vbmeta is one block: any diff of it is the whole of it)
      if (part.size > 1 << 20)
        for (const op of part.operations.filter((o) => o.type.endsWith('BSDIFF')))
          expect(op.dstExtents.reduce((a, e) => a + e.numBlocks, 0) * 4096).toBeLessThan(part.size / 2);
    }
    const meta = p.location.otaMetadata!;
    const fs = await openFilesystem(join(B1, 'system.img'));
    const props = (await fs.readFile('/system/build.prop')).toString('utf8');
    await fs.close();
    expect(meta['pre-build']).toBe(getProp(props, 'ro.build.fingerprint'));
    expect(p.location.otaMetadataPb?.precondition?.build).toEqual([meta['pre-build']]);
    expect(readFileSync(INCR).length).toBeLessThanOrEqual(readFileSync(FULL).length / 10);
  });
});

describe('omie ota: device profile settings', () => {
  it('Virtual A/B (snapshots, VABC compression, COW estimates) and zstd operations come from the device profile', async () => {
    const dir = join(FIX, 'tree2/device/omie/tablet');
    writeFileSync(
      join(dir, 'device-vab.yaml'),
      `${readFileSync(join(dir, 'device.yaml'), 'utf8')}ota:\n  compression: zstd\n  virtualAb: { compression: lz4 }\n`,
    );
    const product = join(dir, 'products/omie-tablet-vab.yaml');
    writeFileSync(
      product,
      readFileSync(PRODUCT(join(FIX, 'tree2')), 'utf8').replace(
        /^device: .*$/m,
        'device: ../device-vab.yaml',
      ),
    );
    const out = at('vab.zip');
    const r = await omie(['--json', 'ota', B2, '--from', B1, '--out', out, '--product', product]);
    expect(r.exitCode, r.stderr).toBe(0);
    const p = await readPayload(out);
    expect(p.manifest.dynamicPartitions).toMatchObject({
      snapshotEnabled: true,
      vabcEnabled: true,
      vabcCompressionParam: 'lz4',
    });
    for (const part of p.manifest.partitions) {
      const logical = part.name !== 'vbmeta';
      expect(part.estimateCowSize !== undefined, part.name).toBe(logical);
      const written = part.operations
        .filter((o) => o.type !== 'SOURCE_COPY' && o.type !== 'ZERO')
        .reduce((a, o) => a + o.dstExtents.reduce((b, e) => b + e.numBlocks, 0), 0);
      if (logical) expect(part.estimateCowSize!).toBeGreaterThanOrEqual(written * 4096);
      expect(part.operations.some((o) => o.type === 'REPLACE_XZ')).toBe(false);
    }
    imagesOf(B1, at('b1-images'));
    const x = await omie(['extract-ota', out, at('vab-extract'), '--source', at('b1-images')]);
    expect(x.exitCode, x.stderr).toBe(0);
  });
});

describe('omie ota --verity-on-device', () => {
  it('leaves the hash trees to the device: hash_tree fields instead of their blocks, rebuilt exactly on apply', async () => {
    const out = at('verity.zip');
    const r = await omie(['--json', 'ota', B2, '--from', B1, '--out', out, '--verity-on-device']);
    expect(r.exitCode, r.stderr).toBe(0);
    const p = await readPayload(out);
    const system = p.manifest.partitions.find((x) => x.name === 'system')!;
    expect(system.hashTreeExtent?.numBlocks).toBeGreaterThan(0);
    const tree = system.hashTreeExtent!;
    for (const op of system.operations)
      for (const e of op.dstExtents)
        expect(
          e.startBlock + e.numBlocks <= tree.startBlock || e.startBlock >= tree.startBlock + tree.numBlocks,
        ).toBe(true);
    expect(readFileSync(out).length).toBeLessThan(readFileSync(INCR).length);
    imagesOf(B1, at('b1-images'));
    const next = imagesOf(B2, at('b2-images'));
    const x = await omie(['extract-ota', out, at('verity-out'), '--source', at('b1-images')]);
    expect(x.exitCode, x.stderr).toBe(0);
    for (const part of PARTS)
      expect(readFileSync(join(at('verity-out'), `${part}.img`)).equals(readFileSync(next[part])), part).toBe(
        true,
      );
  });
});

describe('omie ota: refusals', () => {
  it('no --out, not a build folder, a public test key, a key the build does not trust', async () => {
    const noOut = await omie(['--json', 'ota', B1]);
    expect(noOut.exitCode).toBe(2);
    expect(JSON.parse(noOut.stdout).error.code).toBe('USAGE');
    const notBuild = await omie(['--json', 'ota', W, '--out', at('x.zip')]);
    expect(JSON.parse(notBuild.stdout).error.code).toBe('OTA_NOT_A_BUILD');
    // Another key than the one in the image's otacerts.zip: devices would refuse its next update.
    const products = join(FIX, 'tree1/device/omie/tablet/products');
    const other = join(products, 'other-key.yaml');
    writeFileSync(other, readFileSync(PRODUCT(join(FIX, 'tree1')), 'utf8').replace(/^ {2}otaKey: .*\n/m, ''));
    const untrusted = await omie(['--json', 'ota', B1, '--out', at('x.zip'), '--product', other]);
    expect(untrusted.exitCode).toBe(2);
    expect(JSON.parse(untrusted.stdout).error.code).toBe('OTA_KEY_NOT_TRUSTED');
    expect(existsSync(at('x.zip'))).toBe(false);
    if (AOSP_TESTKEYS.present) {
      const testkey = join(products, 'test-key.yaml');
      writeFileSync(
        testkey,
        readFileSync(PRODUCT(join(FIX, 'tree1')), 'utf8').replace(
          /^( {2}otaKey: ).*$/m,
          `$1{ file: ${join(AOSP_TESTKEYS.path, 'testkey.x509.pem')} }`,
        ),
      );
      const t = await omie(['--json', 'ota', B1, '--out', at('x.zip'), '--product', testkey]);
      expect(t.exitCode).toBe(2);
      expect(JSON.parse(t.stdout).error.code).toBe('TEST_KEY_REFUSED');
    }
  });
});

describe('omie ota publish / verify-feed', () => {
  const FEED = at('feed');
  const BASE = 'https://updates.omie.example/tablet';

  it('a static feed: LineageOS Updater JSON of the full packages, a signed manifest of all of them', async () => {
    rmSync(FEED, { recursive: true, force: true });
    for (const zip of [FULL, INCR]) {
      const r = await omie(['--json', 'ota', 'publish', zip, '--feed', FEED, '--url-base', BASE]);
      expect(r.exitCode, r.stderr).toBe(0);
    }
    const lineage = JSON.parse(readFileSync(join(FEED, 'tablet.json'), 'utf8'));
    const zip = readFileSync(join(FEED, 'omie-1.0.0.zip'));
    expect(zip.equals(readFileSync(FULL))).toBe(true);
    expect(lineage).toEqual({
      response: [
        {
          datetime: full.postTimestamp,
          filename: 'omie-1.0.0.zip',
          id: sha(zip),
          romtype: 'release',
          size: zip.length,
          url: `${BASE}/omie-1.0.0.zip`,
          version: '1.0.0',
        },
      ],
    });
    const env = JSON.parse(readFileSync(join(FEED, 'manifest.dsse.json'), 'utf8'));
    const manifest = JSON.parse(Buffer.from(env.payload, 'base64').toString('utf8'));
    expect(manifest.updates.map((u: { filename: string }) => u.filename).sort()).toEqual([
      'omie-1.0.0-to-1.0.1.zip',
      'omie-1.0.0.zip',
    ]);
    const inc = manifest.updates.find((u: { kind: string }) => u.kind === 'incremental');
    expect(inc).toMatchObject({
      baseBuild: incr.preBuild,
      baseVersion: '1.0.0',
      version: '1.0.1',
      sha256: sha(readFileSync(INCR)),
    });
    const v = await omie(['--json', 'ota', 'verify-feed', FEED, '--cert', `${KEY}.x509.pem`]);
    expect(v.exitCode, v.stdout).toBe(0);
    expect(JSON.parse(v.stdout)).toMatchObject({ ok: true, pinned: true });
  });

  it('verify-feed fails on a changed package, a changed manifest or another certificate', async () => {
    const copy = at('feed-bad');
    rmSync(copy, { recursive: true, force: true });
    cpSync(FEED, copy, { recursive: true });
    const zip = join(copy, 'omie-1.0.0-to-1.0.1.zip');
    const b = readFileSync(zip);
    b[b.length >> 1] ^= 1;
    writeFileSync(zip, b);
    const r = await omie(['--json', 'ota', 'verify-feed', copy]);
    expect(r.exitCode).toBe(1);
    expect(JSON.parse(r.stdout).problems[0]).toMatchObject({ file: 'omie-1.0.0-to-1.0.1.zip' });

    cpSync(FEED, copy, { recursive: true });
    const envPath = join(copy, 'manifest.dsse.json');
    const env = JSON.parse(readFileSync(envPath, 'utf8'));
    const m = JSON.parse(Buffer.from(env.payload, 'base64').toString('utf8'));
    m.updates[0].url = 'https://evil.example/omie.zip';
    env.payload = Buffer.from(JSON.stringify(m)).toString('base64');
    writeFileSync(envPath, JSON.stringify(env));
    const t = await omie(['--json', 'ota', 'verify-feed', copy]);
    expect(t.exitCode).toBe(1);
    expect(JSON.parse(t.stdout).error.code).toBe('FEED_SIGNATURE_INVALID');

    await openssl([
      'req',
      '-new',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      at('stranger.pem'),
      '-out',
      at('stranger.x509.pem'),
      '-days',
      '30',
      '-subj',
      '/CN=stranger',
    ]);
    const s = await omie(['--json', 'ota', 'verify-feed', FEED, '--cert', at('stranger.x509.pem')]);
    expect(s.exitCode).toBe(1);
  });
});
