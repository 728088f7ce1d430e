/**
 * `omie build` on a base signed with the public AOSP test keys (test/build/testkeys-base.ts), the
 * most common base there is: every APK is re-signed with the partner key of its role, framework-res
 * included, and the image passes the check. Oracles: apksigner verify --print-certs, zipalign -c.
 * Needs the real AOSP test keys (../shared/fixtures/aosp-testkeys): skipped visibly without them.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { type BuildResult, build } from '../../scripts/build/pipeline.ts';
import { otacertsTestKeys } from '../../scripts/build/plan.ts';
import { parseProps } from '../../scripts/build/props.ts';
import { bufferSource, ZipArchive } from '../../scripts/formats/apk/zip.ts';
import { openFilesystem } from '../../scripts/fs/index.ts';
import { loadProduct } from '../../scripts/model/index.ts';
import { omie, onceInDir, SAMPLE_HOME, sampleFixture, workDir } from '../helpers.ts';
import { AOSP_TESTKEYS } from '../oracles.ts';
import { EXTRA_APEX, generateTestKeysBase, TESTKEYS_APPS, type TestKey } from './testkeys-base.ts';

/** The test-keys base is made by testkeys-base.ts from the AOSP test keys in ../shared. */
const TESTKEYS_BASE_INPUTS = ['test/build/testkeys-base.ts', AOSP_TESTKEYS.path];

const dir = workDir('testkeys');
const baseDir = join(dir, 'base');
const extrasDir = join(dir, 'base-extras');
const KEYSET = 'tk-partner';
const ROLES = ['platform', 'shared', 'media', 'networkstack', 'releasekey'] as const;

const DEVICE = `# A tablet whose vendor ships a LineageOS-style test-keys build.
vendor: omie
codename: tkeytab
name: Omie tablet on a test-keys base
fastboot:
  products: [oemtab]
  bootloaderVersions: []
  maxDownloadSize: 256MiB
ab: true
partitions:
  - { name: vbmeta, fs: raw, location: physical, size: 64KiB }
  - { name: userdata, fs: raw, location: physical, size: 256MiB }
  - { name: system, fs: ext4, location: super, size: 1GiB }
  - { name: system_ext, fs: ext4, location: super, size: 256MiB }
  - { name: product, fs: erofs, location: super, size: 256MiB }
  - { name: vendor, fs: ext4, location: super, size: 128MiB }
  - { name: vendor_dlkm, fs: erofs, location: super, size: 32MiB }
super:
  name: super
  blockDevices:
    - { name: super, size: 3GiB, alignment: 1MiB }
  metadataSlots: 3
  metadataMaxSize: 65536
  groups:
    - { name: main, maxSize: 1500MiB, partitions: [system, system_ext, product, vendor, vendor_dlkm] }
avb:
  algorithm: SHA256_RSA4096
  rollbackIndex: 0
  footers:
    - { partition: system, type: hashtree, hashAlgorithm: sha256 }
    - { partition: system_ext, type: hashtree, hashAlgorithm: sha256 }
    - { partition: product, type: hashtree, hashAlgorithm: sha256 }
    - { partition: vendor, type: hashtree, hashAlgorithm: sha256 }
    - { partition: vendor_dlkm, type: hashtree, hashAlgorithm: sha256 }
  chained: []
bootloader:
  unlock: ["flashing unlock"]
  lock: ["flashing lock"]
`;

const ROLE_KEYS = `  apkKeys:
${ROLES.map((r) => `    ${r}: { name: ${KEYSET} }`).join('\n')}
`;

let tree: string;

