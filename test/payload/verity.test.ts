import { readFileSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { VerificationError } from '../../scripts/errors.ts';
import { extractPayload } from '../../scripts/formats/payload/extract.ts';
import { encodeFec, fecSize, RsEncoder, rsSyndromes } from '../../scripts/formats/payload/fec.ts';
import { readPayload } from '../../scripts/formats/payload/reader.ts';
import { writePayload } from '../../scripts/formats/payload/writer.ts';
import { prng, workDir } from '../helpers.ts';
import { AVBTOOL } from '../oracles.ts';

const W = workDir('payload/verity');
const BS = 4096;

function randomImage(seed: number, blocks: number): Buffer {
  const rnd = prng(seed);
  const b = Buffer.alloc(blocks * BS);
  for (let i = 0; i < b.length; i += 4) b.writeUInt32LE(Math.floor(rnd() * 2 ** 32), i);
  b.fill(0, 40 * BS, 60 * BS); // a zero run
  return b;
}

describe('dm-verity regenerated like update_engine', () => {
  it.skipIf(!AVBTOOL.present).each(['sha256', 'sha1'])(
    `%s hash tree: ops skip it, extraction rebuilds avbtool’s tree byte for byte ${AVBTOOL.reason}`,
    async (alg) => {
      const img = join(W, `verity-${alg}.img`);
      writeFileSync(img, randomImage(alg.length, 300));
      await execa('python3', [
        AVBTOOL.path,
        ...['add_hashtree_footer', '--image', img, '--partition_name', 'system'],
        ...[
          '--partition_size',
          String(340 * BS),
          '--hash_algorithm',
          alg,
          '--salt',
          '00112233445566778899aabbccddeeff',
        ],
        '--do_not_generate_fec',
      ]);
      const original = readFileSync(img);
      const p = join(W, `verity-${alg}.bin`);
      await writePayload(p, {
        partitions: [{ name: 'system', imagePath: img, ops: 'mixed' }],
        chunkSize: 8 * BS,
      });
      const info = await readPayload(p);
      const part = info.manifest.partitions[0];
      expect(part.hashTreeAlgorithm).toBe(alg);
      expect(part.hashTreeSalt).toBe('00112233445566778899aabbccddeeff');
      expect(part.hashTreeDataExtent).toEqual({ startBlock: 0, numBlocks: 300 });
      const tree = part.hashTreeExtent!;
      expect(tree.startBlock).toBe(300);
      expect(tree.numBlocks).toBeGreaterThan(0);
      // no operation writes the tree
      for (const op of part.operations)
        for (const e of op.dstExtents)
          expect(
            e.startBlock + e.numBlocks <= tree.startBlock || e.startBlock >= tree.startBlock + tree.numBlocks,
          ).toBe(true);
      const res = await extractPayload(p, join(W, `out-${alg}`));
      expect(res[0].verified).toBe(true);
      expect(readFileSync(res[0].path).equals(original)).toBe(true);
      const e = await extractPayload(p, join(W, `out-${alg}-noverity`), { regenerateVerity: false }).catch(
        (x) => x,
      );
      expect(e).toBeInstanceOf(VerificationError);
      expect(e.code).toBe('PAYLOAD_PARTITION_HASH_MISMATCH');
    },
  );
});

describe('FEC (RS over GF(2^8), libfec interleave)', () => {
  it('encoder produces valid Reed-Solomon codewords for every roots value used by AVB', () => {
    const rnd = prng(3);
    for (const roots of [2, 4, 8, 16, 24]) {
      const rs = new RsEncoder(roots);
      for (let t = 0; t < 20; t++) {
        const data = Uint8Array.from({ length: rs.n }, () => Math.floor(rnd() * 256));
        const parity = new Uint8Array(roots);
        rs.encode(data, 0, parity, 0);
        const cw = new Uint8Array([...data, ...parity]);
        expect(rsSyndromes(cw, roots).every((s) => s === 0)).toBe(true);
        cw[Math.floor(rnd() * cw.length)] ^= 1 + Math.floor(rnd() * 255);
        expect(rsSyndromes(cw, roots).some((s) => s !== 0)).toBe(true);
      }
    }
  });

  it('encodeFec: every interleaved codeword of the written area checks out', async () => {
    const roots = 2;
    const dataBlocks = 600; // > 253: several rounds, last round partly past the data (zeros)
    const dataSize = dataBlocks * BS;
    const size = fecSize(dataSize, roots, BS);
    expect(size).toBe(Math.ceil(dataBlocks / 253) * roots * BS);
    const path = join(W, 'fec.img');
    writeFileSync(path, Buffer.concat([randomImage(9, dataBlocks), Buffer.alloc(size)]));
    const fh = await open(path, 'r+');
    try {
      await encodeFec(fh, {
        dataOffset: 0,
        dataSize,
        fecOffset: dataSize,
        fecSize: size,
        roots,
        blockSize: BS,
      });
    } finally {
      await fh.close();
    }
    const all = readFileSync(path);
    const rsN = 255 - roots;
    const rounds = Math.ceil(dataBlocks / rsN);
    const rnd = prng(5);
    for (let t = 0; t < 200; t++) {
      const i = Math.floor(rnd() * rounds);
      const k = Math.floor(rnd() * BS);
      const cw = new Uint8Array(255);
      for (let j = 0; j < rsN; j++) {
        const block = i + j * rounds; // fec_ecc_interleave(i*rsN*4096 + j, rsN, rounds) / 4096
        cw[j] = block < dataBlocks ? all[block * BS + k] : 0;
      }
      for (let r = 0; r < roots; r++) cw[rsN + r] = all[dataSize + i * BS * roots + k * roots + r];
      expect(rsSyndromes(cw, roots)).toEqual([0, 0]);
    }
  });
});
