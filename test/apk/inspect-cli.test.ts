/** `omie inspect` on APKs (detected by content), the spec data files and their loaders. */
import { createHash, X509Certificate } from 'node:crypto';
import { copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { InputError } from '../../scripts/errors.ts';
import { defaultKnownSigners, KnownSigners } from '../../scripts/formats/apk/known-signers.ts';
import { defaultTrackers, TRACKER_CATEGORIES, TrackerDatabase } from '../../scripts/formats/apk/trackers.ts';
import { omie, workDir } from '../helpers.ts';
import { ensureFixtures } from './fixtures.ts';

let paths: Record<string, string>;
beforeAll(async () => {
  paths = await ensureFixtures();
}, 240_000);

describe('omie inspect <apk>', () => {
  it('detects an APK by content (misleading name) and prints the omie.apk/1 JSON', async () => {
    const f = join(workDir('apk'), 'not-an-apk.img');
    copyFileSync(paths['trackers-multidex']!, f);
    const r = await omie(['inspect', '--json', f]);
    expect(r.exitCode).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.kind).toBe('apk');
    expect(j.result.schema).toBe('omie.apk/1');
    expect(j.result.identity.package).toBe('org.omie.trackers');
    expect(j.result.signatures.verified).toBe(true);
    expect(j.result.trackers.map((t: { id: string }) => t.id)).toContain('appsflyer');
    expect(j.result.dex.files).toHaveLength(3);
  }, 60_000);

  it('human view: identity, flags, dangerous permissions, signers, components, trackers', async () => {
    const r = await omie(['inspect', paths.debuggable!]);
    expect(r.exitCode).toBe(0);
    expect(r.stdout).toContain(': apk');
    expect(r.stdout).toMatch(/package\s+org\.omie\.debug\s+versionCode 42/);
    expect(r.stdout).toContain('DEBUGGABLE');
    expect(r.stdout).toMatch(/DANGEROUS android\.permission\.CAMERA/);
    expect(r.stdout).toMatch(/SIG\/PRIV\s+android\.permission\.INSTALL_PACKAGES/);
    expect(r.stdout).toContain('signatures   VERIFIED');
    expect(r.stdout).toContain('CN=Fixture RSA A');
    expect(r.stdout).toMatch(/activity\s+exported\s+org\.omie\.debug\.MainActivity/);
  }, 60_000);

  it('a zip without AndroidManifest.xml is not an APK', async () => {
    const f = join(workDir('apk'), 'plain.zip');
    // Smallest valid zip: an empty EOCD.
    const eocd = Buffer.alloc(22);
    eocd.writeUInt32LE(0x06054b50, 0);
    writeFileSync(f, eocd);
    const r = await omie(['inspect', '--json', f]);
    expect(r.stdout + r.stderr).not.toContain('"kind": "apk"');
  }, 60_000);
});

const AOSP_NETWORKSTACK_PEM = `-----BEGIN CERTIFICATE-----
MIIF3DCCA8SgAwIBAgIJAPxssNim/dFoMA0GCSqGSIb3DQEBCwUAMIGBMQswCQYD
VQQGEwJVUzETMBEGA1UECAwKQ2FsaWZvcm5pYTEWMBQGA1UEBwwNTW91bnRhaW4g
VmlldzEQMA4GA1UECgwHQW5kcm9pZDEQMA4GA1UECwwHQW5kcm9pZDEhMB8GA1UE
AwwYY29tLmFuZHJvaWQubmV0d29ya3N0YWNrMCAXDTE5MDIxMjAxNDYyMFoYDzQ3
NTcwMTA4MDE0NjIwWjCBgTELMAkGA1UEBhMCVVMxEzARBgNVBAgMCkNhbGlmb3Ju
aWExFjAUBgNVBAcMDU1vdW50YWluIFZpZXcxEDAOBgNVBAoMB0FuZHJvaWQxEDAO
BgNVBAsMB0FuZHJvaWQxITAfBgNVBAMMGGNvbS5hbmRyb2lkLm5ldHdvcmtzdGFj
azCCAiIwDQYJKoZIhvcNAQEBBQADggIPADCCAgoCggIBALtx9RN/8LLXV6zCyj03
jg+N4RCQ1crz1J4xTTXCg7d4sC15LY66RANkypcJhUQWYPC8AK+8Y91hGxv1GtKK
Ht0h4ASPVIuA+L0RPiVoKCL1fauCc6+vEsZNGaDGviOPPmbdx5sQ/ZJpMePuYKe/
YYZE2jwsT8QoE51F0nvtp/5F4wB1tJPq1uwBzdVdkxwKZX4uWXQspjK23DhCot63
0iRDyAkpHXpUkgOuauNWWCpMoj8w8FScTshAinUnjpXGnoOQrVKAvO+u9vEwmkG9
nzv7XRLcp+eexv1oSBk/qatygiSIe0+T6YXsfL9kAbDoY6S5HAXQRvBA/pVABLFk
WVT8tBFM7h6LZLR9cZoZ70wAHLGD9/PhZuQ/VtaAR8NEDaNP31KdRCdLiy9q+zRQ
ka2K1Lk71cVdUihqXTwVdGXbjd9i5822sQ+xiIgEav3SY65vISXZBldZx+QvhhCm
dG7b3FR9QwFhLu7Dw8vRJN7OzI04sg5zsT8k7nyhOpjF9h8MgbB9K1GXSbwry54J
Sa72wRij6BJearV/zka7CRpmdA4Qsxx0C4kZAMDs2pzGnstPM2mZixdRBt0KT/1w
JOt+df7dGlsTHQuytAxjSR48+GuJV7IVIbOpbtE3alGmrGl4ZrAlbe4bzZq5oYi/
TO2AtZpfJMLamlXrew5QIRbjAgMBAAGjUzBRMB0GA1UdDgQWBBSTg8ks+/CZ1cR7
DDZX2GIqCEty4TAfBgNVHSMEGDAWgBSTg8ks+/CZ1cR7DDZX2GIqCEty4TAPBgNV
HRMBAf8EBTADAQH/MA0GCSqGSIb3DQEBCwUAA4ICAQBqBQE4L94qa49wxgzRuO5P
eIcYwoixcCWO86liMLZQBWUNakxCpZqXst3sUCQT57Q4+9BgNj10t0ojI4Kn93/T
2jTjj3n60DWotHLFz/NlgYoBGNh/oeMcx+1L79J2KHYMKQmAw8w7f/DP0Bt1/x/M
g+mBtbJaVNhbaKgEJKwmAV+zpMdUlppxF0wLwoP2yIGR3O1gniRfWTj/0K15kZji
0L9jQiIcGwpdMy7S//xmiYLKu8t9O2MP+EduXISsCtN635IkA1IAA5+V7B+pW/g3
lsDomGE1zuLcrvGQskmFWn5zl9SgvxfqY9l4WJxrSBGKOB//vXkMRNgCM+LjUpKj
tVM8o/LMFz+Fz5BK3+Lk4hg9weug664HuDmoH/G8kuKSVQlXyFma8h6cBJe5I0zj
RfP1CLHMhyqlXdtedzxcfdZXe5qLba7SCuH/S4IG/Z9cj1oiuhmAvvAa5vyyZZuX
rVuYX6gcAZ/+AI3dnIEwwG/GAyshScIgn8Q4p+jDsgzgNlCtMcTuSPFpd3oK4YK3
LKMbgVQPYfFn2Net9Pa7IzD/XCQDckUADYFywSq11apYkLixLbDw5yliZOtm5/lx
TDEARkn7S4ZABfnEPIDbP23lL9RNbiA2v+f1gHFW7Vq1kdBv1ruTukM06ic5r4tB
7SaGRU5gtmbRBzi7e6iAAQ==
-----END CERTIFICATE-----`;

