import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { syncSchemas } from '../../scripts/cli/json-schemas.ts';
import { loadDevice, loadProduct, validateFile } from '../../scripts/model/index.ts';
import { omie, ROOT, workDir } from '../helpers.ts';

const DEVICE = join(ROOT, 'device/omie/tablet/device.yaml');
const PRODUCT = join(ROOT, 'device/omie/tablet/products/omie-tablet.yaml');

describe('YAML model', () => {
  it('the reference device, product, apps and overlays validate', async () => {
    const r = await omie([
      'validate',
      '--json',
      DEVICE,
      PRODUCT,
      'prebuilt-apps/PersonalCloud/app.yaml',
      'overlays/omie-endpoints/overlay.yaml',
    ]);
    expect(JSON.parse(r.stdout).ok).toBe(true);
    expect(r.exitCode).toBe(0);
  });

  it('a typo, a wrong type and a missing field give three located errors and exit 2', async () => {
    const dir = workDir('model/bad-app');
    const f = join(dir, 'app.yaml');
    writeFileSync(
      f,
      [
        'package: org.omie.x',
        'lable: X',
        'role: customer-app',
        'partition: product',
        'privileged: "yes"',
        'signer: { key: k }',
        'apk: { file: x.apk, generated: true }',
        '',
      ].join('\n'),
    );
    const r = await omie(['validate', f]);
    expect(r.exitCode).toBe(2);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(3);
    expect(lines).toContain(
      `${f}:1:1: label: missing required field "label" (expected string, found nothing (missing))`,
    );
    expect(lines).toContain(`${f}:2:1: lable: unknown key "lable" (did you mean "label"?)`);
    expect(lines).toContain(`${f}:5:13: privileged: wrong type (expected boolean, found string "yes")`);

    const j = JSON.parse((await omie(['validate', '--json', f])).stdout);
    expect(j.files[0].issues.map((i: { path: string }) => i.path).sort()).toEqual([
      'label',
      'lable',
      'privileged',
    ]);
  });

  it('include: merges shared fragments and errors point into the fragment file', async () => {
    const dir = workDir('model/include');
    writeFileSync(
      join(dir, 'parts.yaml'),
      'partitions:\n  - { name: boot, fs: raw, location: physical, size: 12XB }\n',
    );
    writeFileSync(
      join(dir, 'device.yaml'),
      'vendor: v\ncodename: c\nname: N\nfastboot: { products: [p] }\nab: false\ninclude: parts.yaml\navb: { algorithm: SHA256_RSA2048 }\nbootloader: {}\n',
    );
    const { issues } = await validateFile(join(dir, 'device.yaml'));
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatchObject({ file: join(dir, 'parts.yaml'), line: 2, path: 'partitions.0.size' });

    writeFileSync(
      join(dir, 'parts.yaml'),
      'partitions:\n  - { name: boot, fs: raw, location: physical, size: 32MiB }\n',
    );
    const d = await loadDevice(join(dir, 'device.yaml'));
    expect(d.partitions[0].size).toBe(32 * 1024 * 1024);
    expect(d.bootloader.unlock).toEqual(['flashing unlock']);
  });

  it('cross-file checks: unknown app, group member that is not logical, footer on a missing partition', async () => {
    const dir = workDir('model/refs');
    mkdirSync(join(dir, 'device/v/c/products'), { recursive: true });
    mkdirSync(join(dir, 'prebuilt-apps'), { recursive: true });
    writeFileSync(
      join(dir, 'device/v/c/device.yaml'),
      [
        'vendor: v',
        'codename: c',
        'name: N',
        'fastboot: { products: [p] }',
        'ab: true',
        'partitions:',
        '  - { name: system, fs: ext4, location: physical, size: 1GiB }',
        'super:',
        '  blockDevices: [{ name: super, size: 2GiB }]',
        '  metadataSlots: 3',
        '  groups: [{ name: g, maxSize: 1GiB, partitions: [system] }]',
        'avb: { algorithm: SHA256_RSA4096, footers: [{ partition: vendor, type: hashtree }] }',
        'bootloader: {}',
        '',
      ].join('\n'),
    );
    const dev = await validateFile(join(dir, 'device/v/c/device.yaml'));
    expect(dev.issues.map((i) => `${i.line}:${i.path}`).sort()).toEqual([
      '11:super.groups.0.partitions.0',
      '12:avb.footers.0.partition',
    ]);

    const product = (await readText(PRODUCT)).replace('apps: [PersonalCloud,', 'apps: [Nope, PersonalCloud,');
    writeFileSync(join(dir, 'device/v/c/products/p.yaml'), product);
    const p = await validateFile(join(dir, 'device/v/c/products/p.yaml'));
    const paths = p.issues.map((i) => i.path);
    expect(paths).toContain('apps.0');
    expect(p.issues.find((i) => i.path === 'apps.0')?.message).toMatch(/no prebuilt-apps\/Nope\/app.yaml/);
  });

  it('loadProduct resolves device, apps with exactly one personal cloud, overlays', async () => {
    const p = await loadProduct(PRODUCT);
    expect(p.device.codename).toBe('tablet');
    expect(p.apps.map((a) => [a.name, a.role, a.kind])).toEqual([
      ['PersonalCloud', 'personal-cloud', 'apk'],
      ['MySuppliers', 'customer-app', 'apk'],
      ['MyTransactions', 'customer-app', 'apk'],
      ['Intentcasting', 'customer-app', 'apk'],
      ['Wallet', 'customer-app', 'apk'],
      ['SmartCart', 'customer-app', 'apk'],
      ['OmieWebView', 'webview', 'apk'],
      ['OmieSetup', 'setup', 'apk'],
      ['ModuleMetadata', 'system', 'apk'],
      ['Tzdata', 'system', 'apex'],
    ]);
    expect(p.apps.filter((a) => a.role === 'personal-cloud')).toHaveLength(1);
    expect(p.overlays.map((o) => o.package)).toContain('org.omie.overlay.endpoints');
  });

  it('an APEX app (.apex/.capex) is a system module: not privileged, no permissions', async () => {
    const dir = workDir('model/apex-app');
    const f = join(dir, 'app.yaml');
    writeFileSync(
      f,
      'package: com.android.tzdata\nlabel: Tz\nrole: customer-app\npartition: system\nprivileged: true\nprivilegedPermissions: [android.permission.BACKUP]\nsigner: { key: k }\napk: { file: com.android.tzdata.apex, generated: true }\n',
    );
    const { issues } = await validateFile(f);
    expect(issues.map((i) => `${i.path}: ${i.message}`)).toEqual([
      'privileged: an APEX is not a priv-app',
      'privilegedPermissions: an APEX has no privilegedPermissions',
      'role: an APEX is a platform module',
    ]);
  });

  it('checked-in JSON Schemas are up to date with the schema definitions', async () => {
    const stale = (await syncSchemas(ROOT, false)).filter((s) => !s.upToDate);
    expect(stale, `run \`npm run schemas\` to regenerate: ${stale.map((s) => s.file).join(', ')}`).toEqual(
      [],
    );
  });

  it('omie init scaffolds a partner tree that validates', async () => {
    const dir = join(workDir('model'), `init-${process.pid}`);
    const r = await omie([
      'init',
      dir,
      '--vendor',
      'acme',
      '--codename',
      'tab10',
      '--product',
      'acme-tab',
      '--brand',
      'Acme',
      '--model',
      'Tab 10',
    ]);
    expect(r.exitCode, r.stderr).toBe(0);
    const v = await omie([
      'validate',
      join(dir, 'device/acme/tab10/device.yaml'),
      join(dir, 'device/acme/tab10/products/acme-tab.yaml'),
    ]);
    expect(v.exitCode, v.stdout + v.stderr).toBe(0);
    const d = await loadDevice(join(dir, 'device/acme/tab10/device.yaml'));
    expect(d.fastboot.products).toEqual(['acme_tab10']);
    const again = await omie(['init', dir, '--vendor', 'acme', '--codename', 'tab10']);
    expect(again.exitCode).toBe(2);
    expect(again.stderr).toMatch(/already has/);
  });
});

async function readText(p: string): Promise<string> {
  const { readFile } = await import('node:fs/promises');
  return readFile(p, 'utf8');
}
