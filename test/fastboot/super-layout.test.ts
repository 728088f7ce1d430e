/**
 * fastbootd on the sim enforces the super layout as a device's liblp does, with Debian's real
 * fastboot client sending the commands: group maximum sizes, the metadata area and extent alignment,
 * and the metadata's own maximum size. What does not fit is refused and nothing changes.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { FASTBOOT, makeSim, realFastboot, type Sim } from './fixtures.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

let sim: Sim | undefined;
afterEach(async () => {
  await sim?.close();
  sim = undefined;
});

const groups = {
  groups: { main_a: 4 * MiB, main_b: 4 * MiB },
  partitionGroups: { system_a: 'main_a', system_b: 'main_b', vendor_a: 'main_a', vendor_b: 'main_b' },
};

const withFastboot = describe.skipIf(!FASTBOOT.present);

withFastboot(`fastbootd enforces the super layout (real fastboot) ${FASTBOOT.reason}`, () => {
  it('a partition may not push its group past the group maximum size', async () => {
    sim = await makeSim('layout-group', {
      mode: 'fastbootd',
      profile: { superSize: 64 * MiB, superLayout: { ...groups, metadataMaxSize: 65536, alignment: MiB } },
    });
    expect(
      (await realFastboot(sim, ['resize-logical-partition', 'system_a', String(3 * MiB)])).exitCode,
    ).toBe(0);
    const over = await realFastboot(sim, ['resize-logical-partition', 'vendor_a', String(2 * MiB)]);
    expect(over.exitCode).not.toBe(0);
    expect(over.stderr).toMatch(
      /Not enough space to resize partition: group main_a exceeds its maximum size/,
    );
    expect((await sim.state.reload()).partitions.vendor_a.size).toBe(0);
    // The other slot's group has its own budget.
    expect(
      (await realFastboot(sim, ['resize-logical-partition', 'vendor_b', String(2 * MiB)])).exitCode,
    ).toBe(0);
  });

  it('extents start on the alignment after the metadata area: fifteen 4 KiB partitions fill a 16 MiB super', async () => {
    sim = await makeSim('layout-align', {
      mode: 'fastbootd',
      profile: { superSize: 16 * MiB, superLayout: { metadataMaxSize: 65536, alignment: MiB } },
    });
    let created = 0;
    let last = '';
    for (let i = 0; i < 20; i++) {
      const r = await realFastboot(sim, ['create-logical-partition', `scratch${i}`, String(4 * KiB)]);
      if (r.exitCode !== 0) {
        last = r.stderr;
        break;
      }
      created++;
    }
    // The metadata (geometry and 2 slots × 64 KiB, twice) ends below 1 MiB: partitions start at
    // 1, 2, … 15 MiB; a sixteenth has no aligned start left, though 60 KiB of 16 MiB are used.
    expect(created).toBe(15);
    expect(last).toMatch(/Not enough space for partition: not enough space in super for partition scratch15/);
    expect((await sim.state.reload()).partitions.scratch15).toBeUndefined();
  });

  it('the partition table must fit the metadata maximum size', async () => {
    sim = await makeSim('layout-metadata', {
      mode: 'fastbootd',
      profile: { superSize: 64 * MiB, superLayout: { metadataMaxSize: 1024, alignment: 4 * KiB } },
    });
    let created = 0;
    let last = '';
    for (let i = 0; i < 40; i++) {
      const r = await realFastboot(sim, ['create-logical-partition', `p${i}`, String(4 * KiB)]);
      if (r.exitCode !== 0) {
        last = r.stderr;
        break;
      }
      created++;
    }
    expect(created).toBeGreaterThan(0);
    expect(created).toBeLessThan(40);
    expect(last).toMatch(/metadata \(\d+ bytes\) does not fit metadataMaxSize 1024/);
  });
});
