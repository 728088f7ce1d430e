/**
 * The kit's adb layer (adbkit + our shell v2 / reboot:<target> services) against the real adb server
 * and the virtual device.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AdbError,
  AdbHost,
  decodeShellV2,
  parseGetprop,
  parsePmList,
  shellQuote,
} from '../../scripts/device/adb.ts';
import { discoverDevices } from '../../scripts/device/discover.ts';
import { type SimHandle, startSim } from '../../scripts/sim/index.ts';
import { defaultSimProfile } from '../../scripts/sim/state.ts';
import { workDir } from '../helpers.ts';
import { type RealAdb, startRealAdb } from '../sim/real-adb.ts';

const dir = workDir('adb');
let real: RealAdb;
let sim: SimHandle;
let host: AdbHost;
let serial: string;

beforeAll(async () => {
  real = await startRealAdb(dir);
  const stateDir = join(dir, `state-${process.pid}`);
  rmSync(stateDir, { recursive: true, force: true });
  sim = await startSim({ stateDir, profile: defaultSimProfile({ serial: 'ADBKIT01' }) });
  host = new AdbHost({ port: real.port, timeoutMs: 20_000 });
  serial = `127.0.0.1:${sim.adbPort}`;
  await host.connect('127.0.0.1', sim.adbPort);
  await host.waitForDevice(serial, 'device', 15_000);
}, 60_000);

afterAll(async () => {
  await real?.stop();
  await sim?.close();
});

/** Like a user after a reboot: `adb connect` again until the device shows in `state`. */
async function reconnect(state: string): Promise<void> {
  const end = Date.now() + 20_000;
  for (;;) {
    await host.disconnect('127.0.0.1', sim.adbPort).catch(() => {});
    await host.connect('127.0.0.1', sim.adbPort).catch(() => {});
    try {
      await host.waitForDevice(serial, state, 3000);
      return;
    } catch (e) {
      if (Date.now() > end) throw e;
    }
  }
}

