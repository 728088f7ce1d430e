import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BuildInput, classifyImages, flashDevice, openBuild } from '../../scripts/device/flash.ts';
import { OmieError } from '../../scripts/errors.ts';
import { workDir } from '../helpers.ts';
import { AVBTOOL } from '../oracles.ts';
import {
  makeSim,
  mixedImage,
  partitionHashes,
  partnerKey,
  type Sim,
  signImages,
  smallProfile,
  smallSuperEmpty,
  writeFileIn,
} from './fixtures.ts';

const root = join(workDir('fastboot'), 'flash-plan');
const KiB = 1024;
const MiB = 1024 * KiB;

/**
 * A build folder: android-info.txt plus the named images (small), optional super_empty.img. With
 * "vbmeta" among them, boot (hash), system and vendor (hashtree) are signed as `omie build` does
 * and vbmeta.img covers them, unless `sign` is false (the test makes its own).
 */
async function makeBuild(
  name: string,
  info: string,
  images: string[],
  superEmpty = true,
  sign = true,
): Promise<string> {
  const dir = join(root, name);
  await writeFileIn(dir, 'android-info.txt', Buffer.from(info));
  let seed = 1;
  for (const img of images) {
    if (img === 'vbmeta') continue;
    const size = img === 'system' ? 512 * KiB : img === 'vendor' ? 256 * KiB : 16 * KiB;
    await writeFileIn(dir, `${img}.img`, mixedImage(size, seed++));
  }
  if (images.includes('vbmeta') && sign)
    await signImages(
      dir,
      images
        .filter((n) => ['boot', 'system', 'vendor'].includes(n))
        .map((n) => ({ name: n, kind: n === 'boot' ? ('hash' as const) : ('hashtree' as const) })),
    );
  if (superEmpty) await smallSuperEmpty(dir);
  return dir;
}

/** `avbtool make_vbmeta_image` in `dir`, signed with the partner key, over `images` of `dir`. */
async function avbtoolVbmeta(dir: string, images: string[] = []) {
  await execa('python3', [
    AVBTOOL.path,
    'make_vbmeta_image',
    '--output',
    join(dir, 'vbmeta.img'),
    '--algorithm',
    'SHA256_RSA2048',
    '--key',
    await partnerKey(),
    ...images.flatMap((i) => ['--include_descriptors_from_image', join(dir, i)]),
  ]);
}

const GOOD_INFO = 'require board=omie_tablet\nrequire version-bootloader=omie-bl-1.0\n';

/** Closes a sim after the reboot a flash ended with has landed (its timer writes device.json). */
async function closeSettled(sim: Sim): Promise<void> {
  for (let i = 0; i < 200 && (await sim.state.reload()).mode === 'off'; i++)
    await new Promise((r) => setTimeout(r, 10));
  await sim.close();
}

const stepsOf = (r: { steps: Array<{ command: string }> }) =>
  r.steps.map((s) => s.command.replace(/^fastboot -s \S+ /, ''));

describe('classifying a Pixel-style fastboot zip', () => {
  it('firmware, boot-critical in fastboot update order, OS images, and what update never flashes', () => {
    const names = [
      'vendor_kernel_boot',
      'vbmeta_vendor',
      'system_ext',
      'boot',
      'radio',
      'vendor_boot',
      'pvmfw',
      'system',
      'init_boot',
      'product',
      'bootloader',
      'vbmeta_system',
      'dtbo',
      'vendor_dlkm',
      'vbmeta',
      'userdata',
      'vendor',
    ];
    const c = classifyImages(new Map(names.map((n) => [n, `${n}.img`])));
    expect(c.firmware).toEqual(['bootloader', 'radio']);
    expect(c.bootCritical).toEqual([
      'boot',
      'init_boot',
      'dtbo',
      'pvmfw',
      'vbmeta',
      'vbmeta_system',
      'vbmeta_vendor',
      'vendor_boot',
      'vendor_kernel_boot',
    ]);
    expect(c.os).toEqual(['product', 'system', 'system_ext', 'vendor', 'vendor_dlkm']);
    expect(c.skipped).toEqual(['userdata']);
  });
});

