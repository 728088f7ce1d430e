/**
 * The flash bench's USB row (part of ../flash.ts, not an area of its own): the same image flashed
 * through the same emulated USB device - the virtual device behind umockdev, as the tests use it
 * (test/usb/) - by our client and by Debian's `fastboot`, in the same run. Every transfer of both clients crosses the emulation, so the ratio
 * compares the clients' USB use (transfer sizes, round trips), not the machine's USB stack.
 */
import { resolve } from 'node:path';
import { execa } from 'execa';
import { requireTool } from '../../host/tools.ts';
import { settle } from '../build.ts';
import type { BenchResult } from '../types.ts';

const ROOT = resolve(import.meta.dirname, '../../..');

export async function benchFlashUsb(o: {
  /** The running sim's state directory and fastboot TCP port (the device is in the bootloader). */
  stateDir: string;
  fastbootPort: number;
  image: string;
  sizeMiB: number;
  log: (line: string) => void;
}): Promise<BenchResult[]> {
  const { startUsbGadget, umockdevStatus } = await import('../../../test/usb/gadget.ts');
  const status = umockdevStatus();
  if (!status.present) {
    o.log(`flash over USB: skipped (${status.reason})`);
    return [];
  }
  const fastboot = requireTool('fastboot');
  const gadget = await startUsbGadget([{ dir: o.stateDir, port: o.fastbootPort }]);
  try {
    const dev = await gadget.waitFor((e) => e.event === 'attached' && e.mode === 'bootloader');
    const serial = dev.serial as string;
    const runReal = async () => {
      const t = performance.now();
      const r = await execa(fastboot, ['-s', serial, 'flash', 'bench', o.image], {
        env: gadget.env,
        reject: false,
      });
      if (r.exitCode !== 0) throw new Error(`fastboot flash over USB failed: ${r.stderr}`);
      return (performance.now() - t) / 1000;
    };
    const runOurs = async () => {
      const r = await execa(
        process.execPath,
        ['--import', 'tsx', resolve(import.meta.dirname, 'flash-child.ts'), serial, 'bench', o.image],
        { cwd: ROOT, env: gadget.env, reject: false },
      );
      if (r.exitCode !== 0) throw new Error(`our flash over USB failed: ${r.stderr}`);
      return (JSON.parse(r.stdout.trim().split('\n').pop() as string) as { seconds: number }).seconds;
    };
    // The image is in the page cache from the TCP rows: alternate, best of two each.
    let real = Number.POSITIVE_INFINITY;
    let ours = Number.POSITIVE_INFINITY;
    for (let i = 0; i < 2; i++) {
      await settle(); // no run pays for the previous one's writeback of the sim's partition file
      real = Math.min(real, await runReal());
      await settle();
      ours = Math.min(ours, await runOurs());
    }
    o.log(`flash ${o.sizeMiB} MiB over USB: ours ${ours.toFixed(2)} s, fastboot ${real.toFixed(2)} s`);
    return [
      {
        name: `flash ${o.sizeMiB} MiB to the sim over emulated USB (umockdev, 256 MiB max-download-size)`,
        ours,
        reference: real,
        referenceName: 'fastboot flash (Debian), same emulated device',
        ratio: ours / real,
        goal: '<= 1.1x',
        notes: `${(o.sizeMiB / ours).toFixed(0)} MiB/s ours, ${(o.sizeMiB / real).toFixed(0)} MiB/s fastboot`,
      },
    ];
  } finally {
    await gadget.close();
  }
}
