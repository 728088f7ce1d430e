/**
 * Sideloading the kit's OTAs to the virtual device, as recovery and update_engine take them: Debian's
 * real `adb sideload` and `omie flash --sideload` stream a package block by block (sideload-host);
 * the device checks it against the otacerts.zip of the build it runs, writes the inactive slot,
 * switches to it and boots through verified boot. Refused packages (another key, another device, a
 * downgrade, an incremental made from another build) leave both slots and the props as they were.
 * Oracles: the real adb client and server, avbtool (the vbmeta digest), `omie check --device`.
 */
import { createHash, createPrivateKey, X509Certificate } from 'node:crypto';
import {
  copyFileSync,
  createReadStream,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bufferSource } from '../../scripts/formats/apk/zip.ts';
import { refusalFromLog } from '../../scripts/formats/ota/install-checks.ts';
import { wholeFileSigner } from '../../scripts/formats/ota/whole-file.ts';
import { readPayload } from '../../scripts/formats/payload/reader.ts';
import { loadDevice } from '../../scripts/model/index.ts';
import { bootAndroid } from '../../scripts/sim/boot.ts';
import {
  type SimHandle,
  simProfileFromDevice,
  simPropsFromDevice,
  startSim,
} from '../../scripts/sim/index.ts';
import { installSideloaded } from '../../scripts/sim/recovery.ts';
import { SimState } from '../../scripts/sim/state.ts';
import { mutate, omie, prng, SAMPLE_HOME, workDir } from '../helpers.ts';
import { AVBTOOL } from '../oracles.ts';
import { type RealAdb, startRealAdb } from '../sim/real-adb.ts';
import { B1, B2, KEY, PRODUCT, SIDELOAD, sideloadFixture, TREE1, TREE2 } from './fixtures.ts';

const dir = workDir('sideload');
let adb: RealAdb;
let device: Awaited<ReturnType<typeof loadDevice>>;
const sims: SimHandle[] = [];
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** What `omie flash` leaves on slot a, written straight into a sim's state, and booted. */
async function installBuild(st: SimState, build: string, locked = false): Promise<void> {
  for (const p of ['system', 'product', 'vendor']) {
    const img = join(build, `${p}.img`);
    await st.update((d) => {
      d.partitions[`${p}_a`].size = statSync(img).size;
    });
    await st.reload();
    const tmp = st.tempPath('test');
    copyFileSync(img, tmp);
    await st.commitPartition(`${p}_a`, null, tmp);
  }
  const tmp = st.tempPath('test');
  copyFileSync(join(build, 'vbmeta.img'), tmp);
  await st.commitPartition('vbmeta', 'a', tmp);
  expect(await bootAndroid(st)).toMatchObject({
    booted: true,
    slot: 'a',
    verifiedBootState: locked ? 'green' : 'orange',
  });
}

/** A tablet sim running `build` from slot a, connected to the test's adb server, in Android. */
async function tabletSim(
  name: string,
  serial: string,
  build: string,
  opts: { locked?: boolean } = {},
): Promise<{ sim: SimHandle; id: string }> {
  const stateDir = join(dir, `${name}-${process.pid}`);
  rmSync(stateDir, { recursive: true, force: true });
  const sim = await startSim({
    stateDir,
    // A locked tablet's bootloader trusts the partner's AVB key (green), as one the partner made.
    profile: simProfileFromDevice(device, {
      serial,
      ...(opts.locked ? { avb: { oemKey: join(SAMPLE_HOME, 'keys/omie-sample-partner/avb.pem') } } : {}),
    }),
    props: simPropsFromDevice(device),
    overrides: { unlocked: !opts.locked },
  });
  sims.push(sim);
  await installBuild(sim.state, build, opts.locked);
  const id = `127.0.0.1:${sim.adbPort}`;
  await adb.run(['connect', id]);
  await adb.waitState(id, 'device');
  return { sim, id };
}

/** Every partition image of a sim, hashed, what decides what it boots, and its properties. */
async function snapshot(sim: SimHandle, id: string) {
  const pdir = join(sim.stateDir, 'partitions');
  const images: Record<string, string> = {};
  for (const f of readdirSync(pdir)
    .filter((x) => x.endsWith('.img'))
    .sort()) {
    const h = createHash('sha256');
    await pipeline(createReadStream(join(pdir, f)), h);
    images[f] = h.digest('hex');
  }
  const d = await sim.state.reload();
  return {
    images,
    currentSlot: d.currentSlot,
    slotSuccessful: d.slotSuccessful,
    slotUnbootable: d.slotUnbootable,
    sizes: Object.fromEntries(Object.entries(d.partitions).map(([k, v]) => [k, v.size])),
    props: (await adb.run(['-s', id, 'shell', 'getprop'])).stdout,
  };
}

