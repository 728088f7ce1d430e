import { existsSync } from 'node:fs';
import { cp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { certSha256 } from '../../scripts/conformance/product.ts';
import { runCheck } from '../../scripts/conformance/run.ts';
import type { Report } from '../../scripts/conformance/spec-schema.ts';
import { calculateVbmetaDigest, readAvbImage } from '../../scripts/formats/avb/index.ts';
import { writeFastbootZip } from '../../scripts/formats/factory-zip.ts';
import { buildSuper } from '../../scripts/formats/super/index.ts';
import { flipByte, omie, ROOT } from '../helpers.ts';
import { buildImages, E2E } from './image-fixture.ts';

const repo = join(E2E, 'repo');
const spec = join(repo, 'spec');
let clean: string;
let bad: string;

beforeAll(async () => {
  clean = await buildImages('clean');
  bad = await buildImages('bad');
  // A repository beside the spec whose prebuilt-apps/ pin the sample apps to the omie key.
  await rm(repo, { recursive: true, force: true });
  await cp(resolve(ROOT, 'spec'), spec, { recursive: true });
  const pin = certSha256(join(E2E, 'keys', 'omie.x509.pem'));
  for (const [name, pkg] of [
    ['PersonalCloud', 'org.omie.personalcloud'],
    ['MySuppliers', 'org.omie.mysuppliers'],
  ]) {
    await mkdir(join(repo, 'prebuilt-apps', name), { recursive: true });
    await writeFile(
      join(repo, 'prebuilt-apps', name, 'app.yaml'),
      `package: ${pkg}\nsigner:\n  sha256: [${pin}]\n`,
    );
  }
}, 300_000);

describe('omie check on real images', () => {
  it('a clean image folder conforms (exit 0) and gets every report', async () => {
    const reports = join(E2E, 'reports-clean');
    await rm(reports, { recursive: true, force: true });
    const r = await omie(['check', clean, '--spec', spec, '--report-dir', reports, '--json']);
    const report = JSON.parse(r.stdout) as Report;
    const bad = report.results.filter((x) => x.status === 'fail' || x.status === 'error');
    expect(bad.map((b) => `${b.id}: ${b.message} ${JSON.stringify(b.evidence.slice(0, 3))}`)).toEqual([]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(report.target.partitions).toEqual(['product', 'system', 'vbmeta', 'vendor']);
    for (const f of ['report.json', 'junit.xml', 'report.sarif', 'report.html'])
      expect(existsSync(join(reports, f))).toBe(true);
    const byId = Object.fromEntries(report.results.map((x) => [x.id, x]));
    // Facts that only real images give: AVB signature, erofs/ext4 files, resources from a real APK.
    expect(byId['6.3/C-0-1'].evidence[0]).toMatchObject({ partition: 'vbmeta', value: 'SHA256_RSA2048' });
    expect(byId['6.3/C-0-3'].evidence.map((e) => e.partition).sort()).toEqual([
      'product',
      'system',
      'vendor',
    ]);
    expect(
      byId['2.4/C-0-1'].evidence.some((e) => e.value === 'https://captive.omie.example/generate_204'),
    ).toBe(true);
    expect(byId['4.1/C-0-3'].status).toBe('pass');
    expect(byId['4.2/C-0-1'].evidence.map((e) => e.package).sort()).toEqual([
      'org.omie.mysuppliers',
      'org.omie.personalcloud',
    ]);
    // The TzUpdater inside the APEX counts too, read from the APEX's ext4 payload.
    expect(byId['5.1/C-0-1'].message).toBe('all 6 APK(s) verify');
    expect(byId['5.3/C-0-1'].evidence).toEqual([
      expect.objectContaining({
        partition: 'system',
        file: 'apex/com.android.tzdata.apex',
        detail: expect.stringMatching(/^com\.android\.tzdata version 340090000, payload key [0-9a-f]{64}$/),
      }),
    ]);
    expect(byId['2.6/C-0-1'].evidence[0]).toMatchObject({ package: 'com.android.provision' });
  });

  it('an image that violates requirements fails them (exit 1) with evidence', async () => {
    const r = await omie(['check', bad, '--spec', spec, '--json', '--format', 'json']);
    expect(r.exitCode).toBe(1);
    const report = JSON.parse(r.stdout) as Report;
    const failed = report.results.filter((x) => x.status === 'fail').map((x) => x.id);
    expect(failed).toEqual(
      expect.arrayContaining(['2.1/C-0-1', '3.1/C-0-1', '5.1/C-0-4', '6.1/C-0-1', '6.2/C-0-1', '7.1/C-0-2']),
    );
    const byId = Object.fromEntries(report.results.map((x) => [x.id, x]));
    expect(byId['6.2/C-0-1'].evidence[0]).toMatchObject({ partition: 'system', file: 'xbin/su' });
    expect(byId['3.1/C-0-1'].evidence[0]).toMatchObject({
      package: 'org.omie.mysuppliers',
      value: 'com.google.firebase.analytics.FirebaseAnalytics',
    });
    expect(byId['2.1/C-0-1'].evidence[0]).toMatchObject({
      partition: 'product',
      file: 'priv-app/GmsCore/GmsCore.apk',
    });
    // Google's build of the tzdata APEX, named with its AOSP module; its jar's tracker SDK.
    expect(byId['2.5/C-0-1'].evidence).toEqual([
      expect.objectContaining({
        file: 'apex/com.google.android.tzdata6.apex',
        package: 'com.google.android.tzdata6',
        value: 'com.android.tzdata',
      }),
    ]);
    expect(byId['3.1/C-0-1'].evidence).toContainEqual(
      expect.objectContaining({
        file: 'apex/com.google.android.tzdata6.apex!javalib/framework-tz.jar',
        value: 'com.appsflyer.AppsFlyerLib',
      }),
    );
    expect(report.summary.conforms).toBe(false);
  });

  it('a failing check says what to fix: the first offenders of each failing requirement and the report', async () => {
    const reports = join(E2E, 'reports-bad');
    const r = await omie(['check', bad, '--spec', spec, '--report-dir', reports, '--format', 'html,json']);
    expect(r.exitCode).toBe(1);
    const fix = r.stdout.slice(r.stdout.indexOf('What to fix'));
    expect(fix).toContain(
      '6.2/C-0-1 [MUST] No su binary: 1 su binar(ies) found\n    - system/xbin/su: su file present',
    );
    expect(fix).toContain(
      '2.1/C-0-1 [MUST] No Google package on any partition: 2 Google package(s) present\n    - product/priv-app/GmsCore/GmsCore.apk: package com.google.android.gms',
    );
    // Google's time zone APEX: its package, and the AOSP module that replaces it.
    expect(fix).toContain(
      "    - system/apex/com.google.android.tzdata6.apex: package com.google.android.tzdata6, value com.android.tzdata: Google's build of the Mainline APEX com.android.tzdata: replace it with the AOSP module com.android.tzdata",
    );
    expect(fix).toContain(
      `Every offender and why each requirement protects the owner: ${join(reports, 'report.html')}`,
    );
    // Without reports, it says how to get them.
    const plain = await omie(['check', bad, '--spec', spec]);
    expect(plain.stdout).toContain('rerun with --report-dir <dir>');
    // A conforming image has nothing to fix.
    const ok = await omie(['check', clean, '--spec', spec]);
    expect(ok.exitCode).toBe(0);
    expect(ok.stdout).not.toContain('What to fix');
  });

  it('a waivers file waives, and an expired waiver fails', async () => {
    const w = join(E2E, 'waivers.yaml');
    await writeFile(
      w,
      'waivers:\n  - id: 6.1/C-0-1\n    reason: engineering build for the lab\n    expires: 2099-12-31\n  - id: 6.2/C-0-1\n    reason: expired long ago\n    expires: 2000-01-01\n',
    );
    const report = await runCheck({ image: bad, spec, waivers: w });
    const byId = Object.fromEntries(report.results.map((x) => [x.id, x]));
    expect(byId['6.1/C-0-1'].status).toBe('waived');
    expect(byId['6.2/C-0-1'].status).toBe('fail');
    expect(byId['6.2/C-0-1'].evidence.at(-1)?.detail).toContain('waiver expired on 2000-01-01');
  });

  it('an unsigned vbmeta fails 6.3/C-0-1', async () => {
    const dir = await buildImages('clean', { vbmetaAlgorithm: 'NONE' });
    const report = await runCheck({ image: dir, spec });
    expect(report.results.find((x) => x.id === '6.3/C-0-1')?.status).toBe('fail');
    // rebuild the signed clean image for any later test
    clean = await buildImages('clean');
  });

  it('one flipped byte deep inside the signed system.img fails 6.3/C-0-5, naming the partition and block', async () => {
    const dir = join(E2E, 'flipped');
    await rm(dir, { recursive: true, force: true });
    await cp(clean, dir, { recursive: true });
    const { descriptors } = (await readAvbImage(join(dir, 'vbmeta.img'))).vbmeta;
    const d = descriptors.find((x) => x.kind === 'hashtree' && x.partitionName === 'system');
    if (d?.kind !== 'hashtree') throw new Error('no system hashtree descriptor');
    // The last data block: deep inside, past anything the filesystem readers look at.
    const block = d.imageSize / d.dataBlockSize - 1;
    await flipByte(join(dir, 'system.img'), block * d.dataBlockSize + 1000);
    const r = await omie(['check', dir, '--spec', spec, '--json', '--format', 'json']);
    expect(r.exitCode).toBe(1);
    const report = JSON.parse(r.stdout) as Report;
    const c = report.results.find((x) => x.id === '6.3/C-0-5');
    expect(c?.status).toBe('fail');
    expect(c?.evidence).toMatchObject([
      {
        partition: 'system',
        file: 'system.img',
        value: `data block ${block} (offset ${block * d.dataBlockSize})`,
      },
    ]);
    expect(report.summary.conforms).toBe(false);
  });

  it('check --attest under a weakened spec: verify-attestation rejects it, naming the spec files that differ', async () => {
    const { generateKeyPairSync } = await import('node:crypto');
    const kp = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const priv = join(E2E, 'lab.key.pem');
    const pub = join(E2E, 'lab.pub.pem');
    await writeFile(priv, kp.privateKey.export({ type: 'pkcs8', format: 'pem' }));
    await writeFile(pub, kp.publicKey.export({ type: 'spki', format: 'pem' }));
    // The repository beside the spec, with section 6.3 dropped and a tracker deleted.
    const weakRepo = join(E2E, 'weak-repo');
    await rm(weakRepo, { recursive: true, force: true });
    await cp(repo, weakRepo, { recursive: true });
    const sec = join(weakRepo, 'spec/requirements/security.yaml');
    const doc = parseYaml(await readFile(sec, 'utf8'));
    doc.requirements = doc.requirements.filter((r: { id: string }) => !r.id.startsWith('6.3/'));
    await writeFile(sec, stringifyYaml(doc));
    const tr = join(weakRepo, 'spec/trackers.yaml');
    const trackers = parseYaml(await readFile(tr, 'utf8'));
    (Array.isArray(trackers) ? trackers : trackers.trackers).splice(0, 1);
    await writeFile(tr, stringifyYaml(trackers));
    const att = join(E2E, 'weak.dsse.json');
    const c = await omie([
      'check',
      clean,
      '--spec',
      join(weakRepo, 'spec'),
      '--attest',
      '--key',
      priv,
      '--attest-out',
      att,
    ]);
    expect(c.exitCode, c.stdout + c.stderr).toBe(0);
    const v = await omie(['verify-attestation', att, '--image', clean, '--trusted-key', pub, '--json']);
    expect(v.exitCode).toBe(1);
    expect(JSON.parse(v.stdout).reasons).toMatchObject([
      { code: 'SPEC_MISMATCH', files: ['requirements/security.yaml', 'trackers.yaml'] },
    ]);
    // Made under the kit's own spec, the same image verifies; for another profile or a changed image it does not.
    const good = join(E2E, 'good.dsse.json');
    expect(
      (await omie(['check', clean, '--spec', spec, '--attest', '--key', priv, '--attest-out', good]))
        .exitCode,
    ).toBe(0);
    const ok = await omie(['verify-attestation', good, '--image', clean, '--trusted-key', pub, '--json']);
    expect(ok.exitCode, ok.stdout).toBe(0);
    expect(JSON.parse(ok.stdout).target.vbmetaDigest).toBe(
      await calculateVbmetaDigest(join(clean, 'vbmeta.img')),
    );
    const dev = await omie([
      'verify-attestation',
      good,
      '--image',
      clean,
      '--trusted-key',
      pub,
      '--profile',
      'device',
      '--json',
    ]);
    expect(JSON.parse(dev.stdout).reasons.map((r: { code: string }) => r.code)).toEqual(['PROFILE_MISMATCH']);
    const changed = join(E2E, 'changed');
    await rm(changed, { recursive: true, force: true });
    await cp(clean, changed, { recursive: true });
    await flipByte(join(changed, 'vbmeta.img'), 300);
    const bad = await omie(['verify-attestation', good, '--image', changed, '--trusted-key', pub, '--json']);
    expect(JSON.parse(bad.stdout).reasons.map((r: { code: string }) => r.code)).toEqual([
      'SUBJECT_MISMATCH',
      'VBMETA_MISMATCH',
    ]);
  });

  it('reads the same image packed as a sparse super.img and as a fastboot zip', async () => {
    const superImg = join(E2E, 'super.img');
    await buildSuper(
      {
        blockDevices: [{ name: 'super', size: 96 * 1024 * 1024 }],
        groups: [{ name: 'omie_dynamic_partitions', maxSize: 90 * 1024 * 1024 }],
        partitions: ['system', 'product', 'vendor'].flatMap((p) => [
          { name: `${p}_a`, group: 'omie_dynamic_partitions', imagePath: join(clean, `${p}.img`) },
          { name: `${p}_b`, group: 'omie_dynamic_partitions' },
        ]),
        metadataSlots: 2,
        metadataMaxSize: 65536,
      },
      superImg,
      { sparse: true },
    );
    const packed = join(E2E, 'packed');
    await rm(packed, { recursive: true, force: true });
    await mkdir(packed, { recursive: true });
    await cp(superImg, join(packed, 'super.img'));
    await cp(join(clean, 'vbmeta.img'), join(packed, 'vbmeta.img'));
    const fromSuper = await runCheck({ image: packed, spec });
    expect(fromSuper.target.partitions).toEqual(['product', 'system', 'vbmeta', 'vendor']);
    expect(
      fromSuper.summary.conforms,
      JSON.stringify(fromSuper.results.filter((r) => r.status === 'fail')),
    ).toBe(true);

    const zip = join(E2E, 'omie-fastboot.zip');
    await rm(zip, { force: true });
    await writeFastbootZip(zip, {
      androidInfo: 'require board=omie_tablet\n',
      images: [
        { name: 'super', path: superImg },
        { name: 'vbmeta', path: join(clean, 'vbmeta.img') },
      ],
    });
    const fromZip = await runCheck({ image: zip, spec });
    expect(fromZip.summary.conforms).toBe(true);
    expect(fromZip.summary.pass).toBe(fromSuper.summary.pass);
  });

  it('input errors exit 2', async () => {
    const junk = join(E2E, 'junk.img');
    await writeFile(junk, Buffer.alloc(8192, 0x5a));
    const dir = join(E2E, 'junk-dir');
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'system.img'), Buffer.alloc(8192, 0x5a));
    for (const args of [[junk], [clean, '--format', 'pdf']]) {
      const r = await omie(['check', ...args, '--json']);
      expect(r.exitCode, `${args.join(' ')}: ${r.stdout}${r.stderr}`).toBe(2);
      expect(JSON.parse(r.stdout).ok).toBe(false);
    }
    await expect(runCheck({ image: dir, spec })).rejects.toMatchObject({ exitCode: 2 });
    await expect(runCheck({ image: clean, spec: join(E2E, 'nope') })).rejects.toMatchObject({
      exitCode: 2,
      code: 'SPEC_MISSING',
    });
    await expect(runCheck({ spec })).rejects.toMatchObject({ exitCode: 2, code: 'CHECK_USAGE' });
    expect(await readFile(junk)).toHaveLength(8192);
  });
});
