/**
 * Realism: Debian's framework-res.apk (45 MB, 7600 entries, ~2000 strings in many locales,
 * 500+ permissions) is a real platform build output we did not make. Our zip/AXML/arsc/manifest
 * readers must agree with aapt on it.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { generateSigningKey } from '../../scripts/apkgen/index.ts';
import { parseArsc } from '../../scripts/formats/apk/arsc.ts';
import { parseAxml, type XmlElement } from '../../scripts/formats/apk/axml.ts';
import { inspectApk } from '../../scripts/formats/apk/inspect.ts';
import { ZipArchive } from '../../scripts/formats/apk/zip.ts';
import { FRAMEWORK_RES, runTool } from '../../scripts/host/tools.ts';
import { workDir } from '../helpers.ts';
import { hostFile } from '../host-tools.ts';
import { apksignerVerify, parseBadging } from './oracles.ts';

const FRAMEWORK = hostFile(FRAMEWORK_RES);

describe.skipIf(!FRAMEWORK.present)(`framework-res.apk (third-party realism) ${FRAMEWORK.reason}`, () => {
  it('manifest facts equal aapt dump badging; declared permissions equal aapt dump permissions', async () => {
    const b = parseBadging((await runTool('aapt', ['dump', 'badging', FRAMEWORK_RES])).stdout);
    const r = await inspectApk(FRAMEWORK_RES);
    expect(r.identity).toMatchObject({
      package: b.package,
      versionCode: b.versionCode,
      versionName: b.versionName,
      label: b.label,
    });
    expect(r.sdk.min).toBe(b.sdk);
    expect(r.sdk.target).toBe(b.target);
    expect(r.permissions.requested.map((p) => ({ name: p.name, maxSdkVersion: p.maxSdkVersion }))).toEqual(
      b.permissions,
    );
    const perms = (await runTool('aapt', ['dump', 'permissions', FRAMEWORK_RES])).stdout
      .split('\n')
      .filter((l) => l.startsWith('permission: '))
      .map((l) => l.slice('permission: '.length));
    expect(r.permissions.declared.map((p) => p.name)).toEqual(perms);
    expect(r.signatures.verified).toBe(false);
    expect(r.signatures.problems[0]).toMatch(/not signed/);
  }, 60_000);

  it('binary XML tree: same number of elements as aapt dump xmltree', async () => {
    const z = await ZipArchive.openFile(FRAMEWORK_RES);
    const doc = parseAxml(await z.read(z.entry('AndroidManifest.xml')!));
    await z.close();
    const count = (e: XmlElement): number => 1 + e.children.reduce((n, c) => n + count(c), 0);
    const tree = (await runTool('aapt', ['dump', 'xmltree', FRAMEWORK_RES, 'AndroidManifest.xml'])).stdout;
    expect(count(doc.root)).toBe((tree.match(/^\s*E: /gm) ?? []).length);
  }, 60_000);

  it('resources.arsc: every default-config string equals aapt dump --values resources', async () => {
    const out = (
      await runTool('aapt', ['dump', '--values', 'resources', FRAMEWORK_RES], {
        maxBuffer: 512 * 1024 * 1024,
      })
    ).stdout;
    const want = new Map<number, string>();
    let inDefault = false;
    let lastId: number | null = null;
    for (const line of out.split('\n')) {
      if (/^ {6}config /.test(line)) inDefault = line.trim() === 'config (default):';
      else if (/^ {4}(type|Package)/.test(line)) inDefault = false;
      const m = /^ {8}resource 0x([0-9a-f]{8}) android:string\/\S+: t=0x03/.exec(line);
      if (m) {
        lastId = inDefault ? Number.parseInt(m[1]!, 16) : null;
        continue;
      }
      const v = /^ {10}\(string(?:8|16)\) "(.*)"$/.exec(line);
      if (v && lastId !== null) {
        if (!v[1]!.includes('\\')) want.set(lastId, v[1]!);
        lastId = null;
      }
    }
    expect(want.size).toBeGreaterThan(1000);
    const z = await ZipArchive.openFile(FRAMEWORK_RES);
    const t = parseArsc(await z.read(z.entry('resources.arsc')!));
    await z.close();
    let mismatches = 0;
    for (const [id, s] of want) if (t.entry(id)?.value?.value !== s) mismatches++;
    expect(mismatches).toBe(0);
    expect(t.entry(0x0104000a)?.name).toBe('android:string/ok');
  }, 120_000);

  it('signed with apksigner (v1+v2+v3, 7600 entries, 45 MB): same verdict and signer as apksigner verify', async () => {
    const dir = join(workDir('apk'), 'framework-signed');
    const key = await generateSigningKey(join(dir, 'keys'), 'fw');
    const signed = join(dir, 'framework-res-signed.apk');
    if (!existsSync(signed))
      await runTool('apksigner', [
        'sign',
        '--key',
        key.keyPk8,
        '--cert',
        key.certPem,
        '--v3-signing-enabled',
        'true',
        '--min-sdk-version',
        '21',
        '--out',
        signed,
        FRAMEWORK_RES,
      ]);
    const want = await apksignerVerify(signed);
    const r = await inspectApk(signed);
    expect(want.verifies).toBe(true);
    expect(r.signatures.verified).toBe(true);
    for (const s of ['v1', 'v2', 'v3'] as const) {
      expect(r.signatures.schemes[s].verified, s).toBe(true);
      expect(r.signatures.schemes[s].considered && r.signatures.schemes[s].verified, s).toBe(want.schemes[s]);
    }
    expect(r.signatures.signers.map((s) => s.sha256)).toEqual(want.signers.map((s) => s.sha256));
  }, 180_000);
});