async function getprop(id: string, name: string): Promise<string> {
  return (await adb.run(['-s', id, 'shell', `getprop ${name}`])).stdout.trim();
}

/** avbtool's digest of a build's vbmeta.img: what a device running it reports. */
async function vbmetaDigest(build: string): Promise<string> {
  if (AVBTOOL.present) {
    const r = await execa('python3', [
      AVBTOOL.path,
      'calculate_vbmeta_digest',
      '--image',
      join(build, 'vbmeta.img'),
    ]);
    return String(r.stdout).trim();
  }
  const { readBuildReference } = await import('../../scripts/conformance/build-ref.ts');
  return (await readBuildReference(build)).vbmetaDigest;
}

beforeAll(async () => {
  await sideloadFixture();
  device = await loadDevice(join(TREE1, 'device/omie/tablet/device.yaml'));
  adb = await startRealAdb(join(dir, 'adb'));
}, 1_800_000);

afterAll(async () => {
  await adb?.stop();
  for (const s of sims) await s.close();
});

describe('adb sideload (Debian adb) to the virtual device', () => {
  it('installs a full OTA to the inactive slot, which boots with the new version and vbmeta digest', async () => {
    const { sim, id } = await tabletSim('full', 'OMIESL01', B1);
    expect(await getprop(id, 'ro.omie.version')).toBe('1.0.0');
    expect((await adb.run(['-s', id, 'reboot', 'sideload'])).exitCode).toBe(0);
    await adb.reconnect(id, 'sideload');
    const r = await adb.run(['-s', id, 'sideload', SIDELOAD.full2], 300_000);
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    // The device read the package twice (signature, then install), block by block.
    const xfer = Number(/Total xfer: ([\d.]+)x/.exec(r.stdout)?.[1]);
    expect(xfer).toBeGreaterThan(1.9);
    expect(xfer).toBeLessThan(2.2);
    // minadbd is done: the device is back in recovery (`adb sideload`, not sideload-auto-reboot).
    await adb.reconnect(id, 'recovery');
    const d = await sim.state.reload();
    expect(d.mode).toBe('recovery');
    expect(d.currentSlot).toBe('b');
    const part = (f: string) => readFileSync(join(sim.stateDir, 'partitions', f));
    for (const p of ['system', 'product', 'vendor'])
      expect(sha(part(`${p}_b.img`)), p).toBe(sha(readFileSync(join(B2, `${p}.img`))));
    const vbmeta = readFileSync(join(B2, 'vbmeta.img'));
    expect(part('vbmeta_b.img').subarray(0, vbmeta.length).equals(vbmeta)).toBe(true);
    expect(sha(part('system_a.img'))).toBe(sha(readFileSync(join(B1, 'system.img'))));

    expect((await adb.run(['-s', id, 'shell', 'cat /tmp/recovery.log'])).stdout).toMatch(
      /Update successfully applied/,
    );
    expect((await adb.run(['-s', id, 'reboot'])).exitCode).toBe(0);
    await adb.reconnect(id, 'device', 60_000);
    expect(await getprop(id, 'ro.omie.version')).toBe('1.0.1');
    expect(await getprop(id, 'ro.boot.slot_suffix')).toBe('_b');
    const digest = await vbmetaDigest(B2);
    expect(await getprop(id, 'ro.boot.vbmeta.digest')).toBe(digest);

    const check = await omie(
      ['--json', 'check', '--device', id, '--image', B2, '--product', PRODUCT(TREE2), '--format', 'json'],
      { env: adb.env },
    );
    const report = JSON.parse(check.stdout);
    expect(report.target.vbmetaDigest, check.stderr).toBe(digest);
    const version = report.results.find((x: { evidence: Array<{ prop?: string }> }) =>
      x.evidence.some((e) => e.prop === 'ro.omie.version'),
    );
    expect(version).toMatchObject({ status: 'pass', message: 'ro.omie.version=1.0.1' });
    const built = report.results.find((x: { id: string }) => x.id === '6.4/C-1-3');
    expect(built.status, built.message).toBe('pass');
  }, 600_000);
});

