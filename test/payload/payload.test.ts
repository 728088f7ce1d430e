import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import yazl from 'yazl';
import { FormatError, InputError, OmieError, VerificationError } from '../../scripts/errors.ts';
import { applyPartition } from '../../scripts/formats/payload/apply.ts';
import { extractPayload } from '../../scripts/formats/payload/extract.ts';
import { payloadProtos } from '../../scripts/formats/payload/proto.ts';

const { ManifestMessage } = payloadProtos();

import {
  DeltaPayloadError,
  listPayload,
  locatePayload,
  parsePayloadBuffer,
  readPayload,
} from '../../scripts/formats/payload/reader.ts';
import {
  type PayloadOpsMode,
  writeOtaZip,
  writePayload,
  writeRawPayload,
} from '../../scripts/formats/payload/writer.ts';
import { mutate, omie, prng, workDir } from '../helpers.ts';

const W = workDir('payload');
const BS = 4096;
const CHUNK = 4 * BS;

/** A partition image with random, repetitive and all-zero chunks so every op type shows up. */
function makeImage(seed: number, blocks: number): Buffer {
  const rnd = prng(seed);
  const b = Buffer.alloc(blocks * BS);
  for (let blk = 0; blk < blocks; blk++) {
    const kind = Math.floor(blk / 4) % 3; // per 4-block chunk: random, text-like, zero
    const at = blk * BS;
    if (kind === 0) for (let i = 0; i < BS; i++) b[at + i] = Math.floor(rnd() * 256);
    else if (kind === 1) b.write(`block ${blk} of partition ${seed} `.repeat(200).slice(0, BS), at, 'latin1');
  }
  return b;
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

let imgA: string;
let imgB: string;
let bufA: Buffer;
let bufB: Buffer;

beforeAll(() => {
  bufA = makeImage(1, 48);
  bufB = makeImage(2, 13); // not a multiple of the chunk size: short last operation
  imgA = join(W, 'system.img');
  imgB = join(W, 'boot.img');
  writeFileSync(imgA, bufA);
  writeFileSync(imgB, bufB);
});

const built = new Map<string, Promise<string>>();

/** Builds a two-partition payload once per mode and options (tests never modify it in place). */
function build(name: string, mode: PayloadOpsMode, extra: object = {}): Promise<string> {
  const key = JSON.stringify([mode, extra]);
  if (!built.has(key)) built.set(key, buildNow(name, mode, extra));
  return built.get(key)!;
}

async function buildNow(name: string, mode: PayloadOpsMode, extra: object) {
  const out = join(W, `${name}.bin`);
  await writePayload(out, {
    partitions: [
      { name: 'system', imagePath: imgA, ops: mode },
      { name: 'boot', imagePath: imgB, ops: mode },
    ],
    chunkSize: CHUNK,
    ...extra,
  });
  return out;
}

/** Re-encodes a built payload with a modified manifest, keeping its blobs. */
async function rewrite(src: string, out: string, edit: (m: Record<string, unknown>) => void, major?: number) {
  const p = await readPayload(src);
  const raw = readFileSync(src);
  const manifest = ManifestMessage.toObject(ManifestMessage.decode(raw.subarray(24, 24 + p.manifestSize)), {
    longs: Number,
    enums: String,
  }) as Record<string, unknown>;
  edit(manifest);
  const blobs = join(W, `${out}.blobs`);
  writeFileSync(blobs, raw.subarray(p.blobsOffset));
  const path = join(W, out);
  await writeRawPayload(path, manifest, blobs, { majorVersion: major });
  return path;
}

describe('payload writer → reader → extract', () => {
  it.each(['replace', 'bz', 'xz', 'zstd', 'mixed'] as const)(
    '%s payload extracts to the exact input images',
    async (mode) => {
      const p = await build(`full-${mode}`, mode);
      const out = join(W, `out-${mode}`);
      const res = await extractPayload(p, out);
      expect(res.map((r) => r.name)).toEqual(['system', 'boot']);
      expect(res.every((r) => r.verified)).toBe(true);
      expect(readFileSync(join(out, 'system.img')).equals(bufA)).toBe(true);
      expect(readFileSync(join(out, 'boot.img')).equals(bufB)).toBe(true);
      expect(res[0].sha256).toBe(sha(bufA));
      const listing = await listPayload(p);
      const types = new Set(listing.partitions.flatMap((x) => Object.keys(x.operationTypes)));
      const expected = {
        replace: ['REPLACE'],
        bz: ['REPLACE_BZ', 'ZERO'],
        xz: ['REPLACE_XZ', 'ZERO'],
        zstd: ['REPLACE_ZSTD', 'ZERO'],
        mixed: ['REPLACE', 'REPLACE_BZ', 'REPLACE_XZ', 'REPLACE_ZSTD', 'ZERO', 'DISCARD'],
      }[mode];
      expect([...types].sort()).toEqual([...expected].sort());
      expect(listing.full).toBe(true);
    },
  );

  it('reads header fields and manifest as update_engine defines them', async () => {
    const p = await build('meta', 'mixed', {
      securityPatchLevel: '2025-01-05',
      maxTimestamp: 1700000000,
      dynamicPartitions: { groups: [{ name: 'main', size: 1 << 30, partitionNames: ['system'] }] },
    });
    const raw = readFileSync(p);
    expect(raw.subarray(0, 4).toString()).toBe('CrAU');
    expect(raw.readBigUInt64BE(4)).toBe(2n);
    const info = await readPayload(p);
    expect(info.manifestSize).toBe(Number(raw.readBigUInt64BE(12)));
    expect(info.blobsOffset).toBe(24 + info.manifestSize + raw.readUInt32BE(20));
    expect(info.manifest.blockSize).toBe(4096);
    expect(info.manifest.securityPatchLevel).toBe('2025-01-05');
    expect(info.manifest.maxTimestamp).toBe(1700000000);
    expect(info.manifest.dynamicPartitions?.groups).toEqual([
      { name: 'main', size: 1 << 30, partitionNames: ['system'] },
    ]);
    const sys = info.manifest.partitions[0];
    expect(sys.size).toBe(bufA.length);
    expect(sys.sha256).toBe(sha(bufA));
    // every data op's hash is the sha256 of its stored blob
    for (const op of sys.operations.filter((o) => o.dataLength > 0)) {
      const blob = raw.subarray(
        info.blobsOffset + op.dataOffset,
        info.blobsOffset + op.dataOffset + op.dataLength,
      );
      expect(op.dataSha256).toBe(sha(blob));
    }
  });

  it('parses metadata and payload Signatures messages', async () => {
    const p = await build('signed', 'xz', {
      metadataSignatures: [Buffer.from('meta-sig-1'), Buffer.from('meta-sig-2')],
      payloadSignatures: [Buffer.alloc(256, 7)],
    });
    const info = await readPayload(p);
    expect(info.metadataSignatures.map((s) => s.data.toString())).toEqual(['meta-sig-1', 'meta-sig-2']);
    expect(info.payloadSignatures).toHaveLength(1);
    expect(info.payloadSignatures[0].data.equals(Buffer.alloc(256, 7))).toBe(true);
    expect(info.payloadSignatures[0].unpaddedSize).toBe(256);
    expect(info.manifest.signaturesSize).toBeGreaterThan(256);
    const res = await extractPayload(p, join(W, 'out-signed'), { partitions: ['boot'] });
    expect(readFileSync(res[0].path).equals(bufB)).toBe(true);
  });

  it('extracts in process the same as in workers, and selects partitions', async () => {
    const p = await build('inproc', 'mixed');
    const res = await extractPayload(p, join(W, 'out-inproc'), { inProcess: true, partitions: ['system'] });
    expect(res).toHaveLength(1);
    expect(readFileSync(res[0].path).equals(bufA)).toBe(true);
    await expect(extractPayload(p, join(W, 'out-x'), { partitions: ['vendor'] })).rejects.toBeInstanceOf(
      InputError,
    );
  });

  it('reports progress per partition', async () => {
    const p = await build('progress', 'zstd');
    const events: { stage: string; done: number; total: number }[] = [];
    await extractPayload(p, join(W, 'out-progress'), { onProgress: (e) => events.push(e) });
    const last = events.filter((e) => e.stage === 'extract system').at(-1);
    expect(last?.done).toBe(bufA.length);
    expect(last?.total).toBe(bufA.length);
  });
});

describe('OTA zip', () => {
  it('round trips: payload.bin stored, read in place, properties match', async () => {
    const p = await build('forzip', 'mixed');
    const zip = join(W, 'ota.zip');
    await writeOtaZip(zip, p);
    // python's zipfile is the oracle for the zip structure
    const py = await execa('python3', [
      '-c',
      'import sys,zipfile,json;z=zipfile.ZipFile(sys.argv[1]);i=z.getinfo("payload.bin");print(json.dumps({"method":i.compress_type,"names":z.namelist(),"props":z.read("payload_properties.txt").decode()}))',
      zip,
    ]);
    const z = JSON.parse(py.stdout);
    expect(z.method).toBe(0);
    expect(z.names).toContain('META-INF/com/android/metadata');
    const loc = await locatePayload(zip);
    expect(loc.container).toBe('ota-zip');
    const zipBytes = readFileSync(zip);
    const payloadBytes = readFileSync(p);
    expect(zipBytes.subarray(loc.offset, loc.offset + loc.size).equals(payloadBytes)).toBe(true);
    expect(loc.properties?.FILE_SIZE).toBe(String(payloadBytes.length));
    expect(loc.properties?.FILE_HASH).toBe(createHash('sha256').update(payloadBytes).digest('base64'));
    const metaSize = 24 + Number(payloadBytes.readBigUInt64BE(12));
    expect(loc.properties?.METADATA_SIZE).toBe(String(metaSize));
    expect(loc.properties?.METADATA_HASH).toBe(
      createHash('sha256').update(payloadBytes.subarray(0, metaSize)).digest('base64'),
    );
    expect(z.props).toContain(`FILE_SIZE=${payloadBytes.length}`);
    const res = await extractPayload(zip, join(W, 'out-zip'));
    expect(readFileSync(res[0].path).equals(bufA)).toBe(true);
    expect(readFileSync(res[1].path).equals(bufB)).toBe(true);
    const listing = await listPayload(zip);
    expect(listing.container).toBe('ota-zip');
    expect(listing.payloadOffset).toBe(loc.offset);
  });

  it('rejects a zip whose payload.bin is compressed, and a zip without payload.bin', async () => {
    const p = await build('forzip2', 'replace');
    const mk = async (name: string, entries: [string, Buffer, boolean][]) => {
      const z = new yazl.ZipFile();
      for (const [n, b, c] of entries) z.addBuffer(b, n, { compress: c });
      z.end();
      const chunks: Buffer[] = [];
      for await (const c of z.outputStream) chunks.push(c as Buffer);
      writeFileSync(join(W, name), Buffer.concat(chunks));
      return join(W, name);
    };
    const deflated = await mk('deflated.zip', [['payload.bin', readFileSync(p), true]]);
    await expect(readPayload(deflated)).rejects.toThrow(/payload\.bin is compressed/);
    const none = await mk('none.zip', [['system.img', Buffer.alloc(10), false]]);
    const e = await readPayload(none).catch((x) => x);
    expect(e).toBeInstanceOf(FormatError);
    expect(e.message).toMatch(/no payload\.bin/);
  });
});

describe('verification errors', () => {
  it('corrupted operation data → error naming partition, operation index, expected and found hash', async () => {
    const p = await build('corrupt', 'mixed');
    const info = await readPayload(p);
    const part = info.manifest.partitions[0];
    const op = part.operations.filter((o) => o.dataLength > 0)[2];
    const raw = readFileSync(p);
    raw[info.blobsOffset + op.dataOffset + Math.floor(op.dataLength / 2)] ^= 0x55;
    const bad = join(W, 'corrupt-data.bin');
    writeFileSync(bad, raw);
    const e = await extractPayload(bad, join(W, 'out-corrupt')).catch((x) => x);
    expect(e).toBeInstanceOf(VerificationError);
    expect(e.code).toBe('PAYLOAD_OPERATION_HASH_MISMATCH');
    expect(e.context).toMatchObject({
      partition: 'system',
      operation: op.index,
      type: op.type,
      expected: op.dataSha256,
    });
    expect(e.context.found).toMatch(/^[0-9a-f]{64}$/);
    expect(e.context.found).not.toBe(op.dataSha256);
    expect(e.message).toContain(`partition system operation ${op.index} (${op.type})`);
    // without verification nothing stops the corruption: it fails to decompress or lands in the image
    const e2 = await extractPayload(bad, join(W, 'out-corrupt2'), { verify: false }).catch((x) => x);
    if (e2 instanceof Error) expect(e2).toBeInstanceOf(OmieError);
    else expect(readFileSync(join(W, 'out-corrupt2', 'system.img')).equals(bufA)).toBe(false);
  });

  it('wrong final partition hash → PAYLOAD_PARTITION_HASH_MISMATCH', async () => {
    const p = await build('finalhash', 'zstd');
    const bad = await rewrite(p, 'final-hash.bin', (m) => {
      const parts = m.partitions as { newPartitionInfo: { hash: Buffer } }[];
      parts[1].newPartitionInfo.hash = Buffer.alloc(32, 0xab);
    });
    const e = await extractPayload(bad, join(W, 'out-final')).catch((x) => x);
    expect(e).toBeInstanceOf(VerificationError);
    expect(e.code).toBe('PAYLOAD_PARTITION_HASH_MISMATCH');
    expect(e.context).toMatchObject({ partition: 'boot', expected: 'ab'.repeat(32), found: sha(bufB) });
  });

  it('delta payloads → "a full OTA is required"', async () => {
    const p = await build('fordelta', 'replace');
    const cases: [string, (m: Record<string, unknown>) => void, RegExp][] = [
      [
        'source-copy',
        (m) => {
          const ops = (m.partitions as { operations: Record<string, unknown>[] }[])[0].operations;
          ops[3] = {
            type: 'SOURCE_COPY',
            srcExtents: [{ startBlock: 0, numBlocks: 4 }],
            dstExtents: ops[3].dstExtents,
          };
        },
        /SOURCE_COPY/,
      ],
      [
        'puffdiff',
        (m) => {
          const ops = (m.partitions as { operations: Record<string, unknown>[] }[])[1].operations;
          ops[0].type = 'PUFFDIFF';
        },
        /PUFFDIFF/,
      ],
      [
        'old-info',
        (m) => {
          (m.partitions as Record<string, unknown>[])[0].oldPartitionInfo = {
            size: 4096,
            hash: Buffer.alloc(32),
          };
        },
        /old_partition_info/,
      ],
      ['minor', (m) => (m.minorVersion = 8), /minor_version 8/],
    ];
    for (const [name, edit, re] of cases) {
      const bad = await rewrite(p, `delta-${name}.bin`, edit);
      const e = await extractPayload(bad, join(W, `out-delta-${name}`)).catch((x) => x);
      expect(e, name).toBeInstanceOf(DeltaPayloadError);
      expect(e.code).toBe('PAYLOAD_FULL_OTA_REQUIRED');
      expect(e.message).toMatch(/a full OTA is required/);
      expect(e.message).toMatch(re);
      const listing = await listPayload(bad);
      expect(listing.full).toBe(false);
    }
  });

  it('rejects major version 1 and unknown versions clearly', async () => {
    const p = await build('forv1', 'replace');
    const v1 = await rewrite(p, 'v1.bin', () => {}, 1);
    await expect(readPayload(v1)).rejects.toThrow(/major version 1 .*not supported/);
    const v3 = await rewrite(p, 'v3.bin', () => {}, 3);
    await expect(readPayload(v3)).rejects.toThrow(/unsupported major version/);
  });

  it('bounds lengths before allocating: huge manifest_size, data_length, extents', async () => {
    const p = await build('bounds', 'replace');
    const raw = readFileSync(p);
    const huge = Buffer.from(raw);
    huge.writeBigUInt64BE(1n << 62n, 12);
    await expect(parsePayloadBuffer(huge)).rejects.toThrow(/manifest_size/);
    const sig = Buffer.from(raw);
    sig.writeUInt32BE(0xffffffff, 20);
    await expect(parsePayloadBuffer(sig)).rejects.toThrow(/metadata_signature_size/);
    const big = await rewrite(p, 'bigdata.bin', (m) => {
      (m.partitions as { operations: { dataLength: number }[] }[])[0].operations[0].dataLength = 2 ** 40;
    });
    await expect(readPayload(big)).rejects.toThrow(/past the end of the payload/);
    const ext = await rewrite(p, 'bigext.bin', (m) => {
      (
        m.partitions as { operations: { dstExtents: { startBlock: number }[] }[] }[]
      )[0].operations[0].dstExtents[0].startBlock = 1e6;
    });
    const e = await extractPayload(ext, join(W, 'out-ext'), { inProcess: true }).catch((x) => x);
    expect(e).toBeInstanceOf(FormatError);
    expect(e.message).toMatch(/partition system operation 0 .*outside the partition/);
  });
});

describe('fuzz', () => {
  it('reader: 3000 mutated payloads → typed errors only', async () => {
    const p = await build('fuzz', 'mixed', {
      metadataSignatures: [Buffer.from('m')],
      payloadSignatures: [Buffer.from('p')],
    });
    const info = await readPayload(p);
    // mutate mostly the metadata (header, manifest, signatures), where the parser works
    const raw = readFileSync(p);
    const meta = raw.subarray(0, info.blobsOffset);
    const rnd = prng(0x5eed);
    const t0 = Date.now();
    let ok = 0;
    for (let i = 0; i < 3000; i++) {
      const m = mutate(meta, rnd);
      const buf = Buffer.concat([m, raw.subarray(info.blobsOffset)]);
      try {
        await parsePayloadBuffer(buf, `case ${i}`);
        ok++;
      } catch (e) {
        if (!(e instanceof OmieError)) throw new Error(`case ${i}: ${String(e)}`);
      }
    }
    expect(ok).toBeGreaterThan(0);
    expect(Date.now() - t0).toBeLessThan(30_000);
  });

  it('extraction: 300 mutated payloads → typed errors or exact output', async () => {
    const p = await build('fuzz2', 'mixed');
    const raw = readFileSync(p);
    const rnd = prng(77);
    const out = join(W, 'fuzz-out.img');
    for (let i = 0; i < 300; i++) {
      const buf = mutate(raw, rnd);
      const path = join(W, 'fuzz-case.bin');
      writeFileSync(path, buf);
      try {
        const info = await parsePayloadBuffer(buf, path);
        for (const partition of info.manifest.partitions) {
          if (partition.size > 64 * 1024 * 1024) continue; // a forged size would only make a big sparse file
          await applyPartition({
            file: path,
            blobsOffset: info.blobsOffset,
            blockSize: info.manifest.blockSize,
            partition,
            outPath: out,
          });
        }
      } catch (e) {
        if (!(e instanceof OmieError)) throw new Error(`case ${i}: ${String((e as Error)?.stack ?? e)}`);
      }
    }
  });
});

describe('omie inspect', () => {
  it('detects payload.bin and OTA zip by content and prints --json summaries', async () => {
    const p = await build('inspect', 'mixed', { securityPatchLevel: '2025-02-05' });
    const zip = join(W, 'inspect-ota.zip');
    await writeOtaZip(zip, p, { metadata: { 'pre-device': 'omie_tab', 'post-build': 'omie/tab/1:user' } });
    const a = await omie(['--json', 'inspect', p]);
    expect(a.exitCode).toBe(0);
    const ja = JSON.parse(a.stdout);
    expect(ja.kind).toBe('payload');
    expect(ja.result.partitions.map((x: { name: string }) => x.name)).toEqual(['system', 'boot']);
    expect(ja.result.securityPatchLevel).toBe('2025-02-05');
    const b = await omie(['--json', 'inspect', zip]);
    expect(b.exitCode).toBe(0);
    const jb = JSON.parse(b.stdout);
    expect(jb.kind).toBe('ota-zip');
    expect(jb.result.otaMetadata).toMatchObject({ 'ota-type': 'AB', 'pre-device': 'omie_tab' });
    expect(jb.result.partitions[0].sha256).toBe(sha(bufA));
    const h = await omie(['inspect', zip]);
    expect(h.stdout).toMatch(/ota-zip/);
    expect(h.stdout).toMatch(/Device:\s+omie_tab/);
    expect(h.stdout).toMatch(/system\s+192\.0 KiB|system\s+196608 B/);
  });
});

describe('omie extract-ota', () => {
  it('extracts an OTA zip in worker threads under the real CLI; refuses deltas (exit 2) and bad hashes (exit 1)', async () => {
    const p = await build('cli', 'mixed');
    const zip = join(W, 'cli-ota.zip');
    await writeOtaZip(zip, p);
    const out = join(W, 'out-cli');
    const r = await omie(['--json', 'extract-ota', zip, out]);
    expect(r.exitCode).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.partitions.map((x: { name: string; verified: boolean }) => [x.name, x.verified])).toEqual([
      ['system', true],
      ['boot', true],
    ]);
    expect(readFileSync(join(out, 'system.img')).equals(bufA)).toBe(true);
    expect(readFileSync(join(out, 'boot.img')).equals(bufB)).toBe(true);
    const delta = await rewrite(p, 'cli-delta.bin', (m) => {
      m.minorVersion = 8;
    });
    const d = await omie(['--json', 'extract-ota', delta, join(W, 'out-cli-delta')]);
    expect(d.exitCode).toBe(2);
    expect(d.stdout + d.stderr).toContain('PAYLOAD_FULL_OTA_REQUIRED');
    const bad = await rewrite(p, 'cli-badhash.bin', (m) => {
      (m.partitions as { newPartitionInfo: { hash: Buffer } }[])[0].newPartitionInfo.hash = Buffer.alloc(32);
    });
    const b = await omie(['extract-ota', bad, join(W, 'out-cli-bad'), '-p', 'system']);
    expect(b.exitCode).toBe(1);
    expect(b.stdout + b.stderr).toMatch(/partition system: final sha256 mismatch/);
  });
});
