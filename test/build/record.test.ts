import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { digestFile, sha256File } from '../../scripts/build/record.ts';
import { prng, workDir } from '../helpers.ts';

/** File digests of the build record: small files in this thread, large ones in worker threads. */

const dir = workDir('build-record');
mkdirSync(dir, { recursive: true });

function file(name: string, size: number, seed: number): string {
  const r = prng(seed);
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i += 4096) b.writeUInt32LE(Math.floor(r() * 0x100000000), i);
  const p = join(dir, name);
  writeFileSync(p, b);
  return p;
}

describe('sha256File', () => {
  it('small and large (worker) files, several at once, equal node:crypto over the whole file', async () => {
    // 33 MiB + 5 is above the worker threshold and not a multiple of the read size.
    const paths = [
      file('small', 1000, 1),
      file('large1', 33 * 1024 * 1024 + 5, 2),
      file('large2', 40 * 1024 * 1024, 3),
      file('large3', 32 * 1024 * 1024, 4),
    ];
    const got = await Promise.all(paths.map((p) => sha256File(p)));
    expect(got).toEqual(paths.map((p) => createHash('sha256').update(readFileSync(p)).digest('hex')));
    const d = await digestFile(paths[1], 'x.img');
    expect(d).toEqual({ path: 'x.img', sha256: got[1], size: 33 * 1024 * 1024 + 5 });
  });

  it('a missing file rejects with ENOENT instead of crashing', async () => {
    await expect(sha256File(join(dir, 'nope'))).rejects.toMatchObject({ code: 'ENOENT' });
  });
});
