/**
 * The virtual device behind emulated USB (fastboot_gadget.py, on umockdev): each sim appears as a
 * USB device on its own root hub port to every process started with `gadget.env`, and follows the
 * sim through its reboots (disconnects, then enumerates again with the descriptors of the new mode).
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';

/** umockdev's Python bindings need the system interpreter (python3-gi is a Debian package). */
const SYSTEM_PYTHON = '/usr/bin/python3';
const GADGET = resolve(import.meta.dirname, 'fastboot_gadget.py');

const PRELOAD = 'libumockdev-preload.so.0';

/**
 * The gadget runs under umockdev's preload library itself: the uevents it sends are built by
 * libudev from the testbed's sysfs, which only the preload shows.
 */
const gadgetEnv = () => ({
  ...process.env,
  LD_PRELOAD: [PRELOAD, process.env.LD_PRELOAD].filter(Boolean).join(':'),
});

/** Whether emulated USB works on this host, and if not, why. */
export function umockdevStatus(): { present: boolean; reason: string } {
  const r = existsSync(SYSTEM_PYTHON)
    ? spawnSync(
        SYSTEM_PYTHON,
        ['-c', "import gi; gi.require_version('UMockdev', '1.0'); from gi.repository import UMockdev"],
        { encoding: 'utf8', env: gadgetEnv() },
      )
    : { status: 1, stderr: `${SYSTEM_PYTHON} not found` };
  // ld.so only warns when a preload library is missing.
  if (r.status === 0 && !String(r.stderr).includes(PRELOAD)) return { present: true, reason: '' };
  const why = String(r.stderr).trim().split('\n').pop();
  return { present: false, reason: `umockdev not usable here: ${why}; bash scripts/setup.sh installs it` };
}

export interface GadgetEvent {
  event: 'ready' | 'attached' | 'detached' | 'armed' | 'error';
  port?: string;
  mode?: string;
  serial?: string;
  devnum?: number;
  devnode?: string;
  reason?: string;
  umockdevDir?: string;
  preload?: string;
  message?: string;
}

export interface UsbGadget {
  /** Environment for a process that must see the emulated devices. */
  env: Record<string, string>;
  events: GadgetEvent[];
  /** Resolves with the first event (past or future) matching `pred` after index `from`. */
  waitFor(
    pred: (e: GadgetEvent) => boolean,
    opts?: { from?: number; timeoutMs?: number },
  ): Promise<GadgetEvent>;
  /** The device at `port` disconnects after `afterBytes` more bytes from the host; back after `replugMs`. */
  vanish(afterBytes: number, opts?: { port?: string; replugMs?: number }): Promise<void>;
  close(): Promise<void>;
}

export interface GadgetDevice {
  /** The sim's state directory (its device.json says which mode it is in). */
  dir: string;
  /** The sim's fastboot TCP port. */
  port: number;
}

/** Starts the emulated USB bus with one port per sim. */
export async function startUsbGadget(
  devices: GadgetDevice[],
  opts: { verbose?: boolean } = {},
): Promise<UsbGadget> {
  const args = [GADGET, ...devices.flatMap((d) => ['--device', `${d.dir}=127.0.0.1:${d.port}`])];
  if (opts.verbose || process.env.OMIE_TEST_USB_VERBOSE) args.push('-v');
  const child: ChildProcess = spawn(SYSTEM_PYTHON, args, {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: gadgetEnv(),
  });
  const events: GadgetEvent[] = [];
  const waiters = new Set<() => void>();
  let exited = false;
  createInterface({ input: child.stdout! }).on('line', (line) => {
    events.push(JSON.parse(line) as GadgetEvent);
    for (const w of [...waiters]) w();
  });
  child.on('exit', () => {
    exited = true;
    for (const w of [...waiters]) w();
  });

  const waitFor: UsbGadget['waitFor'] = (pred, o = {}) =>
    new Promise((res, rej) => {
      const from = o.from ?? 0;
      const check = () => {
        const hit = events.slice(from).find(pred);
        if (hit || exited) {
          waiters.delete(check);
          clearTimeout(timer);
          if (hit) res(hit);
          else rej(new Error(`the USB gadget exited; events: ${JSON.stringify(events)}`));
        }
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        rej(
          new Error(
            `no matching USB gadget event within ${o.timeoutMs ?? 20_000} ms: ${JSON.stringify(events)}`,
          ),
        );
      }, o.timeoutMs ?? 20_000);
      waiters.add(check);
      check();
    });

  const ready = await waitFor((e) => e.event === 'ready');
  const env = {
    UMOCKDEV_DIR: ready.umockdevDir!,
    LD_PRELOAD: [ready.preload!, process.env.LD_PRELOAD].filter(Boolean).join(':'),
  };
  return {
    env,
    events,
    waitFor,
    async vanish(afterBytes, o = {}) {
      const from = events.length;
      child.stdin!.write(
        `${JSON.stringify({ cmd: 'vanish', afterBytes, port: o.port ?? '1-1', replugMs: o.replugMs })}\n`,
      );
      await waitFor((e) => e.event === 'armed', { from });
    },
    async close() {
      if (exited) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.stdin!.end();
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await gone;
      clearTimeout(t);
    },
  };
}