/** `omie flash --sideload` through the test's adb server. */
const flashSideload = (pkg: string, id: string, extra: string[] = []) =>
  omie(['--json', 'flash', '--sideload', pkg, '--serial', id, ...extra], { env: adb.env });

describe('omie flash --sideload', () => {
  it('takes one device and no flashing options; a flash needs a build or a package', async () => {
    for (const args of [
      ['--sideload', SIDELOAD.full2, '--lock'],
      ['--sideload', SIDELOAD.full2, B2],
      ['--sideload', SIDELOAD.full2, '--serial', 'A', '--serial', 'B'],
      [],
    ]) {
      const r = await omie(['--json', 'flash', ...args]);
      expect(r.exitCode, args.join(' ')).toBe(2);
      expect(JSON.parse(r.stdout).error.code).toBe('USAGE');
    }
    // A package whose whole-file signature does not verify is never sent anywhere.
    const damaged = join(dir, 'damaged.zip');
    const bytes = readFileSync(SIDELOAD.full2);
    bytes[1000] ^= 1;
    writeFileSync(damaged, bytes);
    const r = await omie(['--json', 'flash', '--sideload', damaged, '--serial', '127.0.0.1:1']);
    expect(r.exitCode).toBe(1);
    expect(JSON.parse(r.stdout).error.code).toBe('OTA_SIGNATURE_INVALID');
  });

  it('installs an incremental over the build it was made from: slot b boots 1.0.1 with its vbmeta digest', async () => {
    const { sim, id } = await tabletSim('incr', 'OMIESL02', B1);
    // --dry-run: checked against the running system, and nothing else.
    const dry = await flashSideload(SIDELOAD.incr12, id, ['--dry-run']);
    expect(dry.exitCode, dry.stdout + dry.stderr).toBe(0);
    expect(JSON.parse(dry.stdout)).toMatchObject({ ok: true, dryRun: true, preflight: 'passed' });
    expect(await sim.state.reload()).toMatchObject({ mode: 'adb', currentSlot: 'a' });
    const r = await flashSideload(SIDELOAD.incr12, id);
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout);
    const digest = await vbmetaDigest(B2);
    expect(doc).toMatchObject({
      ok: true,
      serial: id,
      preflight: 'passed',
      package: { kind: 'incremental', version: '1.0.1', device: 'tablet' },
      before: { slot: 'a', version: '1.0.0' },
      after: { slot: 'b', version: '1.0.1', vbmetaDigest: digest, verifiedBootState: 'orange' },
    });
    // The device pulled every block of the package (a small one stays in its block cache for the
    // install pass; the full OTA above is read twice).
    expect(doc.served).toBe(readFileSync(SIDELOAD.incr12).length);
    expect(await getprop(id, 'ro.boot.vbmeta.digest')).toBe(digest);
    const part = (f: string) => readFileSync(join(sim.stateDir, 'partitions', f));
    for (const p of ['system', 'product', 'vendor'])
      expect(sha(part(`${p}_b.img`)), p).toBe(sha(readFileSync(join(B2, `${p}.img`))));
    expect(sha(part('system_a.img'))).toBe(sha(readFileSync(join(B1, 'system.img'))));
    const d = await sim.state.reload();
    expect(d).toMatchObject({ currentSlot: 'b', slotSuccessful: { a: true, b: true }, mode: 'adb' });
    // Progress went to stderr, as JSON events with --json.
    expect(r.stderr).toMatch(/"event":"progress","stage":"sideload /);
  }, 300_000);

  it('serves a device already in sideload mode (it alone checks), reboots it from recovery and sees slot b boot', async () => {
    const { sim, id } = await tabletSim('in-sideload', 'OMIESL04', B1);
    expect((await adb.run(['-s', id, 'reboot', 'sideload'])).exitCode).toBe(0);
    await adb.reconnect(id, 'sideload');
    const r = await flashSideload(SIDELOAD.full2, id);
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({
      preflight: 'device',
      package: { kind: 'full', version: '1.0.1' },
      after: { slot: 'b', version: '1.0.1', vbmetaDigest: await vbmetaDigest(B2) },
    });
    expect((await sim.state.reload()).currentSlot).toBe('b');
  }, 300_000);

  it('a new slot verified boot turns down (vbmeta by a key the bootloader does not trust) is tried, then the old one boots: SIDELOAD_FELL_BACK', async () => {
    const { sim, id } = await tabletSim('fallback', 'OMIESL05', B1, { locked: true });
    const r = await flashSideload(SIDELOAD.otherAvb, id);
    expect(r.exitCode, r.stdout + r.stderr).toBe(1);
    const doc = JSON.parse(r.stdout);
    expect(doc.error.code).toBe('SIDELOAD_FELL_BACK');
    expect(doc.error.context.after).toMatchObject({
      slot: 'a',
      version: '1.0.0',
      verifiedBootState: 'green',
    });
    const d = await sim.state.reload();
    expect(d.boot?.failures).toEqual([
      expect.objectContaining({ slot: 'b', result: 'ERROR_PUBLIC_KEY_REJECTED' }),
    ]);
    expect(d).toMatchObject({ currentSlot: 'a', slotUnbootable: { a: false, b: true } });
    expect(await getprop(id, 'ro.omie.version')).toBe('1.0.0');
  }, 300_000);
});

