/**
 * Verified boot on the virtual device, driven with Debian's real fastboot and adb: the sim's own OEM
 * key (green), a custom key enrolled in avb_custom_key (yellow), unlocked (orange), a locked slot
 * that does not verify (red: marked unbootable, the other slot boots), what the bootloader refuses,
 * ro.boot.veritymode from the booted vbmeta's flags, and the vbmeta digest compared with
 * `avbtool calculate_vbmeta_digest`.
 */
import { rmSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { flashDevice, openBuild } from '../../scripts/device/flash.ts';
import { readAvbPublicKey } from '../../scripts/formats/avb/index.ts';
import { type SimHandle, startSim } from '../../scripts/sim/index.ts';
import { FASTBOOT, signedBuild, smallProfile, writeFileIn } from '../fastboot/fixtures.ts';
import { flipByte, workDir } from '../helpers.ts';
import { AVBTOOL } from '../oracles.ts';
import { type RealAdb, startRealAdb } from './real-adb.ts';

const dir = workDir('sim-avb');
const withFastboot = describe.skipIf(!FASTBOOT.present);
let adb: RealAdb;

async function avbtoolDigest(image: string): Promise<string> {
  const r = await execa('python3', [AVBTOOL.path, 'calculate_vbmeta_digest', '--image', image]);
  return String(r.stdout).trim();
}

async function startTestSim(name: string, o: Parameters<typeof smallProfile>[0] = {}): Promise<SimHandle> {
  const stateDir = join(dir, `${name}-${process.pid}`);
  rmSync(stateDir, { recursive: true, force: true });
  return startSim({ stateDir, profile: smallProfile({ unlocked: true, ownerEnablesAdb: true, ...o }) });
}

function fastboot(sim: SimHandle, args: string[]) {
  return execa('fastboot', ['-s', `tcp:127.0.0.1:${sim.fastbootPort}`, ...args], {
    reject: false,
    timeout: 60_000,
    env: { ANDROID_PRODUCT_OUT: '' },
  });
}

/** Waits until the sim is in `mode` (a reboot, then verified boot, take a moment). */
async function until(sim: SimHandle, mode: string): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if ((await sim.state.reload()).mode === mode) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`sim never reached ${mode} (is ${sim.state.info.mode})`);
}

/** The boot properties the real adb client reads from the running device. */
async function bootProps(sim: SimHandle): Promise<Record<string, string>> {
  const id = `127.0.0.1:${sim.adbPort}`;
  await adb.reconnect(id, 'device');
  const keys = [
    'ro.boot.verifiedbootstate',
    'ro.boot.veritymode',
    'ro.boot.vbmeta.digest',
    'ro.boot.slot_suffix',
    'sys.boot_completed',
    'ro.boot.flash.locked',
  ];
  const r = await adb.run(['-s', id, 'shell', keys.map((k) => `getprop ${k}`).join('; ')]);
  const values = r.stdout.split('\n').map((s) => s.trim());
  return Object.fromEntries(keys.map((k, i) => [k, values[i]]));
}

async function rebootToBootloader(sim: SimHandle): Promise<void> {
  const id = `127.0.0.1:${sim.adbPort}`;
  await adb.reconnect(id, 'device');
  expect((await adb.run(['-s', id, 'reboot', 'bootloader'])).exitCode).toBe(0);
  await until(sim, 'bootloader');
}

async function fastbootReboot(sim: SimHandle, mode = 'adb'): Promise<void> {
  const r = await fastboot(sim, ['reboot']);
  expect(r.exitCode, r.stderr).toBe(0);
  await until(sim, mode);
}

beforeAll(async () => {
  adb = await startRealAdb(dir);
}, 60_000);
afterAll(async () => adb?.stop());

