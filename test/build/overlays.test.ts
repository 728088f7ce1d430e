/**
 * Overlays with XML resources (overlay.yaml `xml:`), compiled by aapt against the framework-res
 * the build uses, and the WebView providers overlay the build makes from role: webview apps;
 * `aapt dump xmltree` / `aapt dump resources` are the oracles.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { generateSigningKey, type SigningKey } from '../../scripts/apkgen/index.ts';
import { buildOverlay, webviewOverlay } from '../../scripts/build/overlays.ts';
import { FRAMEWORK_RES } from '../../scripts/host/tools.ts';
import { loadOverlay, type ProductYaml, type ResolvedProduct } from '../../scripts/model/index.ts';
import { workDir } from '../helpers.ts';

const dir = workDir('overlays');
let key: SigningKey;

beforeAll(async () => {
  key = await generateSigningKey(join(dir, 'keys'), 'partner');
});

function overlayFolder(name: string, yaml: string, files: Record<string, string> = {}): string {
  const d = join(dir, 'overlays', name);
  mkdirSync(join(d, 'res'), { recursive: true });
  writeFileSync(join(d, 'overlay.yaml'), yaml);
  for (const [f, text] of Object.entries(files)) writeFileSync(join(d, f), text);
  return join(d, 'overlay.yaml');
}

const product = {
  endpoints: { ntpServer: 'ntp.omie.example', captivePortalFallbackUrls: ['http://a/', 'http://b/'] },
} as unknown as ProductYaml;

describe('overlay XML resources', () => {
  it('compiles res/xml/<name>.xml with its {{…}} templates filled; values may be absent', async () => {
    const yaml = overlayFolder(
      'with-xml',
      'package: org.omie.overlay.xmltest\ntarget: android\nxml:\n  - { name: config_sample_servers, file: res/servers.xml }\n',
      {
        'res/servers.xml':
          '<?xml version="1.0" encoding="utf-8"?>\n<servers>\n  <server host="{{endpoints.ntpServer}}" fallbacks="{{endpoints.captivePortalFallbackUrls}}" />\n</servers>\n',
      },
    );
    const o = await loadOverlay(yaml);
    expect(o.values).toEqual([]);
    const out = join(dir, 'with-xml.apk');
    await buildOverlay(o, product, FRAMEWORK_RES, key, out);
    const tree = (await execa('aapt', ['dump', 'xmltree', out, 'res/xml/config_sample_servers.xml'])).stdout;
    expect(tree).toMatch(/A: host="ntp\.omie\.example"/);
    expect(tree).toMatch(/A: fallbacks="http:\/\/a\/,http:\/\/b\/"/);
    expect((await execa('aapt', ['dump', 'resources', out])).stdout).toMatch(/xml\/config_sample_servers/);
  });

  it('refuses an overlay whose XML file is missing, or that has no resources at all, naming the field', async () => {
    await expect(
      loadOverlay(
        overlayFolder(
          'missing-xml',
          'package: org.omie.overlay.missing\nxml:\n  - { name: config_webview_packages, file: res/nope.xml }\n',
        ),
      ),
    ).rejects.toThrow(/xml\.0\.file|XML resource not found/);
    await expect(loadOverlay(overlayFolder('empty', 'package: org.omie.overlay.empty\n'))).rejects.toThrow(
      /values: or xml:/,
    );
  });
});

describe('the WebView providers overlay', () => {
  const withApps = (apps: Array<{ role: string; package: string; label: string }>, extra: unknown[] = []) =>
    ({
      file: join(dir, 'p.yaml'),
      dir,
      apps,
      product: { endpoints: { webviewProviders: extra } },
    }) as unknown as ResolvedProduct;

  it('lists the role: webview apps (then endpoints.webviewProviders) in config_webview_packages', async () => {
    expect(webviewOverlay(withApps([{ role: 'customer-app', package: 'org.x', label: 'X' }]))).toBeNull();
    const o = webviewOverlay(
      withApps(
        [{ role: 'webview', package: 'org.omie.webview', label: 'Omie "WebView"' }],
        [{ package: 'org.chromium.webview', description: 'Chromium' }],
      ),
    )!;
    expect(o).toMatchObject({ package: 'org.omie.overlay.webview', target: 'android', partition: 'product' });
    const out = join(dir, 'webview.apk');
    await buildOverlay(o, {} as ProductYaml, FRAMEWORK_RES, key, out);
    const tree = (await execa('aapt', ['dump', 'xmltree', out, 'res/xml/config_webview_packages.xml']))
      .stdout;
    const providers = [...tree.matchAll(/A: packageName="([^"]+)"/g)].map((m) => m[1]);
    expect(providers).toEqual(['org.omie.webview', 'org.chromium.webview']);
    // The label's quotes survive XML escaping (aapt prints them escaped).
    expect(tree).toContain('A: description="Omie \\"WebView\\"" (Raw: "Omie \\"WebView\\"")');
    const manifest = (await execa('aapt', ['dump', 'xmltree', out, 'AndroidManifest.xml'])).stdout;
    expect(manifest).toMatch(/A: android:targetPackage\(0x[0-9a-f]+\)="android"/);
    expect(manifest).toMatch(/A: android:isStatic\(0x[0-9a-f]+\)=\(type 0x12\)0xffffffff/);
  });
});
