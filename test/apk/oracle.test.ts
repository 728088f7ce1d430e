/**
 * Our APK reader against the real tools on APKs built by aapt + smali + apksigner:
 * manifest facts == `aapt dump badging`, signatures == `apksigner verify --print-certs -v`,
 * DEX class lists == `baksmali list classes`.
 */

import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseDexClasses } from '../../scripts/formats/apk/dex.ts';
import { inspectApk } from '../../scripts/formats/apk/inspect.ts';
import { ZipArchive } from '../../scripts/formats/apk/zip.ts';
import { runTool } from '../../scripts/host/tools.ts';
import { workDir } from '../helpers.ts';
import { hostTool } from '../host-tools.ts';
import { ensureFixtures, FIXTURES, TRACKER_CLASSES } from './fixtures.ts';
import { expectSameAsApksigner, expectSameAsBadging } from './oracles.ts';

const BAKSMALI = hostTool('baksmali');

let paths: Record<string, string>;
beforeAll(async () => {
  paths = await ensureFixtures();
}, 240_000);

describe('APK fixtures vs aapt dump badging', () => {
  for (const f of FIXTURES) {
    it(`${f.name}: identity, SDKs, permissions, label, flags`, async () => {
      await expectSameAsBadging(paths[f.name]!);
    }, 30_000);
  }
});

describe('APK fixtures vs apksigner verify --print-certs -v', () => {
  for (const f of FIXTURES) {
    it(`${f.name}: verdict, per-scheme results, signer digests`, async () => {
      await expectSameAsApksigner(paths[f.name]!);
    }, 30_000);
  }

  it('v3 rotation: lineage old → new, older schemes signed by the old key', async () => {
    const r = await inspectApk(paths.rotation!);
    const old = await inspectApk(paths['v1-only']!);
    expect(r.signatures.lineage?.map((n) => n.certificate.sha256)).toEqual([
      old.signatures.signers[0]!.sha256,
      r.signatures.signers[0]!.sha256,
    ]);
    expect(r.signatures.schemes.v2.signers[0]!.certificates[0]!.sha256).toBe(
      old.signatures.signers[0]!.sha256,
    );
    expect(r.signatures.schemes.v3.signers[0]!.algorithm).toBe('ECDSA_WITH_SHA256');
  });

  it('aapt2 + DSA: default-config label (not the fr one), DSA signer on every scheme', async () => {
    const r = await inspectApk(paths['aapt2-dsa']!);
    expect(r.identity.label).toBe('Omie Fixture');
    expect(r.signatures.signers[0]!.keyAlgorithm).toBe('DSA');
    expect(r.signatures.schemes.v2.signers[0]!.algorithm).toBe('DSA_WITH_SHA256');
    expect(r.signatures.schemes.v1.verified).toBe(true);
  });

  it('an APK signed with the fixture key is not named as a known signer; EC keys report EC', async () => {
    const r = await inspectApk(paths['ec-v123']!);
    expect(r.signatures.signers[0]!.known).toBeNull();
    expect(r.signatures.signers[0]!.keyAlgorithm).toBe('EC');
    expect(r.signatures.signers[0]!.keySize).toBe(256);
  });
});

describe('DEX scan', () => {
  it.skipIf(!BAKSMALI.present)(
    `class lists equal baksmali list classes, for every dex of a multidex APK ${BAKSMALI.reason}`,
    async () => {
      const z = await ZipArchive.openFile(paths['trackers-multidex']!);
      const dexes = z.entries.filter((e) => /^classes\d*\.dex$/.test(e.name));
      expect(dexes.length).toBe(3);
      const dir = workDir('apk');
      for (const e of dexes) {
        const buf = await z.read(e);
        const file = join(dir, `oracle-${e.name}`);
        writeFileSync(file, buf);
        const want = (await runTool('baksmali', ['list', 'classes', file])).stdout
          .split('\n')
          .filter(Boolean)
          .map((d) => d.slice(1, -1).replace(/\//g, '.'));
        expect(parseDexClasses(buf).classes.sort()).toEqual(want.sort());
      }
      await z.close();
    },
    60_000,
  );

  it('finds the tracker SDKs whose classes were compiled in, and none in a clean APK', async () => {
    const r = await inspectApk(paths['trackers-multidex']!);
    const ids = r.trackers.map((t) => t.id).sort();
    expect(ids).toEqual(
      [
        'appsflyer',
        'facebook-ads',
        'google-crashlytics',
        'google-firebase-analytics',
        'onesignal',
        'sentry',
      ].sort(),
    );
    expect(r.dex.classCount).toBe(1 + 4 + TRACKER_CLASSES.length);
    expect(r.trackers.find((t) => t.id === 'google-firebase-analytics')!.classCount).toBe(2);
    const clean = await inspectApk(paths.v123!);
    expect(clean.trackers).toEqual([]);
  });
});

describe('manifest model', () => {
  it('components, exported rules, intent filters, meta-data, uses-library, declared permissions', async () => {
    const r = await inspectApk(paths.v123!);
    const byName = Object.fromEntries(r.components.map((c) => [c.name, c]));
    expect(byName['org.omie.v123.MainActivity']!.exported).toBe(true);
    expect(byName['org.omie.v123.MainActivity']!.intentFilters[1]!.data).toEqual([
      { scheme: 'omie', host: 'open' },
    ]);
    expect(byName['org.omie.v123.SyncService']!.permission).toBe('org.omie.fixture.permission.PRIVATE');
    // No explicit android:exported but an intent filter: exported (pre-Android 12 rule).
    expect(byName['org.omie.v123.BootReceiver']!.exported).toBe(true);
    expect(byName['org.omie.v123.BootReceiver']!.exportedExplicit).toBeNull();
    expect(byName['org.omie.v123.Files']!.authorities).toBe('org.omie.fixture.files');
    expect(r.metaData).toEqual([{ name: 'org.omie.flavor', value: 'test', resource: null }]);
    expect(r.usesLibraries).toEqual([{ name: 'org.apache.http.legacy', required: false }]);
    expect(r.permissions.declared).toEqual([
      { name: 'org.omie.fixture.permission.PRIVATE', protectionLevel: 'signature', group: null },
    ]);
    expect(r.permissions.dangerous).toEqual([
      'android.permission.CAMERA',
      'android.permission.WRITE_EXTERNAL_STORAGE',
    ]);
    expect(r.permissions.signatureOrPrivileged).toEqual([
      'android.permission.INSTALL_PACKAGES',
      'org.omie.fixture.permission.PRIVATE',
    ]);
  });

  it('application flags and sharedUserId', async () => {
    const d = await inspectApk(paths.debuggable!);
    expect(d.application).toMatchObject({
      debuggable: true,
      allowBackup: false,
      usesCleartextTraffic: true,
      testOnly: false,
    });
    const t = await inspectApk(paths['test-only']!);
    expect(t.application).toMatchObject({ testOnly: true, persistent: true, debuggable: false });
    expect(t.identity.sharedUserId).toBe('org.omie.shared');
  });
});
