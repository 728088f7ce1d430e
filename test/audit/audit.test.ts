import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { type ApkSpec, buildApk, generateSigningKey, type SigningKey } from '../../scripts/apkgen/index.ts';
import { auditApk } from '../../scripts/audit/index.ts';
import { KnownSigners } from '../../scripts/formats/apk/known-signers.ts';
import { certSha256 } from '../../scripts/keys/store.ts';
import { omie, workDir } from '../helpers.ts';

const dir = workDir('audit');
let key: SigningKey;
let testKey: SigningKey;
let debugKey: SigningKey;

const clean: ApkSpec = {
  package: 'org.example.clean',
  label: 'Clean',
  minSdk: 29,
  targetSdk: 34,
  application: { allowBackup: false, usesCleartextTraffic: false },
  components: [
    {
      type: 'activity',
      name: '.Main',
      exported: true,
      intentFilters: [
        { actions: ['android.intent.action.MAIN'], categories: ['android.intent.category.LAUNCHER'] },
      ],
    },
  ],
};

const cases: Array<{ name: string; spec: Partial<ApkSpec>; signer?: 'test' | 'debug'; expected: string[] }> =
  [
    { name: 'clean', spec: {}, expected: [] },
    {
      name: 'trackers',
      spec: {
        classes: [
          'com.google.firebase.analytics.FirebaseAnalytics',
          'com.facebook.appevents.AppEventsLogger',
        ],
      },
      expected: ['OMIE-AUDIT-TRACKER'],
    },
    {
      name: 'permissions',
      spec: {
        usesPermissions: [
          'android.permission.ACCESS_FINE_LOCATION',
          'android.permission.ACCESS_BACKGROUND_LOCATION',
          'android.permission.READ_CONTACTS',
          'android.permission.RECORD_AUDIO',
          'android.permission.CAMERA',
          'android.permission.READ_PHONE_STATE',
          'android.permission.RECEIVE_BOOT_COMPLETED',
        ],
      },
      expected: [
        'OMIE-AUDIT-BACKGROUND',
        'OMIE-AUDIT-CAMERA',
        'OMIE-AUDIT-CONTACTS',
        'OMIE-AUDIT-IDENTITY',
        'OMIE-AUDIT-LOCATION',
        'OMIE-AUDIT-LOCATION-BACKGROUND',
        'OMIE-AUDIT-MICROPHONE',
      ],
    },
    {
      name: 'cleartext',
      spec: { application: { allowBackup: false, usesCleartextTraffic: true } },
      expected: ['OMIE-AUDIT-CLEARTEXT'],
    },
    { name: 'testkey', spec: {}, signer: 'test', expected: ['OMIE-AUDIT-SIGNER-TEST-KEY'] },
    { name: 'debugkey', spec: {}, signer: 'debug', expected: ['OMIE-AUDIT-SIGNER-DEBUG'] },
    {
      name: 'exported',
      spec: { components: [...(clean.components ?? []), { type: 'service', name: '.Open', exported: true }] },
      expected: ['OMIE-AUDIT-EXPORTED-UNPROTECTED'],
    },
    {
      name: 'backup',
      spec: { application: { allowBackup: true, usesCleartextTraffic: false } },
      expected: ['OMIE-AUDIT-BACKUP-NON-OWNER'],
    },
    {
      name: 'debuggable',
      spec: { application: { allowBackup: false, usesCleartextTraffic: false, debuggable: true } },
      expected: ['OMIE-AUDIT-DEBUGGABLE'],
    },
  ];

let known: KnownSigners;

describe('omie audit', () => {
  beforeAll(async () => {
    key = await generateSigningKey(join(dir, 'keys'), 'publisher', {
      subject: '/O=Example/CN=Example Publisher',
    });
    testKey = await generateSigningKey(join(dir, 'keys'), 'stand-in-testkey', {
      subject: '/C=US/O=Android/CN=Android',
    });
    debugKey = await generateSigningKey(join(dir, 'keys'), 'debug', {
      subject: '/C=US/O=Android/CN=Android Debug',
    });
    // Audit names a signer a public test key by its certificate digest (spec/known-signers.yaml). We cannot
    // sign with the real AOSP test key here, so a stand-in key's digest is registered as one.
    const base = KnownSigners.load();
    known = new KnownSigners([
      ...base.signers,
      {
        id: 'stand-in-testkey',
        name: 'stand-in AOSP test key',
        sha256: await certSha256(testKey.certPem),
        kind: 'public-test-key',
        source: 'test',
      },
    ]);
    await Promise.all(
      cases.map((c) =>
        buildApk(
          { ...clean, ...c.spec, package: `org.example.${c.name}` },
          { key: c.signer === 'test' ? testKey : c.signer === 'debug' ? debugKey : key, v2: true, v3: false },
          join(dir, `${c.name}.apk`),
        ),
      ),
    );
  }, 300_000);

  it.each(cases.map((c) => [c.name, c] as const))('%s: exactly the expected warnings', async (_n, c) => {
    const a = await auditApk(join(dir, `${c.name}.apk`), {}, { knownSigners: known });
    expect(a.warnings.map((w) => w.id).sort()).toEqual([...c.expected].sort());
    for (const w of a.warnings) {
      expect(w.explanation.length).toBeGreaterThan(20);
      expect(w.details.length).toBeGreaterThan(0);
    }
  });

  it('the tracker warning names each SDK with its category', async () => {
    const a = await auditApk(join(dir, 'trackers.apk'));
    const t = a.warnings.find((w) => w.id === 'OMIE-AUDIT-TRACKER');
    expect(t?.details.join(' ')).toMatch(/Firebase Analytics.*analytics/i);
    expect(t?.details.join(' ')).toMatch(/Facebook/i);
  });

  it('a corrupted APK is reported, not crashed on', async () => {
    const { readFileSync, writeFileSync } = await import('node:fs');
    const b = readFileSync(join(dir, 'clean.apk'));
    b.fill(0x41, 100, 400);
    writeFileSync(join(dir, 'broken.apk'), b);
    const a = await auditApk(join(dir, 'broken.apk'));
    expect(a.worst).toBe('high');
    expect(a.warnings[0].id).toBe('OMIE-AUDIT-SIGNATURE-INVALID');
  });

  it('--format json follows the published schema and exits 1 on a high warning', async () => {
    const r = await omie(['audit', '--format', 'json', join(dir, 'clean.apk'), join(dir, 'trackers.apk')]);
    expect(r.exitCode).toBe(1);
    const j = JSON.parse(r.stdout);
    const { auditReportSchema } = await import('../../scripts/audit/schema.ts');
    expect(auditReportSchema.safeParse(j).success).toBe(true);
    expect(j.apps.map((a: { worst: string | null }) => a.worst)).toEqual([null, 'high']);
    const clean = await omie(['audit', join(dir, 'clean.apk')]);
    expect(clean.exitCode).toBe(0);
    expect(clean.stdout).toMatch(/no warnings/);
  });
});