withFastboot(`verified boot on the sim (real fastboot and adb) ${FASTBOOT.reason}`, () => {
  let sim: SimHandle;
  let build: string;
  let pkmd: string;
  beforeAll(async () => {
    build = await signedBuild(join(dir, 'partner'));
    pkmd = join(dir, 'avb_pkmd.bin');
    await mkdir(dir, { recursive: true });
    await writeFile(pkmd, readAvbPublicKey(join(workDir('fastboot'), 'partner-key', 'partner.pem')));
    sim = await startTestSim('flow');
  }, 60_000);
  afterAll(async () => sim?.close());

  it('a new device boots its factory OS: orange unlocked, green once locked; the digest is avbtool calculate_vbmeta_digest', async () => {
    const props = await bootProps(sim);
    expect(props['ro.boot.verifiedbootstate']).toBe('orange');
    expect(props['ro.boot.slot_suffix']).toBe('_a');
    expect(props['sys.boot_completed']).toBe('1');
    if (AVBTOOL.present)
      expect(props['ro.boot.vbmeta.digest']).toBe(
        await avbtoolDigest(join(sim.stateDir, 'partitions', 'vbmeta_a.img')),
      );
    await rebootToBootloader(sim);
    // The bootloader refuses a custom key while locked; locking itself always succeeds.
    const lock = await fastboot(sim, ['flashing', 'lock']);
    expect(lock.exitCode, lock.stderr).toBe(0);
    const refused = await fastboot(sim, ['flash', 'avb_custom_key', pkmd]);
    expect(refused.exitCode).not.toBe(0);
    expect(refused.stderr).toMatch(/not allowed/i);
    await fastbootReboot(sim);
    const locked = await bootProps(sim);
    expect(locked['ro.boot.verifiedbootstate']).toBe('green');
    expect(locked['ro.boot.veritymode']).toBe('enforcing');
    expect(locked['ro.boot.flash.locked']).toBe('1');
    expect(locked['ro.boot.vbmeta.digest']).toBe(props['ro.boot.vbmeta.digest']);
  }, 120_000);

  it('unlocked: avb_custom_key takes an AVB public key (erase, flash), nothing else; the partner build boots orange', async () => {
    await rebootToBootloader(sim);
    expect((await fastboot(sim, ['flashing', 'unlock'])).exitCode).toBe(0);
    expect((await fastboot(sim, ['erase', 'avb_custom_key'])).exitCode).toBe(0);
    const junk = await writeFileIn(dir, 'junk.bin', Buffer.from('not a key at all'));
    const bad = await fastboot(sim, ['flash', 'avb_custom_key', junk]);
    expect(bad.exitCode).not.toBe(0);
    expect(bad.stderr).toMatch(/Invalid custom key/);
    const good = await fastboot(sim, ['flash', 'avb_custom_key', pkmd]);
    expect(good.exitCode, good.stderr).toBe(0);
    const b = await openBuild(build);
    try {
      const r = await flashDevice(b, { fastboot: `tcp:127.0.0.1:${sim.fastbootPort}` }, { noWaitAdb: true });
      expect(r.slot).toBe('b');
    } finally {
      await b.close();
    }
    await until(sim, 'adb');
    const props = await bootProps(sim);
    expect(props['ro.boot.verifiedbootstate']).toBe('orange');
    expect(props['ro.boot.slot_suffix']).toBe('_b');
    if (AVBTOOL.present)
      expect(props['ro.boot.vbmeta.digest']).toBe(await avbtoolDigest(join(build, 'vbmeta.img')));
  }, 120_000);

  it('locked with the partner key enrolled: yellow, with the flashed vbmeta digest', async () => {
    await rebootToBootloader(sim);
    expect((await fastboot(sim, ['flashing', 'lock'])).exitCode).toBe(0);
    await fastbootReboot(sim);
    const props = await bootProps(sim);
    expect(props['ro.boot.verifiedbootstate']).toBe('yellow');
    expect(props['ro.boot.slot_suffix']).toBe('_b');
    if (AVBTOOL.present)
      expect(props['ro.boot.vbmeta.digest']).toBe(await avbtoolDigest(join(build, 'vbmeta.img')));
  }, 120_000);

  it('a locked slot whose partition no longer verifies is red: unbootable, no retries, the other slot boots', async () => {
    // Storage corruption in slot b's system (a byte of its data, under the hashtree).
    await flipByte(join(sim.stateDir, 'partitions', 'system_b.img'), 8192);
    expect((await adb.run(['-s', `127.0.0.1:${sim.adbPort}`, 'reboot'])).exitCode).toBe(0);
    await new Promise((r) => setTimeout(r, 300));
    await until(sim, 'adb');
    const props = await bootProps(sim);
    expect(props['ro.boot.slot_suffix']).toBe('_a');
    expect(props['ro.boot.verifiedbootstate']).toBe('green');
    expect(sim.state.info.boot?.failures).toEqual([
      expect.objectContaining({ slot: 'b', result: 'ERROR_VERIFICATION' }),
    ]);
    await rebootToBootloader(sim);
    const v = async (name: string) => (await fastboot(sim, ['getvar', name])).stderr;
    expect(await v('current-slot')).toMatch(/current-slot: a/);
    expect(await v('slot-unbootable:b')).toMatch(/slot-unbootable:b: yes/);
    expect(await v('slot-retry-count:b')).toMatch(/slot-retry-count:b: 0/);
    expect(await v('slot-successful:a')).toMatch(/slot-successful:a: yes/);
  }, 120_000);

  it('with no slot that verifies, the locked device stays in the bootloader', async () => {
    await flipByte(join(sim.stateDir, 'partitions', 'vbmeta_a.img'), 300);
    await fastbootReboot(sim, 'bootloader');
    expect(sim.state.info.boot).toMatchObject({ booted: false });
    expect(sim.state.info.boot?.failures.map((f) => f.slot)).toEqual(['a']);
    const r = await fastboot(sim, ['getvar', 'slot-unbootable:a']);
    expect(r.stderr).toMatch(/slot-unbootable:a: yes/);
  }, 120_000);
});