describe('AdbHost (adbkit) against the virtual device', () => {
  it('lists the device and its shell_v2 feature', async () => {
    expect(await host.devices()).toContainEqual({ serial, state: 'device' });
    expect((await host.deviceFeatures(serial)).has('shell_v2')).toBe(true);
  });

  it('shell returns stdout, stderr and the exit code separately', async () => {
    expect(await host.shell(serial, 'echo hi')).toEqual({ stdout: 'hi\n', stderr: '', exitCode: 0 });
    expect((await host.shell(serial, 'exit 7')).exitCode).toBe(7);
    const nf = await host.shell(serial, 'nope');
    expect(nf.exitCode).toBe(127);
    expect(nf.stderr).toContain('nope: not found');
    expect(nf.stdout).toBe('');
    // Same answers as the real client gives.
    const viaReal = await real.run(['-s', serial, 'shell', 'getprop ro.serialno']);
    expect((await host.shell(serial, 'getprop ro.serialno')).stdout.trim()).toBe(viaReal.stdout.trim());
  });

  it('falls back to shell v1 with an echoed status marker', async () => {
    const v1 = new AdbHost({ port: real.port, shellProtocol: 'v1' });
    expect(await v1.shell(serial, 'exit 7')).toEqual({ stdout: '', stderr: '', exitCode: 7 });
    expect(await v1.shell(serial, "echo 'a b'; false")).toEqual({ stdout: 'a b\n', stderr: '', exitCode: 1 });
    const nf = await v1.shell(serial, 'nope');
    expect(nf.exitCode).toBe(127);
    expect(nf.stdout).toContain('nope: not found');
  });

  it('getprops and listPackages parse the device output', async () => {
    const props = await host.getprops(serial);
    expect(props['ro.product.name']).toBe('omie_tablet');
    expect(props['ro.serialno']).toBe('ADBKIT01');
    expect(await host.getprop(serial, 'ro.boot.slot_suffix')).toBe('_a');
    const pkgs = await host.listPackages(serial);
    expect(pkgs).toContainEqual(
      expect.objectContaining({ name: 'android', path: '/system/framework/framework-res.apk' }),
    );
    // -U: every package has its uid, apps from FIRST_APPLICATION_UID.
    expect(pkgs.every((p) => p.uid?.length === 1 && (p.uid[0] as number) >= 10_000)).toBe(true);
  });

  it('push and pull keep bytes intact', async () => {
    const src = join(dir, 'src.bin');
    const data = randomBytes(200_000);
    writeFileSync(src, data);
    await host.push(serial, src, '/data/local/tmp/kit.bin');
    const back = join(dir, 'back.bin');
    rmSync(back, { force: true });
    await host.pull(serial, '/data/local/tmp/kit.bin', back);
    expect(readFileSync(back).equals(data)).toBe(true);
    // Cross-check with the real client.
    const viaReal = join(dir, 'real.bin');
    rmSync(viaReal, { force: true });
    expect((await real.run(['-s', serial, 'pull', '/data/local/tmp/kit.bin', viaReal])).exitCode).toBe(0);
    expect(readFileSync(viaReal).equals(data)).toBe(true);
    await expect(host.push(serial, src, '/system/kit.bin')).rejects.toThrow(/couldn't create file/);
    // A missing file: the device's FAIL becomes a typed error.
    await expect(host.pull(serial, '/data/local/tmp/none.bin', join(dir, 'none.bin'))).rejects.toThrow(
      /No such file or directory/,
    );
    // An empty file: DONE right away.
    await host.shell(serial, 'echo -n > /data/local/tmp/empty');
    await host.pull(serial, '/data/local/tmp/empty', join(dir, 'empty.bin'));
    expect(readFileSync(join(dir, 'empty.bin')).length).toBe(0);
  });

  it('rebootTo sends reboot:<target> and waitForDevice sees it come back', async () => {
    await host.rebootTo(serial, 'recovery');
    await sim.state.reload();
    expect(sim.state.info.mode).toBe('recovery');
    // Recovery still speaks adb (banner "recovery::"): reconnect and see that state.
    await reconnect('recovery');
    const inRecovery = await discoverDevices({ adbPort: real.port, usb: false });
    expect(inRecovery.devices.find((d) => d.id === serial)).toMatchObject({
      state: 'recovery',
      serial: 'ADBKIT01',
    });
    await host.rebootTo(serial, 'bootloader');
    await sim.state.reload();
    expect(sim.state.info.mode).toBe('bootloader');
    await expect(host.waitForDevice(serial, 'device', 1000)).rejects.toThrow(AdbError);
    await sim.state.update((d) => {
      d.mode = 'adb';
    });
    await reconnect('device');
    await expect(host.rebootTo(serial, 'moon' as 'system')).rejects.toThrow(/unknown reboot target/);
  }, 60_000);

  it('an unauthorized device gives a typed error with a hint', async () => {
    const stateDir = join(dir, `state-auth-${process.pid}`);
    rmSync(stateDir, { recursive: true, force: true });
    const locked = await startSim({
      stateDir,
      profile: defaultSimProfile({ serial: 'ADBKIT02', adbAuthRequired: true }),
    });
    try {
      const s = `127.0.0.1:${locked.adbPort}`;
      await host.connect('127.0.0.1', locked.adbPort).catch(() => {});
      await host.waitForDevice(s, 'unauthorized', 15_000);
      const err = await host.shell(s, 'id').catch((e) => e);
      expect(err).toBeInstanceOf(AdbError);
      expect(err.code).toBe('ADB_UNAUTHORIZED');
      expect(err.hint).toContain('Allow USB debugging');
      // omie devices lists it too, without identity (nothing is readable while unauthorized).
      const found = await discoverDevices({ adbPort: real.port, usb: false });
      expect(found.devices).toContainEqual({
        id: s,
        protocol: 'adb',
        transport: 'tcp',
        state: 'unauthorized',
      });
    } finally {
      await locked.close();
    }
  }, 30_000);
});

describe('adb output parsers', () => {
  it('decodes shell v2 packets, getprop and pm lines', () => {
    const pkt = (id: number, s: string | Buffer) => {
      const d = Buffer.isBuffer(s) ? s : Buffer.from(s);
      const h = Buffer.alloc(5);
      h[0] = id;
      h.writeUInt32LE(d.length, 1);
      return Buffer.concat([h, d]);
    };
    expect(
      decodeShellV2(Buffer.concat([pkt(1, 'a'), pkt(2, 'b'), pkt(1, 'c'), pkt(3, Buffer.from([42]))])),
    ).toEqual({
      stdout: 'ac',
      stderr: 'b',
      exitCode: 42,
    });
    // Truncated stream: what arrived, and no exit status.
    expect(decodeShellV2(pkt(1, 'abc').subarray(0, 6)).exitCode).toBe(-1);
    expect(parseGetprop('[a.b]: [1]\n[c]: []\n[multi]: [x\ny]\n')).toEqual({
      'a.b': '1',
      c: '',
      multi: 'x\ny',
    });
    expect(
      parsePmList('package:/system/app/A/A.apk=com.a\npackage:/data/app/x=y/base.apk=com.b\npackage:com.c\n'),
    ).toEqual([
      { path: '/system/app/A/A.apk', name: 'com.a' },
      { path: '/data/app/x=y/base.apk', name: 'com.b' },
      { path: '', name: 'com.c' },
    ]);
    expect(shellQuote("it's")).toBe(`'it'\\''s'`);
    expect(shellQuote('ro.x')).toBe('ro.x');
  });
});
