/**
 * Incremental payloads applied over the images they were made from: the real delta_generator
 * output of AOSP's update_engine samples (BROTLI_BSDIFF, SOURCE_COPY, ZERO, REPLACE_BZ, REPLACE_XZ,
 * minor version 6) must rebuild the target images byte for byte; the wrong source, a missing one
 * and operations this applier does not implement are refused with typed errors, before anything is
 * written. bsdiff patches are checked against Debian's bsdiff/bspatch.
 */
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { FormatError } from '../../scripts/errors.ts';
import { applyPartition } from '../../scripts/formats/payload/apply.ts';
import { bsdiff, bspatch, parsePatchHeader } from '../../scripts/formats/payload/bsdiff.ts';
import { payloadProtos } from '../../scripts/formats/payload/proto.ts';
import { listPayload, readPayload } from '../../scripts/formats/payload/reader.ts';
import { writeRawPayload } from '../../scripts/formats/payload/writer.ts';
import { mutate, omie, prng, ROOT, workDir } from '../helpers.ts';
import { hostFile } from '../host-tools.ts';
import { UPDATE_ENGINE_SAMPLES } from '../oracles.ts';

const BROTLI = hostFile('/usr/lib/python3/dist-packages/brotli.py');

const W = workDir('payload-incremental');
const at = (...p: string[]) => join(W, ...p);
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Expected target digests, from the samples' README. */
const KERNEL_SHA = 'c51d9edeaf1043efe41257caebc1336ac21e411abb6ed4183324be6e841c448c';
const ROOT_SHA = '5610597d03d3e29f01d722bd743296ef68d076f623c1dca2eb135347c6b8efba';

/** A folder of `<partition>.img` named as the delta payload's partitions. */
function sourceDir(name: string, kernel: string, root: string): string {
  const d = at(name);
  rmSync(d, { recursive: true, force: true });
  mkdirSync(d, { recursive: true });
  copyFileSync(at('images', kernel), join(d, 'kernel.img'));
  copyFileSync(at('images', root), join(d, 'root.img'));
  return d;
}

beforeAll(async () => {
  if (!UPDATE_ENGINE_SAMPLES.present) return;
  rmSync(at('images'), { recursive: true, force: true });
  mkdirSync(at('images'), { recursive: true });
  await execa('tar', ['-xjf', join(UPDATE_ENGINE_SAMPLES.path, 'sample_images.tar.bz2'), '-C', at('images')]);
  await execa('tar', [
    '-xJf',
    join(UPDATE_ENGINE_SAMPLES.path, 'sample_payloads.tar.xz'),
    '-C',
    at('images'),
  ]);
}, 60_000);

