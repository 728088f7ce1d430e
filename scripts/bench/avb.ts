import { randomBytes } from 'node:crypto';
import { mkdir, open, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { availableParallelism, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { execa } from 'execa';
import { AVBTOOL, benchVerify } from './avb/verify.ts';
import type { BenchOptions, BenchResult } from './types.ts';

/**
 * Hashtree of an image: ours (addHashtreeFooter, worker threads) vs the reference
 * `avbtool add_hashtree_footer --do_not_generate_fec` (goal: >= 3x faster) and vs the throughput
 * of `openssl dgst -sha256` over the same file (goal: >= 70%). Ours runs in a child process so
 * its peak RSS can be reported (goal: < 300 MiB). Then the verification of that image (ours vs
 * `avbtool verify_image`, see avb/verify.ts): random data, so no block is spared hashing. All runs
 * read the file from the page cache (it is read once before timing).
 */
const SALT = '0f'.repeat(32);

async function writeImage(path: string, sizeMiB: number): Promise<void> {
  const fh = await open(path, 'w');
  try {
    // 4 MiB of random data, varied per chunk so no two blocks hash alike.
    const chunk = randomBytes(4 * 1024 * 1024);
    for (let i = 0; i < sizeMiB / 4; i++) {
      chunk.writeUInt32LE(i, 0);
      await fh.write(chunk, 0, chunk.length);
    }
  } finally {
    await fh.close();
  }
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return (performance.now() - t) / 1000;
}

export async function bench(opts: BenchOptions): Promise<BenchResult[]> {
  const dir = join(opts.workDir, 'avb');
  await mkdir(dir, { recursive: true });
  const img = join(dir, 'system.img');
  const sizeMiB = Math.max(4, Math.round(opts.sizeMiB / 4) * 4);
  opts.log(`avb: writing a ${sizeMiB} MiB image`);
  await writeImage(img, sizeMiB);
  const results: BenchResult[] = [];
  try {
    await execa('openssl', ['dgst', '-sha256', img]); // warm the page cache
    let opensslCpu = Number.NaN;
    const tOpenssl = await timed(async () => {
      const r = await execa('/usr/bin/time', ['-f', '%U %S', 'openssl', 'dgst', '-sha256', img]);
      const [u, sy] = String(r.stderr).trim().split('\n').pop()!.split(' ').map(Number);
      opensslCpu = u + sy;
    });
    opts.log(`avb: openssl dgst -sha256 ${tOpenssl.toFixed(2)} s (CPU ${opensslCpu.toFixed(2)} s)`);

    let tAvbtool = Number.NaN;
    try {
      tAvbtool = await timed(() =>
        execa('python3', [
          AVBTOOL,
          'add_hashtree_footer',
          '--image',
          img,
          '--partition_name',
          'system',
          '--hash_algorithm',
          'sha256',
          '--salt',
          SALT,
          '--do_not_generate_fec',
        ]),
      );
      opts.log(`avb: avbtool add_hashtree_footer ${tAvbtool.toFixed(2)} s`);
    } catch (e) {
      opts.log(`avb: avbtool unavailable (${(e as Error).message.split('\n')[0]})`);
    }

    // Ours in a child (our addHashtreeFooter first strips avbtool's footer, as avbtool would).
    const tsx = pathToFileURL(
      join(createRequire(import.meta.url).resolve('tsx/package.json'), '..', 'dist/loader.mjs'),
    ).href;
    const lib = pathToFileURL(resolve(import.meta.dirname, '../formats/avb/sign.ts')).href;
    const code = `
      const { addHashtreeFooter } = await import(${JSON.stringify(lib)});
      const t = performance.now();
      const cpu0 = process.cpuUsage();
      const r = await addHashtreeFooter(${JSON.stringify(img)}, { partitionName: 'system', hashAlgorithm: 'sha256', salt: ${JSON.stringify(SALT)} });
      const secs = (performance.now() - t) / 1000;
      const c = process.cpuUsage(cpu0);
      console.log(JSON.stringify({ secs, cpu: (c.user + c.system) / 1e6, maxRssKiB: process.resourceUsage().maxRSS, root: r.descriptor.rootDigest.toString('hex') }));`;
    const child = await execa(process.execPath, ['--import', tsx, '--input-type=module', '-e', code]);
    const ours = JSON.parse(String(child.stdout).trim().split('\n').pop() ?? '{}') as {
      secs: number;
      cpu: number;
      maxRssKiB: number;
    };
    const rssMiB = ours.maxRssKiB / 1024;
    opts.log(
      `avb: ours ${ours.secs.toFixed(2)} s (CPU ${ours.cpu.toFixed(2)} s, worker threads included), peak RSS ${rssMiB.toFixed(0)} MiB`,
    );
    const mibps = (t: number) => `${(sizeMiB / t).toFixed(0)} MiB/s`;
    // Worker threads only pay off on idle cores: record the host's cores and load with the figures.
    const rssNote = `peak RSS ${rssMiB.toFixed(0)} MiB (goal < 300 MiB); ${availableParallelism()} cores, load ${loadavg()[0].toFixed(1)}`;
    if (Number.isFinite(tAvbtool))
      results.push({
        name: `hashtree sha256 ${sizeMiB} MiB vs avbtool`,
        ours: ours.secs,
        reference: tAvbtool,
        referenceName: 'avbtool add_hashtree_footer --do_not_generate_fec',
        ratio: tAvbtool / ours.secs,
        goal: '>= 3x faster (ratio = avbtool time / ours)',
        notes: rssNote,
      });
    results.push({
      name: `hashtree sha256 ${sizeMiB} MiB vs openssl dgst throughput`,
      ours: ours.secs,
      reference: tOpenssl,
      referenceName: 'openssl dgst -sha256',
      ratio: tOpenssl / ours.secs,
      goal: '>= 0.70 of openssl throughput (ratio = openssl time / ours)',
      // CPU seconds too: on a loaded host, wall time mostly measures the share of cores we got.
      notes: `ours ${mibps(ours.secs)} (CPU ${ours.cpu.toFixed(2)} s), openssl ${mibps(tOpenssl)} (CPU ${opensslCpu.toFixed(2)} s); ${rssNote}`,
    });
    if (Number.isFinite(tAvbtool))
      results.push(...(await benchVerify(img, `a ${sizeMiB} MiB image of random data`, opts)));
  } finally {
    await rm(img, { force: true });
  }
  return results;
}
