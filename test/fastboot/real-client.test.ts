/**
 * Debian's real `fastboot` client against the virtual device's fastboot server, and our client
 * against the same server with the real client's results as the oracle.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FastbootClient } from '../../scripts/device/fastboot/client.ts';
import { workDir } from '../helpers.ts';
import {
  FASTBOOT,
  IMG2SIMG,
  makeSim,
  mixedImage,
  realFastboot,
  type Sim,
  sha256,
  writeFileIn,
} from './fixtures.ts';

const dir = join(workDir('fastboot'), 'real-client');

describe.skipIf(!FASTBOOT.present)(`real fastboot client against the sim ${FASTBOOT.reason}`, () => {
  let sim: Sim;
  beforeAll(async () => {
    sim = await makeSim('real');
  });
  afterAll(async () => sim.close());

  const part = (f: string) => readFile(join(sim.dir, 'partitions', f));

  it('getvar all lists identity, slots and partitions, and agrees with our client', async () => {
    const r = await realFastboot(sim, ['getvar', 'all']);
    expect(r.exitCode).toBe(0);
    const lines = r.stderr.split('\n').filter((l) => l.startsWith('(bootloader) '));
    const real: Record<string, string> = {};
    for (const l of lines) {
      const s = l.slice('(bootloader) '.length);
      const i = s.lastIndexOf(':');
      real[s.slice(0, i)] = s.slice(i + 1);
    }
    expect(real.product).toBe('omie_tablet');
    expect(real.serialno).toBe('OMIESIM0001');
    expect(real['current-slot']).toBe('a');
    expect(real['slot-count']).toBe('2');
    expect(real['max-download-size']).toBe('0x800000');
    expect(real['partition-size:boot_b']).toBe('0x400000');
    expect(real['is-userspace']).toBe('no');
    const c = await FastbootClient.connectTcp(sim.addr);
    expect(await c.getvarAll()).toEqual(real);
    await c.close();
  });

  it('flashes a raw image to the current slot (boot → boot_a)', async () => {
    const img = mixedImage(300 * 1024 + 123, 1);
    const p = await writeFileIn(dir, 'boot-raw.img', img);
    const r = await realFastboot(sim, ['flash', 'boot', p]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect((await part('boot_a.img')).subarray(0, img.length).equals(img)).toBe(true);
  });

  it.skipIf(!IMG2SIMG.present)(
    `flashes a sparse image (img2simg) and the device expands it like simg2img ${IMG2SIMG.reason}`,
    async () => {
      const img = mixedImage(1024 * 1024, 2);
      const raw = await writeFileIn(dir, 'boot2.raw', img);
      const sp = join(dir, 'boot2.simg');
      await execa('img2simg', [raw, sp]);
      const r = await realFastboot(sim, ['flash', 'boot_b', sp]);
      expect(r.exitCode, r.stderr).toBe(0);
      const expanded = join(dir, 'boot2.expanded');
      await execa('simg2img', [sp, expanded]);
      const want = await readFile(expanded);
      expect(sha256((await part('boot_b.img')).subarray(0, want.length))).toBe(sha256(want));
    },
  );

  it('splits an image larger than max-download-size, and our client sends the same pieces', async () => {
    const img = mixedImage(20 * 1024 * 1024, 3);
    const p = await writeFileIn(dir, 'big.img', img);
    const downloads: string[] = [];
    const unsub = recordDownloads(sim, downloads);
    const r = await realFastboot(sim, ['flash', 'userdata', p]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/Sending sparse 'userdata' 1\/\d/);
    expect((await part('userdata.img')).subarray(0, img.length).equals(img)).toBe(true);
    const realPieces = [...downloads];
    downloads.length = 0;
    await sim.setMode('bootloader');
    const c = await FastbootClient.connectTcp(sim.addr);
    await c.erase('userdata');
    await c.flash('userdata', p);
    await c.close();
    unsub();
    expect(realPieces.length).toBeGreaterThanOrEqual(2);
    expect(downloads).toEqual(realPieces);
    expect((await part('userdata.img')).subarray(0, img.length).equals(img)).toBe(true);
  });

  it('refuses to flash a logical partition from the bootloader, accepts it from fastbootd', async () => {
    const img = mixedImage(256 * 1024, 4);
    const p = await writeFileIn(dir, 'sys.img', img);
    const before = sha256(await part('system_b.img'));
    const r = await realFastboot(sim, ['flash', 'system_b', p]);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toMatch(/fastbootd/);
    expect(sha256(await part('system_b.img'))).toBe(before);

    const rb = await realFastboot(sim, ['reboot', 'fastboot']);
    expect(rb.exitCode, rb.stderr).toBe(0);
    expect((await realFastboot(sim, ['getvar', 'is-userspace'])).stderr).toMatch(/is-userspace: yes/);
    const f = await realFastboot(sim, ['flash', 'system_b', p]);
    expect(f.exitCode, f.stderr).toBe(0);
    expect(f.stderr).toMatch(/Resizing 'system_b'/);
    expect((await part('system_b.img')).equals(img)).toBe(true);
    expect((await realFastboot(sim, ['getvar', 'partition-size:system_b'])).stderr).toMatch(/0x40000\b/);
    const back = await realFastboot(sim, ['reboot', 'bootloader']);
    expect(back.exitCode).toBe(0);
    await waitMode(sim, 'bootloader');
  });

  it('refuses flash and erase on a locked bootloader; nothing changes', async () => {
    expect((await realFastboot(sim, ['flashing', 'lock'])).exitCode).toBe(0);
    expect((await realFastboot(sim, ['getvar', 'unlocked'])).stderr).toMatch(/unlocked: no/);
    const p = await writeFileIn(dir, 'locked.img', mixedImage(8192, 5));
    const before = sha256(await part('boot_a.img'));
    const r = await realFastboot(sim, ['flash', 'boot_a', p]);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).toMatch(/Flashing is not allowed in Lock State/);
    const e = await realFastboot(sim, ['erase', 'boot_a']);
    expect(e.stderr).toMatch(/Erase is not allowed in Lock State/);
    expect(sha256(await part('boot_a.img'))).toBe(before);
    expect((await realFastboot(sim, ['flashing', 'unlock'])).exitCode).toBe(0);
  });

  it('set_active and reboot modes', async () => {
    expect((await realFastboot(sim, ['set_active', 'b'])).exitCode).toBe(0);
    expect((await realFastboot(sim, ['getvar', 'current-slot'])).stderr).toMatch(/current-slot: b/);
    expect((await realFastboot(sim, ['--set-active=a'])).exitCode).toBe(0);
    expect((await realFastboot(sim, ['reboot'])).exitCode).toBe(0);
    await waitMode(sim, 'adb');
    // Android is running: fastboot gets no handshake and keeps waiting for the device.
    const r = await realFastboot(sim, ['getvar', 'product'], 1500);
    expect(r.exitCode).not.toBe(0);
    expect(r.stderr).not.toMatch(/product: omie_tablet/);
    await sim.setMode('bootloader');
  });
});

function recordDownloads(sim: Sim, out: string[]): () => void {
  sim.server.onCommand((c) => {
    if (c.startsWith('download:')) out.push(c);
  });
  return () => sim.server.onCommand(undefined);
}

async function waitMode(sim: Sim, mode: string): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if ((await sim.state.reload()).mode === mode) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`device did not reach ${mode}`);
}
