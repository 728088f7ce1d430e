/**
 * Fastboot over USB against an emulated USB device (umockdev; see gadget.ts): the virtual device
 * appears on a USB bus to the `omie` CLI and to Debian's `fastboot`, both run as a user runs them,
 * with the `usb` package's real libusb underneath. The device disconnects and enumerates again
 * when it reboots, so both clients have to wait for it as on hardware.
 */
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFastbootZip } from '../../scripts/formats/factory-zip.ts';
import { hostFiles, installHint } from '../../scripts/host/tools.ts';
import {
  expectSlotMatchesBuild,
  FASTBOOT,
  makeSim,
  makeTestBuild,
  partitionHashes,
  type Sim,
} from '../fastboot/fixtures.ts';
import { omie, ROOT, workDir } from '../helpers.ts';
import { needed } from '../oracles.ts';
import { startUsbGadget, type UsbGadget, umockdevStatus } from './gadget.ts';

const root = workDir('usb');

/** Emulated USB needs umockdev, whose packages tools.json lists (`files`) and setup installs. */
const umockdev = umockdevStatus();
const UMOCKDEV = needed(
  'umockdev',
  umockdev.present,
  umockdev.reason,
  installHint(hostFiles.filter((f) => f.purpose.includes('umockdev')).map((f) => f.debianPackage)),
);

interface DevicesJson {
  devices: Array<Record<string, unknown>>;
  warnings: string[];
}

