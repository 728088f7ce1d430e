import { createRequire } from 'node:module';
import { availableParallelism, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { execa } from 'execa';
import type { BenchOptions, BenchResult } from '../types.ts';

const ROOT = resolve(import.meta.dirname, '../../..');
export const AVBTOOL = resolve(ROOT, '../shared/oracles/avbtool');

/** Wall and CPU (user + sys, every thread and child) seconds of one run. */
interface Run {
  wall: number;
  cpu: number;
}

/** A command under GNU time: its wall time and the CPU time it and its children used. */
async function timedCommand(cmd: string, args: string[]): Promise<Run> {
  const t = performance.now();
  const r = await execa('/usr/bin/time', ['-f', '%U %S', cmd, ...args]);
  const wall = (performance.now() - t) / 1000;
  const [user, sys] = String(r.stderr).trim().split('\n').pop()!.split(' ').map(Number);
  return { wall, cpu: user + sys };
}

const best = (runs: Run[], k: keyof Run) => Math.min(...runs.map((r) => r[k]));
const list = (runs: Run[], k: keyof Run) => runs.map((r) => r[k].toFixed(2)).join(' / ');

/**
 * Content verification (6.3/C-0-5: the vbmeta, every hashtree and hash descriptor against the
 * partition bytes; verifyPartitions) of `vbmeta` and the images it covers, vs
 * `avbtool verify_image --follow_chain_partitions` on the same files, and both vs the floor:
 * SHA-256 of every byte of those images in one pass (`openssl dgst -sha256`), the least any
 * verifier must do. Runs alternate (ours, avbtool, floor) so that a busy spell of a shared machine
 * weighs on all three; best of `rounds` each, all from the page cache (a warm-up run first).
 *
 * Wall and CPU seconds both: on a loaded machine wall time mostly measures the share of the cores
 * each command got, CPU time the work it did. Ours runs in a child process and is timed inside it
 * (module loading excluded; its CPU time counts its worker threads); avbtool's times include
 * Python's start-up (~0.1 s).
 */
export async function benchVerify(
  vbmeta: string,
  label: string,
  o: BenchOptions,
  rounds = 3,
): Promise<BenchResult[]> {
  const tsx = pathToFileURL(
    join(createRequire(import.meta.url).resolve('tsx/package.json'), '..', 'dist/loader.mjs'),
  ).href;
  const lib = pathToFileURL(resolve(ROOT, 'scripts/formats/avb/partitions.ts')).href;
  const code = `
    const { verifyPartitions } = await import(${JSON.stringify(lib)});
    const t = performance.now();
    const cpu0 = process.cpuUsage();
    const v = await verifyPartitions(${JSON.stringify(vbmeta)});
    const c = process.cpuUsage(cpu0);
    console.log(JSON.stringify({
      wall: (performance.now() - t) / 1000,
      cpu: (c.user + c.system) / 1e6,
      ok: v.ok,
      descriptors: v.descriptors.length,
      files: [...new Set(v.descriptors.map((d) => d.file).filter(Boolean))],
    }));`;
  const ours = async () => {
    const c = await execa(process.execPath, ['--import', tsx, '--input-type=module', '-e', code]);
    const r = JSON.parse(String(c.stdout).trim().split('\n').pop() ?? '{}') as Run & {
      ok: boolean;
      descriptors: number;
      files: string[];
    };
    if (!r.ok) throw new Error(`verifyPartitions found problems in ${vbmeta}, which the bench made itself`);
    return r;
  };
  const { descriptors, files } = await ours(); // also warms the page cache
  const theirs = () =>
    timedCommand('python3', [AVBTOOL, 'verify_image', '--image', vbmeta, '--follow_chain_partitions']);
  const floor = () => timedCommand('openssl', ['dgst', '-sha256', ...files]);
  const runs = { ours: [] as Run[], avbtool: [] as Run[], floor: [] as Run[] };
  for (let i = 0; i < rounds; i++) {
    runs.ours.push(await ours());
    runs.avbtool.push(await theirs());
    runs.floor.push(await floor());
  }
  const cores = availableParallelism();
  const [oursWall, avbWall, floorWall] = [runs.ours, runs.avbtool, runs.floor].map((r) => best(r, 'wall'));
  const [oursCpu, avbCpu, floorCpu] = [runs.ours, runs.avbtool, runs.floor].map((r) => best(r, 'cpu'));
  o.log(
    `verify ${label}: ${descriptors} descriptors over ${files.length} images; wall s (CPU s): ` +
      Object.entries(runs)
        .map(([k, r]) => `${k} ${list(r, 'wall')} (${list(r, 'cpu')})`)
        .join(', '),
  );
  const machine = `${cores} cores, load ${loadavg()[0].toFixed(1)}; alternating runs, best of ${rounds}`;
  return [
    {
      name: `verify ${label} against its vbmeta (${descriptors} descriptors, 6.3/C-0-5)`,
      ours: oursWall,
      reference: avbWall,
      referenceName: 'avbtool verify_image --follow_chain_partitions',
      ratio: avbWall / oursWall,
      floorRatio: oursCpu / floorCpu,
      goal: '>= 3x faster (ratio = avbtool time / ours)',
      notes: `CPU s: ours ${oursCpu.toFixed(2)} (threads included), avbtool ${avbCpu.toFixed(2)}, floor ${floorCpu.toFixed(2)}; avbtool/ours CPU ${(avbCpu / oursCpu).toFixed(2)}; vs floor: in CPU time; ${machine}`,
    },
    {
      name: `least work any verification of ${label} must do (SHA-256 of its ${files.length} images, openssl dgst, one core)`,
      ours: floorWall,
      reference: avbWall,
      referenceName: 'avbtool verify_image --follow_chain_partitions',
      ratio: avbWall / floorWall,
      floorRatio: 1,
      goal: 'floor',
      // The floor's work spread perfectly over every core bounds the ratio a verifier can show,
      // unless it hashes less than every byte (ours hashes a run of uniform blocks once).
      notes: `floor CPU ${floorCpu.toFixed(2)} s, over ${cores} cores at best ${(floorCpu / cores).toFixed(2)} s: a verifier that hashes every byte cannot be more than ${(avbWall / (floorCpu / cores)).toFixed(1)}x faster than avbtool in this run (${(avbCpu / (floorCpu / cores)).toFixed(1)}x on idle cores: avbtool CPU / that); ${machine}`,
    },
  ];
}
