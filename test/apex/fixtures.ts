/**
 * APEX fixtures, generated once per run into test/.work/apex by the kit's APEX generator
 * (scripts/apexgen): an ext4 .apex holding an APK and a jar, the same module as an erofs .capex,
 * and keys. The real tools (apksigner, avbtool, e2fsck, fsck.erofs, zipalign) check them in
 * apex.test.ts.
 */
import { join } from 'node:path';
import { buildApex } from '../../scripts/apexgen/index.ts';
import { generateSigningKey, type SigningKey } from '../../scripts/apkgen/index.ts';
import { generateAvbKey } from '../../scripts/formats/avb/keys.ts';
import { onceInDir, workDir } from '../helpers.ts';

export const APEX_DIR = join(workDir('apex-fixtures'), 'set');

export interface ApexFixtures {
  dir: string;
  containerKey: SigningKey;
  payloadKey: string;
  /** Another payload key (a payload signed with it does not match apex_pubkey). */
  otherPayloadKey: string;
  /** ext4 payload; container package com.google.android.tzdata, APEX name com.android.tzdata. */
  apex: string;
  /** The same module, erofs payload, compressed. */
  capex: string;
  rootDigests: { apex: string; capex: string };
}

export const TZDATA = {
  name: 'com.android.tzdata',
  packageName: 'com.google.android.tzdata',
  version: 339990000,
  versionName: '2024a',
};

/** The content both fixtures carry: a data file, a privileged app and a java library. */
function content(key: SigningKey) {
  return {
    files: { 'etc/tz/tzdata': 'tzdata2024a\n', 'etc/tz/tz_version': '003.001|2024a|001\n' },
    apps: [
      {
        path: 'priv-app/TzUpdater/TzUpdater.apk',
        spec: {
          package: 'com.google.android.tzupdater',
          versionCode: 3,
          versionName: '3',
          minSdk: 30,
          targetSdk: 34,
          classes: ['com.google.firebase.analytics.FirebaseAnalytics'],
        },
        key,
      },
    ],
    jars: [
      { path: 'javalib/framework-tz.jar', classes: ['com.android.tz.TzData', 'com.appsflyer.AppsFlyerLib'] },
    ],
  };
}

export async function apexFixtures(): Promise<ApexFixtures> {
  const dir = APEX_DIR;
  const keys = workDir('apex-fixtures/keys');
  const f: ApexFixtures = {
    dir,
    containerKey: await generateSigningKey(keys, 'com.google.android.tzdata.container'),
    payloadKey: join(keys, 'com.android.tzdata.pem'),
    otherPayloadKey: join(keys, 'other-payload.pem'),
    apex: join(dir, 'com.google.android.tzdata.apex'),
    capex: join(dir, 'com.google.android.tzdata.capex'),
    rootDigests: { apex: '', capex: '' },
  };
  await onceInDir(dir, ['test/apex/fixtures.ts', 'scripts/apexgen'], async () => {
    const { mkdirSync, writeFileSync, existsSync } = await import('node:fs');
    mkdirSync(dir, { recursive: true });
    if (!existsSync(f.payloadKey)) await generateAvbKey(f.payloadKey, 4096);
    if (!existsSync(f.otherPayloadKey)) await generateAvbKey(f.otherPayloadKey, 2048);
    const signing = { payloadKey: f.payloadKey, containerKey: f.containerKey };
    const a = await buildApex({ ...TZDATA, ...content(f.containerKey) }, signing, f.apex);
    const c = await buildApex(
      { ...TZDATA, payloadFs: 'erofs', ...content(f.containerKey) },
      signing,
      f.capex,
      {
        compressed: true,
      },
    );
    writeFileSync(
      join(dir, 'root-digests.json'),
      JSON.stringify({ apex: a.rootDigest, capex: c.rootDigest }),
    );
  });
  const { readFileSync } = await import('node:fs');
  f.rootDigests = JSON.parse(readFileSync(join(dir, 'root-digests.json'), 'utf8'));
  return f;
}
