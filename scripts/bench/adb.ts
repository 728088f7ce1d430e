import { randomBytes } from 'node:crypto';
import { mkdir, open, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { execa } from 'execa';
import { AdbHost } from '../device/adb.ts';
import { requireTool } from '../host/tools.ts';
import { startSim } from '../sim/index.ts';
import { defaultSimProfile } from '../sim/state.ts';
import type { BenchOptions, BenchResult } from './types.ts';

/**
 * The kit's adb layer vs Debian's adb client, same run, same adb server, same virtual device:
 * push and pull of one file (sizeMiB, capped at 256 MiB so the bench stays short). Both sides go
 * through the real adb server into the sim's adbd, so the ratio measures our client path
 * (adbkit + our sync use) against adb's own. Goal: <= 1.1x. Each side runs twice, best kept.
 */
export async function bench(opts: BenchOptions): Promise<BenchResult[]> {
  const sizeMiB = Math.max(1, Math.min(256, Math.floor(opts.sizeMiB)));
  const dir = join(opts.workDir, 'adb');
  await rm(dir, { recursive: true, force: true });
  await mkdir(join(dir, 'home', '.android'), { recursive: true });
  const file = join(dir, 'payload.bin');
  const fh = await open(file, 'w');
  const chunk = randomBytes(1024 * 1024);
  for (let i = 0; i < sizeMiB; i++) await fh.write(chunk, 0, chunk.length, i * chunk.length);
  await fh.close();

  const port = await freePort();
  const adbBin = requireTool('adb');
  const env = { PATH: process.env.PATH ?? '', HOME: join(dir, 'home') };
  const adb = (args: string[]) => execa(adbBin, ['-P', String(port), ...args], { env, extendEnv: false });
  const sim = await startSim({
    stateDir: join(dir, 'state'),
    profile: defaultSimProfile({ serial: 'BENCHADB' }),
  });
  try {
    await adb(['start-server']);
    const serial = `127.0.0.1:${sim.adbPort}`;
    await adb(['connect', serial]);
    const host = new AdbHost({ port, timeoutMs: 600_000 });
    await host.waitForDevice(serial, 'device', 20_000);
    const best = async (f: () => Promise<unknown>) => {
      let t = Number.POSITIVE_INFINITY;
      for (let i = 0; i < 2; i++) {
        const s = performance.now();
        await f();
        t = Math.min(t, (performance.now() - s) / 1000);
      }
      return t;
    };
    opts.log(`adb: push/pull ${sizeMiB} MiB through the adb server to the sim`);
    const refPush = await best(() => adb(['-s', serial, 'push', file, '/data/local/tmp/ref.bin']));
    const ourPush = await best(() => host.push(serial, file, '/data/local/tmp/ours.bin'));
    const refPull = await best(() =>
      adb(['-s', serial, 'pull', '/data/local/tmp/ref.bin', join(dir, 'ref-back.bin')]),
    );
    const ourPull = await best(() =>
      host.pull(serial, '/data/local/tmp/ours.bin', join(dir, 'ours-back.bin')),
    );
    const mbps = (s: number) => `${(sizeMiB / s).toFixed(0)} MiB/s`;
    return [
      {
        name: `adb push ${sizeMiB} MiB`,
        ours: ourPush,
        reference: refPush,
        referenceName: 'adb push',
        ratio: ourPush / refPush,
        goal: '<= 1.1x',
        notes: `ours ${mbps(ourPush)}, adb ${mbps(refPush)}`,
      },
      {
        name: `adb pull ${sizeMiB} MiB`,
        ours: ourPull,
        reference: refPull,
        referenceName: 'adb pull',
        ratio: ourPull / refPull,
        goal: '<= 1.1x',
        notes: `ours ${mbps(ourPull)}, adb ${mbps(refPull)}`,
      },
    ];
  } finally {
    await adb(['kill-server']).catch(() => {});
    await sim.close();
    await rm(dir, { recursive: true, force: true });
  }
}

function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const p = typeof a === 'object' && a ? a.port : 0;
      s.close(() => res(p));
    });
  });
}