describe('flash plan against real-device behaviours (sim)', () => {
  let good: BuildInput;
  beforeAll(async () => {
    good = await openBuild(await makeBuild('good', GOOD_INFO, ['boot', 'vbmeta', 'system', 'vendor']));
  });
  afterAll(async () => good?.close());

  it('ABL-style bootloader ("_a", decimal max-download-size, bare-hex sizes): flashes the other slot', async () => {
    const sim = await makeSim('plan-abl');
    try {
      await sim.state.update((d) => {
        d.bootloaderStyle = {
          slot: 'underscore',
          downloadSize: 'decimal',
          partitionSize: 'bare-hex',
          getvarAll: 'colon-space',
        };
      });
      const before = await partitionHashes(sim, /_a\.img$/);
      const r = await flashDevice(good, { fastboot: sim.addr }, { noWaitAdb: true });
      expect(r.previousSlot).toBe('a');
      expect(r.slot).toBe('b');
      expect(r.flashed.map((f) => f.partition).sort()).toEqual([
        'boot_b',
        'system_b',
        'vbmeta_b',
        'vendor_b',
      ]);
      expect((await sim.state.reload()).currentSlot).toBe('b');
      // fastbootd's update-super ran with b current: the old slot's logical partitions stayed.
      expect(await partitionHashes(sim, /_a\.img$/)).toEqual(before);
    } finally {
      await closeSettled(sim);
    }
  });

  it('update-super with the old slot current would drop it (why set_active comes before fastbootd)', async () => {
    const sim = await makeSim('plan-update-super', { mode: 'fastbootd' });
    try {
      const { FastbootClient } = await import('../../scripts/device/fastboot/client.ts');
      const c = await FastbootClient.connectTcp(sim.addr);
      try {
        await c.resizeLogicalPartition('system_a', 4096);
        await c.resizeLogicalPartition('system_b', 8192);
        await c.updateSuper(good.superEmpty as string);
        expect(await c.partitionSize('system_a')).toBe(0); // current slot: dropped, as fastbootd does
        expect(await c.partitionSize('system_b')).toBe(8192); // other slot: imported
      } finally {
        await c.close();
      }
    } finally {
      await closeSettled(sim);
    }
  });

  it('a merging virtual A/B update is cancelled before anything is flashed', async () => {
    const sim = await makeSim('plan-snapshot');
    try {
      await sim.state.update((d) => {
        d.snapshotUpdateStatus = 'merging';
      });
      const r = await flashDevice(good, { fastboot: sim.addr }, { noWaitAdb: true });
      const cmds = stepsOf(r);
      const cancel = cmds.indexOf('snapshot-update cancel');
      expect(cancel).toBeGreaterThan(-1);
      expect(cancel).toBeLessThan(cmds.findIndex((c) => c.startsWith('flash ')));
      expect((await sim.state.reload()).snapshotUpdateStatus).toBe('cancelled');
    } finally {
      await closeSettled(sim);
    }
  });

  it('a device that never booted its current slot: "inactive" completes that slot, the good one stays', async () => {
    const sim = await makeSim('plan-resume');
    try {
      // As after a flash interrupted in fastbootd: b active but never booted, a booted fine.
      await sim.state.update((d) => {
        d.currentSlot = 'b';
        d.slotSuccessful = { a: true, b: false };
      });
      const before = await partitionHashes(sim, /_a\.img$/);
      const r = await flashDevice(good, { fastboot: sim.addr }, { noWaitAdb: true });
      expect(r.slot).toBe('b');
      expect(await partitionHashes(sim, /_a\.img$/)).toEqual(before);
    } finally {
      await closeSettled(sim);
    }
  });

  const refusals: Array<[string, string, RegExp]> = [
    [
      'alias',
      'require board=omie_tablet\nrequire bootloader=other-bl\n',
      /version-bootloader is "omie-bl-1.0"/,
    ],
    [
      'unknown-var',
      'require board=omie_tablet\nreject hw-revision=EVT\n',
      /does not answer getvar hw-revision/,
    ],
    [
      'for-product',
      'require board=omie_tablet\nrequire-for-product:omie_tablet version-bootloader=x*\n',
      /requires x\*/,
    ],
    ['partition-missing', 'require board=omie_tablet\nrequire partition-exists=pvmfw\n', /pvmfw/],
    ['partition-no-image', 'require board=omie_tablet\nrequire partition-exists=misc\n', /lacks/],
    ['prefix-reject', 'require board=omie_*\nreject version-bootloader=omie-bl-*\n', /rejects omie-bl-\*/],
  ];
  for (const [name, info, msg] of refusals)
    it(`refuses android-info.txt "${name}" before any write, as fastboot's CheckRequirements`, async () => {
      const sim = await makeSim(`plan-req-${name}`);
      const b = await openBuild(await makeBuild(`req-${name}`, info, ['boot', 'vbmeta'], false));
      try {
        const before = await partitionHashes(sim);
        const e = await flashDevice(b, { fastboot: sim.addr }, { noWaitAdb: true }).catch((x) => x);
        expect(e).toBeInstanceOf(OmieError);
        expect((e as OmieError).code).toBe('FLASH_REQUIREMENT');
        expect((e as Error).message).toMatch(msg);
        expect(await partitionHashes(sim)).toEqual(before);
      } finally {
        await b.close();
        await closeSettled(sim);
      }
    });

  it('accepts a prefix match and an existing required partition', async () => {
    const sim = await makeSim('plan-req-ok');
    const b = await openBuild(
      await makeBuild(
        'req-ok',
        'require board=omie_*\nrequire version-bootloader=omie-bl-*\nrequire partition-exists=boot\n',
        ['boot', 'vbmeta'],
        false,
      ),
    );
    try {
      const r = await flashDevice(b, { fastboot: sim.addr }, { noWaitAdb: true });
      expect(r.flashed.map((f) => f.partition)).toEqual(['boot_b', 'vbmeta_b']);
    } finally {
      await b.close();
      await closeSettled(sim);
    }
  });

  it('bootloader firmware first, then the new bootloader runs before version-bootloader is checked', async () => {
    const sim = await makeSim('plan-firmware', {
      profile: smallProfile({
        partitions: [
          ...smallProfile().partitions,
          { name: 'bootloader', size: 256 * KiB, logical: false, slotted: true },
        ],
      }),
    });
    const b = await openBuild(
      await makeBuild('firmware', GOOD_INFO, ['bootloader', 'boot', 'vbmeta', 'system', 'vendor']),
    );
    try {
      const r = await flashDevice(b, { fastboot: sim.addr }, { noWaitAdb: true });
      const cmds = stepsOf(r);
      const at = (c: string) => cmds.indexOf(c);
      expect(at('getvar product')).toBeLessThan(at('flash bootloader_b bootloader.img'));
      expect(at('flash bootloader_b bootloader.img')).toBeLessThan(at('set_active b'));
      expect(at('set_active b')).toBeLessThan(at('reboot bootloader'));
      expect(at('reboot bootloader')).toBeLessThan(at('getvar version-bootloader'));
      expect(at('getvar version-bootloader')).toBeLessThan(at('flash boot_b boot.img'));
      expect(cmds.filter((c) => c.startsWith('set_active')).length).toBe(1);
    } finally {
      await b.close();
      await closeSettled(sim);
    }
  });

  it.skipIf(!AVBTOOL.present)(
    `a boot image with an AVB footer smaller than its partition gets the footer at the partition end (avbtool reads it) ${AVBTOOL.reason}`,
    async () => {
      const sim = await makeSim('plan-avb-footer');
      const dir = await makeBuild('avb-footer', GOOD_INFO, ['boot', 'vbmeta'], false, false);
      try {
        // A hash footer on a minimal image, as `avbtool add_hash_footer --dynamic_partition_size`,
        // and a vbmeta over it signed with the partner key.
        await execa('python3', [
          AVBTOOL.path,
          'add_hash_footer',
          '--image',
          join(dir, 'boot.img'),
          '--partition_name',
          'boot',
          '--dynamic_partition_size',
          '--algorithm',
          'NONE',
        ]);
        await avbtoolVbmeta(dir, ['boot.img']);
        const b = await openBuild(dir);
        try {
          await flashDevice(b, { fastboot: sim.addr }, { noWaitAdb: true });
        } finally {
          await b.close();
        }
        const onDevice = join(root, 'boot_b-from-device.img');
        await copyFile(join(sim.dir, 'partitions', 'boot_b.img'), onDevice);
        const info = await execa('python3', [AVBTOOL.path, 'info_image', '--image', onDevice]);
        expect(info.stdout).toMatch(/Footer version:\s+1\.0/);
        expect(info.stdout).toMatch(new RegExp(`Image size:\\s+${4 * MiB} bytes`));
        expect(info.stdout).toMatch(/Partition Name:\s+boot/);
      } finally {
        await closeSettled(sim);
      }
    },
  );

  it.skipIf(!AVBTOOL.present)(
    `--disable-verity/--disable-verification set the vbmeta flags as fastboot does (avbtool reads Flags: 3) ${AVBTOOL.reason}`,
    async () => {
      const sim = await makeSim('plan-vbmeta-flags');
      const dir = await makeBuild('vbmeta-flags', GOOD_INFO, ['boot', 'vbmeta'], false, false);
      try {
        await avbtoolVbmeta(dir);
        const b = await openBuild(dir);
        try {
          const r = await flashDevice(
            b,
            { fastboot: sim.addr },
            { noWaitAdb: true, disableVerity: true, disableVerification: true },
          );
          expect(stepsOf(r)).toContain('flash --disable-verity --disable-verification vbmeta_b vbmeta.img');
        } finally {
          await b.close();
        }
        const onDevice = join(root, 'vbmeta_b-from-device.img');
        await copyFile(join(sim.dir, 'partitions', 'vbmeta_b.img'), onDevice);
        const info = await execa('python3', [AVBTOOL.path, 'info_image', '--image', onDevice]);
        expect(info.stdout).toMatch(/Flags:\s+3/);
        // The build's own image is untouched.
        const own = await execa('python3', [AVBTOOL.path, 'info_image', '--image', join(dir, 'vbmeta.img')]);
        expect(own.stdout).toMatch(/Flags:\s+0/);
      } finally {
        await closeSettled(sim);
      }
    },
  );
});
