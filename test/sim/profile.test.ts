/** A sim made from the reference device profile (device/omie/tablet/device.yaml). */
import { rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadDevice } from '../../scripts/model/index.ts';
import { runShell } from '../../scripts/sim/adb-shell.ts';
import { simProfileFromDevice, simPropsFromDevice, startSim } from '../../scripts/sim/index.ts';
import { DeviceView } from '../../scripts/sim/view.ts';
import { ROOT, workDir } from '../helpers.ts';

describe('sim profile from device.yaml', () => {
  it('maps partitions (physical/slotted, super/logical), product, super size and identity props', async () => {
    const device = await loadDevice(resolve(ROOT, 'device/omie/tablet/device.yaml'));
    const profile = simProfileFromDevice(device, { serial: 'YAML0001' });
    expect(profile.product).toBe(device.fastboot.products[0]);
    expect(profile.ab).toBe(device.ab);
    const byName = Object.fromEntries(profile.partitions.map((p) => [p.name, p]));
    expect(byName.system).toMatchObject({ logical: true, slotted: true });
    expect(byName.boot).toMatchObject({ logical: false, slotted: true });
    expect(byName.userdata).toMatchObject({ logical: false, slotted: false });
    expect(profile.superSize).toBe(3 * 1024 ** 3);

    const stateDir = join(workDir('sim'), `yaml-${process.pid}`);
    rmSync(stateDir, { recursive: true, force: true });
    const sim = await startSim({ stateDir, profile, props: simPropsFromDevice(device) });
    try {
      expect(sim.state.info.partitions.system_a).toMatchObject({ logical: true });
      const view = new DeviceView(sim.state);
      const ctx = { view, reboot: async () => {} };
      const model = await runShell(
        'getprop ro.product.model; getprop ro.serialno; getprop ro.boot.slot_suffix',
        ctx,
      );
      expect(model.stdout.toString()).toBe(`${device.name}\nYAML0001\n_a\n`);
    } finally {
      await sim.close();
    }
  });
});
