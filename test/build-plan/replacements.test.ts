/**
 * Google-free replacements in the plan, on the GMS-style sample base: Google's Mainline modules
 * (an APK and an APEX) replaced by the AOSP modules a product provides, or refused naming each;
 * Google's WebView and setup wizard removed only when something takes their place.
 */
import { createHash } from 'node:crypto';
import { copyFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildApex } from '../../scripts/apexgen/index.ts';
import { buildApk, generateSigningKey, type SigningKey } from '../../scripts/apkgen/index.ts';
import { applyPlan } from '../../scripts/build/apply.ts';
import {
  makePlan,
  type PartitionInput,
  type Plan,
  readApexIdentity,
  renderPlan,
} from '../../scripts/build/plan.ts';
import { loadMainlineModules, type MainlineModule } from '../../scripts/conformance/mainline.ts';
import { readApexInfo } from '../../scripts/formats/apex/index.ts';
import { generateAvbKey } from '../../scripts/formats/avb/keys.ts';
import { openFilesystem } from '../../scripts/fs/index.ts';
import type { ResolvedApp, ResolvedOverlay, ResolvedProduct } from '../../scripts/model/index.ts';
import type { SampleBase } from '../../scripts/sample/base.ts';
import { ROOT, workDir } from '../helpers.ts';
import { sampleBase } from '../sample/fixture.ts';

const W = workDir('build-plan-replacements');
let base: SampleBase;
let mainline: MainlineModule[];
let key: SigningKey;
let signer: string;

beforeAll(async () => {
  base = await sampleBase();
  mainline = await loadMainlineModules(join(ROOT, 'spec'));
  key = await generateSigningKey(join(W, 'keys'), 'partner', { subject: '/O=Omie tests/CN=partner' });
  const { X509Certificate } = await import('node:crypto');
  signer = createHash('sha256')
    .update(new X509Certificate(await readFile(key.certPem)).raw)
    .digest('hex');
}, 600_000);

async function pinned(
  name: string,
  pkg: string,
  role: ResolvedApp['role'],
  file: string,
  extra: Partial<ResolvedApp> = {},
): Promise<ResolvedApp> {
  const sha256 = createHash('sha256')
    .update(await readFile(file))
    .digest('hex');
  return {
    name,
    package: pkg,
    label: name,
    role,
    partition: file.endsWith('apex') ? 'system' : 'product',
    privileged: false,
    privilegedPermissions: [],
    defaultPermissions: [],
    signer: { sha256: [signer] },
    apk: { file, sha256 },
    apkPath: file,
    kind: file.endsWith('.apex') ? 'apex' : 'apk',
    file: join(W, name, 'app.yaml'),
    dir: join(W, name),
    ...extra,
  } as ResolvedApp;
}

async function apk(
  name: string,
  pkg: string,
  role: ResolvedApp['role'],
  metaData: Array<{ name: string; value: string }> = [],
) {
  const path = join(W, `${name}.apk`);
  await buildApk({ package: pkg, label: name, minSdk: 29, targetSdk: 34, metaData }, { key }, path);
  return pinned(name, pkg, role, path);
}

const cloud = () => apk('Cloud', 'org.omie.test.cloud', 'personal-cloud');

function product(apps: ResolvedApp[], overlays: ResolvedOverlay[] = []): ResolvedProduct {
  return {
    product: {
      name: 'omie-test',
      version: '1.0.0',
      identity: { brand: 'Omie', manufacturer: 'Omie', model: 'T', device: 'tablet', name: 'omie_test' },
      removals: { defaults: true, packages: [], patterns: ['com.facebook.*'], keep: [] },
      properties: { set: {}, remove: [] },
    },
    apps,
    overlays,
  } as unknown as ResolvedProduct;
}

async function inputs(images = base.images): Promise<PartitionInput[]> {
  return [
    { name: 'system', fs: await openFilesystem(images.system) },
    { name: 'product', fs: await openFilesystem(images.product) },
    { name: 'vendor', fs: await openFilesystem(images.vendor) },
  ];
}

const plan = async (apps: ResolvedApp[], overlays: ResolvedOverlay[] = [], extra = {}) =>
  makePlan(await inputs(), product(apps, overlays), {
    googleSigners: base.googleSigners,
    mainline,
    ...extra,
  });

const provisionedOverlay = (values: Array<[string, boolean]>) =>
  ({
    name: 'omie-provisioned',
    package: 'org.omie.overlay.provisioned',
    target: 'com.android.providers.settings',
    partition: 'product',
    priority: 1,
    values: values.map(([name, value]) => ({ type: 'bool', name, value })),
    xml: [],
  }) as unknown as ResolvedOverlay;

