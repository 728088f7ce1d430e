/**
 * `omie sim` and `omie devices` as a user runs them: the sim process prints its ready line, the real
 * adb client reaches it, `omie devices --json` reports it over adb and then (after a reboot into the
 * bootloader) over TCP fastboot with product, serial, slot and lock state; SIGTERM stops it.
 */
import { rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { execa, type ResultPromise } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { discoverDevices } from '../../scripts/device/discover.ts';
import { omie, ROOT, workDir } from '../helpers.ts';
import { type RealAdb, startRealAdb } from './real-adb.ts';

const dir = workDir('sim');
let adb: RealAdb;
let proc: ResultPromise;
let ready: { serial: string; adbPort: number; fastbootPort: number; state: string };

beforeAll(async () => {
  adb = await startRealAdb(dir);
  const stateDir = join(dir, `cli-state-${process.pid}`);
  rmSync(stateDir, { recursive: true, force: true });
  proc = execa(
    process.execPath,
    [
      resolve(ROOT, 'scripts/omie.mjs'),
      'sim',
      '--json',
      '--adb-port',
      '0',
      '--fastboot-port',
      '0',
      '--state',
      stateDir,
      '--serial',
      'CLISIM01',
      '--locked',
    ],
    { reject: false, buffer: false },
  );
  ready = await new Promise((res, rej) => {
    let text = '';
    const t = setTimeout(() => rej(new Error(`omie sim not ready: ${text}`)), 60_000);
    proc.stdout?.on('data', (c: Buffer) => {
      text += c.toString();
      const line = text.split('\n').find((l) => l.startsWith('{'));
      if (line) {
        clearTimeout(t);
        res(JSON.parse(line));
      }
    });
  });
}, 90_000);

afterAll(async () => {
  await adb?.stop();
  if (proc && proc.exitCode === null) proc.kill('SIGKILL');
});

describe('omie sim / omie devices', () => {
  it('prints the ready line and serves the real adb client', async () => {
    expect(ready).toMatchObject({ serial: 'CLISIM01', state: join(dir, `cli-state-${process.pid}`) });
    expect(ready.adbPort).toBeGreaterThan(0);
    expect(ready.fastbootPort).toBeGreaterThan(0);
    const id = `127.0.0.1:${ready.adbPort}`;
    await adb.run(['connect', id]);
    await adb.waitState(id, 'device');
    const locked = await adb.run([
      '-s',
      id,
      'shell',
      'getprop ro.boot.flash.locked; getprop ro.boot.verifiedbootstate',
    ]);
    expect(locked.stdout.split('\n').map((s) => s.trim())).toEqual(['1', 'green']);
  }, 30_000);

  it('omie devices --json lists it over adb, then over fastboot after reboot bootloader', async () => {
    const id = `127.0.0.1:${ready.adbPort}`;
    const fb = `tcp:127.0.0.1:${ready.fastbootPort}`;
    const r = await omie(
      ['devices', '--json', '--adb-port', String(adb.port), '--fastboot', fb, '--no-usb'],
      {
        env: { ...process.env, HOME: adb.home } as Record<string, string>,
      },
    );
    expect(r.exitCode, r.stderr).toBe(0);
    const listed = JSON.parse(r.stdout).devices;
    expect(listed).toContainEqual({
      id,
      protocol: 'adb',
      transport: 'tcp',
      state: 'device',
      serial: 'CLISIM01',
      product: 'omie_tablet',
      slot: 'a',
      locked: true,
      verifiedBootState: 'green',
    });
    // The fastboot side of a device in Android refuses connections.
    expect(listed.find((d: { id: string }) => d.id === fb)?.state).toBe('unreachable');

    expect((await adb.run(['-s', id, 'reboot', 'bootloader'])).exitCode).toBe(0);
    const after = await discoverDevices({
      adbPort: adb.port,
      fastbootTcp: [fb],
      usb: false,
      timeoutMs: 5000,
    });
    expect(after.devices).toContainEqual({
      id: fb,
      protocol: 'fastboot',
      transport: 'tcp',
      state: 'bootloader',
      serial: 'CLISIM01',
      product: 'omie_tablet',
      slot: 'a',
      locked: true,
    });
    // And the real fastboot client agrees on what omie devices reported.
    const real = await execa('fastboot', ['-s', fb, 'getvar', 'unlocked'], {
      reject: false,
      timeout: 20_000,
    });
    expect(real.stderr).toContain('unlocked: no');
  }, 60_000);

  it('stops on SIGTERM with exit code 0', async () => {
    proc.kill('SIGTERM');
    const res = await proc;
    expect(res.exitCode).toBe(0);
  }, 30_000);

  it('rejects bad arguments with exit code 2', async () => {
    const r = await omie(['sim', '--auth', 'maybe', '--state', join(dir, 'never')]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain('--auth must be auto or require');
  }, 30_000);
});
