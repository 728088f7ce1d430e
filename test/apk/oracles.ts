/** Parsers for the real tools' output, the oracles of the APK tests. */
import { expect } from 'vitest';
import { inspectApk } from '../../scripts/formats/apk/inspect.ts';
import { runTool } from '../../scripts/host/tools.ts';

export interface Badging {
  package: string;
  versionCode: number;
  versionName: string;
  sdk: number;
  target: number;
  label: string | null;
  permissions: Array<{ name: string; maxSdkVersion: number | null }>;
  debuggable: boolean;
  testOnly: boolean;
  compileSdk: number | null;
}

export function parseBadging(out: string): Badging {
  const pkg =
    /^package: name='([^']*)' versionCode='(\d*)' versionName='([^']*)'(?:.*compileSdkVersion='(\d+)')?/m.exec(
      out,
    )!;
  return {
    package: pkg[1]!,
    versionCode: Number(pkg[2]),
    versionName: pkg[3]!,
    compileSdk: pkg[4] ? Number(pkg[4]) : null,
    sdk: Number(/^sdkVersion:'(\d+)'/m.exec(out)?.[1] ?? 1),
    target: Number(/^targetSdkVersion:'(\d+)'/m.exec(out)?.[1] ?? 0),
    label: /^application-label:'([^']*)'/m.exec(out)?.[1] ?? null,
    // aapt also prints permissions it implies (READ_ from WRITE_EXTERNAL_STORAGE); those are not in the manifest.
    permissions: [...out.matchAll(/^uses-permission: name='([^']*)'(?: maxSdkVersion='(\d+)')?/gm)]
      .map((m) => ({ name: m[1]!, maxSdkVersion: m[2] ? Number(m[2]) : null }))
      .filter(
        (p) => !new RegExp(`^uses-implied-permission: name='${p.name.replace(/\./g, '\\.')}'`, 'm').test(out),
      ),
    debuggable: /^application-debuggable$/m.test(out),
    testOnly: /^testOnly='-1'$/m.test(out),
  };
}

export interface ApksignerResult {
  verifies: boolean;
  schemes: Record<'v1' | 'v2' | 'v3', boolean>;
  signers: Array<{ sha256: string; sha1: string; dn: string }>;
}

export async function apksignerVerify(file: string): Promise<ApksignerResult> {
  const r = await runTool('apksigner', ['verify', '--print-certs', '-v', file], { reject: false });
  const out = r.stdout;
  const scheme = (n: number) => new RegExp(`^Verified using v${n} scheme[^:]*: true$`, 'm').test(out);
  const signers: ApksignerResult['signers'] = [];
  for (const m of out.matchAll(/^Signer #(\d+) certificate DN: (.*)$/gm)) {
    const i = m[1];
    signers.push({
      dn: m[2]!,
      sha256: new RegExp(`^Signer #${i} certificate SHA-256 digest: ([0-9a-f]+)$`, 'm').exec(out)![1]!,
      sha1: new RegExp(`^Signer #${i} certificate SHA-1 digest: ([0-9a-f]+)$`, 'm').exec(out)![1]!,
    });
  }
  return {
    verifies: r.exitCode === 0 && /^Verifies$/m.test(out),
    schemes: { v1: scheme(1), v2: scheme(2), v3: scheme(3) },
    signers,
  };
}

type ApkReport = Awaited<ReturnType<typeof inspectApk>>;

/** Asserts that our manifest reading of `file` equals `aapt dump badging`; returns our report. */
export async function expectSameAsBadging(file: string): Promise<ApkReport> {
  const b = parseBadging((await runTool('aapt', ['dump', 'badging', file])).stdout);
  const r = await inspectApk(file);
  expect(r.identity.package).toBe(b.package);
  expect(r.identity.versionCode).toBe(b.versionCode);
  expect(r.identity.versionName ?? '').toBe(b.versionName);
  expect(r.identity.label).toBe(b.label);
  expect(r.sdk.min).toBe(b.sdk);
  expect(r.sdk.target).toBe(b.target);
  expect(r.sdk.compile).toBe(b.compileSdk);
  expect(r.permissions.requested.map((p) => ({ name: p.name, maxSdkVersion: p.maxSdkVersion }))).toEqual(
    b.permissions,
  );
  expect(r.application.debuggable).toBe(b.debuggable);
  expect(r.application.testOnly).toBe(b.testOnly);
  return r;
}

/**
 * Asserts that our verdict, per-scheme results and signers for `file` equal
 * `apksigner verify --print-certs -v` (a scheme counts as verified only when apksigner consults it
 * for the APK's SDK range); returns apksigner's result.
 */
export async function expectSameAsApksigner(file: string): Promise<ApksignerResult> {
  const want = await apksignerVerify(file);
  const r = await inspectApk(file);
  expect(r.signatures.verified).toBe(want.verifies);
  for (const s of ['v1', 'v2', 'v3'] as const) {
    const sc = r.signatures.schemes[s];
    expect(sc.verified && sc.considered, s).toBe(want.schemes[s]);
  }
  expect(r.signatures.signers.map((s) => ({ sha256: s.sha256, sha1: s.sha1, dn: s.subject }))).toEqual(
    want.signers,
  );
  return want;
}