describe('spec data', () => {
  it('known signers: the digests from the issue, and networkstack computed from the AOSP PEM', () => {
    const k = defaultKnownSigners();
    expect(k.lookup('a40da80a59d170caa950cf15c18c454d47a39b26989d8b640ecd745ba71bf5dc')?.id).toBe(
      'aosp-testkey',
    );
    expect(k.lookup('C8A2E9BCCF597C2FB6DC66BEE293FC13F2FC47EC77BC6B2B0D52C11F51192AB8')?.id).toBe(
      'aosp-platform',
    );
    expect(k.lookup('f0fd6c5b410f25cb25c3b53346c8972fae30f8ee7411df910480ad6b2d60db83')?.kind).toBe(
      'vendor-release',
    );
    const der = new X509Certificate(AOSP_NETWORKSTACK_PEM).raw;
    expect(k.lookup(createHash('sha256').update(der).digest('hex'))?.id).toBe('aosp-networkstack');
    expect(k.lookup('00'.repeat(32))).toBeNull();
  });

  it('trackers: >= 40 entries with valid categories, websites and sources', () => {
    const t = defaultTrackers();
    expect(t.trackers.length).toBeGreaterThanOrEqual(40);
    for (const d of t.trackers) {
      const cats = typeof d.category === 'string' ? [d.category] : d.category;
      for (const c of cats) expect(TRACKER_CATEGORIES).toContain(c);
      expect(d.source.length).toBeGreaterThan(5);
    }
    for (const id of [
      'google-firebase-analytics',
      'google-crashlytics',
      'google-admob',
      'google-doubleclick',
      'facebook-analytics',
      'facebook-ads',
      'appsflyer',
      'adjust',
      'branch',
      'mixpanel',
      'amplitude',
      'segment',
      'flurry',
      'sentry',
      'braze',
      'onesignal',
      'huawei-mobile-services',
      'yandex-metrica',
    ])
      expect(t.trackers.map((x) => x.id)).toContain(id);
  });

  it('tracker signatures: prefixes match at the start only; /regex/ form works', () => {
    const db = new TrackerDatabase([
      {
        id: 'a',
        name: 'A',
        category: 'analytics',
        codeSignature: 'com.a.|org.b.',
        website: 'https://a.example',
        source: 'test',
      },
      {
        id: 'r',
        name: 'R',
        category: ['profiling', 'location'],
        codeSignature: '/^net\\.r\\.(?!internal)/',
        website: 'https://r.example',
        source: 'test',
      },
    ]);
    const m = db.match(['com.a.X', 'x.com.a.Y', 'org.b.Z', 'net.r.Api', 'net.r.internal.Q']);
    expect(m.map((x) => [x.id, x.classCount, x.categories])).toEqual([
      ['a', 2, ['analytics']],
      ['r', 1, ['profiling', 'location']],
    ]);
  });

  it('invalid data files are InputErrors naming the file', () => {
    const f = join(workDir('apk'), 'bad-trackers.yaml');
    writeFileSync(f, 'trackers:\n  - id: x\n    name: X\n    category: spying\n');
    expect(() => TrackerDatabase.load(f)).toThrow(InputError);
    const g = join(workDir('apk'), 'bad-signers.yaml');
    writeFileSync(g, 'signers:\n  - id: x\n    sha256: nothex\n');
    expect(() => KnownSigners.load(g)).toThrow(/bad-signers\.yaml/);
  });
});
