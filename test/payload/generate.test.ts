/**
 * Payloads the kit writes, checked by AOSP's own payload checker (paycheck.py: metadata,
 * operations, hashes, signatures with -k, and its applier) and by the real tools each format
 * belongs to (xz, openssl, Debian's bspatch): full payloads from partition images, and incremental
 * ones between two ext4 images that differ by a changed, an added and a removed file.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { xzBcjFilter, xzChunks } from '../../scripts/formats/payload/compress.ts';
import { deltaOperations } from '../../scripts/formats/payload/delta.ts';
import { extractPayload } from '../../scripts/formats/payload/extract.ts';
import { type FullCodec, fullOperations } from '../../scripts/formats/payload/full.ts';
import {
  BlobFile,
  finalizePayload,
  type GeneratedPartition,
  type PayloadSpec,
} from '../../scripts/formats/payload/payload-file.ts';
import { payloadProtos } from '../../scripts/formats/payload/proto.ts';
import { readPayload } from '../../scripts/formats/payload/reader.ts';
import { checkPayloadSignatures, loadPayloadSigningKey } from '../../scripts/formats/payload/signature.ts';
import { fileDataRanges } from '../../scripts/fs/index.ts';
import { prng, ROOT, workDir } from '../helpers.ts';
import { PAYCHECK } from '../oracles.ts';

const W = workDir('payload-generate');
const at = (...p: string[]) => join(W, ...p);
const BS = 4096;
const CHUNK = 16 * BS;

const rnd = prng(21);
const random = (n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(rnd() * 256)));
const text = (n: number, tag: string) => {
  const line = `${tag} omie line `;
  return Buffer.from(line.repeat(Math.ceil(n / line.length)).slice(0, n));
};

async function openssl(args: string[], input?: Buffer): Promise<Buffer> {
  const r = await execa('openssl', args, { input, encoding: 'buffer', stripFinalNewline: false });
  return Buffer.from(r.stdout as Uint8Array);
}

/** Writes `files` under a fresh folder and makes a 4 KiB-block ext4 image of it. */
async function ext4Image(name: string, files: Record<string, Buffer>): Promise<string> {
  const src = at(`${name}-src`);
  rmSync(src, { recursive: true, force: true });
  for (const [p, data] of Object.entries(files)) {
    mkdirSync(join(src, p, '..'), { recursive: true });
    writeFileSync(join(src, p), data);
  }
  const image = at(`${name}.img`);
  rmSync(image, { force: true });
  await execa(
    'mke2fs',
    ['-q', '-F', '-t', 'ext4', '-b', '4096', '-O', '^has_journal', '-d', src, image, '6M'],
    {
      env: { E2FSPROGS_FAKE_TIME: '1700000000' },
    },
  );
  return image;
}

/** Builds a payload of `parts` (already generated into `blobs`) signed with `key`, at `out`. */
async function writeSigned(out: string, spec: PayloadSpec, blobs: BlobFile, key: string) {
  const fin = await finalizePayload(spec, blobs, await loadPayloadSigningKey(key));
  const fh = await open(out, 'w');
  let pos = 0;
  await fin.writeTo(async (b) => {
    await fh.write(b, 0, b.length, pos);
    pos += b.length;
  });
  await fh.close();
  expect(pos).toBe(fin.size);
  expect(createHash('sha256').update(readFileSync(out)).digest().equals(fin.sha256)).toBe(true);
  return fin;
}

async function paycheck(args: string[]) {
  return execa('/usr/bin/python3', [PAYCHECK.path, ...args], { reject: false, all: true });
}

let oldImg: string;
let newImg: string;
let rsa2048: string;
let rsa2048Pub: string;

