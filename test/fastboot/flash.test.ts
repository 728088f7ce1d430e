/**
 * `omie flash` (library and CLI) against the virtual device: the safe sequence, refusals before
 * any write, --dry-run, and fault injection (drops/resets at random bytes never leave the device
 * without its previously active slot, and a re-run completes).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BuildInput, flashDevice, flashDevices, openBuild } from '../../scripts/device/flash.ts';
import { OmieError } from '../../scripts/errors.ts';
import { writeFastbootZip } from '../../scripts/formats/factory-zip.ts';
import { omie, prng, workDir } from '../helpers.ts';
import {
  type BuildOptions,
  expectSlotMatchesBuild,
  makeSim,
  makeTestBuild,
  partitionHashes,
  writeFileIn,
} from './fixtures.ts';

const root = join(workDir('fastboot'), 'flash');
const makeBuild = (name: string, opts?: BuildOptions) => makeTestBuild(join(root, name), opts);

describe('omie flash against the sim', () => {
  let buildDir: string;
  let build: BuildInput;
  beforeAll(async () => {
    buildDir = await makeBuild('good');
    build = await openBuild(buildDir);
  });
  afterAll(async () => build?.close());

  it('writes the inactive slot in fastboot update order and leaves the old slot intact', async () => {
    const sim = await makeSim('flash-ok');
    try {
      const before = await partitionHashes(sim);
      const r = await flashDevice(build, { fastboot: sim.addr }, { noWaitAdb: true });
      expect(r.previousSlot).toBe('a');
      expect(r.slot).toBe('b');
      expect(r.flashed.map((f) => f.partition).sort()).toEqual([
        'boot_b',
        'system_b',
        'vbmeta_b',
        'vendor_b',
      ]);
      expect(r.flashed.every((f) => f.verified === 'read-back')).toBe(true);
      const info = await sim.state.reload();
      expect(info.currentSlot).toBe('b');
      expect(info.mode === 'adb' || info.mode === 'off').toBe(true);
      await expectSlotMatchesBuild(sim, 'b', buildDir);
      const after = await partitionHashes(sim);
      for (const f of ['boot_a.img', 'vbmeta_a.img', 'system_a.img', 'vendor_a.img', 'userdata.img'])
        expect(after[f], f).toBe(before[f]);
      // As fastboot's FlashAllTool: boot-critical images first (bootloader), then set_active so that
      // fastbootd's update-super keeps the *other* (old) slot, then the logical images.
      const cmds = r.steps.map((s) => s.command.replace(/^fastboot -s \S+ /, ''));
      const at = (c: string) => cmds.indexOf(c);
      expect(at('flash boot_b boot.img')).toBeLessThan(at('set_active b'));
      expect(at('flash vbmeta_b vbmeta.img')).toBeLessThan(at('set_active b'));
      expect(at('set_active b')).toBeLessThan(at('reboot fastboot'));
      expect(at('reboot fastboot')).toBeLessThan(at('update-super super super_empty.img'));
      expect(at('update-super super super_empty.img')).toBeLessThan(at('flash system_b system.img'));
    } finally {
      await sim.close();
    }
  });

  it('flashes from a fastboot zip and honours --slot and --wipe', async () => {
    const sim = await makeSim('flash-zip');
    try {
      const zip = join(root, 'good.zip');
      await writeFastbootZip(zip, {
        androidInfo: await readFile(join(buildDir, 'android-info.txt'), 'utf8'),
        images: ['boot', 'vbmeta', 'system', 'vendor', 'super_empty'].map((n) => ({
          name: `${n}.img`,
          path: join(buildDir, `${n}.img`),
        })),
      });
      await writeFileIn(join(sim.dir, 'partitions'), 'userdata.img', Buffer.alloc(32 * 1024 * 1024, 7));
      const b = await openBuild(zip);
      try {
        const r = await flashDevice(b, { fastboot: sim.addr }, { slot: 'a', wipe: true, noWaitAdb: true });
        expect(r.slot).toBe('a');
        // As fastboot -w: erase and format what the device has (no cache here: skipped).
        const cmds = r.steps.map((st) => st.command.replace(/^fastboot -s \S+ /, ''));
        expect(cmds.filter((c) => /^(erase|format) /.test(c))).toEqual([
          'erase userdata',
          'format userdata',
          'erase metadata',
          'format metadata',
        ]);
        expect(r.wiped).toBe(true);
        expect(r.adbAfter).toBe('off-after-wipe');
      } finally {
        await b.close();
      }
      await expectSlotMatchesBuild(sim, 'a', buildDir);
      // userdata and metadata hold fresh ext4 filesystems that e2fsck accepts; the old data is gone.
      for (const p of ['userdata', 'metadata']) {
        const img = join(sim.dir, 'partitions', `${p}.img`);
        const fsck = await execa('e2fsck', ['-fn', img], { reject: false });
        expect(fsck.exitCode, `${p}: ${fsck.stdout}`).toBe(0);
      }
      const ud = await readFile(join(sim.dir, 'partitions', 'userdata.img'));
      expect(ud.includes(Buffer.alloc(4096, 7))).toBe(false);
    } finally {
      await sim.close();
    }
  });

  it('flashes several devices in parallel, each with its own progress stages', async () => {
    const sims = [await makeSim('par1'), await makeSim('par2')];
    try {
      const stages = new Set<string>();
      const reports = await flashDevices(
        build,
        sims.map((x) => ({ fastboot: x.addr })),
        { noWaitAdb: true, onProgress: (e) => stages.add(e.stage) },
      );
      expect(reports.map((r) => r.slot)).toEqual(['b', 'b']);
      for (const x of sims) await expectSlotMatchesBuild(x, 'b', buildDir);
      for (const x of sims) expect([...stages].some((st) => st.startsWith(`${x.addr} system_b`))).toBe(true);
    } finally {
      for (const x of sims) await x.close();
    }
  });

  it('refuses a build for another product before writing anything', async () => {
    const sim = await makeSim('flash-wrong');
    const other = await openBuild(await makeBuild('other', { board: 'someone_else', superEmpty: false }));
    try {
      const before = await partitionHashes(sim);
      const err = await flashDevice(other, { fastboot: sim.addr }, { noWaitAdb: true }).catch((e) => e);
      expect(err).toBeInstanceOf(OmieError);
      expect(err.code).toBe('FLASH_WRONG_PRODUCT');
      expect(err.message).toMatch(/someone_else/);
      expect(await partitionHashes(sim)).toEqual(before);
      expect((await sim.state.reload()).currentSlot).toBe('a');
    } finally {
      await other.close();
      await sim.close();
    }
  });

  it('refuses a wrong bootloader version before writing anything', async () => {
    const sim = await makeSim('flash-blver');
    const other = await openBuild(await makeBuild('blver', { bootloader: 'omie-bl-9.9', superEmpty: false }));
    try {
      const before = await partitionHashes(sim);
      const err = await flashDevice(other, { fastboot: sim.addr }, { noWaitAdb: true }).catch((e) => e);
      expect(err.code).toBe('FLASH_REQUIREMENT');
      expect(await partitionHashes(sim)).toEqual(before);
    } finally {
      await other.close();
      await sim.close();
    }
  });

  it('refuses a locked bootloader with a clear message, nothing written', async () => {
    const sim = await makeSim('flash-locked', { profile: { unlocked: false } });
    try {
      const before = await partitionHashes(sim);
      const err = await flashDevice(build, { fastboot: sim.addr }, { noWaitAdb: true }).catch((e) => e);
      expect(err.code).toBe('FLASH_LOCKED');
      expect(err.message).toMatch(/locked/);
      expect(err.hint).toMatch(/flashing unlock/);
      expect(await partitionHashes(sim)).toEqual(before);
    } finally {
      await sim.close();
    }
  });

  it('--dry-run prints the command sequence and writes nothing (CLI)', async () => {
    const sim = await makeSim('flash-dry');
    try {
      const before = await partitionHashes(sim);
      const r = await omie(['flash', buildDir, '--fastboot', sim.addr, '--dry-run']);
      expect(r.exitCode, r.stderr).toBe(0);
      const lines = r.stdout.split('\n').filter((l) => l.startsWith('fastboot '));
      const cmds = lines.map((l) => l.replace(/^fastboot -s \S+ /, '').replace(/\s+#.*$/, ''));
      expect(cmds).toEqual([
        'getvar product',
        'getvar version-bootloader',
        'getvar unlocked',
        'getvar current-slot',
        'flash boot_b boot.img',
        'flash vbmeta_b vbmeta.img',
        'set_active b',
        'reboot fastboot',
        'update-super super super_empty.img',
        'resize-logical-partition system_b 0',
        'resize-logical-partition vendor_b 0',
        'flash system_b system.img',
        'flash vendor_b vendor.img',
        'reboot',
      ]);
      expect(await partitionHashes(sim)).toEqual(before);
      const j = await omie(['--json', 'flash', buildDir, '--fastboot', sim.addr, '--dry-run', '--lock']);
      expect(j.exitCode, j.stderr).toBe(0);
      const doc = JSON.parse(j.stdout);
      expect(doc.devices[0].dryRun).toBe(true);
      expect(doc.devices[0].steps.map((s: { command: string }) => s.command)).toContain(
        `fastboot -s ${sim.addr} flashing lock`,
      );
    } finally {
      await sim.close();
    }
  });

  it('CLI reports a wrong product with exit code 2 and a message', async () => {
    const sim = await makeSim('flash-cli-wrong');
    try {
      const r = await omie(['flash', join(root, 'other'), '--fastboot', sim.addr]);
      expect(r.exitCode).toBe(2);
      expect(r.stderr).toMatch(/requires someone_else/);
    } finally {
      await sim.close();
    }
  });

  it('100 flashes with a drop or reset at a random byte: old slot intact, re-run completes', async () => {
    const small = await makeBuild('faults', { superEmpty: true, scale: 1 / 8 });
    const b = await openBuild(small);
    const sim = await makeSim('flash-faults');
    const rnd = prng(0xfa17);
    try {
      let runs = 0;
      let failures = 0;
      for (let i = 0; i < 100; i++) {
        await sim.setMode('bootloader');
        const info = await sim.state.reload();
        const active = info.currentSlot as 'a' | 'b';
        const slotFiles = new RegExp(`_${active}\\.img$`);
        const hashes = await partitionHashes(sim, slotFiles);
        const activeFiles = Object.keys(hashes);
        // A clean run sends ~80 KB on its bootloader connection and ~350 KB on its fastbootd one.
        const at = 1 + Math.floor(rnd() * 360 * 1024);
        sim.server.setFaults(
          rnd() < 0.5 ? { dropAfterBytes: at, times: 1 } : { resetAfterBytes: at, times: 1 },
        );
        const retries = i % 4 === 3 ? 2 : 0;
        const first = await flashDevice(
          b,
          { fastboot: sim.addr },
          { noWaitAdb: true, retries, rebootTimeoutMs: 3000 },
        ).then(
          () => 'ok',
          (e) => e,
        );
        runs++;
        if (first !== 'ok') {
          failures++;
          expect(first).toBeInstanceOf(OmieError);
        }
        // Let a reboot the fault interrupted finish (the boot verifies the slot) before
        // "power-cycling" into the bootloader.
        await new Promise((r) => setTimeout(r, 60));
        for (let w = 0; w < 300 && (await sim.state.reload()).mode === 'off'; w++)
          await new Promise((res) => setTimeout(res, 10));
        const mid = await partitionHashes(sim, slotFiles);
        for (const f of activeFiles) expect(mid[f], `run ${i}: ${f} changed`).toBe(hashes[f]);
        const now = await sim.state.reload();
        // Either still on the old slot, or switched (fastbootd needs the new slot active) to a slot
        // that never booted while the old one did: the bootloader falls back to the old slot, and
        // the re-run completes the new slot instead of overwriting the old one.
        const cur = now.currentSlot as 'a' | 'b';
        const other = cur === 'a' ? 'b' : 'a';
        const completing = now.slotSuccessful?.[cur] === false && now.slotSuccessful?.[other] === true;
        if (cur !== active && !completing) await expectSlotMatchesBuild(sim, cur, small);
        if (completing) expect(other).toBe(active);
        // Re-run on a healthy link completes.
        sim.server.setFaults(undefined);
        await sim.setMode('bootloader');
        const target = completing ? cur : other;
        const r = await flashDevice(b, { fastboot: sim.addr }, { noWaitAdb: true, rebootTimeoutMs: 3000 });
        expect(r.slot).toBe(target);
        // The device reboots to Android: wait for it, so the next "power-cycle" is not overtaken.
        for (let w = 0; w < 100 && (await sim.state.reload()).mode !== 'adb'; w++)
          await new Promise((res) => setTimeout(res, 10));
        expect((await sim.state.reload()).currentSlot).toBe(target);
      }
      expect(runs).toBe(100);
      // The faults did bite: most first runs without retries failed.
      expect(failures).toBeGreaterThan(20);
      await expectSlotMatchesBuild(sim, (await sim.state.reload()).currentSlot as 'a' | 'b', small);
    } finally {
      await b.close();
      await sim.close();
    }
  }, 300_000);
});
