/**
 * `omie check --device` end to end: the kit's virtual device (scripts/sim) serves the clean
 * images over the real adb protocol, Debian's real adb server connects to it, and the device view
 * reads props, packages, platform XMLs and pulled APKs through the kit's adb layer.
 */

import { generateKeyPairSync } from 'node:crypto';
import { copyFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyAttestation, writeAttestation } from '../../scripts/attest/index.ts';
import { readBuildReference } from '../../scripts/conformance/build-ref.ts';
import { deviceView } from '../../scripts/conformance/device-view.ts';
import { runChecks } from '../../scripts/conformance/engine.ts';
import { loadSpec } from '../../scripts/conformance/spec.ts';
import { loadSpecData } from '../../scripts/conformance/spec-data.ts';
import type { Report } from '../../scripts/conformance/spec-schema.ts';
import { bootAndroid } from '../../scripts/sim/boot.ts';
import { type SimHandle, startSim } from '../../scripts/sim/index.ts';
import { defaultSimProfile } from '../../scripts/sim/state.ts';
import { ROOT } from '../helpers.ts';
import { type RealAdb, startRealAdb } from '../sim/real-adb.ts';
import { buildImages, E2E } from './image-fixture.ts';

let adb: RealAdb;
let sim: SimHandle;
let report: Report;
let apks: Array<{ partition: string; path: string }>;
let images: string;

beforeAll(async () => {
  images = await buildImages('clean', { root: join(E2E, 'device') });
  adb = await startRealAdb(join(E2E, 'adb'));
  const stateDir = join(E2E, `sim-${process.pid}`);
  rmSync(stateDir, { recursive: true, force: true });
  sim = await startSim({ stateDir, profile: defaultSimProfile({ serial: 'OMIECHECK01' }) });
  for (const p of ['system', 'product', 'vendor'])
    await sim.state.commitPartition(`${p}_${sim.state.info.currentSlot}`, null, join(images, `${p}.img`));
  const vb = sim.state.info.partitions.vbmeta;
  if (vb) {
    // commitPartition moves its source: the build keeps its own vbmeta.img to be compared with.
    const copy = join(E2E, 'device-vbmeta.img');
    copyFileSync(join(images, 'vbmeta.img'), copy);
    await sim.state.commitPartition('vbmeta', vb.slotted ? sim.state.info.currentSlot : null, copy);
  }
  // Power-cycled: the bootloader verifies what was just written, and the boot properties
  // (ro.boot.vbmeta.digest, verifiedbootstate, veritymode) come from that boot.
  expect(await bootAndroid(sim.state)).toMatchObject({ booted: true, verifiedBootState: 'orange' });
  const serial = `127.0.0.1:${sim.adbPort}`;
  await adb.run(['connect', serial]);
  await adb.waitState(serial, 'device');
  const spec = await loadSpec(resolve(ROOT, 'spec'));
  const view = await deviceView(serial, { adb: { port: adb.port } });
  try {
    report = await runChecks(spec, view, {
      profile: 'device',
      data: await loadSpecData(spec.dir),
      build: await readBuildReference(images),
    });
    apks = (await view.apks()).map((a) => ({ partition: a.partition, path: a.path }));
  } finally {
    await view.close();
  }
}, 300_000);

afterAll(async () => {
  await adb?.stop();
  await sim?.close();
});

