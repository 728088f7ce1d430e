import { existsSync, statSync } from 'node:fs';
import { copyFile, readdir, rm } from 'node:fs/promises';
import { availableParallelism, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { execa } from 'execa';
import { sha256File } from '../build/record.ts';
import { AVBTOOL, benchVerify } from './avb/verify.ts';
import type { BenchOptions, BenchResult } from './types.ts';

const ROOT = resolve(import.meta.dirname, '../..');

/** Seconds from a stage's first progress event to its last, in order of first appearance. */
type Stages = Map<string, { first: number; last: number }>;

/**
 * Wall time and peak RSS (KiB) of a whole command, from GNU time; with `--json`, the progress
 * events the command writes on stderr are timed as they arrive, giving a per-stage breakdown.
 */
async function timed(
  cmd: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<{ seconds: number; rssKiB: number; stages: Stages }> {
  const t0 = performance.now();
  const stages: Stages = new Map();
  const child = execa('/usr/bin/time', ['-f', '%M', cmd, ...args], {
    env: { ...process.env, ...env },
    reject: false,
    all: true,
  });
  let partial = '';
  child.stderr?.on('data', (d: Buffer) => {
    const now = (performance.now() - t0) / 1000;
    const lines = (partial + d.toString('utf8')).split('\n');
    partial = lines.pop() ?? '';
    for (const l of lines) {
      if (!l.startsWith('{')) continue;
      const e = JSON.parse(l) as { event?: string; stage?: string };
      if (e.event !== 'progress' || !e.stage) continue;
      // Per-file stages ("hashtree /…/system.img") are named by the file only.
      const name = e.stage.replace(/\/\S*\//, '');
      const s = stages.get(name) ?? { first: now, last: now };
      s.last = now;
      stages.set(name, s);
    }
  });
  const r = await child;
  const seconds = (performance.now() - t0) / 1000;
  if (r.exitCode !== 0) throw new Error(`${cmd} ${args.join(' ')} failed:\n${String(r.all).slice(-2000)}`);
  const rssKiB = Number(String(r.stderr).trim().split('\n').pop());
  return { seconds, rssKiB, stages };
}

/**
 * Flushes the page cache's dirty pages before a timed command: otherwise the GiBs the previous
 * command wrote (cp's or the build's) are written back during the next one, which is then
 * throttled for I/O it did not do. Neither command's own write-back is timed.
 */
async function settle(): Promise<void> {
  await execa('sync');
}

/** "stage start+duration" for the stages that took at least 0.3 s. */
function stageSummary(stages: Stages): string {
  return [...stages]
    .filter(([, v]) => v.last - v.first >= 0.3)
    .map(([k, v]) => `${k} @${v.first.toFixed(1)}+${(v.last - v.first).toFixed(1)}s`)
    .join(', ');
}

/**
 * Seconds the least work any build of the base must do takes, whatever its code: SHA-256 of every
 * byte the build record and AVB need hashed (with the build's own file hasher), and one write of
 * each large output (copyFile: copy_file_range, as cp). Spread over as many lanes as cores
 * (longest jobs first), with no parsing, editing or checking at all: a floor for the build.
 */
async function requiredWork(hash: string[], write: Array<{ file: string; to: string }>): Promise<number> {
  const jobs = [...hash.map((file) => ({ file, to: undefined as string | undefined })), ...write]
    .map((j) => ({ ...j, size: statSync(j.file).size }))
    .sort((a, b) => b.size - a.size);
  const lanes = Array.from({ length: availableParallelism() }, () => ({ bytes: 0, jobs: [] as typeof jobs }));
  for (const j of jobs) {
    const lane = lanes.reduce((a, b) => (b.bytes < a.bytes ? b : a));
    lane.bytes += j.size;
    lane.jobs.push(j);
  }
  await settle();
  const t0 = performance.now();
  await Promise.all(
    lanes.map(async (l) => {
      for (const j of l.jobs) await (j.to ? copyFile(j.file, j.to) : sha256File(j.file));
    }),
  );
  return (performance.now() - t0) / 1000;
}

/**
 * Full remaster of a ~1 GiB sample base (`omie build`, conformance check included) against a
 * plain `cp` of the same inputs in the same run, and as a ratio to the floor measured in the same
 * run (what any build must do). Goals: <= 3x cp, <= 2x the floor, the check included; peak RSS <= 300 MiB (the largest
 * single process of the build's tree, as GNU time reports for the build process itself).
 */
export async function bench(o: BenchOptions): Promise<BenchResult[]> {
  const base = join(o.workDir, `sample-base-${o.sizeMiB}`);
  const home = join(o.workDir, 'home');
  const env = { OMIE_HOME: home };
  const omie = [join(ROOT, 'scripts/omie.mjs')];
  if (!existsSync(join(base, 'factory.zip'))) {
    o.log(`build: generating a ${o.sizeMiB} MiB sample base (once)`);
    await execa('node', [...omie, 'sample-base', base, '--size-mib', String(o.sizeMiB)], {
      env: { ...process.env, ...env },
    });
  }
  await execa('node', [...omie, 'keys', 'init', 'omie-sample-partner'], { env: { ...process.env, ...env } });
  await execa('node', [...omie, 'sample-apps'], { env: { ...process.env, ...env }, cwd: ROOT });
  const product = join(ROOT, 'device/omie/tablet/products/omie-tablet.yaml');
  const out = join(o.workDir, 'out');
  const copy = join(o.workDir, 'copy');
  const inputs = (await readdir(base)).filter((f) => f.endsWith('.img')).map((f) => join(base, f));
  // The reference is the same for every form of the base: cp of the sample base's files.
  const ref: number[] = [];
  const copyInputs = async () => {
    await rm(copy, { recursive: true, force: true });
    await execa('mkdir', ['-p', copy]);
    await settle();
    ref.push((await timed('cp', [...inputs, join(base, 'factory.zip'), copy])).seconds);
  };
  let rss = 0;
  // The floor, on each build's own outputs: the input, system.img twice (its dm-verity tree and
  // its digest), super.img and the zip hashed; system.img, super.img and the zip written once.
  const floors: number[] = [];
  const measureFloor = async () => {
    const zip = (await readdir(out)).find((f) => f.endsWith('-fastboot.zip'));
    if (!zip) return;
    await rm(copy, { recursive: true, force: true });
    await execa('mkdir', ['-p', copy]);
    const large = ['system.img', 'super.img', zip].map((f) => join(out, f));
    floors.push(
      await requiredWork(
        [join(base, 'super.img'), large[0], ...large],
        large.map((file, k) => ({ file, to: join(copy, `floor-${k}`) })),
      ),
    );
  };
  // Build, cp and floor runs alternate, so that a busy spell of a shared machine weighs on all
  // three rather than on whichever ran during it.
  const remaster = async (form: string, input: string) => {
    const ours: number[] = [];
    let stages = '';
    for (let i = 0; i < 2; i++) {
      await rm(out, { recursive: true, force: true });
      await settle();
      const b = await timed(
        'node',
        [...omie, '--json', 'build', product, '--base', input, '--out', out],
        env,
      );
      if (b.seconds <= Math.min(...ours)) stages = stageSummary(b.stages);
      o.log(`build: ${form} run ${i + 1}: ${b.seconds.toFixed(1)} s; stages: ${stageSummary(b.stages)}`);
      ours.push(b.seconds);
      rss = Math.max(rss, b.rssKiB);
      await copyInputs();
      await measureFloor();
      o.log(`build: cp ${ref.at(-1)?.toFixed(2)} s, floor ${floors.at(-1)?.toFixed(2) ?? '?'} s`);
    }
    return { form, seconds: Math.min(...ours), stages };
  };
  // The factory zip is the hard case (1.2 GB of system.img to inflate); super.img needs no inflating.
  const runs = [
    await remaster('factory zip', join(base, 'factory.zip')),
    await remaster('super.img', join(base, 'super.img')),
  ];
  const r = Math.min(...ref);
  const floor = floors.length ? Math.min(...floors) : undefined;
  o.log(
    `build: ${runs.map((x) => `from ${x.form} ${x.seconds.toFixed(1)} s`).join(', ')}; cp ${r.toFixed(2)} s; least work a build must do ${floor?.toFixed(2) ?? '?'} s; peak RSS ${(rss / 1024).toFixed(0)} MiB`,
  );
  const floorRow: BenchResult[] = floor
    ? [
        {
          name: 'least work any build of that base must do (hash 5 large files, write 3; all cores)',
          ours: floor,
          reference: r,
          referenceName: "cp of the sample base's files",
          ratio: floor / r,
          floorRatio: 1,
          goal: 'floor',
          notes: `no build can beat this ratio on this machine; runs: ${floors.map((f) => f.toFixed(2)).join(' / ')} s`,
        },
      ]
    : [];
  const vbmeta = join(out, 'vbmeta.img');
  const verifyRows = existsSync(AVBTOOL) ? await benchVerify(vbmeta, 'the build', o) : [];
  if (!verifyRows.length) o.log('build: verify rows skipped (no avbtool beside the repository)');
  return [
    ...runs.map((x) => ({
      name: `remaster ${o.sizeMiB} MiB sample base (from ${x.form})`,
      ours: x.seconds,
      reference: r,
      referenceName: "cp of the sample base's files",
      ratio: x.seconds / r,
      floorRatio: floor ? x.seconds / floor : undefined,
      goal: '<= 3x cp; <= 2x the floor',
      notes: `peak RSS ${(rss / 1024).toFixed(0)} MiB (goal <= 300); ${availableParallelism()} cores, load ${loadavg()[0].toFixed(1)}; fastest run's stages: ${x.stages}`,
    })),
    ...floorRow,
    ...verifyRows,
  ];
}