describe('refused packages leave the device as it was', () => {
  const cases = [
    {
      name: 'signed by another key',
      pkg: () => SIDELOAD.stranger,
      runs: B1,
      code: 'OTA_SIGNER_UNTRUSTED',
      exit: 1,
      log: /E:Signature verification failed/,
    },
    {
      name: 'for another device',
      pkg: () => SIDELOAD.phablet,
      runs: B1,
      code: 'OTA_WRONG_DEVICE',
      exit: 2,
      log: /E:Package is for product phablet but expected tablet/,
    },
    {
      name: 'a downgrade',
      pkg: () => SIDELOAD.full2,
      runs: '',
      code: 'OTA_DOWNGRADE',
      exit: 2,
      log: /E:Update package is older than the current build/,
    },
  ];
  for (const [i, c] of cases.entries())
    it(`${c.name}: omie refuses it before rebooting the device, the device refuses it over adb sideload`, async () => {
      const { sim, id } = await tabletSim(`refuse${i}`, `OMIESLR${i}`, c.runs || SIDELOAD.b3);
      const before = await snapshot(sim, id);
      // omie checks the running system first: the device is never rebooted.
      const r = await flashSideload(c.pkg(), id);
      expect(r.exitCode, r.stdout + r.stderr).toBe(c.exit);
      expect(JSON.parse(r.stdout).error.code).toBe(c.code);
      expect((await sim.state.reload()).mode).toBe('adb');
      expect(await snapshot(sim, id)).toEqual(before);
      // The device's own recovery refuses it too (Debian adb: exit 1 on FAILFAIL), writing nothing.
      expect((await adb.run(['-s', id, 'reboot', 'sideload'])).exitCode).toBe(0);
      await adb.reconnect(id, 'sideload');
      const s = await adb.run(['-s', id, 'sideload', c.pkg()], 120_000);
      expect(s.exitCode, s.stdout + s.stderr).toBe(1);
      await adb.reconnect(id, 'recovery');
      expect((await adb.run(['-s', id, 'shell', 'cat /tmp/recovery.log'])).stdout).toMatch(c.log);
      expect((await adb.run(['-s', id, 'reboot'])).exitCode).toBe(0);
      await adb.reconnect(id, 'device', 60_000);
      expect(await snapshot(sim, id)).toEqual(before);
    }, 300_000);

  it('an incremental over another release: refused on its fingerprint before the device reboots', async () => {
    // Each release has a fingerprint of its own (the product version is in its incremental).
    const { sim, id } = await tabletSim('incr-b2', 'OMIESL09', B2);
    const before = await snapshot(sim, id);
    const r = await flashSideload(SIDELOAD.incr12, id);
    expect(r.exitCode, r.stdout + r.stderr).toBe(2);
    expect(JSON.parse(r.stdout).error.code).toBe('OTA_WRONG_SOURCE_BUILD');
    expect((await sim.state.reload()).mode).toBe('adb');
    expect(await snapshot(sim, id)).toEqual(before);
  }, 300_000);

  it('an incremental over a rebuild of its source: the device finds its source changed before writing, omie says so', async () => {
    // The rebuilt 1.0.0 has b1's fingerprint: only the partitions' hashes tell them apart.
    const { sim, id } = await tabletSim('incr-other', 'OMIESL03', SIDELOAD.b1Rebuilt);
    const before = await snapshot(sim, id);
    const r = await flashSideload(SIDELOAD.incr12, id);
    expect(r.exitCode, r.stdout + r.stderr).toBe(2);
    const doc = JSON.parse(r.stdout);
    expect(doc.error.code).toBe('PAYLOAD_SOURCE_HASH_MISMATCH');
    expect(doc.error.message).toMatch(
      /kDownloadStateInitializationError .*not the build this incremental OTA was made from/,
    );
    expect((await sim.state.reload()).mode).toBe('adb');
    expect(await snapshot(sim, id)).toEqual(before);
  }, 300_000);
});

