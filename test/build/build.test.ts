import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { openBase } from '../../scripts/build/open-base.ts';
import { type BuildResult, build } from '../../scripts/build/pipeline.ts';
import { DEFAULT_GOOGLE_PACKAGES, packageMatcher, readApkIdentity } from '../../scripts/build/plan.ts';
import { sha256File } from '../../scripts/build/record.ts';
import type { Report } from '../../scripts/conformance/spec-schema.ts';
import { calculateVbmetaDigest } from '../../scripts/formats/avb/index.ts';
import { writeOtaZip, writePayload } from '../../scripts/formats/payload/writer.ts';
import { rawToSparse } from '../../scripts/formats/sparse.ts';
import { openFilesystem } from '../../scripts/fs/index.ts';
import { certSha256, openKeys } from '../../scripts/keys/store.ts';
import { omie, sampleFixture, workDir } from '../helpers.ts';
import { AVBTOOL } from '../oracles.ts';

const GOOGLE_RELEASE = 'f0fd6c5b410f25cb25c3b53346c8972fae30f8ee7411df910480ad6b2d60db83';
const dir = workDir('build');
let fx: Awaited<ReturnType<typeof sampleFixture>>;
let first: BuildResult;
const outA = join(dir, 'out-a');
const outB = join(dir, 'out-b');

async function apksIn(image: string) {
  const fs = await openFilesystem(image);
  const out: Array<{ path: string; package: string; signers: string[] }> = [];
  try {
    for (const e of await fs.list()) {
      if (e.type !== 'file' || !e.path.endsWith('.apk')) continue;
      const tmp = join(dir, 'probe.apk');
      await fs.copyOut(e.path, tmp);
      const id = await readApkIdentity(tmp);
      out.push({ path: e.path, package: id.package, signers: id.signers });
    }
  } finally {
    await fs.close();
  }
  return out;
}