describe(`AOSP delta_generator samples ${UPDATE_ENGINE_SAMPLES.reason}`, () => {
  it.skipIf(!UPDATE_ENGINE_SAMPLES.present)(
    'the real delta payload applies byte-exactly over the old images (omie extract-ota --source)',
    async () => {
      const listing = await listPayload(at('images', 'delta_payload.bin'));
      expect(listing.minorVersion).toBe(6);
      const types = new Set(listing.partitions.flatMap((p) => Object.keys(p.operationTypes)));
      for (const t of ['BROTLI_BSDIFF', 'SOURCE_COPY', 'ZERO']) expect(types).toContain(t);
      const src = sourceDir('src-good', 'disk_ext2_4k_empty.img', 'disk_sqfs_empty.img');
      const out = at('out-good');
      const r = await omie([
        '--json',
        'extract-ota',
        at('images', 'delta_payload.bin'),
        out,
        '--source',
        src,
      ]);
      expect(r.exitCode, r.stderr).toBe(0);
      const kernel = readFileSync(join(out, 'kernel.img'));
      const root = readFileSync(join(out, 'root.img'));
      expect(sha(kernel)).toBe(KERNEL_SHA);
      expect(sha(root)).toBe(ROOT_SHA);
      expect(kernel.equals(readFileSync(at('images', 'disk_ext2_4k.img')))).toBe(true);
      expect(root.equals(readFileSync(at('images', 'disk_sqfs_default.img')))).toBe(true);
      // The full sample (REPLACE_BZ, REPLACE_XZ) gives the same images, with no source.
      const full = await omie(['extract-ota', at('images', 'full_payload.bin'), at('out-full')]);
      expect(full.exitCode, full.stderr).toBe(0);
      expect(sha(readFileSync(at('out-full', 'kernel.img')))).toBe(KERNEL_SHA);
    },
  );

  it.skipIf(!UPDATE_ENGINE_SAMPLES.present)(
    'the wrong source, a missing one or none at all is refused before anything is written',
    async () => {
      const payload = at('images', 'delta_payload.bin');
      // The new kernel where the old one should be: its hash is not old_partition_info's.
      const wrong = sourceDir('src-wrong', 'disk_ext2_4k.img', 'disk_sqfs_empty.img');
      const r = await omie(['--json', 'extract-ota', payload, at('out-wrong'), '--source', wrong]);
      expect(r.exitCode).toBe(1);
      const e = JSON.parse(r.stdout).error;
      expect(e.code).toBe('PAYLOAD_SOURCE_HASH_MISMATCH');
      expect(e.context.partition).toBe('kernel');
      expect(existsSync(at('out-wrong', 'kernel.img')) || existsSync(at('out-wrong', 'root.img'))).toBe(
        false,
      );

      const missing = sourceDir('src-missing', 'disk_ext2_4k_empty.img', 'disk_sqfs_empty.img');
      rmSync(join(missing, 'root.img'));
      const m = await omie(['--json', 'extract-ota', payload, at('out-missing'), '--source', missing]);
      expect(m.exitCode).toBe(2);
      expect(JSON.parse(m.stdout).error.code).toBe('PAYLOAD_SOURCE_MISSING');

      const none = await omie(['extract-ota', payload, at('out-none')]);
      expect(none.exitCode).toBe(2);
      expect(none.stderr).toMatch(/a full OTA is required/);
      expect(none.stderr).toMatch(/hint: .*--source/);
    },
  );

  it.skipIf(!UPDATE_ENGINE_SAMPLES.present)(
    'each operation checks the source blocks it reads (src_sha256_hash), naming the operation',
    async () => {
      const p = await readPayload(at('images', 'delta_payload.bin'));
      const kernel = p.manifest.partitions.find((x) => x.name === 'kernel')!;
      // Whole-partition checks happen in extract.ts; here one block the copy reads is changed.
      const copy = kernel.operations.find((o) => o.type === 'SOURCE_COPY')!;
      const src = Buffer.from(readFileSync(at('images', 'disk_ext2_4k_empty.img')));
      src[copy.srcExtents[0].startBlock * 4096 + 7] ^= 0xff;
      writeFileSync(at('tampered-kernel.img'), src);
      const e = await applyPartition({
        file: p.location.file,
        blobsOffset: p.blobsOffset,
        blockSize: p.manifest.blockSize,
        partition: kernel,
        outPath: at('tampered-out.img'),
        sourcePath: at('tampered-kernel.img'),
      }).catch((x) => x);
      expect(e.code).toBe('PAYLOAD_SOURCE_HASH_MISMATCH');
      expect(e.context).toMatchObject({ partition: 'kernel', operation: copy.index });
    },
  );

  it.skipIf(!UPDATE_ENGINE_SAMPLES.present)(
    'PUFFDIFF (and the other patch formats it does not implement) is refused by name',
    async () => {
      const path = at('images', 'delta_payload.bin');
      const p = await readPayload(path);
      const raw = readFileSync(path);
      const { ManifestMessage } = payloadProtos();
      const m = ManifestMessage.toObject(ManifestMessage.decode(raw.subarray(24, 24 + p.manifestSize)), {
        longs: Number,
        enums: String,
      }) as { partitions: { operations: { type: string }[] }[] };
      const op = m.partitions[0].operations.find((o) => o.type === 'BROTLI_BSDIFF')!;
      op.type = 'PUFFDIFF';
      writeFileSync(at('puff.blobs'), raw.subarray(p.blobsOffset));
      await writeRawPayload(at('puff.bin'), m as unknown as Record<string, unknown>, at('puff.blobs'));
      const src = sourceDir('src-puff', 'disk_ext2_4k_empty.img', 'disk_sqfs_empty.img');
      const r = await omie(['--json', 'extract-ota', at('puff.bin'), at('out-puff'), '--source', src]);
      expect(r.exitCode).toBe(2);
      const e = JSON.parse(r.stdout).error;
      expect(e.code).toBe('PAYLOAD_OPERATION_UNSUPPORTED');
      expect(e.message).toMatch(/PUFFDIFF: puffin .* not supported/);
    },
  );
});