describe.skipIf(!UMOCKDEV.present)(
  `fastboot over emulated USB${UMOCKDEV.present ? '' : ` ${UMOCKDEV.reason}`}`,
  () => {
    let buildDir: string;
    const sims: Sim[] = [];
    const gadgets: UsbGadget[] = [];

    beforeAll(async () => {
      buildDir = await makeTestBuild(join(root, 'build'));
    });
    afterAll(async () => {
      for (const g of gadgets) await g.close();
      for (const s of sims) await s.close();
    });

    async function rig(serials: string[]) {
      const ss = await Promise.all(serials.map((serial) => makeSim('usb', { profile: { serial } })));
      sims.push(...ss);
      const gadget = await startUsbGadget(ss);
      gadgets.push(gadget);
      for (const [i] of ss.entries())
        await gadget.waitFor((e) => e.event === 'attached' && e.port === `1-${i + 1}`);
      return { sims: ss, gadget };
    }

    const devices = async (g: UsbGadget) => {
      const r = await omie(['devices', '--no-adb', '--json'], { env: g.env });
      expect(r.exitCode, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as DevicesJson;
    };
    const realFastboot = (g: UsbGadget, args: string[]) =>
      execa('fastboot', args, { env: { ...g.env, ANDROID_PRODUCT_OUT: '' }, reject: false, timeout: 60_000 });

    it('omie devices lists the device in the bootloader and in fastbootd, and nothing that is not fastboot', async () => {
      const {
        sims: [sim],
        gadget,
      } = await rig(['OMIEUSB0001']);
      let r = await devices(gadget);
      expect(r.warnings).toEqual([]);
      expect(r.devices).toEqual([
        {
          id: 'OMIEUSB0001',
          protocol: 'fastboot',
          transport: 'usb',
          state: 'bootloader',
          port: '1-1',
          serial: 'OMIEUSB0001',
          product: 'omie_tablet',
          slot: 'a',
          locked: false,
        },
      ]);
      if (FASTBOOT.present)
        expect((await realFastboot(gadget, ['devices'])).stdout).toBe('OMIEUSB0001\tfastboot');

      // A reboot into fastbootd is a new USB device with the same serial and fastbootd's descriptors.
      let from = gadget.events.length;
      await sim.setMode('fastbootd');
      await gadget.waitFor((e) => e.event === 'detached', { from });
      const back = await gadget.waitFor((e) => e.event === 'attached', { from });
      expect(back).toMatchObject({ mode: 'fastbootd', serial: 'OMIEUSB0001' });
      r = await devices(gadget);
      expect(r.devices).toMatchObject([{ id: 'OMIEUSB0001', state: 'fastbootd', product: 'omie_tablet' }]);

      // In Android the device shows an adb interface: no fastboot client may take it.
      from = gadget.events.length;
      await sim.setMode('adb');
      await gadget.waitFor((e) => e.event === 'attached' && e.mode === 'adb', { from });
      expect((await devices(gadget)).devices).toEqual([]);
      if (FASTBOOT.present) expect((await realFastboot(gadget, ['devices'])).stdout).toBe('');
    });

    it.skipIf(!FASTBOOT.present)(
      `omie flash --serial writes what Debian fastboot update writes, through the reboots into fastbootd ${FASTBOOT.reason}`,
      async () => {
        const {
          sims: [sim],
          gadget,
        } = await rig(['OMIEUSB0002']);
        const zip = join(root, 'build.zip');
        await writeFastbootZip(zip, {
          androidInfo: await readFile(join(buildDir, 'android-info.txt'), 'utf8'),
          images: ['boot', 'vbmeta', 'system', 'vendor', 'super_empty'].map((name) => ({
            name,
            path: join(buildDir, `${name}.img`),
          })),
        });
        // The oracle: Debian's fastboot writes the current slot (a), rebooting into fastbootd for the
        // logical partitions as FlashAllTool does, and waits for the device to come back on USB.
        let from = gadget.events.length;
        const real = await realFastboot(gadget, ['-s', 'OMIEUSB0002', '--skip-reboot', 'update', zip]);
        expect(real.exitCode, real.stderr).toBe(0);
        await expectSlotMatchesBuild(sim, 'a', buildDir);
        const afterReal = gadget.events.slice(from);
        expect(afterReal.filter((e) => e.event === 'attached').map((e) => e.mode)).toEqual(['fastbootd']);

        // From the bootloader, omie flash writes the other slot and reboots into fastbootd for the
        // logical partitions: it must find the device again when it enumerates anew.
        from = gadget.events.length;
        expect((await realFastboot(gadget, ['-s', 'OMIEUSB0002', 'reboot', 'bootloader'])).exitCode).toBe(0);
        await gadget.waitFor((e) => e.event === 'attached' && e.mode === 'bootloader', { from });
        from = gadget.events.length;
        const r = await omie(['flash', buildDir, '--serial', 'OMIEUSB0002', '--no-wait-adb', '--json'], {
          env: gadget.env,
        });
        expect(r.exitCode, r.stderr).toBe(0);
        const report = JSON.parse(r.stdout).devices[0];
        expect(report).toMatchObject({ target: 'OMIEUSB0002', previousSlot: 'a', slot: 'b' });
        expect(report.flashed.map((f: { partition: string }) => f.partition).sort()).toEqual([
          'boot_b',
          'system_b',
          'vbmeta_b',
          'vendor_b',
        ]);
        const attached = gadget.events.slice(from).filter((e) => e.event === 'attached');
        expect(attached.map((e) => e.mode)).toEqual(['fastbootd', 'adb']);
        expect(new Set(attached.map((e) => e.serial))).toEqual(new Set(['OMIEUSB0002']));
        // Every enumeration is a new device address, as after a real reboot.
        const devnums = gadget.events.filter((e) => e.event === 'attached').map((e) => e.devnum as number);
        expect(devnums).toEqual([...devnums].sort((a, b) => a - b));
        expect(new Set(devnums).size).toBe(devnums.length);

        const hashes = await partitionHashes(sim);
        for (const p of ['boot', 'vbmeta', 'system', 'vendor'])
          expect(hashes[`${p}_b.img`], p).toBe(hashes[`${p}_a.img`]);
        expect((await sim.state.reload()).currentSlot).toBe('b');
      },
    );

    it('omie flash --all flashes every USB device in fastboot; a shared serial is told apart by port', async () => {
      // Many boards ship with this serial: the two devices must still be two targets.
      const shared = '0123456789ABCDEF';
      const { sims: pair, gadget } = await rig([shared, shared]);
      const listed = await devices(gadget);
      expect(listed.devices.map((d) => d.id).sort()).toEqual(['usb:1-1', 'usb:1-2']);
      expect(listed.devices.every((d) => d.serial === shared)).toBe(true);

      const r = await omie(['flash', buildDir, '--all', '--no-wait-adb', '--json'], { env: gadget.env });
      expect(r.exitCode, r.stderr).toBe(0);
      const reports = JSON.parse(r.stdout).devices as Array<{ target: string; slot: string }>;
      expect(reports.map((d) => d.target).sort()).toEqual(['usb:1-1', 'usb:1-2']);
      for (const sim of pair) {
        await expectSlotMatchesBuild(sim, 'b', buildDir);
        expect((await sim.state.reload()).currentSlot).toBe('b');
      }
      for (const port of ['1-1', '1-2'])
        expect(
          gadget.events.filter((e) => e.event === 'attached' && e.port === port && e.mode === 'fastbootd'),
        ).toHaveLength(1);
    });

    it('omie doctor checks the node of each Android USB device; without access, devices says no permissions', async () => {
      const { gadget } = await rig(['OMIEUSB0004']);
      const cli = resolve(ROOT, 'scripts/omie.mjs');
      // Root may open anything: the user without access is nobody then, else the user running this.
      const asRoot = process.getuid?.() === 0;
      const run = async (args: string[], denied: boolean) => {
        const r = await execa(process.execPath, [cli, ...args, '--json'], {
          env: { ...gadget.env, HOME: tmpdir() },
          reject: false,
          ...(denied && asRoot ? { uid: 65534, gid: 65534 } : {}),
        });
        return JSON.parse(r.stdout);
      };
      type Finding = {
        id: string;
        ok: boolean;
        message: string;
        fix?: string;
        details?: Record<string, unknown>;
      };
      const device = (report: { usb: Finding[] }) => report.usb.find((f) => f.id === 'usb-device:1-1');

      if (asRoot) {
        const mine = device(await run(['doctor'], false));
        expect(mine).toMatchObject({
          ok: true,
          details: { devnode: '/dev/bus/usb/001/002', writable: true },
        });
        expect(mine?.message).toMatch(/^fastboot device OMIEUSB0004 \(18d1:4ee0, USB 1-1\)/);
      }
      const theirs = await run(['doctor'], true);
      const d = device(theirs);
      expect(d).toMatchObject({
        ok: false,
        details: { interface: 'fastboot', serial: 'OMIEUSB0004', vendorId: '18d1', writable: false },
      });
      expect(d?.message).toMatch(/\/dev\/bus\/usb\/001\/002 is not writable by/);
      // With a rule for 18d1 installed the fix is the group; without one, the rule line itself.
      const rules = theirs.usb.find((f: Finding) => f.id === 'udev-rules');
      expect(d?.fix).toMatch(
        rules.ok ? /usermod -aG plugdev/ : /ATTR\{idVendor\}=="18d1", MODE="0660", GROUP="plugdev"/,
      );

      const listed = (await run(['devices', '--no-adb'], true)).devices;
      expect(listed).toMatchObject([{ id: 'OMIEUSB0004', state: 'no permissions', serial: 'OMIEUSB0004' }]);
      expect(listed[0].error).toMatch(/no permission to open USB device OMIEUSB0004 .*omie doctor/);
    });

    it('a device vanishing mid-download gives a typed error, keeps the old slot, and a re-run completes', async () => {
      const {
        sims: [sim],
        gadget,
      } = await rig(['OMIEUSB0003']);
      const before = await partitionHashes(sim);
      // Cut off 200 KB into the traffic: inside the first image's download.
      await gadget.vanish(200_000);
      const cut = await omie(
        ['flash', buildDir, '--serial', 'OMIEUSB0003', '--retries', '0', '--no-wait-adb', '--json'],
        { env: gadget.env },
      );
      expect(cut.exitCode, cut.stderr).toBe(3);
      const err = JSON.parse(cut.stdout).error;
      expect(err).toMatchObject({ code: 'USB_DISCONNECTED', context: { device: 'OMIEUSB0003' } });
      expect(err.message).toMatch(/disconnected/);
      expect(err.hint).toMatch(/run the command again/);
      expect((await sim.state.reload()).currentSlot).toBe('a');
      const after = await partitionHashes(sim, /_a\.img$|userdata/);
      for (const [f, h] of Object.entries(after)) expect(h, f).toBe(before[f]);

      // The device comes back (a new enumeration); the re-run finishes the job, even through
      // another disconnection, by reconnecting to the re-enumerated device.
      await gadget.waitFor((e) => e.event === 'attached', { from: gadget.events.length - 1 });
      await gadget.vanish(300_000);
      const rerun = await omie(['flash', buildDir, '--serial', 'OMIEUSB0003', '--no-wait-adb'], {
        env: gadget.env,
      });
      expect(rerun.exitCode, rerun.stderr).toBe(0);
      expect(rerun.stderr).toMatch(/disconnected during write; reconnecting \(retry 1\/3\)/);
      await expectSlotMatchesBuild(sim, 'b', buildDir);
      expect((await sim.state.reload()).currentSlot).toBe('b');
      expect((await partitionHashes(sim, /^boot_a/))['boot_a.img']).toBe(before['boot_a.img']);
    });
  },
);