beforeAll(async () => {
  const apk = random(150_000);
  const changed = Buffer.from(apk);
  for (let i = 20_000; i < 20_400; i++) changed[i] ^= 0x5a; // a rebuilt APK: mostly the same bytes
  const common = {
    'system/framework/framework.jar': random(120_000),
    'system/etc/build.prop': text(3000, 'ro.build'),
    'system/usr/padding.bin': random(1_000_000),
  };
  oldImg = await ext4Image('old', {
    ...common,
    'system/app/Wallet/Wallet.apk': apk,
    'system/app/Gone/Gone.apk': random(60_000),
  });
  newImg = await ext4Image('new', {
    ...common,
    'system/app/Wallet/Wallet.apk': Buffer.concat([changed, Buffer.from('v2')]),
    'system/app/Added/Added.apk': random(40_000),
  });
  rsa2048 = at('ota-2048.pem');
  rsa2048Pub = at('ota-2048.pub.pem');
  await openssl(['genrsa', '-out', rsa2048, '2048']);
  await openssl(['rsa', '-in', rsa2048, '-pubout', '-out', rsa2048Pub]);
}, 120_000);

async function fullPayload(name: string, codec: FullCodec, key: string) {
  const blobs = await BlobFile.create(at(`${name}.blobs`));
  const partitions: GeneratedPartition[] = [];
  for (const [part, img] of [['system', newImg]] as const) {
    const r = await fullOperations(img, { blockSize: BS, chunkSize: CHUNK, codec, blobs });
    partitions.push({ name: part, newInfo: { size: r.size, sha256: r.sha256 }, operations: r.operations });
  }
  const out = at(`${name}.bin`);
  const fin = await writeSigned(
    out,
    { blockSize: BS, minorVersion: 0, partitions, maxTimestamp: 1700000000 },
    blobs,
    key,
  );
  await blobs.dispose();
  return { out, fin, partitions };
}

