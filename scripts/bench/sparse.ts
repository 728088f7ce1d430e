import { randomBytes } from 'node:crypto';
import { mkdir, open, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { execa } from 'execa';
import type { BenchOptions, BenchResult } from './types.ts';

/**
 * Android sparse conversion, ours vs libsparse's tools on the same image in the same run:
 * raw → sparse vs `img2simg`, sparse → raw vs `simg2img` (goal: <= 1.0x their time). The image
 * is a realistic mix: an ext4 filesystem made by mke2fs from a directory of files (half the
 * image), then random data, zeros, a repeated 4-byte pattern and a hole. Ours runs in a child
 * process timing itself (so tsx start-up is not counted) and reporting its peak RSS; the
 * reference tools are timed as whole processes under /usr/bin/time for theirs. Each side runs
 * twice and keeps its best time (page-cache writeback makes single runs noisy).
 */

async function appendRandom(
  fh: import('node:fs/promises').FileHandle,
  pos: number,
  bytes: number,
): Promise<number> {
  const chunk = randomBytes(4 * 1024 * 1024);
  for (let done = 0; done < bytes; ) {
    const n = Math.min(chunk.length, bytes - done);
    chunk.writeUInt32LE(done, 0);
    await fh.write(chunk, 0, n, pos + done);
    done += n;
  }
  return pos + bytes;
}

async function makeImage(dir: string, sizeMiB: number, log: (l: string) => void): Promise<string> {
  const MiB = 1024 * 1024;
  const img = join(dir, 'mixed.raw');
  const src = join(dir, 'files');
  await rm(src, { recursive: true, force: true });
  await mkdir(src, { recursive: true });
  const fsMiB = Math.max(8, Math.floor(sizeMiB / 2));
  // Files fill about 40% of the filesystem: some large, many small.
  let budget = Math.floor(fsMiB * 0.4 * MiB);
  for (let i = 0; budget > 0; i++) {
    const n = Math.min(budget, i % 5 === 0 ? 8 * MiB : 200 * 1024 + i * 997);
    await writeFile(join(src, `f${i}.bin`), randomBytes(n));
    budget -= n;
  }
  log(`sparse: building a ${sizeMiB} MiB image (ext4 ${fsMiB} MiB from mke2fs + random/zero/fill regions)`);
  await rm(img, { force: true });
  await execa('mke2fs', ['-q', '-F', '-t', 'ext4', '-b', '4096', '-d', src, img, `${fsMiB}M`]);
  const fh = await open(img, 'r+');
  try {
    let pos = fsMiB * MiB;
    const rest = sizeMiB * MiB - pos;
    pos = await appendRandom(fh, pos, Math.floor(rest * 0.4));
    pos += Math.floor(rest * 0.2); // zeros, written out (not a hole)
    await fh.write(Buffer.alloc(1), 0, 1, pos - 1);
    const pat = Buffer.alloc(MiB);
    for (let i = 0; i < pat.length; i += 4) pat.writeUInt32LE(0xa5a5f00d, i);
    const fillBytes = Math.floor(rest * 0.1);
    for (let d = 0; d < fillBytes; d += pat.length)
      await fh.write(pat, 0, Math.min(pat.length, fillBytes - d), pos + d);
    pos += fillBytes;
    pos = await appendRandom(fh, pos, Math.floor(rest * 0.2));
    await fh.truncate(sizeMiB * MiB); // the tail stays a hole
  } finally {
    await fh.close();
  }
  await rm(src, { recursive: true, force: true });
  return img;
}

/** Runs a reference tool under /usr/bin/time; returns seconds and peak RSS in MiB. */
async function timeTool(cmd: string, args: string[]): Promise<{ s: number; rssMiB: number }> {
  const r = await execa('/usr/bin/time', ['-f', '%e %M', cmd, ...args]);
  const [e, m] = r.stderr.trim().split('\n').at(-1)!.split(' ');
  return { s: Number(e), rssMiB: Number(m) / 1024 };
}

/** Runs one of our conversions in a child that times itself and reports maxRSS. */
async function timeOurs(
  fn: 'rawToSparse' | 'sparseToRaw',
  input: string,
  output: string,
): Promise<{ s: number; rssMiB: number }> {
  const tsx = pathToFileURL(
    join(createRequire(import.meta.url).resolve('tsx/package.json'), '..', 'dist/loader.mjs'),
  ).href;
  const lib = pathToFileURL(resolve(import.meta.dirname, '../formats/sparse.ts')).href;
  const code = `
    const m = await import(${JSON.stringify(lib)});
    const t = performance.now();
    await m.${fn}(${JSON.stringify(input)}, ${JSON.stringify(output)});
    const s = (performance.now() - t) / 1000;
    console.log(JSON.stringify({ s, rssMiB: process.resourceUsage().maxRSS / 1024 }));
  `;
  const r = await execa(process.execPath, ['--import', tsx, '--input-type=module', '-e', code]);
  return JSON.parse(r.stdout.trim().split('\n').at(-1)!);
}

async function best(
  runs: number,
  fn: () => Promise<{ s: number; rssMiB: number }>,
  cleanup: () => Promise<void>,
) {
  let out = { s: Number.POSITIVE_INFINITY, rssMiB: 0 };
  for (let i = 0; i < runs; i++) {
    await cleanup();
    // Flush earlier runs' dirty pages so no side pays for another's writeback.
    await execa('sync');
    const r = await fn();
    out = { s: Math.min(out.s, r.s), rssMiB: Math.max(out.rssMiB, r.rssMiB) };
  }
  return out;
}

export async function bench(opts: BenchOptions): Promise<BenchResult[]> {
  const dir = join(opts.workDir, 'sparse');
  await mkdir(dir, { recursive: true });
  const sizeMiB = Math.max(16, opts.sizeMiB);
  const raw = await makeImage(dir, sizeMiB, opts.log);
  const refSparse = join(dir, 'ref.simg');
  const ourSparse = join(dir, 'ours.simg');
  const refRaw = join(dir, 'ref.raw');
  const ourRaw = join(dir, 'ours.raw');
  const rmAll = async () => {
    for (const f of [ourSparse, ourRaw]) await rm(f, { force: true });
  };
  try {
    await execa('cat', [raw], { stdout: 'ignore' }); // warm the page cache
    await execa('img2simg', [raw, refSparse]);
    const results: BenchResult[] = [];

    const refW = await best(
      2,
      () => timeTool('img2simg', [raw, refSparse]),
      () => rm(refSparse, { force: true }),
    );
    const ourW = await best(2, () => timeOurs('rawToSparse', raw, ourSparse), rmAll);
    opts.log(
      `sparse: raw→sparse ours ${ourW.s.toFixed(2)} s (${ourW.rssMiB.toFixed(0)} MiB), img2simg ${refW.s.toFixed(2)} s (${refW.rssMiB.toFixed(0)} MiB)`,
    );
    results.push({
      name: `raw → sparse (${sizeMiB} MiB mixed image)`,
      ours: ourW.s,
      reference: refW.s,
      referenceName: 'img2simg',
      ratio: ourW.s / refW.s,
      goal: '<= 1.0x',
      notes: `peak RSS ours ${ourW.rssMiB.toFixed(0)} MiB, img2simg ${refW.rssMiB.toFixed(0)} MiB`,
    });

    const refR = await best(
      2,
      () => timeTool('simg2img', [refSparse, refRaw]),
      () => rm(refRaw, { force: true }),
    );
    const ourR = await best(2, () => timeOurs('sparseToRaw', refSparse, ourRaw), rmAll);
    opts.log(
      `sparse: sparse→raw ours ${ourR.s.toFixed(2)} s (${ourR.rssMiB.toFixed(0)} MiB), simg2img ${refR.s.toFixed(2)} s (${refR.rssMiB.toFixed(0)} MiB)`,
    );
    results.push({
      name: `sparse → raw (${sizeMiB} MiB mixed image)`,
      ours: ourR.s,
      reference: refR.s,
      referenceName: 'simg2img',
      ratio: ourR.s / refR.s,
      goal: '<= 1.0x',
      notes: `peak RSS ours ${ourR.rssMiB.toFixed(0)} MiB, simg2img ${refR.rssMiB.toFixed(0)} MiB`,
    });
    return results;
  } finally {
    for (const f of [raw, refSparse, ourSparse, refRaw, ourRaw]) await rm(f, { force: true });
  }
}
