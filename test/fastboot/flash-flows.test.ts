/**
 * Flash flows real devices need, against the sim (Debian's fastboot and adb as oracles where they
 * say something): --wipe as fastboot -w on a device without metadata, adb off after a wipe,
 * pairing adb and fastboot by serial number, --jobs, one device's failure not hiding the others',
 * partitions shared by both slots, system_other, and `omie unlock`.
 */
import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BuildInput, flashAll, flashDevice, openBuild } from '../../scripts/device/flash.ts';
import { loadDevice } from '../../scripts/model/index.ts';
import { type SimHandle, simProfileFromDevice, startSim } from '../../scripts/sim/index.ts';
import { omie, ROOT, workDir } from '../helpers.ts';
import { type RealAdb, startRealAdb } from '../sim/real-adb.ts';
import {
  FASTBOOT,
  makeSim,
  mixedImage,
  realFastboot,
  type Sim,
  signedBuild,
  smallProfile,
  writeFileIn,
} from './fixtures.ts';

const root = join(workDir('fastboot'), 'flows');
const cmdsOf = (r: { steps: Array<{ command: string; why?: string }> }) =>
  r.steps.map((s) => s.command.replace(/^fastboot -s \S+ /, ''));

/** A small signed build (no super_empty: the devices' logical partitions are resized as flashed). */
const makeBuild = (name: string, extra: Record<string, Buffer> = {}) =>
  signedBuild(join(root, name), { seed: 31, superEmpty: false, extra });

async function settle(sim: { state: { reload(): Promise<{ mode: string }> } }): Promise<string> {
  let mode = '';
  for (let i = 0; i < 300; i++) {
    mode = (await sim.state.reload()).mode;
    if (mode !== 'off') break;
    await new Promise((r) => setTimeout(r, 20));
  }
  return mode;
}

let build: BuildInput;
beforeAll(async () => {
  build = await openBuild(await makeBuild('base'));
});
afterAll(async () => build?.close());

describe('flash flows on the sim', () => {
  it('--wipe on the reference tablet (no metadata partition): formats userdata, skips what it lacks, boots', async () => {
    const device = await loadDevice(resolve(ROOT, 'device/omie/tablet/device.yaml'));
    const stateDir = join(root, `tablet-${process.pid}`);
    rmSync(stateDir, { recursive: true, force: true });
    const sim = await startSim({ stateDir, profile: simProfileFromDevice(device, { serial: 'TABWIPE1' }) });
    try {
      await sim.state.update((d) => {
        d.mode = 'bootloader';
      });
      const r = await flashDevice(build, { fastboot: `tcp:127.0.0.1:${sim.fastbootPort}` }, { wipe: true });
      expect(cmdsOf(r).filter((c) => /^(erase|format) /.test(c))).toEqual([
        'erase userdata',
        'format userdata',
      ]);
      expect(r.wiped).toBe(true);
      // Not left in fastbootd: the device boots its new slot.
      expect(await settle(sim)).toBe('adb');
      expect(sim.state.info.boot).toMatchObject({ booted: true, slot: 'b', verifiedBootState: 'orange' });
    } finally {
      await sim.close();
    }
  }, 120_000);

  it('partitions without slots are named shared by both slots; system_other goes to the other slot', async () => {
    const other = mixedImage(256 * 1024, 41);
    const b = await openBuild(
      await makeBuild('secondary', { system_other: other, misc: mixedImage(8192, 42) }),
    );
    const sim = await makeSim('flows-secondary');
    try {
      const r = await flashDevice(b, { fastboot: sim.addr }, { noWaitAdb: true });
      const steps = r.steps.map((s) => ({
        cmd: s.command.replace(/^fastboot -s \S+ /, ''),
        why: s.why ?? '',
      }));
      expect(steps.find((s) => s.cmd === 'flash misc misc.img')?.why).toMatch(/shared by both slots/);
      expect(r.flashed.find((f) => f.partition === 'misc')).toMatchObject({ shared: true });
      expect(steps.find((s) => s.cmd === 'flash system_a system_other.img')?.why).toMatch(
        /secondary image: the other slot's system/,
      );
      expect(r.slot).toBe('b');
      const onDevice = await readFile(join(sim.dir, 'partitions', 'system_a.img'));
      expect(onDevice.subarray(0, other.length).equals(other)).toBe(true);
    } finally {
      await b.close();
      await settle(sim);
      await sim.close();
    }
  }, 120_000);

  it('--jobs 1 flashes one device after the other; a failing device does not hide the others', async () => {
    const sims: Sim[] = [
      await makeSim('flows-j1'),
      await makeSim('flows-j2', { profile: { product: 'someone_else' } }),
      await makeSim('flows-j3'),
    ];
    const seen: Array<{ sim: number; at: number }> = [];
    sims.forEach((x, i) => {
      x.server.onCommand(() => seen.push({ sim: i, at: seen.length }));
    });
    try {
      const out = await flashAll(
        build,
        sims.map((x) => ({ fastboot: x.addr })),
        { noWaitAdb: true, jobs: 1 },
      );
      expect(out.map((o) => o.error?.code)).toEqual([undefined, 'FLASH_WRONG_PRODUCT', undefined]);
      expect(out[0].report.slot).toBe('b');
      expect(out[2].report.slot).toBe('b');
      expect(out[1].report.product).toBe('someone_else');
      // One at a time: every command of a device comes before any of the next one's.
      const order = seen.map((s) => s.sim);
      expect(order).toEqual([...order].sort());
    } finally {
      for (const x of sims) {
        await settle(x);
        await x.close();
      }
    }
  }, 120_000);
});

