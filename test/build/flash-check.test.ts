/**
 * The whole maintainer loop on the virtual device: the sample Omie is built, `omie flash --lock
 * --check` writes it to `omie sim` over fastboot (the real adb server carries the reboots), and
 * the device, back in Android, is checked against the spec over adb.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build } from '../../scripts/build/pipeline.ts';
import { loadDevice } from '../../scripts/model/index.ts';
import {
  type SimHandle,
  simProfileFromDevice,
  simPropsFromDevice,
  startSim,
} from '../../scripts/sim/index.ts';
import { omie, sampleFixture, workDir } from '../helpers.ts';
import { type RealAdb, startRealAdb } from '../sim/real-adb.ts';

const dir = workDir('flash-check');
let adb: RealAdb;
let sim: SimHandle;
let fx: Awaited<ReturnType<typeof sampleFixture>>;
const out = join(dir, 'out');

beforeAll(async () => {
  fx = await sampleFixture();
  await build({ product: fx.product, base: join(fx.base, 'factory.zip'), out });
  adb = await startRealAdb(join(dir, 'adb'));
  const stateDir = join(dir, `sim-${process.pid}`);
  rmSync(stateDir, { recursive: true, force: true });
  const device = await loadDevice(join(fx.tree, 'device/omie/tablet/device.yaml'));
  sim = await startSim({
    stateDir,
    profile: simProfileFromDevice(device, { serial: 'OMIEFLASH01' }),
    props: simPropsFromDevice(device),
    overrides: { unlocked: true },
  });
  const serial = `127.0.0.1:${sim.adbPort}`;
  await adb.run(['connect', serial]);
  await adb.waitState(serial, 'device');
}, 1_200_000);

afterAll(async () => {
  await adb?.stop();
  await sim?.close();
});

describe('omie flash --lock --check on the virtual device', () => {
  it('flashes the sample Omie, locks, and the device conforms', async () => {
    const serial = `127.0.0.1:${sim.adbPort}`;
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
    expect(JSON.parse(r.stdout).ok).toBe(true);
    expect(sim.state.info.unlocked).toBe(false);
  }, 600_000);
});