describe('the plan refuses to remove what nothing replaces', () => {
  let p: Plan;
  beforeAll(async () => {
    p = await plan([await cloud()]);
  }, 300_000);

  it("names each Google Mainline module with its AOSP module, Google's WebView and setup wizard", () => {
    expect(p.refusals.map((r) => [r.kind, r.package, r.replacement ?? null])).toEqual([
      ['mainline', 'com.google.android.modulemetadata', 'com.android.modulemetadata'],
      ['mainline', 'com.google.android.tzdata6', 'com.android.tzdata'],
      ['webview', 'com.google.android.webview', null],
      ['setup', 'com.google.android.setupwizard', null],
    ]);
    expect(p.refusals[1]).toMatchObject({ where: 'system:/system/apex/com.google.android.tzdata6.apex' });
    expect(renderPlan(p)).toMatch(
      /The build refuses this plan \(4\):\n {2}! com\.google\.android\.modulemetadata/,
    );
  });

  it('a kept AOSP Provision, or an overlay starting provisioned, is enough for setup', async () => {
    const half = await plan([await cloud()], [provisionedOverlay([['def_device_provisioned', true]])]);
    expect(half.refusals.filter((r) => r.kind === 'setup')).toHaveLength(1);
    const both = await plan(
      [await cloud()],
      [
        provisionedOverlay([
          ['def_device_provisioned', true],
          ['def_user_setup_complete', true],
        ]),
      ],
    );
    expect(both.refusals.filter((r) => r.kind === 'setup')).toEqual([]);
  }, 300_000);

  it('an APEX Google signed under its AOSP name needs a build the partner signed', async () => {
    const googleSigned = await plan([await cloud()], [], {
      identifyApex: async (path: string) => ({
        ...(await readApexIdentity(path)),
        signers: base.googleSigners,
      }),
    });
    const i18n = googleSigned.refusals.find((r) => r.package === 'com.android.i18n');
    expect(i18n).toMatchObject({ kind: 'mainline', replacement: 'com.android.i18n' });
    expect(i18n?.message).toMatch(
      /is signed by Google: provide a build of com\.android\.i18n the partner signed/,
    );
    expect(googleSigned.refusals.filter((r) => r.package === 'com.android.i18n')).toHaveLength(1);
  }, 300_000);

  it('with 2.5/C-0-1 waived, Google modules are kept rather than removed', async () => {
    const kept = await plan([await cloud()], [], { keepGoogleMainline: true });
    expect(kept.refusals.filter((r) => r.kind === 'mainline')).toEqual([]);
    expect(kept.keptPackages).toEqual(
      expect.arrayContaining(['com.google.android.modulemetadata', 'com.google.android.tzdata6']),
    );
  }, 300_000);
});

describe('the plan replaces them with what the product provides', () => {
  let p: Plan;
  let apps: ResolvedApp[];
  beforeAll(async () => {
    const payloadKey = join(W, 'keys', 'tzdata-payload.pem');
    await generateAvbKey(payloadKey, 4096).catch(() => {});
    const tzdata = join(W, 'com.android.tzdata.apex');
    await buildApex(
      { name: 'com.android.tzdata', version: 340090000, files: { 'etc/tz/tzdata': 'tzdata2024b\n' } },
      { payloadKey, containerKey: key },
      tzdata,
    );
    apps = [
      await cloud(),
      await apk('WebView', 'org.omie.test.webview', 'webview', [
        { name: 'com.android.webview.WebViewLibrary', value: 'libwebviewchromium.so' },
      ]),
      await apk('Setup', 'org.omie.test.setup', 'setup'),
      await apk('ModuleMetadata', 'com.android.modulemetadata', 'system'),
      await pinned('Tzdata', 'com.android.tzdata', 'system', tzdata),
    ];
    p = await plan(apps);
  }, 600_000);

  it('removes the Google modules, WebView and setup wizard, refusing nothing', () => {
    expect(p.refusals).toEqual([]);
    const sys = p.partitions.find((x) => x.partition === 'system')!;
    expect(sys.apexes.find((a) => a.package === 'com.google.android.tzdata6')).toMatchObject({
      action: 'remove',
      reason: 'Google Mainline module, replaced by the AOSP module com.android.tzdata',
    });
    expect(sys.apks.find((a) => a.package === 'com.google.android.modulemetadata')!.reason).toBe(
      'Google Mainline module, replaced by the AOSP module com.android.modulemetadata',
    );
    expect(p.removedPackages).toEqual(
      expect.arrayContaining(['com.google.android.webview', 'com.google.android.setupwizard']),
    );
    expect(sys.additions.find((a) => a.path === '/system/apex/com.android.tzdata.apex')).toMatchObject({
      kind: 'file',
      mode: 0o644,
      label: 'u:object_r:system_file:s0',
      package: 'com.android.tzdata',
    });
    expect(p.addedPackages).toEqual(
      expect.arrayContaining(['com.android.tzdata', 'com.android.modulemetadata']),
    );
  });

  it('applies: the AOSP APEX replaces Google build of it on system', async () => {
    const out = {
      system: join(W, 'system.img'),
      product: join(W, 'product.img'),
      vendor: join(W, 'vendor.img'),
    };
    for (const n of ['system', 'product', 'vendor'] as const) await copyFile(base.images[n], out[n]);
    await applyPlan(p, out, { epoch: 1707134400 });
    const fs = await openFilesystem(out.system);
    try {
      const apexes = (await fs.list()).filter((e) => e.path.startsWith('/system/apex/')).map((e) => e.path);
      expect(apexes.sort()).toEqual([
        '/system/apex/com.android.i18n.apex',
        '/system/apex/com.android.tzdata.apex',
      ]);
      const back = join(W, 'readback.apex');
      await fs.copyOut('/system/apex/com.android.tzdata.apex', back);
      expect(await readApexInfo(back)).toMatchObject({
        name: 'com.android.tzdata',
        packageName: 'com.android.tzdata',
        container: { verified: true, signers: [signer] },
      });
    } finally {
      await fs.close();
    }
  }, 300_000);

  it('refuses an APEX app whose file does not match its pinned signer', async () => {
    const tz = apps[4];
    const wrong = { ...tz, signer: { sha256: ['0'.repeat(64)] } } as ResolvedApp;
    await expect(plan([...apps.slice(0, 4), wrong])).rejects.toThrow(/Tzdata: APK signer/);
  }, 300_000);
});