describe.skipIf(!FASTBOOT.present)(`adb and fastboot together (real adb) ${FASTBOOT.reason}`, () => {
  let adb: RealAdb;
  const sims: SimHandle[] = [];
  beforeAll(async () => {
    adb = await startRealAdb(root);
    for (const serial of ['PAIR0001', 'PAIR0002']) {
      const stateDir = join(root, `${serial}-${process.pid}`);
      rmSync(stateDir, { recursive: true, force: true });
      sims.push(await startSim({ stateDir, profile: smallProfile({ serial, unlocked: true }) }));
    }
  }, 60_000);
  afterAll(async () => {
    await adb?.stop();
    for (const s of sims) await s.close();
  });

  it('pairs adb and fastboot by serial number, whatever the order they are given in', async () => {
    const fb = sims.map((s) => `tcp:127.0.0.1:${s.fastbootPort}`);
    const ad = sims.map((s) => `127.0.0.1:${s.adbPort}`);
    const r = await omie(
      [
        '--json',
        'flash',
        build.dir,
        '--fastboot',
        fb[0],
        '--fastboot',
        fb[1],
        '--adb',
        ad[1],
        '--adb',
        ad[0],
      ],
      { env: adb.env },
    );
    expect(r.exitCode, r.stderr).toBe(0);
    const devices = JSON.parse(r.stdout).devices;
    expect(
      devices.map((d: { target: string; serial: string; adb: string }) => [d.target, d.serial, d.adb]),
    ).toEqual([
      [fb[0], 'PAIR0001', ad[0]],
      [fb[1], 'PAIR0002', ad[1]],
    ]);
    expect(devices.every((d: { adbAfter: string }) => d.adbAfter === 'back')).toBe(true);
  }, 180_000);

  it('after --wipe a user build has adb off: --check says why at once instead of waiting', async () => {
    const sim = sims[0];
    const id = `127.0.0.1:${sim.adbPort}`;
    const t0 = Date.now();
    const r = await omie(
      [
        'flash',
        build.dir,
        '--fastboot',
        `tcp:127.0.0.1:${sim.fastbootPort}`,
        '--adb',
        id,
        '--wipe',
        '--check',
      ],
      { env: adb.env },
    );
    expect(r.exitCode).toBe(3);
    expect(r.stderr).toMatch(/cannot be checked: the flash wiped it \(--wipe\)/);
    expect(r.stderr).toMatch(/--owner-enables-adb/);
    expect(Date.now() - t0).toBeLessThan(55_000);
    // The device did boot; its adbd just is not there (USB debugging off).
    expect(await settle(sim)).toBe('adb');
    await adb.run(['disconnect', id]);
    await adb.run(['connect', id]);
    const st = await adb.run(['-s', id, 'get-state']);
    expect(st.stdout.trim()).not.toBe('device');
  }, 180_000);
});

describe.skipIf(!FASTBOOT.present)(`omie unlock ${FASTBOOT.reason}`, () => {
  it('asks (or needs --yes), wipes, unlocks; unlock_critical where the device profile says so', async () => {
    const sim = await makeSim('flows-unlock', { profile: { unlocked: false } });
    try {
      await writeFileIn(join(sim.dir, 'partitions'), 'userdata.img', Buffer.alloc(1024 * 1024, 9));
      const noTty = await omie(['unlock', sim.addr]);
      expect(noTty.exitCode).toBe(2);
      expect(noTty.stderr).toMatch(/wipes the device: confirm with --yes/);
      expect((await sim.state.reload()).unlocked).toBe(false);

      const dev = join(root, 'critical-device');
      rmSync(dev, { recursive: true, force: true });
      cpSync(resolve(ROOT, 'device/omie/tablet'), dev, { recursive: true });
      const yaml = join(dev, 'device.yaml');
      writeFileSync(
        yaml,
        readFileSync(yaml, 'utf8').replace(
          'unlock: ["flashing unlock"]',
          'unlock: ["flashing unlock", "flashing unlock_critical"]',
        ),
      );
      const r = await omie(['--json', 'unlock', sim.addr, '--device', yaml, '--yes']);
      expect(r.exitCode, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout).device.sent).toEqual(['flashing unlock', 'flashing unlock_critical']);
      const info = await sim.state.reload();
      expect(info.unlocked).toBe(true);
      expect(info.criticalUnlocked).toBe(true);
      expect((await realFastboot(sim, ['getvar', 'unlocked'])).stderr).toMatch(/unlocked: yes/);
      const ud = await readFile(join(sim.dir, 'partitions', 'userdata.img'));
      expect(ud.includes(Buffer.alloc(4096, 9))).toBe(false);
    } finally {
      await sim.close();
    }
  }, 120_000);

  it('refuses a device whose OEM unlocking is off, changing nothing', async () => {
    const sim = await makeSim('flows-unlock-off', { profile: { unlocked: false } });
    try {
      await sim.state.update((d) => {
        d.unlockAbility = false;
      });
      const r = await omie(['unlock', sim.addr, '--yes']);
      expect(r.exitCode).toBe(3);
      expect(r.stderr).toMatch(/get_unlock_ability is 0/);
      expect(r.stderr).toMatch(/OEM unlocking/);
      expect((await sim.state.reload()).unlocked).toBe(false);
    } finally {
      await sim.close();
    }
  }, 60_000);
});