describe('omie build on the sample base', () => {
  beforeAll(async () => {
    fx = await sampleFixture();
    first = await build({ product: fx.product, base: join(fx.base, 'factory.zip'), out: outA });
  }, 1_200_000);

  it('packages images, a fastboot zip, the build record and the SBOM, and passes the conformance check', async () => {
    const files = readdirSync(outA).sort();
    for (const f of [
      'android-info.txt',
      'avb_pkmd.bin',
      'build-record.json',
      'omie-tablet-1.0.0-fastboot.zip',
      'product.img',
      'sbom.cdx.json',
      'super.img',
      'super_empty.img',
      'system.img',
      'vbmeta.img',
      'vendor.img',
    ]) {
      expect(files).toContain(f);
    }
    expect(first.check && 'conforms' in first.check && first.check.conforms).toBe(true);
    expect(readFileSync(join(outA, 'android-info.txt'), 'utf8')).toMatch(/^require board=omie_tablet$/m);
    const sbom = JSON.parse(readFileSync(join(outA, 'sbom.cdx.json'), 'utf8'));
    expect(sbom.bomFormat).toBe('CycloneDX');
    expect(sbom.specVersion).toBe('1.5');
    expect(sbom.components.map((c: { name: string }) => c.name)).toContain('org.omie.personalcloud');
    const record = JSON.parse(readFileSync(join(outA, 'build-record.json'), 'utf8'));
    // Every output's digest, including those taken while writing (super.img, the fastboot zip),
    // is the digest of the file on disk.
    const recorded = record.outputs as Array<{ path: string; sha256: string; size: number }>;
    expect(recorded.map((o) => o.path)).toEqual(
      expect.arrayContaining(['system.img', 'super.img', 'avb_pkmd.bin']),
    );
    // avb_pkmd.bin is the key vbmeta.img is signed with, recorded as such.
    expect(record.keys.avbPkmd).toBe('avb_pkmd.bin');
    expect(recorded.find((o) => o.path === 'avb_pkmd.bin')?.sha256).toBe(record.keys.avbPublicKeySha256);
    for (const o of recorded) {
      const bytes = readFileSync(join(outA, o.path));
      expect(o.sha256, o.path).toBe(createHash('sha256').update(bytes).digest('hex'));
      expect(o.size, o.path).toBe(bytes.length);
    }
    // The vbmeta digest a device running this build reports (avbtool calculate_vbmeta_digest).
    expect(record.avb.vbmetaDigest).toBe(await calculateVbmetaDigest(join(outA, 'vbmeta.img')));
    // The check inside the build took the hashtree pass's data digests (same files, hard links)
    // and still verified every stored tree up to its signed root.
    const report = JSON.parse(readFileSync(join(outA, 'check', 'report.json'), 'utf8'));
    const contents = report.results.find((r: { id: string }) => r.id === '6.3/C-0-5');
    expect(contents.status).toBe('pass');
    expect(
      contents.evidence
        .filter((e: { detail: string }) => e.detail.startsWith('trusted-data'))
        .map((e: { partition: string }) => e.partition)
        .sort(),
    ).toEqual(['product', 'system', 'vendor']);
    // The fastboot zip's CRC-32s come from the hashtree pass (not recomputed while zipping):
    // Info-ZIP recomputes every one.
    const zip = recorded.find((o) => o.path.endsWith('-fastboot.zip'))!.path;
    expect(String(execFileSync('unzip', ['-tq', join(outA, zip)]))).toMatch(/No errors detected/);
  });

  it('no Google package or Google-signed APK remains on any partition (read back from the output images)', async () => {
    const isGoogle = packageMatcher(DEFAULT_GOOGLE_PACKAGES);
    const manifest = JSON.parse(readFileSync(join(fx.base, 'sample-base.json'), 'utf8'));
    const googleSigners = new Set<string>([GOOGLE_RELEASE, ...manifest.googleSigners]);
    const all = [];
    for (const p of ['system', 'product', 'vendor']) all.push(...(await apksIn(join(outA, `${p}.img`))));
    expect(all.length).toBeGreaterThan(6);
    expect(all.filter((a) => isGoogle(a.package)).map((a) => a.package)).toEqual([]);
    expect(all.filter((a) => a.signers.some((s) => googleSigners.has(s))).map((a) => a.package)).toEqual([]);
    expect(all.map((a) => a.package)).not.toContain('com.oem.weather');
    // The app the base signed with the public test key is kept, re-signed (in process) with the
    // partner key, and apksigner accepts it.
    const dreams = all.find((a) => a.package === 'com.android.dreams.basic')!;
    expect(dreams.signers).not.toContain(manifest.signers.testkey);
    expect(dreams.signers).toEqual([await certSha256(openKeys('omie-sample-partner').apk.certPem)]);
    const fs = await openFilesystem(join(outA, 'system.img'));
    const tmp = join(dir, 'dreams.apk');
    try {
      await fs.copyOut(dreams.path, tmp);
    } finally {
      await fs.close();
    }
    expect((await execa('apksigner', ['verify', tmp], { reject: false })).exitCode).toBe(0);
  });

  it('the six Omie apps are present, pinned and allowlisted; overlays are present and parse', async () => {
    const product = await apksIn(join(outA, 'product.img'));
    const pkgs = product.map((a) => a.package);
    for (const p of [
      'org.omie.personalcloud',
      'org.omie.mysuppliers',
      'org.omie.mytransactions',
      'org.omie.intentcasting',
      'org.omie.wallet',
      'org.omie.smartcart',
    ])
      expect(pkgs).toContain(p);
    expect(product.find((a) => a.package === 'org.omie.personalcloud')?.path).toMatch(
      /^\/priv-app\/PersonalCloud\/PersonalCloud\.apk$/,
    );
    const fs = await openFilesystem(join(outA, 'product.img'));
    try {
      const allow = (await fs.list()).filter((e) =>
        /etc\/permissions\/privapp-permissions-.*\.xml$/.test(e.path),
      );
      const texts = await Promise.all(allow.map((e) => fs.readFile(e.path).then((b) => b.toString())));
      const cloud = texts.find((t) => t.includes('package="org.omie.personalcloud"'));
      expect(cloud).toMatch(/android\.permission\.BACKUP/);
      const cfg = JSON.parse((await fs.readFile('/etc/omie/personal-cloud.json')).toString());
      expect(cfg).toMatchObject({
        package: 'org.omie.personalcloud',
        ownerChangeable: true,
        defaultRemote: null,
      });
      for (const ov of ['omie-branding', 'omie-endpoints', 'omie-networkstack', 'omie-personal-cloud']) {
        const tmp = join(dir, `${ov}.apk`);
        await fs.copyOut(`/overlay/${ov}/${ov}.apk`, tmp);
        const tree = (await execa('aapt', ['dump', 'xmltree', tmp, 'AndroidManifest.xml'])).stdout;
        expect(tree).toMatch(/E: overlay/);
        expect((await execa('apksigner', ['verify', tmp], { reject: false })).exitCode).toBe(0);
      }
      const endpoints = join(dir, 'omie-endpoints.apk');
      const res = (await execa('aapt', ['dump', '--values', 'resources', endpoints])).stdout;
      expect(res).toMatch(/config_ntpServer[\s\S]*pool\.ntp\.org/);
      expect(res).not.toMatch(/google/i);
    } finally {
      await fs.close();
    }
  });

  it("Google's Mainline modules, WebView and setup wizard are replaced by the product's, and the check says so", async () => {
    const system = await apksIn(join(outA, 'system.img'));
    const product = await apksIn(join(outA, 'product.img'));
    const pkgs = [...system, ...product].map((a) => a.package);
    expect(pkgs).toEqual(
      expect.arrayContaining(['com.android.modulemetadata', 'org.omie.webview', 'org.omie.setup']),
    );
    for (const gone of [
      'com.google.android.modulemetadata',
      'com.google.android.webview',
      'com.google.android.setupwizard',
    ])
      expect(pkgs).not.toContain(gone);
    const sys = await openFilesystem(join(outA, 'system.img'));
    const apex = join(dir, 'tzdata.apex');
    try {
      const apexes = (await sys.list()).filter((e) => e.path.startsWith('/system/apex/')).map((e) => e.path);
      expect(apexes.sort()).toEqual([
        '/system/apex/com.android.i18n.apex',
        '/system/apex/com.android.tzdata.apex',
      ]);
      await sys.copyOut('/system/apex/com.android.tzdata.apex', apex);
    } finally {
      await sys.close();
    }
    expect((await execa('apksigner', ['verify', '--print-certs', apex])).stdout).toContain(
      (await certSha256(openKeys('omie-sample-apps').apk.certPem)).toLowerCase(),
    );
    // The overlay naming the WebView provider: an XML resource compiled against the base framework.
    const prod = await openFilesystem(join(outA, 'product.img'));
    const overlay = join(dir, 'webview-overlay.apk');
    try {
      await prod.copyOut('/overlay/omie-webview-providers/omie-webview-providers.apk', overlay);
      const features = (await prod.readFile('/etc/sysconfig/pixel_experience_2023.xml')).toString();
      expect(features).not.toMatch(/com\.google/);
    } finally {
      await prod.close();
    }
    const tree = (await execa('aapt', ['dump', 'xmltree', overlay, 'res/xml/config_webview_packages.xml']))
      .stdout;
    expect(tree).toMatch(/E: webviewprovider/);
    expect(tree).toMatch(/A: packageName="org\.omie\.webview"/);
    // WebViewUpdateService reads it with getAttributeBooleanValue: aapt stores a typed boolean.
    expect(tree).toMatch(/A: availableByDefault=\(type 0x12\)0xffffffff \(Raw: "true"\)/);
    expect((await execa('aapt', ['dump', 'xmltree', overlay, 'AndroidManifest.xml'])).stdout).toMatch(
      /A: android:targetPackage\(0x[0-9a-f]+\)="android"/,
    );
    // The SBOM lists the APEX modules too, with their APEX name.
    const sbom = JSON.parse(readFileSync(join(outA, 'sbom.cdx.json'), 'utf8'));
    const tz = sbom.components.find((c: { name: string }) => c.name === 'com.android.tzdata');
    expect(tz.properties).toEqual(
      expect.arrayContaining([
        { name: 'omie:path', value: 'system/apex/com.android.tzdata.apex' },
        { name: 'omie:source', value: 'product' },
        { name: 'android:apexName', value: 'com.android.tzdata' },
      ]),
    );
    const report = JSON.parse(readFileSync(join(outA, 'check', 'report.json'), 'utf8'));
    const byId = Object.fromEntries(report.results.map((r: { id: string }) => [r.id, r]));
    for (const id of ['2.4/C-0-6', '2.5/C-0-1', '2.6/C-0-1', '5.3/C-0-1'])
      expect([id, byId[id].status]).toEqual([id, 'pass']);
    expect(byId['2.4/C-0-6'].evidence).toContainEqual(
      expect.objectContaining({ package: 'org.omie.webview' }),
    );
    expect(byId['2.6/C-0-1'].evidence).toContainEqual(expect.objectContaining({ package: 'org.omie.setup' }));
    expect(byId['5.3/C-0-1'].evidence.map((e: { file: string }) => e.file).sort()).toEqual([
      'apex/com.android.i18n.apex',
      'apex/com.android.tzdata.apex',
    ]);
  });

  it('properties are set and Google props removed', async () => {
    const fs = await openFilesystem(join(outA, 'system.img'));
    try {
      const props = (await fs.readFile('/system/build.prop')).toString();
      expect(props).toMatch(/^ro\.omie\.version=1\.0\.0$/m);
      expect(props).toMatch(/^ro\.product\.system\.brand=Omie$|^ro\.product\.brand=Omie$/m);
      expect(props).not.toMatch(/^ro\.com\.google\./m);
      expect(props).not.toMatch(/^ro\.opa\./m);
      expect(props).toMatch(/^ro\.build\.type=user$/m);
    } finally {
      await fs.close();
    }
  });

  it('filesystems are clean and every added file carries an SELinux label', async () => {
    for (const p of ['system', 'vendor']) await execa('e2fsck', ['-fn', join(outA, `${p}.img`)]);
    await execa('fsck.erofs', [join(outA, 'product.img')]);
    for (const part of first.plan.partitions) {
      const fs = await openFilesystem(join(outA, `${part.partition}.img`));
      try {
        for (const a of part.additions) {
          const e = await fs.stat(a.path);
          expect(e, a.path).not.toBeNull();
          expect(e?.label, a.path).toMatch(/^u:object_r:\w+:s0$/);
        }
      } finally {
        await fs.close();
      }
    }
  });

  it.skipIf(!AVBTOOL.present)(
    `avbtool verify_image passes with the partner key ${AVBTOOL.reason}`,
    async () => {
      const key = openKeys('omie-sample-partner').avbPem;
      const r = await execa(
        'python3',
        [AVBTOOL.path, 'verify_image', '--image', join(outA, 'vbmeta.img'), '--key', key],
        { reject: false },
      );
      expect(r.exitCode, r.stderr + r.stdout).toBe(0);
      expect(r.stdout).toMatch(/vbmeta: Successfully verified SHA256_RSA4096 vbmeta struct/);
      for (const p of ['system', 'product', 'vendor'])
        expect(r.stdout).toMatch(new RegExp(`${p}: Successfully verified sha256 hashtree`));
      // avb_pkmd.bin is exactly what avbtool extract_public_key writes for the partner key.
      const ref = join(dir, 'avb_pkmd.ref');
      await execa('python3', [AVBTOOL.path, 'extract_public_key', '--key', key, '--output', ref]);
      expect(readFileSync(join(outA, 'avb_pkmd.bin')).equals(readFileSync(ref))).toBe(true);
    },
  );

  it('two builds of the same inputs are byte-identical', async () => {
    await build({ product: fx.product, base: join(fx.base, 'factory.zip'), out: outB });
    for (const f of readdirSync(outA).filter((x) => x !== 'check')) {
      expect(await sha256File(join(outB, f)), f).toBe(await sha256File(join(outA, f)));
    }
  }, 1_200_000);

  it('sparse images, super.img, a factory zip, a full OTA zip and a bare payload.bin give the same partition contents', async () => {
    const forms = join(dir, 'forms');
    mkdirSync(join(forms, 'sparse'), { recursive: true });
    for (const p of ['system', 'product', 'vendor'])
      await rawToSparse(join(fx.base, `${p}.img`), join(forms, 'sparse', `${p}.img`));
    await writePayload(join(forms, 'payload.bin'), {
      partitions: ['system', 'product', 'vendor'].map((name) => ({
        name,
        imagePath: join(fx.base, `${name}.img`),
        ops: 'mixed' as const,
      })),
    });
    await writeOtaZip(join(forms, 'ota.zip'), join(forms, 'payload.bin'));
    const digests: Record<string, Record<string, string>> = {};
    for (const [name, input] of Object.entries({
      sparse: join(forms, 'sparse'),
      super: join(fx.base, 'super.img'),
      factory: join(fx.base, 'factory.zip'),
      ota: join(forms, 'ota.zip'),
      payload: join(forms, 'payload.bin'),
    })) {
      const opened = await openBase(input, join(forms, `work-${name}`));
      digests[name] = {};
      for (const p of ['system', 'product', 'vendor']) digests[name][p] = await sha256File(opened.images[p]);
    }
    const raw: Record<string, string> = {};
    for (const p of ['system', 'product', 'vendor']) raw[p] = await sha256File(join(fx.base, `${p}.img`));
    for (const d of Object.values(digests)) expect(d).toEqual(raw);
  }, 600_000);

  it('check --attest writes a certificate that verifies for this image only', async () => {
    const { generateKeyPairSync } = await import('node:crypto');
    const { writeFileSync, cpSync } = await import('node:fs');
    const kp = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const priv = join(dir, 'lab.key.pem');
    const pub = join(dir, 'lab.pub.pem');
    writeFileSync(priv, kp.privateKey.export({ type: 'pkcs8', format: 'pem' }));
    writeFileSync(pub, kp.publicKey.export({ type: 'spki', format: 'pem' }));
    const env = { OMIE_HOME: fx.home };
    const reports = join(dir, 'attest-reports');
    const c = await omie(
      ['check', outA, '--product', fx.product, '--report-dir', reports, '--attest', '--key', priv],
      { env },
    );
    expect(c.exitCode, c.stdout + c.stderr).toBe(0);
    const att = join(reports, 'attestation.dsse.json');
    const ok = await omie(['verify-attestation', att, '--image', outA, '--trusted-key', pub, '--json'], {
      env,
    });
    expect(ok.exitCode, ok.stdout).toBe(0);
    const swapped = join(dir, 'swapped');
    cpSync(outA, swapped, { recursive: true });
    cpSync(join(fx.base, 'system.img'), join(swapped, 'system.img'));
    const bad = await omie(['verify-attestation', att, '--image', swapped, '--trusted-key', pub, '--json'], {
      env,
    });
    expect(bad.exitCode).toBe(1);
    expect(JSON.parse(bad.stdout).reasons.map((r: { code: string }) => r.code)).toEqual(['SUBJECT_MISMATCH']);
  });

  it('a plan that keeps a Google package fails before repacking, naming it and the fix; a dry run warns; a waiver lets it pass', async () => {
    const env = { OMIE_HOME: fx.home };
    const variant = (name: string, edit: (y: string) => string) => {
      const file = join(fx.product, '..', `${name}.yaml`);
      writeFileSync(file, edit(readFileSync(fx.product, 'utf8')));
      return file;
    };
    const keeps = variant('keeps-maps', (y) =>
      y.replace(/^ {2}keep: \[\]$/m, '  keep: [com.google.android.apps.maps]'),
    );
    const out = join(dir, 'keeps-maps');
    const t0 = Date.now();
    const r = await omie(['--json', 'build', keeps, '--base', join(fx.base, 'factory.zip'), '--out', out], {
      env,
    });
    expect(r.exitCode, r.stderr).toBe(1);
    const err = JSON.parse(r.stdout).error;
    expect(err.code).toBe('BUILD_CHECK_WOULD_FAIL');
    expect(err.context.requirements).toEqual(['2.1/C-0-1']);
    expect(err.context.apks).toEqual([
      {
        requirement: '2.1/C-0-1',
        package: 'com.google.android.apps.maps',
        where: 'system:/system/app/Maps/Maps.apk',
        because: 'com.google.*',
      },
    ]);
    expect(err.hint).toMatch(/removals\.packages/);
    expect(existsSync(out)).toBe(false);
    expect(Date.now() - t0).toBeLessThan(60_000); // the plan only: nothing was repacked
    const dry = await omie(['build', keeps, '--base', join(fx.base, 'factory.zip'), '--dry-run'], { env });
    expect(dry.exitCode, dry.stderr).toBe(0);
    expect(dry.stderr).toMatch(
      /com\.google\.android\.apps\.maps.*check would fail|check would fail.*com\.google\.android\.apps\.maps/s,
    );
    const waived = variant('keeps-maps-waived', (y) =>
      y
        .replace(/^ {2}keep: \[\]$/m, '  keep: [com.google.android.apps.maps]')
        .replace(
          /^waivers: \[\]$/m,
          'waivers: [{ id: 2.1/C-0-1, reason: "maps kept for a field test", expires: 2099-01-01 }]',
        ),
    );
    const ok = await omie(['build', waived, '--base', join(fx.base, 'factory.zip'), '--dry-run'], { env });
    expect(ok.exitCode, ok.stderr).toBe(0);
    expect(ok.stderr).not.toMatch(/check would fail/);
  });

  it('without the AOSP modules, a WebView and a setup app, the build refuses, naming each and its replacement', async () => {
    const env = { OMIE_HOME: fx.home };
    const file = join(fx.product, '..', 'no-replacements.yaml');
    writeFileSync(
      file,
      readFileSync(fx.product, 'utf8').replace(', OmieWebView, OmieSetup, ModuleMetadata, Tzdata]', ']'),
    );
    const out = join(dir, 'no-replacements');
    const r = await omie(['--json', 'build', file, '--base', join(fx.base, 'factory.zip'), '--out', out], {
      env,
    });
    expect(r.exitCode, r.stderr).toBe(2);
    const err = JSON.parse(r.stdout).error;
    expect(err.code).toBe('BUILD_REFUSED');
    expect(
      err.context.refusals.map((x: { kind: string; package: string; replacement?: string }) => [
        x.kind,
        x.package,
        x.replacement ?? null,
      ]),
    ).toEqual([
      ['mainline', 'com.google.android.modulemetadata', 'com.android.modulemetadata'],
      ['mainline', 'com.google.android.tzdata6', 'com.android.tzdata'],
      ['webview', 'com.google.android.webview', null],
      ['setup', 'com.google.android.setupwizard', null],
    ]);
    expect(err.message).toMatch(/provide the AOSP module com\.android\.tzdata/);
    expect(err.message).toMatch(/role: webview/);
    expect(err.message).toMatch(/com\.android\.provision/);
    expect(existsSync(out)).toBe(false);
    const dry = await omie(['build', file, '--base', join(fx.base, 'factory.zip'), '--dry-run'], { env });
    expect(dry.exitCode, dry.stderr).toBe(0);
    expect(dry.stdout).toMatch(/The build refuses this plan \(4\):/);
    expect(dry.stderr).toMatch(/warning: the plan removes 4 platform component\(s\) nothing replaces/);
  });

  it('the sample passes its own spec with and without --product (omie check on the fastboot zip)', async () => {
    const env = { OMIE_HOME: fx.home };
    const zip = join(outA, 'omie-tablet-1.0.0-fastboot.zip');
    for (const args of [[], ['--product', fx.product]]) {
      const r = await omie(['check', zip, ...args, '--json'], { env });
      const report = JSON.parse(r.stdout) as Report;
      const bad = report.results.filter((x) => x.status === 'fail' || x.status === 'error');
      expect(bad.map((b) => `${b.id}: ${b.message} ${JSON.stringify(b.evidence.slice(0, 3))}`)).toEqual([]);
      expect(r.exitCode, args.join(' ')).toBe(0);
      const byId = Object.fromEntries(report.results.map((x) => [x.id, x]));
      // The apps that work with the owner's data: the personal cloud, the five customer-side
      // apps, the WebView provider and the setup app (and, without --product, every app whose
      // manifest declares a role: the AOSP module metadata's is `system`).
      expect(byId['4.1/C-0-1'].message).toBe('one personal cloud: org.omie.personalcloud');
      expect(byId['4.2/C-0-1'].evidence.map((e) => e.package).sort()).toEqual([
        ...(args.length ? [] : ['com.android.modulemetadata']),
        'org.omie.intentcasting',
        'org.omie.mysuppliers',
        'org.omie.mytransactions',
        'org.omie.personalcloud',
        'org.omie.setup',
        'org.omie.smartcart',
        'org.omie.wallet',
        'org.omie.webview',
      ]);
      expect(byId['4.3/C-0-2'].status).toBe('pass');
      expect(byId['4.3/C-0-3'].status).toBe('pass');
    }
  });

  it('a build the check refuses writes nothing, prints the first offenders of each failing requirement and keeps the reports', async () => {
    const env = { OMIE_HOME: fx.home };
    // A product property the build does not enforce: the image says test-keys.
    const file = join(fx.product, '..', 'test-keys.yaml');
    writeFileSync(
      file,
      readFileSync(fx.product, 'utf8').replace(
        /^ {4}ro\.omie\.version: 1\.0\.0$/m,
        '    ro.omie.version: 1.0.0\n    ro.build.tags: test-keys',
      ),
    );
    const out = join(dir, 'test-keys');
    const r = await omie(['build', file, '--base', join(fx.base, 'factory.zip'), '--out', out], { env });
    expect(r.exitCode, r.stderr).toBe(1);
    expect(existsSync(out)).toBe(false);
    const reports = `${out}.refused`;
    expect(r.stderr).toContain(
      '6.1/C-0-5 [MUST] ro.build.tags is release-keys: ro.build.tags=test-keys, expected release-keys',
    );
    expect(r.stderr).toContain('  - ro.build.tags=test-keys: expected release-keys');
    // The fingerprint still says release-keys: 7.1/C-0-2 fails too, with its own offender.
    expect(r.stderr).toMatch(
      /7\.1\/C-0-2 \[MUST\][^\n]*\n\s+- ro\.build\.fingerprint=Omie\/omie_tablet\/tablet:[^\n]*ro\.build\.tags is test-keys/,
    );
    expect(r.stderr).toContain(`reports: ${join(reports, 'report.html')}`);
    const report = JSON.parse(readFileSync(join(reports, 'report.json'), 'utf8')) as Report;
    expect(report.results.find((x) => x.id === '6.1/C-0-5')?.status).toBe('fail');
    expect(existsSync(join(reports, 'junit.xml'))).toBe(true);
    const j = await omie(['--json', 'build', file, '--base', join(fx.base, 'factory.zip'), '--out', out], {
      env,
    });
    const err = JSON.parse(j.stdout).error;
    expect(err.code).toBe('BUILD_CHECK_FAILED');
    expect(err.context.reports).toBe(reports);
    expect(err.context.failed.map((f: { id: string }) => f.id)).toEqual(['6.1/C-0-5', '7.1/C-0-2']);
    expect(err.context.failed[0].evidence).toEqual([
      expect.objectContaining({ prop: 'ro.build.tags', value: 'test-keys' }),
    ]);
  });

  it('--dry-run prints the plan; a wrong key reference exits 2 naming the fix', async () => {
    const env = { OMIE_HOME: fx.home };
    const r = await omie(
      ['build', fx.product, '--base', join(fx.base, 'factory.zip'), '--dry-run', '--json'],
      { env },
    );
    expect(r.exitCode, r.stderr).toBe(0);
    const plan = JSON.parse(r.stdout);
    expect(plan.schema).toBe('omie.plan/1');
    expect(plan.removedPackages).toContain('com.google.android.gms');
    const bad = await omie(
      ['build', fx.product, '--base', join(fx.base, 'factory.zip'), '--out', join(dir, 'bad')],
      { env: { OMIE_HOME: join(dir, 'empty-home') } },
    );
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toMatch(/omie keys init/);
    expect(existsSync(join(dir, 'bad'))).toBe(false);
  });
});
