/**
 * The whole maintainer loop on the virtual device: the sample Omie is built, `omie flash --lock
 * --check` writes it to a sim whose bootloader trusts only its own OEM key (so the partner's key is
 * enrolled in avb_custom_key first), the real adb server carries the reboots, and the device —
 * back in Android, yellow, with the flashed vbmeta's digest — is checked against the spec over
 * adb. A sim that cannot enroll a custom key is never locked, and a build with one flipped byte is
 * refused before anything is written.
 */
import { copyFileSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build } from '../../scripts/build/pipeline.ts';
import { loadDevice } from '../../scripts/model/index.ts';
import {
  type SimHandle,
  type SimProfile,
  simProfileFromDevice,
  simPropsFromDevice,
  startSim,
} from '../../scripts/sim/index.ts';
import { partitionHashes } from '../fastboot/fixtures.ts';
import { flipByte, omie, sampleFixture, workDir } from '../helpers.ts';
import { AVBTOOL } from '../oracles.ts';
import { type RealAdb, startRealAdb } from '../sim/real-adb.ts';

const dir = workDir('flash-check');
let adb: RealAdb;
let fx: Awaited<ReturnType<typeof sampleFixture>>;
let profile: (serial: string, avb?: SimProfile['avb']) => SimProfile;
let device: Awaited<ReturnType<typeof loadDevice>>;
const out = join(dir, 'out');
const sims: SimHandle[] = [];

async function tabletSim(name: string, serial: string, avb?: SimProfile['avb']): Promise<SimHandle> {
  const stateDir = join(dir, `${name}-${process.pid}`);
  rmSync(stateDir, { recursive: true, force: true });
  const sim = await startSim({
    stateDir,
    profile: profile(serial, avb),
    props: simPropsFromDevice(device),
    overrides: { unlocked: true, ownerEnablesAdb: true },
  });
  sims.push(sim);
  return sim;
}

/** `partitionHashes` over a SimHandle's state folder. */
const hashes = (sim: SimHandle) =>
  partitionHashes({ dir: sim.stateDir } as Parameters<typeof partitionHashes>[0]);

beforeAll(async () => {
  fx = await sampleFixture();
  await build({ product: fx.product, base: join(fx.base, 'factory.zip'), out });
  adb = await startRealAdb(join(dir, 'adb'));
  device = await loadDevice(join(fx.tree, 'device/omie/tablet/device.yaml'));
  profile = (serial, avb) => simProfileFromDevice(device, { serial, avb });
}, 1_200_000);

afterAll(async () => {
  await adb?.stop();
  for (const s of sims) await s.close();
});

describe('omie flash --lock --check on the virtual device', () => {
  it('enrolls the partner key, locks, boots yellow with the flashed vbmeta digest, and the device conforms', async () => {
    const sim = await tabletSim('sim', 'OMIEFLASH01');
    const serial = `127.0.0.1:${sim.adbPort}`;
    await adb.run(['connect', serial]);
    await adb.waitState(serial, 'device');
    const reports = join(dir, 'reports');
    const r = await omie(
      [
        'flash',
        out,
        '--fastboot',
        `tcp:127.0.0.1:${sim.fastbootPort}`,
        '--adb',
        serial,
        '--lock',
        '--owner-enables-adb',
        '--check',
        '--product',
        fx.product,
        '--report-dir',
        reports,
        '--json',
      ],
      { env: { ...adb.env, OMIE_HOME: fx.home } },
    );
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout);
    expect(doc.ok).toBe(true);
    expect(doc.devices[0]).toMatchObject({
      serial: 'OMIEFLASH01',
      locked: true,
      wiped: true,
      adbAfter: 'back',
      avb: { customKey: 'enrolled' },
    });
    await sim.state.reload();
    expect(sim.state.info.unlocked).toBe(false);
    expect(sim.state.info.boot).toMatchObject({ booted: true, verifiedBootState: 'yellow' });
    // What the running device says, through the real adb client.
    const props = await adb.run([
      '-s',
      serial,
      'shell',
      'getprop ro.boot.verifiedbootstate; getprop ro.boot.vbmeta.digest',
    ]);
    const [state, digest] = props.stdout.split('\n').map((x) => x.trim());
    expect(state).toBe('yellow');
    expect(digest).toBe(doc.devices[0].avb.vbmetaDigest);
    if (AVBTOOL.present) {
      const ref = await execa('python3', [
        AVBTOOL.path,
        'calculate_vbmeta_digest',
        '--image',
        join(out, 'vbmeta.img'),
      ]);
      expect(digest).toBe(String(ref.stdout).trim());
    }
  }, 600_000);

  it('a device that cannot enroll a custom key is refused before any write, and is never locked', async () => {
    const sim = await tabletSim('nocustom', 'OMIEFLASH02', { customKey: false });
    await sim.state.update((d) => {
      d.mode = 'bootloader';
    });
    const before = await hashes(sim);
    const r = await omie(['flash', out, '--fastboot', `tcp:127.0.0.1:${sim.fastbootPort}`, '--lock']);
    expect(r.exitCode).toBe(3);
    expect(r.stderr).toMatch(/cannot lock: vbmeta is signed by a key the device's bootloader does not trust/);
    expect(r.stderr).toMatch(/no avb_custom_key partition/);
    expect(await hashes(sim)).toEqual(before);
    expect((await sim.state.reload()).unlocked).toBe(true);
  }, 120_000);

  it('a build with one flipped byte in system.img is refused (exit 1), nothing written', async () => {
    const tampered = join(dir, 'tampered');
    rmSync(tampered, { recursive: true, force: true });
    mkdirSync(tampered, { recursive: true });
    for (const f of readdirSync(out))
      if (f.endsWith('.img') && f !== 'super.img') copyFileSync(join(out, f), join(tampered, f));
    copyFileSync(join(out, 'android-info.txt'), join(tampered, 'android-info.txt'));
    await flipByte(join(tampered, 'system.img'), 1024 * 1024 + 17);
    const sim = await tabletSim('tampered', 'OMIEFLASH03');
    await sim.state.update((d) => {
      d.mode = 'bootloader';
    });
    const before = await hashes(sim);
    const r = await omie(['flash', tampered, '--fastboot', `tcp:127.0.0.1:${sim.fastbootPort}`]);
    expect(r.exitCode, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/does not verify against its own vbmeta\.img/);
    expect(r.stderr).toMatch(/system/);
    expect(await hashes(sim)).toEqual(before);
  }, 120_000);
});
