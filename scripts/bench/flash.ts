/**
 * Flash bench: the same image flashed to the virtual device by our fastboot client and by Debian's
 * `fastboot flash`, in the same run, over TCP and over emulated USB (usb/flash.ts). The sim runs in its own process (`omie sim`), as a device
 * would, so neither client shares an event loop with it. max-download-size is 256 MiB, so an image
 * of 1 GiB goes as resparsed pieces in both cases (the real client's own splitting path).
 */
import { randomBytes } from 'node:crypto';
import { open, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { execa } from 'execa';
import { FastbootClient } from '../device/fastboot/client.ts';
import { requireTool } from '../host/tools.ts';
import { defaultSimProfile, SimState } from '../sim/state.ts';
import { settle } from './build.ts';
import type { BenchOptions, BenchResult } from './types.ts';

const MiB = 1024 * 1024;

/** An image that looks like a partition: mostly data, some zero and filled regions. */
async function makeImage(path: string, sizeMiB: number): Promise<void> {
  const fh = await open(path, 'w');
  try {
    const data = randomBytes(4 * MiB);
    for (let m = 0; m < sizeMiB; m++) {
      const kind = m % 16;
      const buf =
        kind === 7
          ? Buffer.alloc(MiB)
          : kind === 11
            ? Buffer.alloc(MiB, 0x5a)
            : data.subarray((m % 4) * MiB, ((m % 4) + 1) * MiB);
      await fh.write(buf, 0, MiB, m * MiB);
    }
  } finally {
    await fh.close();
  }
}

export async function bench(opts: BenchOptions): Promise<BenchResult[]> {
  const sizeMiB = Math.max(16, opts.sizeMiB);
  const dir = join(opts.workDir, 'flash-bench');
  await rm(dir, { recursive: true, force: true });
  const stateDir = join(dir, 'state');
  const state = await SimState.create(
    stateDir,
    defaultSimProfile({
      partitions: [{ name: 'bench', size: (sizeMiB + 16) * MiB, logical: false, slotted: false }],
      superSize: undefined,
      maxDownloadSize: 256 * MiB,
    }),
  );
  await state.update((d) => {
    d.mode = 'bootloader';
  });
  const img = join(dir, 'bench.img');
  opts.log(`flash bench: writing a ${sizeMiB} MiB image`);
  await makeImage(img, sizeMiB);

  const omie = resolve(import.meta.dirname, '../omie.mjs');
  const sim = execa(
    process.execPath,
    [omie, 'sim', '--state', stateDir, '--adb-port', '0', '--fastboot-port', '0', '--json'],
    {
      reject: false,
      buffer: false,
    },
  );
  try {
    const port = await new Promise<number>((res, rej) => {
      let text = '';
      const t = setTimeout(() => rej(new Error('omie sim did not start within 60 s')), 60_000);
      sim.stdout?.on('data', (c: Buffer) => {
        text += c.toString();
        const m = /"fastbootPort"\s*:\s*(\d+)/.exec(text);
        if (m) {
          clearTimeout(t);
          res(Number(m[1]));
        }
      });
      sim.on('exit', () => rej(new Error(`omie sim exited: ${text}`)));
    });
    const addr = `tcp:127.0.0.1:${port}`;
    const fastboot = requireTool('fastboot');

    const runReal = async () => {
      const t = performance.now();
      const r = await execa(fastboot, ['-s', addr, 'flash', 'bench', img], { reject: false });
      if (r.exitCode !== 0) throw new Error(`fastboot flash failed: ${r.stderr}`);
      return (performance.now() - t) / 1000;
    };
    const runOurs = async () => {
      const t = performance.now();
      const c = await FastbootClient.connectTcp(addr);
      await c.flash('bench', img);
      await c.close();
      return (performance.now() - t) / 1000;
    };
    // Warm the page cache and both clients once, then alternate and keep the best of three each.
    // The sim writes each GiB to its partition file: `sync` first, so that no run pays for the
    // writeback of the run before it.
    await runReal();
    await runOurs();
    let real = Number.POSITIVE_INFINITY;
    let ours = Number.POSITIVE_INFINITY;
    for (let i = 0; i < 3; i++) {
      await settle();
      real = Math.min(real, await runReal());
      await settle();
      ours = Math.min(ours, await runOurs());
    }
    opts.log(`flash ${sizeMiB} MiB: ours ${ours.toFixed(2)} s, fastboot ${real.toFixed(2)} s`);
    const { benchFlashUsb } = await import('./usb/flash.ts');
    return [
      {
        name: `flash ${sizeMiB} MiB to the sim (TCP, 256 MiB max-download-size)`,
        ours,
        reference: real,
        referenceName: 'fastboot flash (Debian)',
        ratio: ours / real,
        goal: '<= 1.1x',
      },
      ...(await benchFlashUsb({ stateDir, fastbootPort: port, image: img, sizeMiB, log: opts.log })),
    ];
  } finally {
    sim.kill('SIGTERM');
    await sim.catch(() => {});
    await rm(dir, { recursive: true, force: true });
  }
}
