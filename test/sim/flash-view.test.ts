/**
 * The whole loop with the real clients only: adb reboots the sim into fastbootd, the real fastboot
 * client flashes an Android-sparse ext4 system image (made by img2simg), reboots, and the real adb
 * client then sees the flashed build.prop and APKs. Also `adb sideload` through sideload-host.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApk } from '../../scripts/apkgen/index.ts';
import { runTool } from '../../scripts/host/tools.ts';
import { type SimHandle, startSim } from '../../scripts/sim/index.ts';
import { defaultSimProfile } from '../../scripts/sim/state.ts';
import { workDir } from '../helpers.ts';
import { type RealAdb, startRealAdb } from './real-adb.ts';

const dir = workDir('sim');
let adb: RealAdb;
let sim: SimHandle;
let id: string;
let fb: string;

const reconnect = (state: string) => adb.reconnect(id, state);

beforeAll(async () => {
  adb = await startRealAdb(dir);
  const stateDir = join(dir, `flash-state-${process.pid}`);
  rmSync(stateDir, { recursive: true, force: true });
  sim = await startSim({ stateDir, profile: defaultSimProfile({ serial: 'FLASHV01' }) });
  id = `127.0.0.1:${sim.adbPort}`;
  fb = `tcp:127.0.0.1:${sim.fastbootPort}`;
  await adb.run(['connect', id]);
  await adb.waitState(id, 'device');
}, 60_000);

afterAll(async () => {
  await adb?.stop();
  await sim?.close();
});

describe('real fastboot flash, then real adb reads the flashed image', () => {
  it('flashes a sparse system image in fastbootd and answers getprop/pm from it after reboot', async () => {
    const tree = join(dir, 'flash-tree');
    rmSync(tree, { recursive: true, force: true });
    mkdirSync(join(tree, 'system/app/Weather'), { recursive: true });
    writeFileSync(
      join(tree, 'system/build.prop'),
      'ro.product.system.model=Omie Flashed\nro.omie.build=42\n',
    );
    await buildApk(
      { package: 'org.omie.weather', versionCode: 5, label: 'Weather' },
      null,
      join(tree, 'system/app/Weather/Weather.apk'),
    );
    const raw = join(dir, 'flash-system.img');
    const sparse = join(dir, 'flash-system.simg');
    rmSync(raw, { force: true });
    await runTool('mke2fs', ['-q', '-t', 'ext4', '-d', tree, raw, '24M']);
    await runTool('img2simg', [raw, sparse]);

    expect((await adb.run(['-s', id, 'reboot', 'fastboot'])).exitCode).toBe(0);
    await sim.state.reload();
    expect(sim.state.info.mode).toBe('fastbootd');
    const flash = await execa('fastboot', ['-s', fb, 'flash', 'system', sparse], {
      reject: false,
      timeout: 60_000,
    });
    expect(flash.exitCode, flash.stderr).toBe(0);
    const reboot = await execa('fastboot', ['-s', fb, 'reboot'], { reject: false, timeout: 20_000 });
    expect(reboot.exitCode, reboot.stderr).toBe(0);
    await reconnect('device');

    const sh = (c: string) => adb.run(['-s', id, 'shell', c]);
    expect((await sh('getprop ro.omie.build')).stdout.trim()).toBe('42');
    expect((await sh('getprop ro.product.system.model')).stdout.trim()).toBe('Omie Flashed');
    expect((await sh('pm list packages -f')).stdout.trim()).toBe(
      'package:/system/app/Weather/Weather.apk=org.omie.weather',
    );
    // The APK pulled back over adb is the one that went in through fastboot.
    const back = join(dir, 'weather-back.apk');
    rmSync(back, { force: true });
    expect((await adb.run(['-s', id, 'pull', '/system/app/Weather/Weather.apk', back])).exitCode).toBe(0);
    expect(readFileSync(back).equals(readFileSync(join(tree, 'system/app/Weather/Weather.apk')))).toBe(true);
  }, 120_000);

  it('adb sideload (real client): a system that trusts no OTA key refuses the package (FAILFAIL), back in recovery', async () => {
    expect((await adb.run(['-s', id, 'reboot', 'sideload'])).exitCode).toBe(0);
    await sim.state.reload();
    expect(sim.state.info.mode).toBe('sideload');
    await reconnect('sideload');
    // Nothing written: every image is the same file, untouched (a write renames a new one in).
    const files = () =>
      readdirSync(join(sim.stateDir, 'partitions')).map((f) => {
        const st = statSync(join(sim.stateDir, 'partitions', f));
        return [f, st.ino, st.size, st.mtimeMs];
      });
    const before = files();
    const pkg = join(dir, 'ota.zip');
    writeFileSync(pkg, randomBytes(200_000));
    const r = await adb.run(['-s', id, 'sideload', pkg], 60_000);
    // recovery loads its keys first: with none, nothing is read and adb exits 1 on FAILFAIL.
    expect(r.exitCode, r.stderr + r.stdout).toBe(1);
    expect(r.stdout).toMatch(/Total xfer: 0\.00x/);
    await reconnect('recovery');
    expect((await adb.run(['-s', id, 'shell', 'cat /tmp/recovery.log'])).stdout).toMatch(
      /E:Failed to load keys\nE:Signature verification failed/,
    );
    expect(files()).toEqual(before);
  }, 90_000);
});
