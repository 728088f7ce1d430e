import { createHash } from 'node:crypto';
import { closeSync, constants, openSync, readFileSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { sha256File } from '../../scripts/build/record.ts';
import { writeFastbootZip } from '../../scripts/formats/factory-zip.ts';
import { SequentialWriter } from '../../scripts/formats/io.ts';
import { prng, workDir } from '../helpers.ts';

/**
 * The image writers' output file, with and without O_DIRECT: the same operations must give the
 * same bytes (patches of bytes already on disk, of bytes still staged, zero blocks as holes, an
 * unaligned tail), and the direct path must really be taken where the filesystem allows it.
 */

const dir = workDir('sequential-writer');
const MiB = 1024 * 1024;

/** Whether this folder's filesystem accepts O_DIRECT (tmpfs before Linux 6.6 does not). */
function directSupported(): boolean {
  const probe = join(dir, 'probe');
  try {
    closeSync(openSync(probe, constants.O_WRONLY | constants.O_CREAT | constants.O_DIRECT));
    return true;
  } catch {
    return false;
  } finally {
    try {
      unlinkSync(probe);
    } catch {}
  }
}

function noise(n: number, seed: number): Buffer {
  const r = prng(seed);
  const b = Buffer.alloc(Math.ceil(n / 4) * 4);
  for (let i = 0; i < b.length; i += 4) b.writeUInt32LE(Math.floor(r() * 0x100000000), i);
  return b.subarray(0, n);
}

/** A script of writes that crosses every case the direct path has. */
async function script(w: SequentialWriter): Promise<void> {
  await w.write(Buffer.from('HEAD-PLACEHOLDER'));
  await w.write(noise(3 * MiB + 5, 1)); // unaligned sizes from here on
  await w.skip(9 * MiB + 123); // whole zero blocks become holes
  await w.writev([noise(777, 2), noise(5 * MiB, 3), Buffer.alloc(4 * MiB)]);
  await w.write(Buffer.alloc(9 * MiB)); // zeros written, not skipped: holes too
  await w.patch(Buffer.from('head-patched-now'), 0); // long since written
  const p = w.position;
  await w.write(noise(100, 4));
  await w.patch(Buffer.from('staged'), p + 10); // still in the staging buffer
  await w.patch(Buffer.from('across'), 4 * MiB - 3); // straddles a block already written
  await w.write(noise(4096 * 3 + 17, 5)); // unaligned tail
  await w.close();
}

describe('SequentialWriter', () => {
  it('writes the same bytes direct and buffered, and takes the direct path where supported', async () => {
    const a = join(dir, 'direct.bin');
    const b = join(dir, 'buffered.bin');
    const wa = await SequentialWriter.create(a, { direct: true });
    const wb = await SequentialWriter.create(b);
    expect(wa.isDirect).toBe(directSupported());
    expect(wb.isDirect).toBe(false);
    await script(wa);
    await script(wb);
    const da = readFileSync(a);
    expect(da.length).toBe(wb.position);
    expect(da.equals(readFileSync(b))).toBe(true);
    expect(da.subarray(0, 16).toString()).toBe('head-patched-now');
    // Each 9 MiB run of zeros holds a whole aligned 4 MiB block: holes in the direct file.
    expect(statSync(a).blocks * 512).toBeLessThan(da.length - 8 * MiB);
  });

  it('a filesystem that takes O_DIRECT at open but refuses a write: the rest goes through the cache', async () => {
    const a = join(dir, 'fallback.bin');
    const b = join(dir, 'fallback-ref.bin');
    const wa = await SequentialWriter.create(a, { direct: true });
    if (!wa.isDirect) return; // this filesystem refused O_DIRECT at open: covered by the first test
    // The first write through the O_DIRECT handle fails as such a filesystem would.
    const fh = (wa as unknown as { fh: { write: (...a: unknown[]) => Promise<unknown> } }).fh;
    fh.write = () => Promise.reject(Object.assign(new Error('EINVAL'), { code: 'EINVAL' }));
    const wb = await SequentialWriter.create(b);
    await script(wa);
    await script(wb);
    expect(readFileSync(a).equals(readFileSync(b))).toBe(true);
  });

  it('hashes what it writes, direct (in a worker, from the staging blocks) and buffered', async () => {
    for (const direct of [true, false]) {
      const f = join(dir, `hashed-${direct}.bin`);
      const w = await SequentialWriter.create(f, { direct, sha256: true });
      await w.write(Buffer.from('HEAD'));
      await w.write(noise(3 * MiB + 5, 1));
      await w.skip(9 * MiB + 123); // whole blocks skipped, and zeros in a staged block
      await w.writev([noise(777, 2), noise(5 * MiB, 3), Buffer.alloc(4 * MiB)]);
      await w.skip(8 * MiB - ((w.position + 8 * MiB) % (4 * MiB))); // ends on a block boundary
      await w.skip(8 * MiB); // whole blocks from an empty staging block: posted as zeros
      await w.write(noise(4096 * 3 + 17, 5)); // unaligned tail
      if (direct) await w.patch(Buffer.from('late'), w.position - 20); // still staged: allowed
      await expect(w.patch(Buffer.from('x'), 0)).rejects.toThrow(/already hashed/);
      const sha256 = await w.close();
      expect(sha256).toBe(createHash('sha256').update(readFileSync(f)).digest('hex'));
    }
    // Hashing or not, the same bytes.
    const [a, b] = [true, false].map((d) => readFileSync(join(dir, `hashed-${d}.bin`)).subarray(0, -20));
    expect(a.length).toBe(b.length);
    expect(a.equals(b)).toBe(true);
  });

  it('a hashing writer that is aborted stops its worker (nothing keeps the process up)', async () => {
    const w = await SequentialWriter.create(join(dir, 'hash-abort.bin'), { direct: true, sha256: true });
    await w.write(noise(9 * MiB, 9));
    await w.abort();
    expect(await w.close().catch((e: Error) => e.message)).toMatch(/stopped|closed|EBADF/i);
  });

  it('refuses a patch beyond what was written', async () => {
    const w = await SequentialWriter.create(join(dir, 'bad.bin'), { direct: true });
    await w.write(Buffer.alloc(10, 1));
    await expect(w.patch(Buffer.alloc(4), 8)).rejects.toThrow(RangeError);
    await w.abort();
  });

  it('a large file written direct reads back whole (hashed in a worker thread)', async () => {
    const f = join(dir, 'hash.bin');
    const data = noise(33 * MiB + 4097, 6);
    const w = await SequentialWriter.create(f, { direct: true });
    await w.write(data);
    await w.close();
    expect(await sha256File(f)).toBe(createHash('sha256').update(data).digest('hex'));
  });

  it('a fastboot zip written direct is byte-identical and passes unzip -t', async () => {
    const img = join(dir, 'system.img');
    const w = await SequentialWriter.create(img);
    await w.write(noise(6 * MiB + 3, 7));
    await w.skip(8 * MiB);
    await w.write(noise(4096, 8));
    await w.close();
    const spec = { androidInfo: 'require board=omie\n', images: [{ name: 'system', path: img }] };
    const za = await writeFastbootZip(join(dir, 'a.zip'), spec, {
      compress: false,
      sha256: true,
      direct: true,
    });
    const zb = await writeFastbootZip(join(dir, 'b.zip'), spec, { compress: false, sha256: true });
    expect(za.sha256).toBe(zb.sha256);
    expect(await sha256File(join(dir, 'a.zip'))).toBe(za.sha256);
    await execa('unzip', ['-tq', join(dir, 'a.zip')]);
  });
});