/** A copy of the sample tree with the tkeytab device and a product whose signing block is `signing`. */
function productWith(name: string, signing: string): string {
  const t = join(dir, `tree-${name}`);
  rmSync(t, { recursive: true, force: true });
  cpSync(tree, t, { recursive: true });
  const d = join(t, 'device/omie/tkeytab');
  mkdirSync(join(d, 'products'), { recursive: true });
  writeFileSync(join(d, 'device.yaml'), DEVICE);
  const sample = readFileSync(join(t, 'device/omie/tablet/products/omie-tablet.yaml'), 'utf8');
  const product = join(d, 'products/tkeytab.yaml');
  writeFileSync(
    product,
    sample
      .replace(/^name: omie-tablet$/m, `name: omie-${name}`)
      .replace(/^base:\n( {2}.*\n)+/m, '')
      .replace(/^signing:\n( {2}.*\n)+/m, `signing:\n${signing}`)
      .replace(/^trust:\n(( {2}.*|#.*)\n)+/m, ''),
  );
  return product;
}

const PARTNER = `  avbKey: { name: ${KEYSET} }\n  apkKey: { name: ${KEYSET} }\n`;

function certOf(file: string): string {
  return createHash('sha256')
    .update(new X509Certificate(readFileSync(file)).raw)
    .digest('hex');
}

const keyFile = (stem: string) => join(SAMPLE_HOME, 'keys', KEYSET, `${stem}.x509.pem`);

/** The partner key each test-key role must end with: its role key, else signing.apkKey. */
function expectedCert(key: TestKey): string {
  const role = key === 'testkey' ? 'releasekey' : key;
  return certOf(keyFile((ROLES as readonly string[]).includes(role) ? role : 'apk'));
}

beforeAll(async () => {
  if (!AOSP_TESTKEYS.present) return;
  const fx = await sampleFixture();
  tree = fx.tree;
  await onceInDir(baseDir, TESTKEYS_BASE_INPUTS, async () => {
    await generateTestKeysBase({ outDir: baseDir, testKeysDir: AOSP_TESTKEYS.path });
  });
  // The partner's key set, made as a user makes it.
  const r = await omie(['keys', 'init', KEYSET, '--roles', ROLES.join(','), '--json'], {
    env: { OMIE_HOME: SAMPLE_HOME },
  });
  expect(r.exitCode, r.stderr).toBe(0);
}, 900_000);

describe.skipIf(!AOSP_TESTKEYS.present)(`omie build on a test-keys base ${AOSP_TESTKEYS.reason}`, () => {
  const out = join(dir, 'out');
  const logs: string[] = [];
  let res: BuildResult;
  /** The product's identity, as its YAML says. */
  let id: Record<string, string>;
  const apks = new Map<string, { signers: string[]; verify: string; path: string }>();
  const props = new Map<string, Record<string, string>>();

  beforeAll(async () => {
    const product = productWith('tkeytab', PARTNER + ROLE_KEYS);
    id = { ...(await loadProduct(product)).product.identity };
    res = await build({
      product,
      base: baseDir,
      out,
      log: (l) => logs.push(l),
    });
    const probe = join(dir, 'probe');
    rmSync(probe, { recursive: true, force: true });
    mkdirSync(probe, { recursive: true });
    for (const p of ['system', 'system_ext', 'product', 'vendor', 'vendor_dlkm']) {
      const fs = await openFilesystem(join(out, `${p}.img`));
      try {
        for (const e of await fs.list()) {
          if (e.type !== 'file') continue;
          if (/build\.prop$/.test(e.path))
            props.set(
              `${p}:${e.path}`,
              Object.fromEntries(
                parseProps((await fs.readFile(e.path)).toString()).map((x) => [x.key, x.value]),
              ),
            );
          if (!e.path.endsWith('.apk')) continue;
          const local = join(probe, `${apks.size}.apk`);
          await fs.copyOut(e.path, local);
          const v = await execa('apksigner', ['verify', '--print-certs', '-v', local], { reject: false });
          expect(v.exitCode, `${p}:${e.path}: ${v.stderr}`).toBe(0);
          const signers = [...v.stdout.matchAll(/certificate SHA-256 digest: ([0-9a-f]{64})/g)].map(
            (m) => m[1],
          );
          apks.set(`${p}:${e.path}`, { signers: [...new Set(signers)], verify: v.stdout, path: local });
        }
      } finally {
        await fs.close();
      }
    }
  }, 1_800_000);

  it('passes the conformance check', () => {
    expect(res.check && 'conforms' in res.check && res.check.conforms).toBe(true);
  });

  it('signs every APK of a role with the partner key of that role, framework-res included (apksigner)', () => {
    const fw = apks.get('system:/system/framework/framework-res.apk');
    expect(fw?.signers).toEqual([expectedCert('platform')]);
    for (const a of TESTKEYS_APPS) {
      const got = apks.get(`${a.partition}:${a.path}`);
      expect([a.path, got?.signers]).toEqual([a.path, [expectedCert(a.key)]]);
    }
    // Roles keep their separation: the five keys of --roles and the fallback are six keys.
    expect(new Set(TESTKEYS_APPS.map((a) => expectedCert(a.key))).size).toBe(6);
  });

  it('leaves no AOSP test-key signer in the image', () => {
    const testKeys = new Set(
      ['testkey', 'platform', 'shared', 'media', 'networkstack', 'bluetooth', 'sdk_sandbox'].map((k) =>
        certOf(join(AOSP_TESTKEYS.path, `${k}.x509.pem`)),
      ),
    );
    const left = [...apks].filter(([, a]) => a.signers.some((s) => testKeys.has(s))).map(([k]) => k);
    expect(left).toEqual([]);
    expect(apks.size).toBeGreaterThan(TESTKEYS_APPS.length);
  });

  it('gives APKs whose minSdkVersion is below 24 a v1 signature too, and keeps every APK aligned (zipalign -c)', async () => {
    for (const a of TESTKEYS_APPS) {
      const got = apks.get(`${a.partition}:${a.path}`)!;
      const v1 = /Verified using v1 scheme \(JAR signing\): true/.test(got.verify);
      expect([a.path, v1]).toEqual([a.path, (a.spec.minSdk ?? 1) < 24]);
      expect(got.verify).toMatch(/Verified using v2 scheme \(APK Signature Scheme v2\): true/);
    }
    for (const [k, a] of apks) {
      const z = await execa('zipalign', ['-c', '4', a.path], { reject: false });
      expect([k, z.exitCode]).toEqual([k, 0]);
    }
  });

  it('keeps every shared UID on one key', async () => {
    const byUid = new Map<string, Set<string>>();
    for (const a of [
      { path: 'system:/system/framework/framework-res.apk', uid: 'android.uid.system' },
      ...TESTKEYS_APPS.filter((x) => x.spec.sharedUserId).map((x) => ({
        path: `${x.partition}:${x.path}`,
        uid: x.spec.sharedUserId!,
      })),
    ]) {
      const set = byUid.get(a.uid) ?? new Set();
      for (const s of apks.get(a.path)!.signers) set.add(s);
      byUid.set(a.uid, set);
    }
    for (const [uid, signers] of byUid) expect([uid, signers.size]).toEqual([uid, 1]);
  });

  it('names the partner certificates in plat_mac_permissions.xml instead of the test keys', async () => {
    const fs = await openFilesystem(join(out, 'system.img'));
    let xml: string;
    try {
      xml = (await fs.readFile('/system/etc/selinux/plat_mac_permissions.xml')).toString();
    } finally {
      await fs.close();
    }
    const signers = [...xml.matchAll(/signature="([0-9a-f]+)"/g)].map((m) =>
      createHash('sha256').update(Buffer.from(m[1], 'hex')).digest('hex'),
    );
    expect(signers).toEqual([
      expectedCert('platform'),
      expectedCert('bluetooth'),
      expectedCert('media'),
      expectedCert('networkstack'),
    ]);
    expect(xml).toMatch(/<seinfo value="platform"\/>/);
  });

  it('rewrites ro.build.tags and every fingerprint to release-keys, with the product identity', () => {
    const fps: string[] = [];
    for (const [file, p] of props) {
      for (const [k, v] of Object.entries(p)) {
        if (/\.build\.tags$/.test(k)) expect([file, k, v]).toEqual([file, k, 'release-keys']);
        if (/build\.(fingerprint|thumbprint|description)$|^ro\.build\.display\.id$/.test(k)) {
          expect([file, k, v]).toEqual([file, k, expect.stringMatching(/release-keys$/)]);
          expect(v).not.toMatch(/test-keys/);
        }
        if (/build\.fingerprint$/.test(k) && !file.startsWith('vendor_dlkm:')) fps.push(v);
      }
    }
    expect(fps.length).toBeGreaterThanOrEqual(5);
    for (const fp of fps)
      expect(fp).toMatch(/^Omie\/omie_tablet\/tablet:14\/UQ1A\.240205\.004\/[^:]+:user\/release-keys$/);
    // A kernel-module partition gets the release tags only, as sign_target_files_apks does.
    expect(props.get('vendor_dlkm:/etc/build.prop')?.['ro.vendor_dlkm.build.fingerprint']).toBe(
      'oem/oemtab/oemtab:14/UQ1A.240205.004/20240205:userdebug/release-keys',
    );
  });

  it('writes the identity of every partition namespace, adding the keys the base lacks', () => {
    const files: Record<string, string> = {
      system: 'system:/system/build.prop',
      system_ext: 'system_ext:/etc/build.prop',
      product: 'product:/etc/build.prop',
      vendor: 'vendor:/build.prop',
    };
    for (const [ns, file] of Object.entries(files)) {
      const p = props.get(file)!;
      for (const [f, v] of Object.entries(id))
        expect([file, f, p[`ro.product.${ns}.${f}`]]).toEqual([file, f, v]);
      expect(p[`ro.${ns}.build.fingerprint`]).toMatch(/^Omie\/omie_tablet\/tablet:/);
    }
  });

  it("makes the values init derives the product identity, whatever the vendor's ro.product.property_source_order", () => {
    // property_service.cpp: ro.product.<f> is derived only when unset, from the first partition
    // of ro.product.property_source_order that sets ro.product.<partition>.<f>.
    const merged: Record<string, string> = {};
    for (const f of [
      'system:/system/build.prop',
      'system_ext:/etc/build.prop',
      'vendor:/build.prop',
      'product:/etc/build.prop',
    ])
      Object.assign(merged, props.get(f));
    expect(merged['ro.product.property_source_order']).toBe('vendor,odm,product,system_ext,system');
    const order = merged['ro.product.property_source_order'].split(',');
    for (const [f, v] of Object.entries(id)) {
      const derived =
        merged[`ro.product.${f}`] ?? order.map((s) => merged[`ro.product.${s}.${f}`]).find(Boolean);
      expect([f, derived]).toEqual([f, v]);
    }
    expect(merged['ro.build.fingerprint']).toMatch(/^Omie\/omie_tablet\/tablet:.*:user\/release-keys$/);
  });

  it("replaces the test-key otacerts.zip with the partner's OTA certificate, and says so", async () => {
    const fs = await openFilesystem(join(out, 'system.img'));
    try {
      const zip = await fs.readFile('/system/etc/security/otacerts.zip');
      expect(await otacertsTestKeys(zip, 'otacerts.zip')).toEqual([]);
      const z = await ZipArchive.open(bufferSource(zip, 'otacerts.zip'));
      // signing.otaKey is not set: the release APK key signs OTAs, as AOSP's releasekey does.
      expect(z.entries.map((e) => e.name)).toEqual(['apk.x509.pem']);
      expect(certOf(keyFile('apk'))).toBe(
        createHash('sha256')
          .update(new X509Certificate(await z.read(z.entries[0])).raw)
          .digest('hex'),
      );
    } finally {
      await fs.close();
    }
    expect(logs.join('\n')).toMatch(
      /removing system:\/system\/etc\/security\/otacerts\.zip: OTA certificate\(s\) testkey\.x509\.pem \(AOSP test key/,
    );
  });

  it('records the key of every role in the build record', () => {
    const rec = JSON.parse(readFileSync(join(out, 'build-record.json'), 'utf8'));
    expect(rec.keys.apkRoleCertSha256.platform).toBe(expectedCert('platform'));
    expect(rec.keys.apkRoleCertSha256.bluetooth).toBe(certOf(keyFile('apk')));
    expect(rec.release).toBe(true);
  });
});

describe.skipIf(!AOSP_TESTKEYS.present)(
  `what the build refuses on a test-keys base ${AOSP_TESTKEYS.reason}`,
  () => {
    const refused = async (
      name: string,
      signing: string,
      base = baseDir,
      opts: { allowTestKeys?: boolean } = {},
    ) => {
      const err = await build({
        product: productWith(name, signing),
        base,
        out: join(dir, `out-${name}`),
        ...opts,
      }).then(
        () => null,
        (e: unknown) =>
          e as { code: string; message: string; hint?: string; context: Record<string, unknown> },
      );
      expect(err, 'the build must refuse').not.toBeNull();
      expect(existsSync(join(dir, `out-${name}`))).toBe(false);
      return err!;
    };

    it('roles merged onto signing.apkKey: names the roles and how to give each a key', async () => {
      const err = await refused('one-key', PARTNER);
      expect(err.code).toBe('KEY_ROLES_MERGED');
      expect(err.context.roles).toEqual([
        ['releasekey', 'platform', 'shared', 'media', 'networkstack', 'bluetooth'],
      ]);
      expect(err.hint).toContain(
        'omie keys init <name> --roles releasekey,platform,shared,media,networkstack,bluetooth',
      );
    }, 600_000);

    it('a role key that is a public test key', async () => {
      const err = await refused(
        'test-platform',
        `${PARTNER}  apkKeys:\n    platform: { file: ${join(AOSP_TESTKEYS.path, 'platform')} }\n`,
      );
      expect(err.code).toBe('TEST_KEY_REFUSED');
      expect(err.message).toContain('signing.apkKeys.platform');
      expect(err.message).toContain('AOSP platform test key');
    });

    it('a role the key set has no key for', async () => {
      const err = await refused('no-nfc', `${PARTNER}  apkKeys:\n    nfc: { name: ${KEYSET} }\n`);
      expect(err.code).toBe('KEY_MISSING');
      expect(err.hint).toBe(`create it with: omie keys init ${KEYSET} --roles nfc`);
    });

    it('two roles the SELinux policy tells apart, given one key', async () => {
      const same = join(SAMPLE_HOME, 'keys', KEYSET, 'platform');
      const err = await refused(
        'mac-dup',
        `${PARTNER}${ROLE_KEYS.replace(
          `platform: { name: ${KEYSET} }`,
          `platform: { file: ${same} }`,
        ).replace(`media: { name: ${KEYSET} }`, `media: { file: ${same} }`)}`,
      );
      expect(err.code).toBe('MAC_PERMISSIONS_DUPLICATE');
      expect(err.context.roles).toEqual(['platform', 'media']);
    }, 600_000);

    describe('a base with a test-key APEX and an OEM app in android.uid.system', () => {
      beforeAll(async () => {
        await onceInDir(extrasDir, TESTKEYS_BASE_INPUTS, async () => {
          await generateTestKeysBase({ outDir: extrasDir, testKeysDir: AOSP_TESTKEYS.path, extras: true });
        });
      }, 900_000);

      it('refuses the APEX by name, with the key it is signed with', async () => {
        const err = await refused('apex', PARTNER + ROLE_KEYS, extrasDir);
        expect(err.code).toBe('APEX_TEST_KEY');
        expect(err.message).toContain(`system:${EXTRA_APEX} (container: AOSP platform test key)`);
      }, 600_000);

      it('refuses a shared UID whose members would end with different keys', async () => {
        const err = await refused('split', PARTNER + ROLE_KEYS, extrasDir, { allowTestKeys: true });
        expect(err.code).toBe('SHARED_UID_SPLIT');
        const split = err.context.sharedUids as Array<{
          sharedUserId: string;
          members: Array<{ package: string }>;
        }>;
        expect(split.map((s) => s.sharedUserId)).toEqual(['android.uid.system']);
        expect(split[0].members.map((m) => m.package).sort()).toEqual([
          'android',
          'com.android.providers.settings',
          'com.android.settings',
          'com.oem.systemtweaks',
        ]);
      }, 600_000);
    });

    it('a GSI without the vendor image the profile signs: refused before any work, naming both fixes (CLI)', async () => {
      const gsi = join(dir, 'gsi');
      rmSync(gsi, { recursive: true, force: true });
      mkdirSync(gsi, { recursive: true });
      for (const p of ['system', 'system_ext', 'product'])
        cpSync(join(baseDir, `${p}.img`), join(gsi, `${p}.img`));
      const product = productWith('gsi', PARTNER + ROLE_KEYS);
      const r = await omie(['build', product, '--base', gsi, '--out', join(dir, 'out-gsi'), '--json'], {
        env: { OMIE_HOME: SAMPLE_HOME },
      });
      expect(r.exitCode).toBe(2);
      const e = JSON.parse(r.stdout).error;
      expect(e.code).toBe('BASE_PARTITION_MISSING');
      expect(e.message).toContain(
        'the device profile signs vendor (logical), vendor_dlkm (logical), but the base has no such image',
      );
      expect(e.hint).toContain("add the device's vendor.img, vendor_dlkm.img to the base folder");
      expect(e.hint).toContain('or drop vendor, vendor_dlkm from');
      expect(existsSync(join(dir, 'out-gsi'))).toBe(false);
    }, 300_000);
  },
);
