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
    // The layout fastbootd enforces: the device's group per slot, as the build's super_empty names it.
    expect(profile.superLayout).toEqual({
      metadataMaxSize: 65536,
      metadataSlots: 3,
      alignment: 1024 * 1024,
      groups: { omie_dynamic_partitions_a: 1500 * 1024 ** 2, omie_dynamic_partitions_b: 1500 * 1024 ** 2 },
      partitionGroups: {
        system_a: 'omie_dynamic_partitions_a',
        system_b: 'omie_dynamic_partitions_b',
        product_a: 'omie_dynamic_partitions_a',
        product_b: 'omie_dynamic_partitions_b',
        vendor_a: 'omie_dynamic_partitions_a',
        vendor_b: 'omie_dynamic_partitions_b',
      },
    });

    const stateDir = join(workDir('sim'), `yaml-${process.pid}`);
    rmSync(stateDir, { recursive: true, force: true });
    const sim = await startSim({ stateDir, profile, props: simPropsFromDevice(device) });
    try {
      // As the factory's super_empty.img leaves it: the partitions exist, empty.
      expect(sim.state.info.partitions.system_a).toMatchObject({ logical: true, size: 0 });
      expect(sim.state.info.partitions.avb_custom_key).toMatchObject({ logical: false, slotted: false });
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