describe('bsdiff patches (oracles: Debian bsdiff / bspatch)', () => {
  const rnd = prng(11);
  const random = (n: number) => Buffer.from(Array.from({ length: n }, () => Math.floor(rnd() * 256)));
  const old = Buffer.concat([random(40_000), Buffer.from('omie '.repeat(3000)), random(30_000)]);
  // The new file moves, inserts and changes data, as a rebuilt APK does.
  const next = Buffer.concat([
    old.subarray(0, 20_000),
    random(5_000),
    old.subarray(20_000, 52_000).map((b, i) => (i % 1000 === 0 ? b ^ 1 : b)),
    Buffer.from('new '.repeat(500)),
    old.subarray(52_000),
  ]);

  it('applies BSDIFF40 patches made by the real bsdiff, and makes BSDF2 (brotli) ones', async () => {
    const legacy = await bsdiff(old, next, 'BSDIFF40');
    expect(parsePatchHeader(legacy)).toMatchObject({ format: 'BSDIFF40', newSize: next.length });
    expect(bspatch(old, legacy).equals(next)).toBe(true);
    const bsdf2 = await bsdiff(old, next, 'BSDF2');
    expect(bsdf2.subarray(0, 8)).toEqual(Buffer.from([0x42, 0x53, 0x44, 0x46, 0x32, 2, 2, 2]));
    expect(bspatch(old, bsdf2).equals(next)).toBe(true);
    expect(bsdf2.length).toBeLessThan(next.length / 2);
  });

  it.skipIf(!BROTLI.present)(
    `our BSDF2 patches, unwrapped to BSDIFF40, apply with the real bspatch ${BROTLI.reason}`,
    async () => {
      writeFileSync(at('bs-old'), old);
      writeFileSync(at('bs-new'), Buffer.alloc(next.length));
      writeFileSync(at('bs.patch'), await bsdiff(old, next, 'BSDF2'));
      await execa('/usr/bin/python3', [
        join(ROOT, 'test/payload/bspatch-extents.py'),
        at('bs-old'),
        at('bs-new'),
        at('bs.patch'),
        `0:${old.length}`,
        `0:${next.length}`,
      ]);
      expect(readFileSync(at('bs-new')).equals(next)).toBe(true);
    },
  );

  it('fuzz: 300 mutated patches give a FormatError or some output, never another exception', async () => {
    const patches = [await bsdiff(old, next, 'BSDIFF40'), await bsdiff(old, next, 'BSDF2')];
    const r = prng(5);
    for (let i = 0; i < 300; i++) {
      const bad = mutate(patches[i % 2], r);
      try {
        const out = bspatch(old, bad, 4 * next.length);
        expect(out.length).toBeLessThanOrEqual(4 * next.length);
      } catch (e) {
        expect(e, `case ${i}`).toBeInstanceOf(FormatError);
      }
    }
  });
});