withFastboot(`ro.boot.veritymode from the vbmeta that booted ${FASTBOOT.reason}`, () => {
  it('flashed with --disable-verity, the unlocked device boots orange with dm-verity disabled', async () => {
    const sim = await startTestSim('verity');
    const build = await signedBuild(join(dir, 'verity-build'), { seed: 41 });
    try {
      expect((await bootProps(sim))['ro.boot.veritymode']).toBe('enforcing');
      await rebootToBootloader(sim);
      const b = await openBuild(build);
      try {
        await flashDevice(
          b,
          { fastboot: `tcp:127.0.0.1:${sim.fastbootPort}` },
          { noWaitAdb: true, disableVerity: true },
        );
      } finally {
        await b.close();
      }
      await until(sim, 'adb');
      const props = await bootProps(sim);
      expect(props['ro.boot.slot_suffix']).toBe('_b');
      expect(props['ro.boot.verifiedbootstate']).toBe('orange');
      expect(props['ro.boot.veritymode']).toBe('disabled');
    } finally {
      await sim.close();
    }
  }, 120_000);
});

withFastboot(`a bootloader without avb_custom_key ${FASTBOOT.reason}`, () => {
  it('has no such partition to erase or flash', async () => {
    const sim = await startTestSim('nocustom', { avb: { customKey: false } });
    try {
      await rebootToBootloader(sim);
      // Real fastboot prints the FAIL (and exits 0 for getvar).
      expect((await fastboot(sim, ['getvar', 'partition-type:avb_custom_key'])).stderr).toMatch(
        /FAILED \(remote: 'Could not find partition'\)/,
      );
      expect((await fastboot(sim, ['erase', 'avb_custom_key'])).exitCode).not.toBe(0);
    } finally {
      await sim.close();
    }
  }, 60_000);
});
