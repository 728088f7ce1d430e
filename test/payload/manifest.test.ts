import { createWriteStream, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import yazl from 'yazl';
import { extractPayload } from '../../scripts/formats/payload/extract.ts';
import { payloadProtos } from '../../scripts/formats/payload/proto.ts';

const { ManifestMessage } = payloadProtos();

import { listPayload, locatePayload, readPayload } from '../../scripts/formats/payload/reader.ts';
import { writePayload, writeRawPayload } from '../../scripts/formats/payload/writer.ts';
import { prng, workDir } from '../helpers.ts';

/**
 * Manifest fields real payloads use that the default fixtures do not: a block size other than
 * 4096, operations without data_sha256_hash (older delta_generator and some third-party packers
 * leave it out), partial updates, and zip64 OTA zips (payloads over 4 GiB).
 */
const W = workDir('payload-manifest');

function image(seed: number, size: number): Buffer {
  const rnd = prng(seed);
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = rnd() < 0.5 ? 0 : Math.floor(rnd() * 256);
  return b;
}

/** Re-encodes a payload's manifest through `edit`, keeping its blobs. */
async function rewrite(
  src: string,
  out: string,
  edit: (m: Record<string, unknown>) => void,
): Promise<string> {
  const p = await readPayload(src);
  const raw = readFileSync(src);
  const m = ManifestMessage.toObject(ManifestMessage.decode(raw.subarray(24, 24 + p.manifestSize)), {
    longs: Number,
    enums: String,
  }) as Record<string, unknown>;
  edit(m);
  const blobs = join(W, `${out}.blobs`);
  writeFileSync(blobs, raw.subarray(p.blobsOffset));
  const path = join(W, out);
  await writeRawPayload(path, m, blobs);
  return path;
}

describe('manifest fields of real payloads', () => {
  it('block_size 16384 from the manifest is honoured for extents and extraction', async () => {
    const img = image(1, 10 * 16384);
    writeFileSync(join(W, 'bs.img'), img);
    const out = join(W, 'bs.bin');
    await writePayload(out, {
      partitions: [{ name: 'vendor', imagePath: join(W, 'bs.img'), ops: 'mixed' }],
      blockSize: 16384,
      chunkSize: 3 * 16384,
    });
    const p = await readPayload(out);
    expect(p.manifest.blockSize).toBe(16384);
    const res = await extractPayload(out, join(W, 'bs-out'), { inProcess: true });
    expect(res[0].verified).toBe(true);
    expect(readFileSync(join(W, 'bs-out', 'vendor.img')).equals(img)).toBe(true);
  });

  it('operations without data_sha256_hash extract; the partition hash still guards the result', async () => {
    const img = image(2, 12 * 4096);
    writeFileSync(join(W, 'nohash.img'), img);
    const src = join(W, 'nohash-src.bin');
    await writePayload(src, {
      partitions: [{ name: 'odm', imagePath: join(W, 'nohash.img'), ops: 'mixed' }],
      chunkSize: 2 * 4096,
    });
    const path = await rewrite(src, 'nohash.bin', (m) => {
      for (const part of m.partitions as { operations: Record<string, unknown>[] }[])
        for (const op of part.operations) delete op.dataSha256Hash;
    });
    const p = await readPayload(path);
    expect(p.manifest.partitions[0].operations.every((o) => o.dataSha256 === undefined)).toBe(true);
    const res = await extractPayload(path, join(W, 'nohash-out'), { inProcess: true });
    expect(res[0].verified).toBe(true);
    expect(readFileSync(join(W, 'nohash-out', 'odm.img')).equals(img)).toBe(true);
    // Corrupt data that no operation hash catches is caught by new_partition_info.hash.
    const raw = readFileSync(path);
    const op = p.manifest.partitions[0].operations.find((o) => o.type === 'REPLACE');
    if (!op) throw new Error('no REPLACE operation');
    raw[p.blobsOffset + op.dataOffset] ^= 1;
    writeFileSync(path, raw);
    await expect(extractPayload(path, join(W, 'nohash-bad'), { inProcess: true })).rejects.toMatchObject({
      code: 'PAYLOAD_PARTITION_HASH_MISMATCH',
    });
  });

  it('Virtual A/B fields (VABC feature set, compression factor, COW estimates, merge operations) are read', async () => {
    writeFileSync(join(W, 'vabc.img'), image(5, 4 * 4096));
    const src = join(W, 'vabc-src.bin');
    await writePayload(src, { partitions: [{ name: 'system', imagePath: join(W, 'vabc.img') }] });
    const path = await rewrite(src, 'vabc.bin', (m) => {
      m.dynamicPartitionMetadata = {
        groups: [{ name: 'google_dynamic_partitions', size: 8 << 30, partitionNames: ['system'] }],
        snapshotEnabled: true,
        vabcEnabled: true,
        vabcCompressionParam: 'lz4',
        cowVersion: 3,
        vabcFeatureSet: { threaded: true, batchWrites: true },
        compressionFactor: 65536,
      };
      const part = (m.partitions as Record<string, unknown>[])[0];
      part.estimateCowSize = 123456;
      part.estimateOpCountMax = 42;
      part.mergeOperations = [
        {
          type: 'COW_COPY',
          srcExtent: { startBlock: 0, numBlocks: 1 },
          dstExtent: { startBlock: 1, numBlocks: 1 },
        },
      ];
    });
    const p = await readPayload(path);
    expect(p.manifest.dynamicPartitions).toMatchObject({
      snapshotEnabled: true,
      vabcEnabled: true,
      vabcCompressionParam: 'lz4',
      cowVersion: 3,
      vabcFeatureSet: { threaded: true, batchWrites: true },
      compressionFactor: 65536,
    });
    expect(p.manifest.partitions[0]).toMatchObject({
      estimateCowSize: 123456,
      estimateOpCountMax: 42,
      mergeOperations: 1,
    });
  });

  it('partial_update payloads list as partial and extract the partitions they carry', async () => {
    writeFileSync(join(W, 'partial.img'), image(3, 4 * 4096));
    const src = join(W, 'partial-src.bin');
    await writePayload(src, { partitions: [{ name: 'boot', imagePath: join(W, 'partial.img') }] });
    const path = await rewrite(src, 'partial.bin', (m) => {
      m.partialUpdate = true;
    });
    const l = await listPayload(path);
    expect(l.partialUpdate).toBe(true);
    expect(l.full).toBe(true);
    const res = await extractPayload(path, join(W, 'partial-out'), { inProcess: true });
    expect(res.map((r) => r.name)).toEqual(['boot']);
  });

  it('a zip64 OTA zip (as written for payloads over 4 GiB) is read in place', async () => {
    writeFileSync(join(W, 'z64.img'), image(4, 8 * 4096));
    const bin = join(W, 'z64.bin');
    await writePayload(bin, { partitions: [{ name: 'system', imagePath: join(W, 'z64.img'), ops: 'xz' }] });
    const zip = new yazl.ZipFile();
    zip.addBuffer(Buffer.from('ota-type=AB\n'), 'META-INF/com/android/metadata', { forceZip64Format: true });
    zip.addFile(bin, 'payload.bin', { compress: false, forceZip64Format: true });
    zip.end({ forceZip64Format: true, comment: '' });
    const zpath = join(W, 'z64.zip');
    await pipeline(zip.outputStream, createWriteStream(zpath));
    const loc = await locatePayload(zpath);
    expect(loc.container).toBe('ota-zip');
    expect(
      readFileSync(zpath)
        .subarray(loc.offset, loc.offset + 4)
        .toString('latin1'),
    ).toBe('CrAU');
    expect(loc.size).toBe(readFileSync(bin).length);
    const res = await extractPayload(zpath, join(W, 'z64-out'), { inProcess: true });
    expect(res[0].verified).toBe(true);
  });
});