describe('full payloads', () => {
  it.skipIf(!PAYCHECK.present)(
    `paycheck accepts them, verifies both signatures and applies them to the exact image ${PAYCHECK.reason}`,
    async () => {
      const { out, partitions } = await fullPayload('full-xz', 'xz', rsa2048);
      const types = new Set(partitions[0].operations.map((o) => o.type));
      expect([...types].sort()).toEqual(['REPLACE', 'REPLACE_XZ']); // random chunks stay REPLACE
      const ops = partitions[0].operations;
      expect(ops.every((o, i) => o.dstExtents[0].startBlock === (i * CHUNK) / BS)).toBe(true);
      const sigFile = at('full-xz.metasig');
      const p = await readPayload(out);
      writeFileSync(sigFile, p.metadataSignatures[0].data.toString('base64'));
      const check = await paycheck([
        out,
        '-c',
        '-k',
        rsa2048Pub,
        '-m',
        sigFile,
        '-s',
        String(24 + p.manifestSize),
      ]);
      expect(check.exitCode, check.all).toBe(0);
      const apply = await paycheck([out, '--part_names', 'system', '--dst_part_paths', newImg]);
      expect(apply.exitCode, apply.all).toBe(0);
      const res = await extractPayload(out, at('out-full-xz'), { inProcess: true });
      expect(readFileSync(res[0].path).equals(readFileSync(newImg))).toBe(true);
      // A payload signed by another key fails paycheck's signature check.
      const other = at('other-2048.pub.pem');
      await openssl(['genrsa', '-out', at('other-2048.pem'), '2048']);
      await openssl(['rsa', '-in', at('other-2048.pem'), '-pubout', '-out', other]);
      expect((await paycheck([out, '-c', '-k', other])).exitCode).not.toBe(0);
    },
  );

  it('REPLACE_ZSTD where the device takes it; RSA-4096 and EC P-256 signatures (oracle: openssl)', async () => {
    const rsa4096 = at('ota-4096.pem');
    await openssl(['genrsa', '-out', rsa4096, '4096']);
    const { out, partitions } = await fullPayload('full-zstd', 'zstd', rsa4096);
    expect(partitions[0].operations.some((o) => o.type === 'REPLACE_ZSTD')).toBe(true);
    const res = await extractPayload(out, at('out-full-zstd'), { inProcess: true });
    expect(readFileSync(res[0].path).equals(readFileSync(newImg))).toBe(true);
    const p = await readPayload(out);
    expect((await checkPayloadSignatures(p, { key: rsa4096 })).payloadSignature.status).toBe('valid');
    // openssl checks the metadata signature: RSA PKCS#1 v1.5 over SHA-256 of header + manifest.
    const raw = readFileSync(out);
    writeFileSync(at('meta.bin'), raw.subarray(0, 24 + p.manifestSize));
    writeFileSync(at('meta.sig'), p.metadataSignatures[0].data);
    await openssl(['rsa', '-in', rsa4096, '-pubout', '-out', at('ota-4096.pub.pem')]);
    const v = await execa(
      'openssl',
      ['dgst', '-sha256', '-verify', at('ota-4096.pub.pem'), '-signature', at('meta.sig'), at('meta.bin')],
      { reject: false },
    );
    expect(v.stdout).toMatch(/Verified OK/);

    const ec = at('ota-ec.pem');
    await openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', ec]);
    const e = await fullPayload('full-ec', 'xz', ec);
    const pe = await readPayload(e.out);
    const r = await checkPayloadSignatures(pe, { key: ec });
    expect([r.metadataSignature.status, r.payloadSignature.status]).toEqual(['valid', 'valid']);
    // payload_signer pads EC signatures to 72 bytes and records the real length.
    expect(pe.payloadSignatures[0].data.length).toBe(72);
    expect(pe.payloadSignatures[0].unpaddedSize).toBeLessThanOrEqual(72);

    await openssl(['genrsa', '-out', at('ota-3072.pem'), '3072']);
    await expect(loadPayloadSigningKey(at('ota-3072.pem'))).rejects.toMatchObject({
      code: 'PAYLOAD_KEY_UNSUPPORTED',
    });
  });

  it('one xz process, one stream per chunk: each decodes alone with xz (BCJ x86 for an ELF chunk)', async () => {
    const elf = Buffer.alloc(CHUNK);
    elf.writeUInt32BE(0x7f454c46, 0);
    elf[4] = 2;
    elf[5] = 1;
    elf.writeUInt16LE(62, 18); // EM_X86_64
    text(CHUNK - 64, 'code').copy(elf, 64);
    const data = Buffer.concat([text(CHUNK, 'a'), elf, Buffer.alloc(CHUNK), random(CHUNK / 2)]);
    expect(data.length).toBe(3.5 * CHUNK);
    writeFileSync(at('chunks.img'), data);
    expect(xzBcjFilter(elf)).toEqual(['--x86']);
    let n = 0;
    for await (const c of xzChunks(at('chunks.img'), 0, data.length, { chunkSize: CHUNK })) {
      const d = await execa('xz', ['-dc'], { input: c.stream, encoding: 'buffer', stripFinalNewline: false });
      expect(
        Buffer.from(d.stdout as Uint8Array).equals(data.subarray(c.index * CHUNK, c.index * CHUNK + c.size)),
      ).toBe(true);
      writeFileSync(at('chunk.xz'), c.stream);
      const list = await execa('xz', ['--robot', '-lvv', at('chunk.xz')]);
      expect(list.stdout).toMatch(/^totals\t1\t1\t/m); // one stream, one block
      expect(list.stdout).toMatch(/^stream\t1\t1\t.*\tNone\t/m); // no check, as delta_generator
      n++;
    }
    expect(n).toBe(4);
    // In a payload the ELF chunk is compressed on its own with the BCJ filter, as xz_android.cc does.
    const blobs = await BlobFile.create(at('chunks.blobs'));
    const r = await fullOperations(at('chunks.img'), { blockSize: BS, chunkSize: CHUNK, codec: 'xz', blobs });
    writeFileSync(at('elf.xz'), await blobs.read(r.operations[1].blob!));
    const info = await execa('xz', ['--robot', '-lvv', at('elf.xz')]);
    expect(info.stdout).toMatch(/--x86/);
    await blobs.dispose();
  });
});

