import { createHash } from 'node:crypto';
import { copyFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildApk, generateSigningKey } from '../../scripts/apkgen/index.ts';
import { applyPlan } from '../../scripts/build/apply.ts';
import {
  makePlan,
  type PartitionInput,
  type Plan,
  readApkIdentity,
  renderPlan,
} from '../../scripts/build/plan.ts';
import { getProp } from '../../scripts/build/props.ts';
import { openFilesystem } from '../../scripts/fs/index.ts';
import type { ResolvedApp, ResolvedProduct } from '../../scripts/model/index.ts';
import type { SampleBase } from '../../scripts/sample/base.ts';
import { workDir } from '../helpers.ts';
import { sampleBase } from '../sample/fixture.ts';

const W = workDir('build-plan');

async function testApps(): Promise<ResolvedApp[]> {
  const key = await generateSigningKey(join(W, 'keys'), 'partner-test', {
    subject: '/O=Omie tests/CN=partner',
  });
  const { X509Certificate } = await import('node:crypto');
  const cert = createHash('sha256')
    .update(new X509Certificate(await readFile(key.certPem)).raw)
    .digest('hex');
  const mk = async (
    name: string,
    pkg: string,
    role: ResolvedApp['role'],
    privileged: boolean,
    perms: string[],
    defaults: string[],
  ) => {
    const apkPath = join(W, `${name}.apk`);
    await buildApk(
      { package: pkg, label: name, minSdk: 29, targetSdk: 34, usesPermissions: [...perms, ...defaults] },
      { key },
      apkPath,
    );
    const sha256 = createHash('sha256')
      .update(await readFile(apkPath))
      .digest('hex');
    return {
      name,
      package: pkg,
      label: name,
      role,
      partition: 'product',
      privileged,
      privilegedPermissions: perms,
      defaultPermissions: defaults,
      signer: { sha256: [cert] },
      apk: { file: `${name}.apk`, sha256 },
      apkPath,
      file: join(W, name, 'app.yaml'),
      dir: join(W, name),
    } as unknown as ResolvedApp;
  };
  return [
    await mk(
      'PersonalCloud',
      'org.omie.test.personalcloud',
      'personal-cloud',
      true,
      ['android.permission.BACKUP'],
      [],
    ),
    await mk(
      'Shop',
      'org.omie.test.shop',
      'customer-app',
      false,
      [],
      ['android.permission.ACCESS_COARSE_LOCATION'],
    ),
  ];
}

function product(
  apps: ResolvedApp[],
  removals?: Partial<{ packages: string[]; patterns: string[]; keep: string[] }>,
): ResolvedProduct {
  return {
    product: {
      name: 'omie-test',
      version: '2.3.4',
      identity: {
        brand: 'Omie',
        manufacturer: 'Omie',
        model: 'Omie Test',
        device: 'tablet',
        name: 'omie_test',
      },
      removals: { defaults: true, packages: [], patterns: ['com.facebook.*'], keep: [], ...removals },
      properties: { set: { 'ro.omie.channel': 'stable' }, remove: [] },
    },
    apps,
    overlays: [],
  } as unknown as ResolvedProduct;
}

async function inputs(base: SampleBase, images = base.images): Promise<PartitionInput[]> {
  return [
    { name: 'system', fs: await openFilesystem(images.system) },
    { name: 'product', fs: await openFilesystem(images.product) },
    { name: 'vendor', fs: await openFilesystem(images.vendor) },
  ];
}

