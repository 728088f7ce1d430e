import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { appendFile, open, rm, truncate } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { prng, workDir } from '../helpers.ts';

/** Deterministic pseudo-random bytes. */
export function randomBytes(seed: number, n: number): Buffer {
  const r = prng(seed);
  const b = Buffer.alloc(n);
  for (let i = 0; i + 4 <= n; i += 4) b.writeUInt32LE(Math.floor(r() * 0x100000000), i);
  for (let i = n - (n % 4); i < n; i++) b[i] = Math.floor(r() * 256);
  return b;
}

export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(4 << 20);
    for (let pos = 0; ; ) {
      const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
      if (!bytesRead) break;
      h.update(buf.subarray(0, bytesRead));
      pos += bytesRead;
    }
  } finally {
    await fh.close();
  }
  return h.digest('hex');
}

/**
 * A realistic partition-like raw image (cached per run): an ext4 filesystem built by mke2fs from
 * a directory of files, then random data, zeros, a 4-byte fill pattern, sparse holes, more data
 * and a partial last block — every case img2simg distinguishes.
 */
export async function mixedImage(area: string, sizeMiB = 24): Promise<string> {
  const dir = workDir(area);
  const out = join(dir, `mixed-${sizeMiB}.raw`);
  if (existsSync(out)) return out;
  const src = join(dir, 'mixed-src');
  mkdirSync(src, { recursive: true });
  for (let i = 0; i < 12; i++)
    writeFileSync(join(src, `file${i}.bin`), randomBytes(100 + i, 20_000 + i * 37_000));
  writeFileSync(join(src, 'zeros.bin'), Buffer.alloc(300_000));
  const tmp = `${out}.tmp`;
  await rm(tmp, { force: true });
  await execa('mke2fs', [
    '-q',
    '-F',
    '-t',
    'ext4',
    '-b',
    '4096',
    '-E',
    'root_owner=0:0',
    '-d',
    src,
    tmp,
    `${Math.floor(sizeMiB / 2)}M`,
  ]);
  await appendFile(tmp, randomBytes(7, 1 << 20));
  await appendFile(tmp, Buffer.alloc(3 * 4096));
  const pat = Buffer.alloc(5 * 4096);
  for (let i = 0; i < pat.length; i += 4) pat.writeUInt32LE(0xdeadbeef, i);
  await appendFile(tmp, pat);
  const st = readFileSync(tmp).length;
  await truncate(tmp, st + 2 * 1024 * 1024); // hole
  await appendFile(tmp, randomBytes(8, 12_345)); // ends with a partial block
  await execa('mv', [tmp, out]);
  return out;
}
