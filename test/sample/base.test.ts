import { createHash } from 'node:crypto';
import { readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { readApkIdentity } from '../../scripts/build/plan.ts';
import { getProp } from '../../scripts/build/props.ts';
import { ZipArchive } from '../../scripts/formats/apk/zip.ts';
import { infoImage } from '../../scripts/formats/avb/index.ts';
import { readFactoryZip } from '../../scripts/formats/factory-zip.ts';
import { extractPartition, readSuper } from '../../scripts/formats/super/index.ts';
import { capabilityNames } from '../../scripts/fs/fs-config.ts';
import { openFilesystem } from '../../scripts/fs/index.ts';
import type { FsReader } from '../../scripts/fs/types.ts';
import { FRAMEWORK_RES } from '../../scripts/host/tools.ts';
import { generateSampleBase, type SampleBase } from '../../scripts/sample/base.ts';
import { workDir } from '../helpers.ts';
import { AVBTOOL } from '../oracles.ts';
import { SAMPLE_APK_CACHE, SAMPLE_KEYS, sampleBase } from './fixture.ts';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('omie sample-base', () => {
  let base: SampleBase;
  const fs: Record<string, FsReader> = {};
  beforeAll(async () => {
    base = await sampleBase();
    for (const n of ['system', 'product', 'vendor'] as const) fs[n] = await openFilesystem(base.images[n]);
  }, 600_000);

  it('builds clean filesystems of the expected kinds (e2fsck -fn, fsck.erofs)', async () => {
    expect(fs.system.kind).toBe('ext4');
    expect(fs.vendor.kind).toBe('ext4');
    expect(fs.product.kind).toBe('erofs');
    for (const img of [base.images.system, base.images.vendor])
      expect((await execa('e2fsck', ['-fn', img], { reject: false })).exitCode).toBe(0);
    expect((await execa('fsck.erofs', [base.images.product], { reject: false })).exitCode).toBe(0);
  });

  it('lays out system-as-root with framework-res, props, permissions and file_contexts', async () => {
    const sys = fs.system;
    for (const p of [
      '/system/build.prop',
      '/system/etc/prop.default',
      '/system/etc/selinux/plat_file_contexts',
      '/system/etc/permissions/privapp-permissions-google.xml',
      '/system/etc/sysconfig/google.xml',
      '/system/etc/default-permissions/default-permissions-google.xml',
      '/system/etc/preferred-apps/google.xml',
      '/system/framework/com.google.android.maps.jar',
      '/system/etc/permissions/com.google.android.maps.xml',
    ])
      expect([p, await sys.exists(p)]).toEqual([p, true]);
    expect((await sys.stat('/etc'))!).toMatchObject({ type: 'symlink', target: '/system/etc' });
    // Debian's framework-res, re-signed with the base's platform key (as a real base's is).
    const fwPath = join(workDir('sample'), 'framework-res.apk');
    await sys.copyOut('/system/framework/framework-res.apk', fwPath);
    const [mine, host] = [await ZipArchive.openFile(fwPath), await ZipArchive.openFile(FRAMEWORK_RES)];
    expect(sha(await mine.read(mine.entry('resources.arsc')!))).toBe(
      sha(await host.read(host.entry('resources.arsc')!)),
    );
    await Promise.all([mine.close(), host.close()]);
    const fwId = await readApkIdentity(fwPath);
    expect([fwId.package, fwId.signers]).toEqual(['android', [base.signers.platform]]);
    const prop = (await sys.readFile('/system/build.prop')).toString();
    for (const k of [
      'ro.com.google.gmsversion',
      'ro.com.google.clientidbase',
      'ro.setupwizard.mode',
      'ro.opa.eligible_device',
    ])
      expect(getProp(prop, k)).toBeTruthy();
    expect((await fs.product.readFile('/etc/selinux/product_file_contexts')).toString()).toContain(
      'product_file_contexts',
    );
    expect((await fs.vendor.readFile('/etc/gps.conf')).toString()).toMatch(/^SUPL_HOST=supl\.google\.com$/m);
  });

  it("labels every file from the images' own file_contexts and sets capabilities", async () => {
    for (const n of ['system', 'product', 'vendor']) {
      const unlabelled = (await fs[n].list()).filter((e) => !e.label).map((e) => e.path);
      expect([n, unlabelled]).toEqual([n, []]);
    }
    const logd = (await fs.system.stat('/system/bin/logd'))!;
    expect(logd).toMatchObject({ mode: 0o550, uid: 1036, gid: 1036, label: 'u:object_r:logd_exec:s0' });
    expect(capabilityNames(logd.capabilities!)).toEqual(['SETGID', 'AUDIT_CONTROL', 'SYSLOG']);
    expect((await fs.vendor.stat('/bin/hw/android.hardware.gnss-service.sample'))!.label).toBe(
      'u:object_r:hal_gnss_default_exec:s0',
    );
    expect((await fs.vendor.stat('/app/OemCamera/OemCamera.apk'))!.label).toBe(
      'u:object_r:vendor_app_file:s0',
    );
  });

  it('carries real APKs whose manifest identity and signer are as declared (folder names differ)', async () => {
    expect(base.apps.length).toBeGreaterThan(20);
    expect(base.apps.some((a) => a.expect === 'removed-by-signer')).toBe(true);
    for (const a of base.apps) {
      const tmp = join(workDir('sample'), 'apk.apk');
      await fs[a.partition].copyOut(a.imagePath, tmp);
      const id = await readApkIdentity(tmp);
      expect([a.dir, id.package, id.verified, id.signers]).toEqual([
        a.dir,
        a.spec.package,
        true,
        [base.signers[a.signer]],
      ]);
    }
    // Google apps sit on both system and product, in priv-app and app.
    for (const part of ['system', 'product'] as const)
      for (const sub of ['priv-app', 'app'])
        expect(
          base.apps.some(
            (a) => a.partition === part && a.imagePath.includes(`/${sub}/`) && a.expect !== 'kept',
          ),
        ).toBe(true);
    expect(
      base.apps.some((a) => a.dir !== a.spec.package && a.spec.package === 'com.google.android.gms'),
    ).toBe(true);
  });

  it('agrees with aapt and apksigner (oracles) on one renamed Google app and the test-key app', async () => {
    const work = workDir('sample');
    for (const dir of ['Velvet', 'BasicDreams']) {
      const a = base.apps.find((x) => x.dir === dir)!;
      const apk = join(work, `${dir}.apk`);
      await fs[a.partition].copyOut(a.imagePath, apk);
      const badging = await execa('aapt', ['dump', 'badging', apk]);
      expect(badging.stdout).toMatch(
        new RegExp(`^package: name='${a.spec.package.replace(/\./g, '\\.')}'`, 'm'),
      );
      const v = await execa('apksigner', ['verify', '--print-certs', apk]);
      expect(v.stdout).toContain(`certificate SHA-256 digest: ${a.signerSha256}`);
    }
  }, 60_000);

  it('ships an OEM app with tracker SDK classes in its DEX', async () => {
    const a = base.apps.find((x) => x.dir === 'OemWeather')!;
    const tmp = join(workDir('sample'), 'oem.apk');
    await fs.product.copyOut(a.imagePath, tmp);
    const zip = await ZipArchive.openFile(tmp);
    const dex = await zip.read(zip.entry('classes.dex')!);
    await zip.close();
    for (const c of [
      'Lcom/facebook/appevents/AppEventsLogger;',
      'Lcom/google/firebase/analytics/FirebaseAnalytics;',
    ])
      expect(dex.includes(Buffer.from(c))).toBe(true);
  });

  it.skipIf(!AVBTOOL.present)(`packages a vbmeta that avbtool reads ${AVBTOOL.reason}`, async () => {
    const info = await execa('python3', [AVBTOOL.path, 'info_image', '--image', base.vbmeta]);
    expect(info.stdout).toContain('Algorithm:                SHA256_RSA4096');
    for (const n of ['system', 'product', 'vendor'])
      expect(info.stdout).toContain(`Partition Name:        ${n}`);
  });

  it('packages vbmeta, an A/B super.img and a fastboot zip holding the same images', async () => {
    const vbmeta = await infoImage(base.vbmeta);
    expect(vbmeta.algorithm).toBe('SHA256_RSA4096');
    expect(vbmeta.descriptors.map((d) => ('partitionName' in d ? d.partitionName : '')).sort()).toEqual(
      expect.arrayContaining(['product', 'system', 'vendor']),
    );
    const sup = await readSuper(base.superImg);
    expect(sup.partitions.map((p) => p.name).sort()).toEqual([
      'product_a',
      'product_b',
      'system_a',
      'system_b',
      'vendor_a',
      'vendor_b',
    ]);
    const out = join(workDir('sample'), 'system_a.img');
    await extractPartition(base.superImg, 'system_a', out);
    expect(sha(await readFile(out))).toBe(sha(await readFile(base.images.system)));
    const z = await readFactoryZip(base.factoryZip);
    expect(z.images.map((i) => i.partition).sort()).toEqual(['product', 'system', 'vbmeta', 'vendor']);
    expect(z.androidInfo).toBeTruthy();
  });

  it('is reproducible: a second generation with the same keys is byte-identical', async () => {
    const dir = join(workDir('sample'), 'again');
    await rm(dir, { recursive: true, force: true });
    await generateSampleBase({ outDir: dir, keysDir: SAMPLE_KEYS, apkCacheDir: SAMPLE_APK_CACHE });
    const names = (await readdir(base.dir)).filter((f) => !f.startsWith('.')).sort();
    expect(names).toEqual([
      'factory.zip',
      'product.img',
      'sample-base.json',
      'super.img',
      'system.img',
      'vbmeta.img',
      'vendor.img',
    ]);
    for (const f of names)
      expect([f, sha(await readFile(join(dir, f)))]).toEqual([f, sha(await readFile(join(base.dir, f)))]);
  }, 300_000);

  it('omie sample-base --help documents the command', async () => {
    const r = await execa(
      process.execPath,
      [join(import.meta.dirname, '../../scripts/omie.mjs'), 'sample-base', '--help'],
      { reject: false },
    );
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain('--size-mib');
  });
});
