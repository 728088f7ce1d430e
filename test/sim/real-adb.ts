/**
 * A private instance of Debian's real adb server for tests: its own port and its own HOME (with its
 * own ~/.android/adbkey), so tests never touch the user's adb server or keys.
 */
import { mkdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { execa } from 'execa';

export async function freePort(): Promise<number> {
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

export interface RealAdb {
  port: number;
  home: string;
  env: Record<string, string>;
  /** Runs `adb -P port ARGS`; `input` is fed to its stdin. */
  run(
    args: string[],
    timeoutMs?: number,
    input?: string,
  ): Promise<{ stdout: string; stderr: string; exitCode: number }>;
  /** Polls `adb devices` until `serial` shows `state` (device, unauthorized, …). */
  waitState(serial: string, state: string, timeoutMs?: number): Promise<string>;
  /** `adb disconnect` + `adb connect` until `serial` shows `state` (after a device reboot). */
  reconnect(serial: string, state: string, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/**
 * The server on a port nothing else holds. freePort() can only say a port was free a moment ago:
 * another test file running in parallel may take it first (adb then reports "protocol fault"
 * talking to that other server), so a failed start is retried on a new port.
 */
async function startServer(dir: string) {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const home = join(dir, `home-${process.pid}-${port}`);
    rmSync(home, { recursive: true, force: true });
    mkdirSync(join(home, '.android'), { recursive: true });
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: home,
      ANDROID_ADB_SERVER_PORT: String(port),
      ADB_SERVER_SOCKET: `tcp:localhost:${port}`,
    };
    const run = async (args: string[], timeoutMs = 20_000, input?: string) => {
      const r = await execa('adb', ['-P', String(port), ...args], {
        env,
        extendEnv: false,
        reject: false,
        timeout: timeoutMs,
        ...(input === undefined ? { stdin: 'ignore' as const } : { input }),
      });
      return { stdout: String(r.stdout), stderr: String(r.stderr), exitCode: r.exitCode ?? -1 };
    };
    const started = await run(['start-server'], 30_000);
    if (started.exitCode === 0) return { port, home, env, run };
    if (attempt === 3) throw new Error(`adb start-server failed on port ${port}: ${started.stderr}`);
  }
}

export async function startRealAdb(dir: string): Promise<RealAdb> {
  const { port, home, env, run } = await startServer(dir);
  const waitState = async (serial: string, state: string, timeoutMs = 15_000): Promise<string> => {
    const end = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < end) {
      const r = await run(['devices']);
      last = r.stdout;
      const line = r.stdout.split('\n').find((l) => l.startsWith(`${serial}\t`));
      if (line?.split('\t')[1]?.trim() === state) return line;
      await new Promise((res) => setTimeout(res, 200));
    }
    throw new Error(`${serial} never reached state ${state}; last adb devices:\n${last}`);
  };
  return {
    port,
    home,
    env,
    run,
    waitState,
    async reconnect(serial, state, timeoutMs = 20_000) {
      const end = Date.now() + timeoutMs;
      for (;;) {
        await run(['disconnect', serial]);
        await run(['connect', serial]);
        try {
          await waitState(serial, state, 3000);
          return;
        } catch (e) {
          if (Date.now() > end) throw e;
        }
      }
    },
    async stop() {
      await run(['kill-server']);
    },
  };
}
