/**
 * The APEX reader (scripts/formats/apex) against APEXes made the way apexer makes them, with the
 * real tools as oracles: apksigner (container signature), zipalign (4 KiB alignment), avbtool
 * (payload footer, key, verification), e2fsck / fsck.erofs (payload filesystem).
 */
import { createHash } from 'node:crypto';
import { copyFile, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { OmieError } from '../../scripts/errors.ts';
import {
  ApexArchive,
  encodeApexManifest,
  inspectApexPayload,
  parseApexManifest,
  parseApexManifestJson,
  readApexInfo,
} from '../../scripts/formats/apex/index.ts';
import { loadApkSigningKey, signApkFile } from '../../scripts/formats/apk/signing/sign.ts';
import { ZipArchive } from '../../scripts/formats/apk/zip.ts';
import { readAvbPublicKey } from '../../scripts/formats/avb/keys.ts';
import { writeStoredZip } from '../../scripts/formats/zip-store.ts';
import { openFilesystem } from '../../scripts/fs/index.ts';
import { AOSP_TESTKEY_RSA4096_PUBLIC_PEM } from '../avb/fixtures.ts';
import { mutate, omie, prng, workDir } from '../helpers.ts';
import { AVBTOOL } from '../oracles.ts';
import { type ApexFixtures, apexFixtures, TZDATA } from './fixtures.ts';

const D = workDir('apex');
let f: ApexFixtures;

beforeAll(async () => {
  f = await apexFixtures();
}, 600_000);

const avbtool = async (args: string[], cwd = D) => {
  const r = await execa('python3', [AVBTOOL.path, ...args], { cwd, reject: false });
  if (r.exitCode !== 0) throw new Error(`avbtool ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
};

/** The entries of an APEX, with some replaced, stored, aligned and signed again by the container key. */
async function repack(src: string, replace: Record<string, Buffer>, out: string): Promise<void> {
  const zip = await ZipArchive.openFile(src);
  const entries: Array<{ name: string; data: Buffer }> = [];
  try {
    for (const e of zip.entries) entries.push({ name: e.name, data: replace[e.name] ?? (await zip.read(e)) });
  } finally {
    await zip.close();
  }
  const unsigned = `${out}.unsigned`;
  await writeStoredZip(unsigned, entries, { mtime: new Date('2009-01-01T00:00:00Z'), mode: 0o100644 });
  await execa('zipalign', ['-f', '4096', unsigned, `${out}.aligned`]);
  await signApkFile(`${out}.aligned`, out, await loadApkSigningKey(f.containerKey), { minSdk: 29 });
}

describe('apex_manifest.pb', () => {
  it('encodes the proto3 wire format apexd reads and decodes it back', () => {
    const b = encodeApexManifest({ name: 'com.android.art', version: 341511000, versionName: 'art' });
    // field 1 (name), length-delimited; field 2 (version), varint; field 5 (versionName).
    const name = Buffer.from('com.android.art');
    expect(b.subarray(0, 2 + name.length)).toEqual(Buffer.concat([Buffer.from([0x0a, name.length]), name]));
    expect(b[2 + name.length]).toBe(0x10);
    const m = parseApexManifest(b);
    expect(m).toMatchObject({
      name: 'com.android.art',
      version: 341511000,
      versionName: 'art',
      noCode: false,
    });
    expect(m.originalApexDigest).toBeNull();
    const capex = parseApexManifest(
      encodeApexManifest({ name: 'com.android.art', version: 1, originalApexDigest: 'ab'.repeat(32) }),
    );
    expect(capex.originalApexDigest).toBe('ab'.repeat(32));
  });

  it("reads Android 10's apex_manifest.json and refuses what is not a manifest", () => {
    expect(parseApexManifestJson('{"name":"com.android.tzdata","version":290000000}')).toMatchObject({
      name: 'com.android.tzdata',
      version: 290000000,
    });
    expect(() => parseApexManifestJson('{"name":"tzdata","version":1}')).toThrow(/APEX name/);
    expect(() => parseApexManifestJson('[1]')).toThrow(OmieError);
    expect(() => parseApexManifest(Buffer.from([0x0a, 0x50, 0x41]))).toThrow(/ApexManifest protobuf/);
    expect(() =>
      parseApexManifest(encodeApexManifest({ name: 'com.x.y', version: 1 }).subarray(0, 0)),
    ).toThrow(/name is missing/);
  });

  it('mutated manifests give a typed error or a valid manifest, never a crash', () => {
    const good = encodeApexManifest({
      name: 'com.android.tzdata',
      version: 339990000,
      provideNativeLibs: ['libx.so'],
    });
    const rnd = prng(2024);
    for (let i = 0; i < 400; i++) {
      try {
        const m = parseApexManifest(mutate(good, rnd));
        expect(typeof m.name).toBe('string');
      } catch (e) {
        expect(e).toBeInstanceOf(OmieError);
      }
    }
  });
});

describe('APEX container', () => {
  it('names, version, package and container signer as apksigner and aapt see them', async () => {
    for (const file of [f.apex, f.capex]) {
      const info = await readApexInfo(file);
      expect(info).toMatchObject({
        name: TZDATA.name,
        version: TZDATA.version,
        versionName: TZDATA.versionName,
      });
      expect(info.packageName).toBe(TZDATA.packageName);
      expect(info.compressed).toBe(file === f.capex);
      const v = await execa('apksigner', ['verify', '--print-certs', file]);
      const digest = /certificate SHA-256 digest: ([0-9a-f]{64})/.exec(v.stdout)?.[1];
      expect(info.container).toEqual({ verified: true, signers: [digest] });
      const badging = await execa('aapt', ['dump', 'badging', file]);
      expect(badging.stdout).toContain(
        `package: name='${TZDATA.packageName}' versionCode='${TZDATA.version}'`,
      );
    }
  });

  it('apex_pubkey is the AVB public key blob of the payload key (avbtool extract_public_key)', async () => {
    const info = await readApexInfo(f.apex);
    expect(info.publicKey).toEqual(readAvbPublicKey(f.payloadKey));
    expect(info.publicTestKey).toBeNull();
  });

  it.skipIf(!AVBTOOL.present)(`avbtool extract_public_key agrees ${AVBTOOL.reason}`, async () => {
    const out = join(D, 'payload.avbpubkey');
    await avbtool(['extract_public_key', '--key', f.payloadKey, '--output', out]);
    expect((await readApexInfo(f.apex)).publicKey).toEqual(await readFile(out));
  });

  it('stores the payload 4 KiB aligned (zipalign -c 4096)', async () => {
    const r = await execa('zipalign', ['-c', '-v', '4096', f.apex]);
    expect(r.stdout).toMatch(/apex_payload\.img \(OK\)/);
    const zip = await ZipArchive.openFile(f.apex);
    try {
      expect(zip.entry('apex_payload.img')?.method).toBe(0);
    } finally {
      await zip.close();
    }
  });
});

describe('APEX payload', () => {
  it('ext4 payload: a clean filesystem holding the manifest, the APK and the jar', async () => {
    const a = await ApexArchive.open(f.apex);
    const img = join(D, 'apex-payload.img');
    try {
      await a.extractPayload(img);
    } finally {
      await a.close();
    }
    await execa('e2fsck', ['-fn', img]);
    const fs = await openFilesystem(img);
    try {
      expect(fs.kind).toBe('ext4');
      const paths = (await fs.list()).map((e) => e.path);
      expect(paths).toEqual(
        expect.arrayContaining([
          '/apex_manifest.pb',
          '/priv-app/TzUpdater/TzUpdater.apk',
          '/javalib/framework-tz.jar',
          '/etc/tz/tzdata',
        ]),
      );
      expect(parseApexManifest(await fs.readFile('/apex_manifest.pb')).name).toBe(TZDATA.name);
    } finally {
      await fs.close();
    }
    const p = await inspectApexPayload(img, a.info, { verifyHashtree: true });
    expect(p).toMatchObject({
      fsType: 'ext4',
      algorithm: 'SHA256_RSA4096',
      signed: true,
      keyMatchesApexPubkey: true,
      partitionName: TZDATA.name,
      rootDigest: f.rootDigests.apex,
      hashtreeVerified: true,
      problems: [],
    });
  });

  it.skipIf(!AVBTOOL.present)(`avbtool reads and verifies the payload footer ${AVBTOOL.reason}`, async () => {
    const a = await ApexArchive.open(f.apex);
    // avbtool verify_image opens <partition name>.img beside the image.
    const img = join(D, `${TZDATA.name}.img`);
    try {
      await a.extractPayload(img);
    } finally {
      await a.close();
    }
    const info = await avbtool(['info_image', '--image', img]);
    const manifest = encodeApexManifest({
      name: TZDATA.name,
      version: TZDATA.version,
      versionName: TZDATA.versionName,
    });
    expect(info).toContain(`Partition Name:        ${TZDATA.name}`);
    expect(info).toContain(`Salt:                  ${createHash('sha256').update(manifest).digest('hex')}`);
    expect(info).toContain(`Root Digest:           ${f.rootDigests.apex}`);
    expect(info).toContain(`Prop: apex.key -> '${TZDATA.name}'`);
    const out = await avbtool(['verify_image', '--image', img, '--key', f.payloadKey]);
    expect(out).toMatch(/Successfully verified/);
  });

  it('capex: the erofs payload of original_apex, whose root digest the manifest names', async () => {
    const a = await ApexArchive.open(f.capex);
    const img = join(D, 'capex-payload.img');
    try {
      expect(a.info.manifest.originalApexDigest).toBe(f.rootDigests.capex);
      await a.extractPayload(img);
    } finally {
      await a.close();
    }
    await execa('fsck.erofs', [img]);
    const p = await inspectApexPayload(img, a.info);
    expect(p).toMatchObject({ fsType: 'erofs', rootDigest: f.rootDigests.capex, problems: [] });
    // Another digest in the manifest is a problem, not a crash.
    const wrong = { ...a.info, manifest: { ...a.info.manifest, originalApexDigest: '00'.repeat(32) } };
    expect((await inspectApexPayload(img, wrong)).problems.join()).toMatch(/not the originalApexDigest/);
  });

  it('a payload signed with another key than apex_pubkey is a problem apexd would refuse', async () => {
    const other = join(D, 'other-key.apex');
    await repack(f.apex, { apex_pubkey: readAvbPublicKey(f.otherPayloadKey) }, other);
    const a = await ApexArchive.open(other);
    const img = join(D, 'other-key-payload.img');
    try {
      await a.extractPayload(img);
    } finally {
      await a.close();
    }
    const p = await inspectApexPayload(img, a.info);
    expect(p.keyMatchesApexPubkey).toBe(false);
    expect(p.problems.join()).toMatch(/another key than apex_pubkey/);
  });

  it('names the AVB public test key when apex_pubkey is one', async () => {
    const pem = join(D, 'testkey_rsa4096_pub.pem');
    await writeFile(pem, AOSP_TESTKEY_RSA4096_PUBLIC_PEM);
    const out = join(D, 'testkey.apex');
    await repack(f.apex, { apex_pubkey: readAvbPublicKey(pem) }, out);
    const info = await readApexInfo(out);
    expect(info.publicTestKey).toBe('testkey_rsa4096');
    expect(info.publicKeySha256).toBe('7728e30f50bfa5cea165f473175a08803f6a8346642b5aa10913e9d9e6defef6');
  });
});

describe('bad input', () => {
  it('a zip without payload is not an APEX; a truncated APEX is a typed error', async () => {
    const bytes = await readFile(f.apex);
    const zip = await ZipArchive.openFile(f.apex);
    const entries = zip.entries.filter((e) => e.name !== 'apex_payload.img');
    await zip.close();
    expect(entries.length).toBe(3);
    const noPayload = join(D, 'no-payload.apex');
    const z2 = await ZipArchive.openFile(f.apex);
    const kept: Array<{ name: string; data: Buffer }> = [];
    for (const e of entries) kept.push({ name: e.name, data: await z2.read(e) });
    await z2.close();
    await writeStoredZip(noPayload, kept, { mtime: new Date(0), mode: 0o100644 });
    await expect(readApexInfo(noPayload)).rejects.toMatchObject({ code: 'APEX_INVALID' });
    const truncated = join(D, 'truncated.apex');
    await writeFile(truncated, bytes.subarray(0, bytes.length - 100));
    await expect(readApexInfo(truncated)).rejects.toBeInstanceOf(OmieError);
  });

  it('mutated APEX containers give a typed error or an answer, never a crash', async () => {
    const small = join(D, 'fuzz-src.apex');
    await copyFile(f.capex, small);
    const good = await readFile(small);
    const rnd = prng(7);
    for (let i = 0; i < 40; i++) {
      const p = join(D, 'fuzz.apex');
      await writeFile(p, mutate(good, rnd));
      try {
        const a = await ApexArchive.open(p);
        try {
          await a.extractPayload(join(D, 'fuzz-payload.img'));
        } finally {
          await a.close();
        }
      } catch (e) {
        expect(e).toBeInstanceOf(OmieError);
      }
    }
  });
});

describe('omie inspect <apex>', () => {
  it('summarises an .apex and a .capex: name, version, package, container signer, payload key and contents', async () => {
    for (const [file, fsType] of [
      [f.apex, 'ext4'],
      [f.capex, 'erofs'],
    ] as const) {
      const r = await omie(['inspect', '--json', file]);
      expect(r.exitCode, r.stderr).toBe(0);
      const { kind, result } = JSON.parse(r.stdout);
      expect(kind).toBe('apex');
      const info = await readApexInfo(file);
      expect(result).toMatchObject({
        name: TZDATA.name,
        package: TZDATA.packageName,
        version: TZDATA.version,
        compressed: file === f.capex,
        payloadKey: { sha256: info.publicKeySha256, publicTestKey: null },
        container: { verified: true, signers: info.container.signers },
        payload: {
          fsType,
          signed: true,
          keyMatchesApexPubkey: true,
          partitionName: TZDATA.name,
          problems: [],
          apks: ['/priv-app/TzUpdater/TzUpdater.apk'],
          jars: ['/javalib/framework-tz.jar'],
        },
      });
    }
    const human = await omie(['inspect', f.apex]);
    expect(human.stdout).toMatch(/: apex\n {2}APEX com\.android\.tzdata version 339990000 \(2024a\)/);
  });

  it('names the AVB public test key of an APEX signed with it', async () => {
    const pem = join(D, 'testkey_rsa4096_pub.pem');
    await writeFile(pem, AOSP_TESTKEY_RSA4096_PUBLIC_PEM);
    const file = join(D, 'inspect-testkey.apex');
    await repack(f.apex, { apex_pubkey: readAvbPublicKey(pem) }, file);
    const r = await omie(['inspect', file]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/the AVB public test key testkey_rsa4096/);
    expect(r.stdout).toMatch(/problem: the payload is signed with another key than apex_pubkey/);
  });
});
