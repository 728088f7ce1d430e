/** Shared fixtures for the fastboot suites: a small virtual device and small images. */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { expect } from 'vitest';
import {
  addHashFooter,
  addHashtreeFooter,
  generateAvbKey,
  makeVbmetaImage,
} from '../../scripts/formats/avb/index.ts';
import { buildSuperEmpty } from '../../scripts/formats/super/index.ts';
import { type FastbootServer, startFastbootServer } from '../../scripts/sim/fastboot-server.ts';
import { type DeviceMode, defaultSimProfile, type SimProfile, SimState } from '../../scripts/sim/state.ts';
import { onceInDir, prng, workDir } from '../helpers.ts';
import { hostTool } from '../host-tools.ts';

const KiB = 1024;
const MiB = 1024 * KiB;

export const smallProfile = (o: Partial<SimProfile> = {}): SimProfile =>
  defaultSimProfile({
    partitions: [
      { name: 'boot', size: 4 * MiB, logical: false, slotted: true },
      { name: 'vbmeta', size: 64 * KiB, logical: false, slotted: true },
      { name: 'misc', size: 64 * KiB, logical: false, slotted: false },
      { name: 'metadata', size: 1 * MiB, logical: false, slotted: false },
      { name: 'userdata', size: 32 * MiB, logical: false, slotted: false },
      { name: 'system', size: 4 * MiB, logical: true, slotted: true },
      { name: 'vendor', size: 2 * MiB, logical: true, slotted: true },
    ],
    superSize: 64 * MiB,
    maxDownloadSize: 8 * MiB,
    ...o,
  });

export interface Sim {
  dir: string;
  state: SimState;
  server: FastbootServer;
  port: number;
  addr: string;
  setMode(m: DeviceMode): Promise<void>;
  close(): Promise<void>;
}

