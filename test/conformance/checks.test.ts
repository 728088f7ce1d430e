import { resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { allChecks, checkFamilies } from '../../scripts/conformance/checks/index.ts';
import type { SpecData } from '../../scripts/conformance/context.ts';
import { runChecks } from '../../scripts/conformance/engine.ts';
import { apkFacts, type MemorySystem, memoryView } from '../../scripts/conformance/memory-view.ts';
import { loadSpec, type Spec } from '../../scripts/conformance/spec.ts';
import { loadSpecData } from '../../scripts/conformance/spec-data.ts';
import type { ApexFacts } from '../../scripts/conformance/view.ts';
import { ROOT } from '../helpers.ts';
import { AOSP_TESTKEY, cleanFixture, type Fixture, GOOGLE, PARTNER_AVB } from './fixtures.ts';
import { violations } from './violations.ts';

let spec: Spec;
let data: SpecData;

beforeAll(async () => {
  spec = await loadSpec(resolve(ROOT, 'spec'));
  data = await loadSpecData(spec.dir);
});

async function run(f: Fixture, profile: 'image' | 'device', only?: string[], withProduct = true) {
  return runChecks(spec, memoryView(f.sys), {
    profile,
    product: withProduct ? f.product : undefined,
    build: f.build,
    data,
    only,
    now: new Date('2026-06-01T00:00:00Z'),
  });
}

describe('spec ↔ checks', () => {
  it('every requirement has an implemented check and every check a requirement', () => {
    const reqIds = spec.requirements.map((r) => r.id).sort();
    const checkIds = Object.keys(allChecks).sort();
    expect(reqIds.filter((id) => !checkIds.includes(id))).toEqual([]);
    expect(checkIds.filter((id) => !reqIds.includes(id))).toEqual([]);
  });

  it('check families do not define the same ID twice', () => {
    const all = Object.values(checkFamilies).flatMap((f) => Object.keys(f));
    expect(new Set(all).size).toBe(all.length);
  });

  it('every requirement has a fixture that fails it, on each profile it belongs to', () => {
    const missing = spec.requirements.flatMap((r) =>
      r.profiles.filter((p) => !violations[r.id]?.[p]).map((p) => `${r.id} (${p})`),
    );
    // Add them to test/conformance/violations.ts, keyed by requirement ID.
    expect(missing).toEqual([]);
    const ids = new Set(spec.requirements.map((r) => r.id));
    expect(Object.keys(violations).filter((id) => !ids.has(id))).toEqual([]);
  });

  it('covers the six families of the issue', () => {
    expect(spec.sections.map((s) => s.title)).toEqual([
      'No Google dependency',
      'No tracking',
      "The owner's personal cloud",
      'Apps',
      'Security',
      'Identity',
    ]);
  });
});

describe('clean Omie', () => {
  it('passes every image requirement', async () => {
    const r = await run(cleanFixture('image'), 'image');
    const bad = r.results.filter((x) => x.status !== 'pass' && x.status !== 'not-applicable');
    expect(bad.map((b) => `${b.id}: ${b.message} ${JSON.stringify(b.evidence)}`)).toEqual([]);
    expect(r.summary.conforms).toBe(true);
    // Device-only requirements do not apply to an image.
    expect(r.results.filter((x) => x.status === 'not-applicable').map((x) => x.id)).toEqual([
      '6.4/C-1-1',
      '6.4/C-1-2',
      '6.4/C-1-3',
    ]);
  });

  it('passes every device requirement', async () => {
    const r = await run(cleanFixture('device'), 'device');
    const bad = r.results.filter((x) => x.status !== 'pass' && x.status !== 'not-applicable');
    expect(bad.map((b) => `${b.id}: ${b.message} ${JSON.stringify(b.evidence)}`)).toEqual([]);
    expect(r.results.find((x) => x.id === '6.4/C-1-1')?.status).toBe('pass');
  });
});

describe('each requirement fails on a system that violates it', () => {
  const cases = Object.entries(violations).flatMap(([id, byProfile]) =>
    (['image', 'device'] as const).flatMap((profile) => {
      const v = byProfile[profile];
      return v ? [{ id, profile, v }] : [];
    }),
  );
  for (const { id, profile, v } of cases) {
    it(`${id} (${profile}): ${v.what}`, async () => {
      const f = cleanFixture(profile);
      const before = await run(f, profile, [id]);
      expect(before.results[0].status, before.results[0].message).toBe('pass');
      v.apply(f);
      const after = await run(f, profile, [id]);
      const res = after.results[0];
      expect(res.status, res.message).toBe('fail');
      expect(res.evidence.length).toBeGreaterThan(0);
      expect(after.summary.conforms).toBe(res.level !== 'MUST');
    });
  }
});

describe('no requirement passes on a system that gives it nothing to check', () => {
  // The device side of 6.3 (ro.boot.veritymode, ro.boot.vbmeta.*) is reworked with the
  // verified-boot device properties; until then 6.3/C-0-4 passes a device that reports nothing.
  const VERIFIED_BOOT_DEVICE_PROPS = ['6.3/C-0-4'];
  for (const profile of ['image', 'device'] as const)
    for (const withProduct of [true, false])
      it(`an empty ${profile}, ${withProduct ? 'with' : 'without'} a product: every result fails or says why it does not apply`, async () => {
        const sys: MemorySystem =
          profile === 'image'
            ? { kind: 'image', files: {}, apks: [] }
            : { kind: 'device', files: {}, apks: [], settings: {}, deviceProps: {}, shell: () => '' };
        const r = await runChecks(spec, memoryView(sys), {
          profile,
          product: withProduct ? cleanFixture(profile).product : undefined,
          data,
        });
        const passed = r.results
          .filter((x) => x.status === 'pass' && !VERIFIED_BOOT_DEVICE_PROPS.includes(x.id))
          .map((x) => `${x.id}: ${x.message}`);
        expect(passed).toEqual([]);
        for (const x of r.results.filter((x) => x.status === 'not-applicable'))
          expect(x.message.length, x.id).toBeGreaterThan(10);
        expect(r.summary.conforms).toBe(false);
      });
});

describe('details', () => {
  it('a captive portal left at the NetworkStack default fails', async () => {
    const f = cleanFixture();
    f.sys.apks = f.sys.apks.filter((a) => a.path !== 'overlay/OmieNetworkStackOverlay.apk');
    const r = await run(f, 'image', ['2.4/C-0-1']);
    expect(r.results[0].status).toBe('fail');
    expect(r.results[0].evidence.some((e) => e.detail.includes('built-in Google default'))).toBe(true);
  });

  it('device settings naming Google fail the captive-portal check', async () => {
    const f = cleanFixture('device');
    f.sys.settings!['global/captive_portal_https_url'] = 'https://connectivitycheck.gstatic.com/generate_204';
    const r = await run(f, 'device', ['2.4/C-0-1']);
    expect(r.results[0].status).toBe('fail');
  });

  it('identity is not applicable without a product', async () => {
    const r = await run(cleanFixture(), 'image', ['7.1/C-0-1'], false);
    expect(r.results[0].status).toBe('not-applicable');
  });

  it('customer apps without a product are checked against prebuilt-apps pins', async () => {
    const f = cleanFixture();
    const r1 = await runChecks(spec, memoryView(f.sys), {
      profile: 'image',
      data: {
        ...data,
        repoPins: new Map([
          ['org.omie.personalcloud', ['bb'.repeat(32)]],
          ['org.omie.mysuppliers', ['bb'.repeat(32)]],
        ]),
      },
      only: ['4.2/C-0-1'],
    });
    expect(r1.results[0].status).toBe('pass');
    const r2 = await runChecks(spec, memoryView(f.sys), { profile: 'image', data, only: ['4.2/C-0-1'] });
    expect(r2.results[0].status).toBe('fail');
  });

  it('an unreadable APK is reported by 5.1/C-0-1, not a crash', async () => {
    const f = cleanFixture();
    f.sys.apks.push({
      partition: 'system',
      path: 'app/Broken/Broken.apk',
      facts: new Error('zip: bad central directory'),
    });
    const r = await run(f, 'image');
    expect(r.results.find((x) => x.id === '5.1/C-0-1')?.status).toBe('fail');
    expect(r.results.every((x) => x.status !== 'error')).toBe(true);
  });

  it('a throwing check becomes an error result and fails conformance', async () => {
    const f = cleanFixture();
    const r = await runChecks(spec, memoryView(f.sys), {
      profile: 'image',
      data,
      only: ['6.1/C-0-1'],
      checks: {
        '6.1/C-0-1': async () => {
          throw new Error('boom');
        },
      },
    });
    expect(r.results[0].status).toBe('error');
    expect(r.summary.conforms).toBe(false);
  });
});

describe('waivers', () => {
  it('a valid waiver turns a failure into waived and keeps conformance', async () => {
    const f = cleanFixture();
    violations['6.1/C-0-6'].image?.apply(f);
    const r = await runChecks(spec, memoryView(f.sys), {
      profile: 'image',
      product: f.product,
      data,
      now: new Date('2026-06-01T00:00:00Z'),
      waivers: [
        {
          id: '6.1/C-0-6',
          reason: 'release keys arrive with the partner HSM',
          expires: '2026-06-01',
          source: 'w.yaml',
        },
      ],
    });
    const res = r.results.find((x) => x.id === '6.1/C-0-6');
    expect(res?.status).toBe('waived');
    expect(res?.waiver?.expired).toBe(false);
    expect(r.summary.conforms).toBe(true);
  });

  it('an expired waiver fails, with evidence that it expired', async () => {
    const f = cleanFixture();
    violations['6.1/C-0-6'].image?.apply(f);
    const r = await runChecks(spec, memoryView(f.sys), {
      profile: 'image',
      product: f.product,
      data,
      now: new Date('2026-06-02T00:00:00Z'),
      waivers: [{ id: '6.1/C-0-6', reason: 'temporary', expires: '2026-06-01', source: 'w.yaml' }],
    });
    const res = r.results.find((x) => x.id === '6.1/C-0-6');
    expect(res?.status).toBe('fail');
    expect(res?.evidence.some((e) => e.detail.includes('waiver expired on 2026-06-01'))).toBe(true);
    expect(r.summary.conforms).toBe(false);
  });

  it('a waiver for an unknown requirement is an input error', async () => {
    await expect(
      runChecks(spec, memoryView(cleanFixture().sys), {
        profile: 'image',
        data,
        waivers: [{ id: '9.9/C-0-1', reason: 'x', expires: '2030-01-01', source: 'w.yaml' }],
      }),
    ).rejects.toMatchObject({ code: 'WAIVER_UNKNOWN_ID', exitCode: 2 });
  });
});

describe('APEXes, Mainline modules and provisioning', () => {
  const tz = (f: Fixture) =>
    f.sys.apexes!.find((a) => a.path === 'apex/com.android.tzdata.capex')!.facts as ApexFacts;

  it('2.1: a Google APEX package and a Google-signed APEX container fail', async () => {
    const f = cleanFixture();
    Object.assign(tz(f), { package: 'com.google.android.tzdata6' });
    const byName = await run(f, 'image', ['2.1/C-0-1']);
    expect(byName.results[0].status).toBe('fail');
    expect(byName.results[0].evidence[0]).toMatchObject({ package: 'com.google.android.tzdata6' });
    const g = cleanFixture();
    tz(g).signing.signerSha256 = [GOOGLE];
    const bySigner = await run(g, 'image', ['2.1/C-0-2']);
    expect(bySigner.results[0].status).toBe('fail');
    expect(bySigner.results[0].evidence[0].detail).toMatch(/APEX container signed by Google/);
  });

  it('2.5: each Google module is named with its AOSP replacement; passing evidence lists the APEXes', async () => {
    const ok = await run(cleanFixture(), 'image', ['2.5/C-0-1']);
    expect(ok.results[0].status).toBe('pass');
    expect(ok.results[0].evidence.map((e) => e.detail)).toEqual([
      `APEX com.android.permission version 340090000, payload key ${PARTNER_AVB}`,
      `APEX com.android.tzdata version 340090000, payload key ${PARTNER_AVB}`,
    ]);
    const f = cleanFixture();
    violations['2.5/C-0-1'].image!.apply(f);
    f.sys.apks.push(
      {
        partition: 'product',
        path: 'priv-app/GooglePermissionController/GooglePermissionController.apk',
        facts: apkFacts('com.google.android.permissioncontroller'),
      },
      {
        partition: 'system',
        path: 'app/Telemetry/Telemetry.apk',
        facts: apkFacts('com.google.mainline.telemetry'),
      },
    );
    // Signed by Google, whatever its name: the APEX it builds is named from the manifest.
    Object.assign(
      f.sys.apexes!.find((a) => a.path === 'apex/com.android.permission.apex')!.facts as ApexFacts,
      {
        signing: { verified: true, signerSha256: [GOOGLE] },
      },
    );
    const r = (await run(f, 'image', ['2.5/C-0-1'])).results[0];
    expect(r.status).toBe('fail');
    const found = Object.fromEntries(r.evidence.map((e) => [e.package, e.value ?? null]));
    expect(found).toEqual({
      'com.google.android.permissioncontroller': 'com.android.permissioncontroller',
      'com.google.mainline.telemetry': null,
      'com.google.android.tzdata6': 'com.android.tzdata',
      'com.android.permission': 'com.android.permission',
    });
    expect(r.evidence.find((e) => e.package === 'com.google.mainline.telemetry')?.detail).toMatch(
      /remove it/,
    );
  });

  it('2.6: an overlay starting provisioned, or an app with role setup, finishes setup', async () => {
    const base = () => {
      const f = cleanFixture();
      violations['2.6/C-0-1'].image!.apply(f);
      return f;
    };
    const fail = (await run(base(), 'image', ['2.6/C-0-1'])).results[0];
    expect(fail.status).toBe('fail');
    expect(fail.evidence[0]).toMatchObject({ package: 'com.google.android.setupwizard' });

    const overlay = base();
    overlay.sys.apks.push({
      partition: 'product',
      path: 'overlay/OmieProvisioned/OmieProvisioned.apk',
      facts: apkFacts('org.omie.overlay.provisioned', {
        overlayTarget: 'com.android.providers.settings',
        resources: { def_device_provisioned: 'true', def_user_setup_complete: 'true' },
      }),
    });
    expect((await run(overlay, 'image', ['2.6/C-0-1'])).results[0].status).toBe('pass');
    const half = base();
    half.sys.apks.push({
      partition: 'product',
      path: 'overlay/Half/Half.apk',
      facts: apkFacts('org.omie.overlay.half', {
        overlayTarget: 'com.android.providers.settings',
        resources: { def_device_provisioned: 'true', def_user_setup_complete: 'false' },
      }),
    });
    expect((await run(half, 'image', ['2.6/C-0-1'])).results[0].status).toBe('fail');

    const byMeta = base();
    byMeta.sys.apks.push({
      partition: 'product',
      path: 'priv-app/OmieSetup/OmieSetup.apk',
      facts: apkFacts('org.omie.setup', { appMetaData: { 'org.omie.role': 'setup' } }),
    });
    expect((await run(byMeta, 'image', ['2.6/C-0-1'])).results[0].status).toBe('pass');
    const byProduct = base();
    byProduct.sys.apks.push({
      partition: 'product',
      path: 'priv-app/S/S.apk',
      facts: apkFacts('org.omie.setup'),
    });
    byProduct.product.apps.push({
      ...byProduct.product.apps[1],
      name: 'OmieSetup',
      package: 'org.omie.setup',
      role: 'setup',
    });
    expect((await run(byProduct, 'image', ['2.6/C-0-1'])).results[0].status).toBe('pass');
    expect((await run(byProduct, 'image', ['2.6/C-0-1'], false)).results[0].status).toBe('fail');

    const device = cleanFixture('device');
    violations['2.6/C-0-1'].device!.apply(device);
    device.sys.settings!['global/device_provisioned'] = '1';
    device.sys.settings!['secure/user_setup_complete'] = '1';
    expect((await run(device, 'device', ['2.6/C-0-1'])).results[0].status).toBe('pass');
  });

  it('3.1: a tracker SDK in an APEX java library fails', async () => {
    const f = cleanFixture();
    tz(f).jars.push({ path: 'javalib/framework-tz.jar', classes: ['com.appsflyer.AppsFlyerLib'] });
    const r = (await run(f, 'image', ['3.1/C-0-1'])).results[0];
    expect(r.status).toBe('fail');
    expect(r.evidence[0]).toMatchObject({
      file: 'apex/com.android.tzdata.capex!javalib/framework-tz.jar',
      value: 'com.appsflyer.AppsFlyerLib',
    });
  });

  it('2.5 and 5.3 do not pass on nothing: without APKs and APEXes they are not applicable', async () => {
    const f = cleanFixture();
    f.sys.apexes = [];
    expect((await run(f, 'image', ['5.3/C-0-1'])).results[0].status).toBe('not-applicable');
    f.sys.apks = [];
    expect((await run(f, 'image', ['2.5/C-0-1'])).results[0].status).toBe('not-applicable');
  });

  it('5.3: test-key containers, payload problems and unreadable APEXes fail; a sound APEX is reported', async () => {
    const ok = (await run(cleanFixture(), 'image', ['5.3/C-0-1'])).results[0];
    expect(ok.status).toBe('pass');
    expect(ok.evidence[1].detail).toBe(
      `com.android.tzdata version 340090000 (compressed), payload key ${PARTNER_AVB}`,
    );
    const f = cleanFixture();
    tz(f).signing.signerSha256 = [AOSP_TESTKEY];
    tz(f).payloadProblems = ['the payload is signed with another key than apex_pubkey'];
    f.sys.apexes!.push({
      partition: 'vendor',
      path: 'apex/com.oem.broken.apex',
      facts: new Error('apex: not a zip'),
    });
    const r = (await run(f, 'image', ['5.3/C-0-1'])).results[0];
    expect(r.status).toBe('fail');
    expect(r.evidence.map((e) => e.detail)).toEqual([
      expect.stringMatching(/^container signed with AOSP test key/),
      'payload: the payload is signed with another key than apex_pubkey',
      'unreadable APEX: internal error: apex: not a zip',
    ]);
  });
});