describe('build plan on the sample base', () => {
  let base: SampleBase;
  let apps: ResolvedApp[];
  let plan: Plan;
  beforeAll(async () => {
    base = await sampleBase();
    apps = await testApps();
    plan = await makePlan(await inputs(base), product(apps), { googleSigners: base.googleSigners });
  }, 600_000);

  const part = (n: string) => plan.partitions.find((p) => p.partition === n)!;

  it('removes every Google package by manifest identity or signer, whatever the folder is called, and keeps the rest', () => {
    for (const a of base.apps) {
      const p = part(a.partition);
      const apk = p.apks.find((x) => x.path === a.imagePath)!;
      expect([a.dir, apk.package]).toEqual([a.dir, a.spec.package]);
      const dir = a.imagePath.slice(0, a.imagePath.lastIndexOf('/'));
      const removed = p.removals.some((r) => r.path === dir || r.path === a.imagePath);
      expect([a.dir, removed]).toEqual([a.dir, a.expect !== 'kept']);
    }
    const helper = part('system').apks.find((x) => x.package === 'com.example.devicehelper')!;
    expect(helper).toMatchObject({ action: 'remove', reason: "signed with Google's release certificate" });
    expect(part('product').apks.find((x) => x.package === 'com.facebook.appmanager')!.reason).toBe(
      'product removals',
    );
    expect(plan.keptPackages).toEqual(
      [
        ...base.apps.filter((a) => a.expect === 'kept').map((a) => a.spec.package),
        ...base.apexes.filter((a) => a.expect === 'kept').map((a) => a.package),
      ].sort(),
    );
    // Without a Mainline policy (no spec given), Google's modules go by signer like other apps.
    expect(part('system').apexes.map((a) => [a.package, a.name, a.action])).toEqual([
      ['com.android.i18n', 'com.android.i18n', 'keep'],
      ['com.google.android.tzdata6', 'com.android.tzdata', 'remove'],
    ]);
  });

  it('removes by signer only for digests in the Google set (data-driven, extendable)', async () => {
    const p = await makePlan(await inputs(base), product(apps), { verifyApps: false });
    expect(p.partitions[0].apks.find((x) => x.package === 'com.example.devicehelper')!.action).toBe('keep');
    const kept = await makePlan(await inputs(base), product(apps, { keep: ['com.google.android.gms'] }), {
      googleSigners: base.googleSigners,
      verifyApps: false,
    });
    // keep wins over both the package set and the signer rule.
    expect(kept.removedPackages).not.toContain('com.google.android.gms');
  }, 120_000);

  it('removes Google XMLs and libraries and cuts references to removed packages from the others', () => {
    const sys = part('system');
    const removedPaths = sys.removals.map((r) => r.path);
    for (const p of [
      '/system/etc/permissions/privapp-permissions-google.xml',
      '/system/etc/permissions/com.google.android.maps.xml',
      '/system/framework/com.google.android.maps.jar',
      '/system/etc/sysconfig/google.xml',
      '/system/etc/default-permissions/default-permissions-google.xml',
      '/system/etc/preferred-apps/google.xml',
    ])
      expect(removedPaths).toContain(p);
    expect(removedPaths).not.toContain('/system/etc/permissions/platform.xml');
    const platform = sys.xmlEdits.find((x) => x.path === '/system/etc/permissions/platform.xml')!;
    expect(platform.removed.map((r) => `${r.tag}:${r.package}`).sort()).toEqual([
      'allow-in-power-save:com.google.android.gms',
      'backup-transport-whitelisted-service:com.google.android.gms',
      'hidden-api-whitelisted-app:com.google.android.gms',
    ]);
    expect(sys.xmlEdits.find((x) => x.path.endsWith('privapp-permissions-platform.xml'))!.packages).toEqual([
      'com.google.android.setupwizard',
    ]);
    expect(part('product').xmlEdits.map((x) => x.path)).toEqual([
      '/etc/sysconfig/pixel_experience_2023.xml',
      '/etc/sysconfig/preinstalled-packages-product.xml',
    ]);
    // Google's feature flags go; the platform's stay.
    expect(part('product').xmlEdits[0].removed.map((r) => `${r.tag}:${r.value}`)).toEqual([
      'feature:com.google.android.feature.PIXEL_2023_EXPERIENCE',
      'feature:com.google.android.feature.PIXEL_EXPERIENCE',
    ]);
  });

  it("adds the product apps with allowlists, modes, owners and labels from the partition's file_contexts", () => {
    const adds = part('product').additions;
    expect(adds.find((a) => a.path === '/priv-app/PersonalCloud/PersonalCloud.apk')).toMatchObject({
      mode: 0o644,
      uid: 0,
      gid: 0,
      label: 'u:object_r:system_file:s0',
      package: 'org.omie.test.personalcloud',
    });
    expect(adds.find((a) => a.path === '/priv-app/PersonalCloud')).toMatchObject({
      kind: 'dir',
      mode: 0o755,
    });
    const allow = adds.find(
      (a) => a.path === '/etc/permissions/privapp-permissions-org.omie.test.personalcloud.xml',
    )!;
    expect(allow.content).toContain('<privapp-permissions package="org.omie.test.personalcloud">');
    expect(allow.content).toContain('<permission name="android.permission.BACKUP"/>');
    expect(
      adds.find((a) => a.path === '/etc/default-permissions/default-permissions-org.omie.test.shop.xml')!
        .content,
    ).toContain('android.permission.ACCESS_COARSE_LOCATION');
    expect(adds.find((a) => a.path === '/etc/sysconfig/omie-personal-cloud.xml')!.content).toContain(
      'org.omie.test.personalcloud/.BackupTransportService',
    );
    expect(plan.addedPackages).toEqual(['org.omie.test.personalcloud', 'org.omie.test.shop']);
  });

  it('plans property edits: Google props out, identity and fingerprint, release build enforced', () => {
    const sysProps = part('system').props.find((f) => f.path === '/system/build.prop')!.edits;
    const set = (k: string) => sysProps.find((e) => e.op === 'set' && e.key === k)?.value;
    expect(sysProps.filter((e) => e.op === 'remove').map((e) => e.key)).toEqual(
      expect.arrayContaining([
        'ro.com.google.gmsversion',
        'ro.com.google.clientidbase',
        'ro.setupwizard.mode',
        'ro.opa.eligible_device',
      ]),
    );
    expect(set('ro.build.fingerprint')).toBe(
      'Omie/omie_test/tablet:14/UQ1A.240205.004/11269751.omie-2.3.4:user/release-keys',
    );
    expect(set('ro.build.type')).toBe('user');
    expect(set('ro.build.tags')).toBe('release-keys');
    expect(set('ro.control_privapp_permissions')).toBe('enforce');
    expect(set('ro.omie.version')).toBe('2.3.4');
    expect(set('ro.omie.channel')).toBe('stable');
    expect(new Set(sysProps.map((e) => e.key)).size).toBe(sysProps.length);
    const def = part('system').props.find((f) => f.path === '/system/etc/prop.default')!.edits;
    expect(def).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ key: 'ro.debuggable', value: '0' }),
        expect.objectContaining({ key: 'ro.adb.secure', value: '1' }),
      ]),
    );
  });

  it('is plain data (JSON round trip) with a readable table', () => {
    expect(JSON.parse(JSON.stringify(plan))).toEqual(plan);
    const text = renderPlan(plan);
    expect(text).toMatch(/REMOVE +com\.google\.android\.gms /);
    expect(text).toMatch(
      /\+ file +\/priv-app\/PersonalCloud\/PersonalCloud\.apk +0644 0:0 u:object_r:system_file:s0/,
    );
  });

  it('applies to ext4 and erofs: fsck clean, no Google package left, labels/modes/caps kept and set, props enforced', async () => {
    const out = {
      system: join(W, 'system.img'),
      product: join(W, 'product.img'),
      vendor: join(W, 'vendor.img'),
    };
    for (const n of ['system', 'product', 'vendor'] as const) await copyFile(base.images[n], out[n]);
    await applyPlan(plan, out, { epoch: 1707134400 });
    for (const img of [out.system, out.vendor])
      expect((await execa('e2fsck', ['-fn', img], { reject: false })).exitCode).toBe(0);
    expect((await execa('fsck.erofs', [out.product], { reject: false })).exitCode).toBe(0);
    const after = await inputs(base, out);
    const [sys, prod] = after;
    const google = new Set(base.googleSigners);
    const found: string[] = [];
    for (const p of after) {
      for (const e of await p.fs.list()) {
        if (!e.path.endsWith('.apk') || e.path.includes('/framework/')) continue;
        const tmp = join(W, 'readback.apk');
        await p.fs.copyOut(e.path, tmp);
        const id = await readApkIdentity(tmp);
        found.push(id.package);
        expect([
          e.path,
          plan.removedPackages.includes(id.package),
          id.signers.some((s) => google.has(s)),
        ]).toEqual([e.path, false, false]);
        expect([e.path, e.label]).not.toEqual([e.path, undefined]);
      }
    }
    const apexPackages = new Set(plan.partitions.flatMap((p) => p.apexes.map((a) => a.package)));
    expect(found.sort()).toEqual(
      [...plan.keptPackages, ...plan.addedPackages].filter((p) => !apexPackages.has(p)).sort(),
    );
    const features = (await prod.fs.readFile('/etc/sysconfig/pixel_experience_2023.xml')).toString();
    expect(features).not.toContain('com.google.android.feature');
    expect(features).toContain('<feature name="android.software.ipsec_tunnels" />');
    const pc = (await prod.fs.stat('/priv-app/PersonalCloud/PersonalCloud.apk'))!;
    expect(pc).toMatchObject({ mode: 0o644, uid: 0, gid: 0, label: 'u:object_r:system_file:s0' });
    expect(await prod.fs.exists('/priv-app/GmsCore')).toBe(false);
    const logd = (await sys.fs.stat('/system/bin/logd'))!;
    expect(logd).toMatchObject({ mode: 0o550, uid: 1036, label: 'u:object_r:logd_exec:s0' });
    expect(logd.capabilities).toBeTruthy();
    const platformXml = (await sys.fs.readFile('/system/etc/permissions/platform.xml')).toString();
    expect(platformXml).not.toContain('com.google.android.gms');
    expect(platformXml).toContain(
      '<backup-transport-whitelisted-service service="com.android.localtransport/.LocalTransportService" />',
    );
    expect((await sys.fs.stat('/system/etc/permissions/platform.xml'))!.label).toBe(
      'u:object_r:system_file:s0',
    );
    const bp = (await sys.fs.readFile('/system/build.prop')).toString();
    const pd = (await sys.fs.readFile('/system/etc/prop.default')).toString();
    expect([
      getProp(bp, 'ro.build.type'),
      getProp(bp, 'ro.build.tags'),
      getProp(bp, 'ro.com.google.gmsversion'),
    ]).toEqual(['user', 'release-keys', undefined]);
    expect([getProp(pd, 'ro.debuggable'), getProp(pd, 'ro.secure'), getProp(pd, 'ro.adb.secure')]).toEqual([
      '0',
      '1',
      '1',
    ]);
    expect(getProp((await prod.fs.readFile('/build.prop')).toString(), 'ro.product.product.brand')).toBe(
      'Omie',
    );
    for (const p of after) await p.fs.close();
  }, 300_000);

  it('refuses an app whose APK does not match its pin', async () => {
    const bad = { ...apps[1], apk: { file: 'x', sha256: '0'.repeat(64) } } as unknown as ResolvedApp;
    await expect(
      makePlan(await inputs(base), product([apps[0], bad]), { googleSigners: base.googleSigners }),
    ).rejects.toThrow(/pinned/);
  }, 120_000);
});