/** The package signed again, whole-file (signapk -w), with `key`: its payload's own signature kept. */
function resign(zip: Buffer, key: string): Buffer {
  const commentSize = zip.readUInt16LE(zip.length - 2);
  const signed = zip.subarray(0, zip.length - commentSize - 2);
  const signer = wholeFileSigner(
    createPrivateKey(readFileSync(`${key}.pem`)),
    new X509Certificate(readFileSync(`${key}.x509.pem`)),
  );
  signer.update(signed);
  const comment = signer.comment();
  const size = Buffer.alloc(2);
  size.writeUInt16LE(comment.length);
  return Buffer.concat([signed, size, comment]);
}

describe("the device's recovery on damaged packages", () => {
  let st: SimState;
  const files = () =>
    readdirSync(join(st.dir, 'partitions'))
      .sort()
      .map((f) => {
        const s = statSync(join(st.dir, 'partitions', f));
        return [f, s.ino, s.size, s.mtimeMs];
      });

  beforeAll(async () => {
    const stateDir = join(dir, `recovery-${process.pid}`);
    rmSync(stateDir, { recursive: true, force: true });
    st = await SimState.create(stateDir, simProfileFromDevice(device, { serial: 'OMIESLF1' }));
    await installBuild(st, B1);
  }, 120_000);

  it('a payload changed after signing, the package signed again by the trusted key: update_engine refuses it', async () => {
    const pkg = readFileSync(SIDELOAD.incr12);
    const payload = await readPayload(SIDELOAD.incr12);
    const bad = Buffer.from(pkg);
    bad[payload.blobsOffset + 100] ^= 0x20;
    const before = files();
    const r = await installSideloaded(st, bufferSource(resign(bad, KEY), '/sideload/package.zip'));
    expect(r.ok).toBe(false);
    const log = r.log.join('\n');
    expect(log).toMatch(/Update package verification took [\d.]+ s \(result 0\)/);
    expect(log).toMatch(
      /E:update_engine_sideload: ErrorCode::kDownloadPayloadPubKeyVerificationError \(18\)/,
    );
    expect(refusalFromLog(log)?.code).toBe('PAYLOAD_SIGNATURE_INVALID');
    expect(files()).toEqual(before);
    expect((await st.reload()).currentSlot).toBe('a');
  });

  it('fuzz: a mutated package is refused with an error line and nothing written, unless only unsigned bytes changed', async () => {
    const pkg = readFileSync(SIDELOAD.incr12);
    // What signapk -w signs: everything before the archive comment's length.
    const signed = pkg.length - pkg.readUInt16LE(pkg.length - 2) - 2;
    const rnd = prng(21);
    let refused = 0;
    for (let i = 0; i < 24; i++) {
      // Half the cases mutate the tail only: the zip directory and the signature block.
      const tail = pkg.length - 4096;
      const m =
        i % 2 ? Buffer.concat([pkg.subarray(0, tail), mutate(pkg.subarray(tail), rnd)]) : mutate(pkg, rnd);
      if (m.equals(pkg)) continue;
      const before = files();
      const r = await installSideloaded(st, bufferSource(m, '/sideload/package.zip'));
      if (r.ok) {
        // recovery checks the signature with its own keys, not the certificate in the block: a
        // change the signature does not cover (that certificate's other fields) installs the
        // genuine package. Back to slot a for the next case.
        expect(m.subarray(0, signed).equals(pkg.subarray(0, signed)), `case ${i}`).toBe(true);
        await st.update((d) => {
          d.currentSlot = 'a';
        });
        continue;
      }
      refused++;
      expect(
        r.log.some((l) => l.startsWith('E:')),
        `case ${i}`,
      ).toBe(true);
      expect(files(), `case ${i}`).toEqual(before);
      expect((await st.reload()).currentSlot).toBe('a');
    }
    expect(refused).toBeGreaterThan(18);
    const lastInstall = readFileSync(join(st.dir, 'data/misc/recovery/last_install'), 'utf8').split('\n');
    expect(lastInstall[0]).toBe('/sideload/package.zip');
  }, 120_000);
});