let counter = 0;
export async function makeSim(
  name: string,
  opts: { profile?: Partial<SimProfile>; mode?: DeviceMode } = {},
): Promise<Sim> {
  const dir = join(workDir('fastboot'), `${name}-${process.pid}-${counter++}`);
  await rm(dir, { recursive: true, force: true });
  const state = await SimState.create(dir, smallProfile(opts.profile));
  await state.update((d) => {
    d.mode = opts.mode ?? 'bootloader';
  });
  const server = await startFastbootServer({ state, port: 0, rebootDelayMs: 20 });
  return {
    dir,
    state,
    server,
    port: server.port,
    addr: `tcp:127.0.0.1:${server.port}`,
    setMode: (m) =>
      state.update((d) => {
        d.mode = m;
      }),
    close: async () => {
      await server.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** Bytes of random data mixed with zero and 0xAB-filled 4 KiB blocks, so sparse chunks of every kind appear. */
export function mixedImage(size: number, seed: number): Buffer {
  const r = prng(seed);
  const b = Buffer.alloc(size);
  for (let o = 0; o < size; o += 4096) {
    const k = r();
    const end = Math.min(size, o + 4096);
    if (k < 0.5) randomBytes(end - o).copy(b, o);
    else if (k < 0.7) b.fill(0xab, o, end);
  }
  return b;
}

export async function writeFileIn(dir: string, name: string, data: Buffer): Promise<string> {
  await mkdir(dir, { recursive: true });
  const p = join(dir, name);
  await writeFile(p, data);
  return p;
}

export const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Hash of every partition image of a sim, by file name. */
export async function partitionHashes(sim: Sim, only?: RegExp): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const pdir = join(sim.dir, 'partitions');
  for (const f of (await readdir(pdir)).sort())
    if (f.endsWith('.img') && (!only || only.test(f))) out[f] = sha256(await readFile(join(pdir, f)));
  return out;
}

/** Debian's fastboot client and img2simg, the oracles the sim is checked against. */
export const FASTBOOT = hostTool('fastboot');
export const IMG2SIMG = hostTool('img2simg');

/** Runs Debian's real fastboot against the sim. */
export function realFastboot(sim: Sim, args: string[], timeout = 60_000) {
  return execa('fastboot', ['-s', sim.addr, ...args], {
    reject: false,
    timeout,
    env: { ANDROID_PRODUCT_OUT: '' },
  });
}

export interface BuildOptions {
  board?: string;
  bootloader?: string;
  superEmpty?: boolean;
  scale?: number;
}

/**
 * A small A/B build in `dir` for {@link smallProfile}: two physical images, two logical ones (one
 * sparse), android-info.txt and super_empty.img, signed as `omie build` signs (omie flash verifies
 * a build against its vbmeta before writing).
 */
export async function makeTestBuild(dir: string, opts: BuildOptions = {}): Promise<string> {
  const k = opts.scale ?? 1;
  await writeFileIn(
    dir,
    'android-info.txt',
    Buffer.from(
      `require board=${opts.board ?? 'omie_tablet'}\nrequire version-bootloader=${opts.bootloader ?? 'omie-bl-1.0'}\n`,
    ),
  );
  await writeFileIn(dir, 'boot.img', mixedImage(512 * 1024 * k, 11));
  const sys = await writeFileIn(dir, 'system.raw', mixedImage(3 * 1024 * 1024 * k, 13));
  await writeFileIn(dir, 'vendor.img', mixedImage(1024 * 1024 * k + 4096, 14));
  // boot.img fills its partition, footer at the end, as AOSP builds it (BOARD_BOOTIMAGE_PARTITION_SIZE):
  // Debian's fastboot (29) predates copy_avb_footer, so only then does it write what omie writes.
  await signImages(dir, [
    { name: 'boot', kind: 'hash', partitionSize: 4 * MiB },
    { name: 'system', kind: 'hashtree', file: sys },
    { name: 'vendor', kind: 'hashtree' },
  ]);
  // Without img2simg (a local machine only: on CI the import fails) system.img stays raw.
  if (IMG2SIMG.present) await execa('img2simg', [sys, join(dir, 'system.img')]);
  else await writeFileIn(dir, 'system.img', await readFile(sys));
  if (opts.superEmpty !== false) await smallSuperEmpty(dir);
  return dir;
}

/** The sim's `slot` holds the images of the build made by {@link makeTestBuild} in `dir`. */
export async function expectSlotMatchesBuild(sim: Pick<Sim, 'dir'>, slot: 'a' | 'b', dir: string) {
  const p = (f: string) => readFile(join(sim.dir, 'partitions', f));
  const boot = await readFile(join(dir, 'boot.img'));
  expect((await p(`boot_${slot}.img`)).subarray(0, boot.length).equals(boot)).toBe(true);
  const sys = await readFile(join(dir, 'system.raw'));
  expect(sha256((await p(`system_${slot}.img`)).subarray(0, sys.length))).toBe(sha256(sys));
  const vendor = await readFile(join(dir, 'vendor.img'));
  expect((await p(`vendor_${slot}.img`)).equals(vendor)).toBe(true);
}

/** The test partner's AVB key (RSA-2048, made once per run): what `omie build` signs with. */
export async function partnerKey(): Promise<string> {
  const dir = join(workDir('fastboot'), 'partner-key');
  await onceInDir(dir, ['scripts/formats/avb/keys.ts'], async () => {
    await mkdir(dir, { recursive: true });
    await generateAvbKey(join(dir, 'partner.pem'), 2048);
  });
  return join(dir, 'partner.pem');
}

/**
 * Signs a build folder's images as `omie build` does: an AVB hash footer (`hash`) or hashtree
 * footer (`hashtree`) on each image, then vbmeta.img over all of them, signed with `key` (default:
 * the test partner's). `file` is the image to sign when it is not <dir>/<name>.img (e.g. a raw
 * image made sparse afterwards); `partitionSize` makes the image that size, footer at the end.
 */
export async function signImages(
  dir: string,
  images: Array<{ name: string; kind: 'hash' | 'hashtree'; file?: string; partitionSize?: number }>,
  opts: { key?: string; rollbackIndex?: number } = {},
): Promise<string> {
  const key = opts.key ?? (await partnerKey());
  const files: string[] = [];
  for (const img of images) {
    const file = img.file ?? join(dir, `${img.name}.img`);
    const common = { partitionName: img.name, hashAlgorithm: 'sha256', partitionSize: img.partitionSize };
    if (img.kind === 'hash') await addHashFooter(file, common);
    else await addHashtreeFooter(file, common);
    files.push(file);
  }
  await makeVbmetaImage(join(dir, 'vbmeta.img'), {
    algorithm: 'SHA256_RSA2048',
    key,
    rollbackIndex: opts.rollbackIndex ?? 0,
    includeDescriptorsFromImages: files,
  });
  return key;
}

/** super_empty.img for the small profile's super: system and vendor of both slots in one group. */
export async function smallSuperEmpty(dir: string): Promise<string> {
  const out = join(dir, 'super_empty.img');
  await buildSuperEmpty(
    {
      blockDevices: [{ name: 'super', size: 64 * MiB }],
      groups: [{ name: 'main', maxSize: 60 * MiB }],
      partitions: ['system_a', 'system_b', 'vendor_a', 'vendor_b'].map((n) => ({ name: n, group: 'main' })),
      metadataSlots: 2,
      metadataMaxSize: 65536,
    },
    out,
  );
  return out;
}

/**
 * A small partner-signed A/B build in `dir` (made anew): boot, system, vendor and vbmeta for
 * board omie_tablet, `extra` unsigned images, and super_empty.img unless told not to.
 */
export async function signedBuild(
  dir: string,
  opts: { seed?: number; superEmpty?: boolean; extra?: Record<string, Buffer> } = {},
): Promise<string> {
  const seed = opts.seed ?? 21;
  await rm(dir, { recursive: true, force: true });
  await writeFileIn(dir, 'android-info.txt', Buffer.from('require board=omie_tablet\n'));
  await writeFileIn(dir, 'boot.img', mixedImage(64 * KiB, seed));
  await writeFileIn(dir, 'system.img', mixedImage(512 * KiB, seed + 1));
  await writeFileIn(dir, 'vendor.img', mixedImage(128 * KiB, seed + 2));
  for (const [n, b] of Object.entries(opts.extra ?? {})) await writeFileIn(dir, `${n}.img`, b);
  await signImages(dir, [
    { name: 'boot', kind: 'hash' },
    { name: 'system', kind: 'hashtree' },
    { name: 'vendor', kind: 'hashtree' },
  ]);
  if (opts.superEmpty !== false) await smallSuperEmpty(dir);
  return dir;
}