describe('incremental payloads', () => {
  it.skipIf(!PAYCHECK.present)(
    `file by file over ext4 extents: paycheck checks and applies them (Debian bspatch for the diffs) ${PAYCHECK.reason}`,
    async () => {
      const blobs = await BlobFile.create(at('delta.blobs'));
      const files = async (img: string) =>
        (await fileDataRanges(img))!.map((f) => ({
          name: f.path,
          extents: f.ranges.map(([a, b]) => ({ startBlock: a / BS, numBlocks: (b - a) / BS })),
        }));
      const newFiles = await files(newImg);
      const r = await deltaOperations(oldImg, newImg, {
        blockSize: BS,
        softChunkBlocks: CHUNK / BS,
        hardChunkBlocks: 4096,
        maxDiffBytes: 16 << 20,
        codecs: ['REPLACE_XZ'],
        diffType: 'BROTLI_BSDIFF',
        blobs,
        oldFiles: await files(oldImg),
        newFiles,
      });
      const types = new Set(r.operations.map((o) => o.type));
      for (const t of ['SOURCE_COPY', 'BROTLI_BSDIFF', 'ZERO']) expect(types).toContain(t);
      // Never a whole-partition diff: every diff writes within one file of the new image.
      const wallet = newFiles.find((f) => f.name === '/system/app/Wallet/Wallet.apk')!;
      const within = (b: number) =>
        newFiles.some((f) => f.extents.some((e) => b >= e.startBlock && b < e.startBlock + e.numBlocks));
      for (const op of r.operations.filter((o) => o.type === 'BROTLI_BSDIFF'))
        for (const e of op.dstExtents) expect(within(e.startBlock) || e.numBlocks <= CHUNK / BS).toBe(true);
      // Its unchanged blocks are copied; the changed ones are a diff against the old Wallet.apk.
      const inWallet = (b: number) =>
        wallet.extents.some((e) => b >= e.startBlock && b < e.startBlock + e.numBlocks);
      expect(
        r.operations.some((o) => o.type === 'BROTLI_BSDIFF' && inWallet(o.dstExtents[0].startBlock)),
      ).toBe(true);
      const out = at('delta.bin');
      await writeSigned(
        out,
        {
          blockSize: BS,
          minorVersion: 6,
          partitions: [{ name: 'system', newInfo: r.newInfo, oldInfo: r.oldInfo, operations: r.operations }],
        },
        blobs,
        rsa2048,
      );
      await blobs.dispose();
      const size = readFileSync(out).length;
      expect(size).toBeLessThan(120_000); // the changed APK and the added one, not 6 MiB of image
      const check = await paycheck([out, '-c', '-k', rsa2048Pub]);
      expect(check.exitCode, check.all).toBe(0);
      const applied = at('delta-applied.img');
      const apply = await paycheck([
        out,
        '--bspatch-path',
        join(ROOT, 'test/payload/bspatch-extents.py'),
        '--part_names',
        'system',
        '--src_part_paths',
        oldImg,
        '--dst_part_paths',
        newImg,
        '--out_dst_part_paths',
        applied,
      ]);
      expect(apply.exitCode, apply.all).toBe(0);
      expect(readFileSync(applied).equals(readFileSync(newImg))).toBe(true);
      // Ours gives the same image from the same source.
      mkdirSync(at('delta-src'), { recursive: true });
      writeFileSync(at('delta-src', 'system.img'), readFileSync(oldImg));
      const res = await extractPayload(out, at('out-delta'), { inProcess: true, sourceDir: at('delta-src') });
      expect(readFileSync(res[0].path).equals(readFileSync(newImg))).toBe(true);
      // Source hashes are in the manifest (minor version 3+) for every operation that reads.
      const { ManifestMessage } = payloadProtos();
      const p = await readPayload(out);
      const m = ManifestMessage.decode(readFileSync(out).subarray(24, 24 + p.manifestSize)) as unknown as {
        partitions: { operations: { srcExtents: unknown[]; srcSha256Hash?: Uint8Array }[] }[];
      };
      for (const op of m.partitions[0].operations)
        if (op.srcExtents.length) expect(op.srcSha256Hash?.length).toBe(32);
    },
  );
});