describe('omie check --device against the virtual device', () => {
  it('reads props, packages and APKs over adb', () => {
    const byId = Object.fromEntries(report.results.map((r) => [r.id, r]));
    expect(report.target.kind).toBe('device');
    expect(byId['6.1/C-0-1']).toMatchObject({ status: 'pass' });
    expect(byId['2.1/C-0-1'].status).toBe('pass');
    expect(byId['2.1/C-0-1'].message).toMatch(/none of [1-9]\d* packages/);
    expect(byId['4.1/C-0-1'].status).toBe('pass');
    // Files are listed over adb (the su check first makes sure `ls` answers at all).
    expect(byId['6.2/C-0-1'], byId['6.2/C-0-1'].message).toMatchObject({ status: 'pass' });
    expect(['pass', 'fail']).toContain(byId['6.2/C-0-2'].status);
  });

  it('lists the APEXes (pm list packages -f --apex-only) and the APKs under /apex, and checks them', () => {
    const byId = Object.fromEntries(report.results.map((r) => [r.id, r]));
    expect(apks).toContainEqual({
      partition: 'apex',
      path: 'com.android.tzdata/app/TzUpdater/TzUpdater.apk',
    });
    expect(byId['5.3/C-0-1'].status).toBe('pass');
    expect(byId['5.3/C-0-1'].evidence).toEqual([
      expect.objectContaining({
        partition: 'system',
        file: 'apex/com.android.tzdata.apex',
        package: 'com.android.tzdata',
        detail: expect.stringMatching(/^com\.android\.tzdata version 340090000, payload key [0-9a-f]{64}$/),
      }),
    ]);
    expect(byId['2.5/C-0-1'].status).toBe('pass');
    expect(byId['3.1/C-0-1'].message).toMatch(/and 1 APEX jar\(s\)/);
  });

  it('fails the device-only requirements on an unlocked, orange device', () => {
    const byId = Object.fromEntries(report.results.map((r) => [r.id, r]));
    expect(byId['6.4/C-1-2'].status).toBe('fail');
    expect(byId['6.4/C-1-2'].evidence[0]).toMatchObject({ prop: 'ro.boot.flash.locked', value: '0' });
    expect(byId['6.4/C-1-1'].status).toBe('fail');
    expect(report.summary.conforms).toBe(false);
  });

  it('compares the vbmeta digest the device reports with the build it is checked against', () => {
    const byId = Object.fromEntries(report.results.map((r) => [r.id, r]));
    expect(byId['6.4/C-1-3'].status, byId['6.4/C-1-3'].message).toBe('pass');
    expect(report.target).toMatchObject({ verifiedBootState: 'orange', build: { source: images } });
    expect(report.target.vbmetaDigest).toBe(report.target.build?.vbmetaDigest);
    // dm-verity enforcing, as the booted vbmeta (no HASHTREE_DISABLED flag) set it.
    expect(byId['6.3/C-0-4'].status, byId['6.3/C-0-4'].message).toBe('pass');
  });

  it('check --device --attest: the certificate carries the serial, vbmeta digest and boot state', async () => {
    const kp = generateKeyPairSync('ed25519');
    const priv = join(E2E, 'device-lab.key.pem');
    const pub = join(E2E, 'device-lab.pub.pem');
    writeFileSync(priv, kp.privateKey.export({ type: 'pkcs8', format: 'pem' }));
    writeFileSync(pub, kp.publicKey.export({ type: 'spki', format: 'pem' }));
    const att = join(E2E, 'device.dsse.json');
    await writeAttestation(report, { key: priv, out: att });
    const v = await verifyAttestation(att, { trustedKey: pub, profile: 'device', image: images });
    expect(v.statement?.subject).toEqual([
      { name: `device:${report.target.input}`, digest: { sha256: report.target.vbmetaDigest } },
    ]);
    expect(v.statement?.predicate.target).toMatchObject({
      kind: 'device',
      device: { serial: report.target.input, verifiedBootState: 'orange' },
      vbmetaDigest: report.target.vbmetaDigest,
    });
    // An unlocked, orange virtual device does not conform: that, and only that, is why it is refused.
    expect([...new Set(v.reasons.map((r) => r.code))]).toEqual(['MUST_FAILED']);
    const asImage = await verifyAttestation(att, { trustedKey: pub, image: images });
    expect(asImage.reasons.map((r) => r.code)).toContain('PROFILE_MISMATCH');
  });
});
