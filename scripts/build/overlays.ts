import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import type { SigningKey } from '../apkgen/index.ts';
import { InputError } from '../errors.ts';
import { loadApkSigningKey, signApkFile } from '../formats/apk/signing/sign.ts';
import { runTool } from '../host/tools.ts';
import type { ProductYaml, ResolvedOverlay, ResolvedProduct } from '../model/index.ts';
import { xmlAttr } from './xml-edits.ts';

/**
 * Runtime resource overlays (RROs): compiled with aapt against the base's own framework-res, so
 * resource IDs match the framework the device runs, then signed with the partner's key.
 */

const xmlEscape = (s: string) =>
  s
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '\\"')
    .replace(/'/g, "\\'");

/** Fills {{endpoints.x}} / {{identity.x}} from the product; null becomes "" and a list expands into items. */
export function fillTemplate(value: string, product: ProductYaml): string[] {
  const m = /^\{\{\s*([a-zA-Z]+)\.([a-zA-Z]+)\s*\}\}$/.exec(value);
  const lookup = (section: string, key: string): unknown => {
    const s = (product as unknown as Record<string, Record<string, unknown> | undefined>)[section];
    if (!s)
      throw new InputError(`overlay template {{${section}.${key}}}: the product has no ${section}:`, {
        code: 'OVERLAY_TEMPLATE',
        context: { section, key },
      });
    if (!(key in s))
      throw new InputError(`overlay template {{${section}.${key}}}: no such field`, {
        code: 'OVERLAY_TEMPLATE',
        context: { section, key },
      });
    return s[key];
  };
  if (m) {
    const v = lookup(m[1], m[2]);
    if (v === null || v === undefined) return [''];
    return Array.isArray(v) ? v.map(String) : [String(v)];
  }
  return [
    value.replace(/\{\{\s*([a-zA-Z]+)\.([a-zA-Z]+)\s*\}\}/g, (_all, a: string, b: string) =>
      String(lookup(a, b) ?? ''),
    ),
  ];
}

export function overlayValuesXml(o: ResolvedOverlay, product: ProductYaml): string {
  const lines = ['<?xml version="1.0" encoding="utf-8"?>', '<resources>'];
  for (const v of o.values) {
    if (v.type === 'string-array') {
      const items = (Array.isArray(v.value) ? v.value : [String(v.value)])
        .flatMap((x) => fillTemplate(x, product))
        .filter((x) => x !== '');
      lines.push(
        `  <string-array name="${v.name}">`,
        ...items.map((i) => `    <item>${xmlEscape(i)}</item>`),
        '  </string-array>',
      );
    } else if (v.type === 'string') {
      lines.push(
        `  <string name="${v.name}">${xmlEscape(fillTemplate(String(v.value), product)[0])}</string>`,
      );
    } else if (v.type === 'bool') {
      lines.push(`  <bool name="${v.name}">${v.value === true || v.value === 'true'}</bool>`);
    } else {
      lines.push(`  <integer name="${v.name}">${Number(v.value)}</integer>`);
    }
  }
  lines.push('</resources>', '');
  return lines.join('\n');
}

/** Overlays are for SDK 29+ (static RROs on /product); also the SDK their signature is made for. */
const OVERLAY_MIN_SDK = 29;

export function overlayManifestXml(o: ResolvedOverlay): string {
  return [
    '<?xml version="1.0" encoding="utf-8"?>',
    `<manifest xmlns:android="http://schemas.android.com/apk/res/android" package="${o.package}" android:versionCode="1" android:versionName="1.0">`,
    // Without uses-sdk the APK claims API 1: signature checks then need SHA-1, and aapt adds implicit permissions.
    `  <uses-sdk android:minSdkVersion="${OVERLAY_MIN_SDK}" android:targetSdkVersion="${OVERLAY_MIN_SDK}" />`,
    `  <overlay android:targetPackage="${o.target}" android:isStatic="true" android:priority="${o.priority}" />`,
    '  <application android:hasCode="false" />',
    '</manifest>',
    '',
  ].join('\n');
}

/** An overlay to build: from overlays/, or made by the build (its XML resources then given inline). */
export type OverlaySource = ResolvedOverlay & { generatedXml?: Record<string, string> };

/** Fills {{section.key}} templates in an XML resource; values are XML-escaped, lists joined with ','. */
export function fillXmlTemplate(text: string, product: ProductYaml): string {
  return text.replace(/\{\{\s*([a-zA-Z]+)\.([a-zA-Z]+)\s*\}\}/g, (all: string) =>
    xmlAttr(fillTemplate(all, product).join(',')),
  );
}

/** The overlay's XML resources: name → text (templates filled). */
export async function overlayXmlResources(
  o: OverlaySource,
  product: ProductYaml,
): Promise<Record<string, string>> {
  const out: Record<string, string> = { ...(o.generatedXml ?? {}) };
  for (const x of o.xml ?? [])
    out[x.name] = fillXmlTemplate(await readFile(join(o.dir, x.file), 'utf8'), product);
  return out;
}

/** Compiles and signs one overlay APK at outPath. */
export async function buildOverlay(
  o: OverlaySource,
  product: ProductYaml,
  frameworkRes: string,
  key: SigningKey,
  outPath: string,
): Promise<void> {
  const work = await mkdtemp(join(tmpdir(), 'omie-rro-'));
  try {
    await mkdir(join(work, 'res'), { recursive: true });
    await writeFile(join(work, 'AndroidManifest.xml'), overlayManifestXml(o));
    if (o.values.length) {
      await mkdir(join(work, 'res/values'), { recursive: true });
      await writeFile(join(work, 'res/values/values.xml'), overlayValuesXml(o, product));
    }
    const xml = await overlayXmlResources(o, product);
    if (Object.keys(xml).length) await mkdir(join(work, 'res/xml'), { recursive: true });
    for (const [name, text] of Object.entries(xml))
      await writeFile(join(work, 'res/xml', `${name}.xml`), text);
    const unsigned = join(work, 'unsigned.apk');
    await runTool('aapt', [
      'package',
      '-f',
      '-M',
      join(work, 'AndroidManifest.xml'),
      '-S',
      join(work, 'res'),
      '-I',
      frameworkRes,
      '-F',
      unsigned,
    ]);
    const aligned = join(work, 'aligned.apk');
    await runTool('zipalign', ['-f', '4', unsigned, aligned]);
    // Signed in-process, v2 only: SDK 29 ignores v1 once v2 is present, and apksigner cost a JVM
    // start-up (~0.7 s) per overlay; for RSA keys the bytes equal `apksigner sign --v1-signing-enabled false`.
    await mkdir(dirname(resolve(outPath)), { recursive: true });
    await signApkFile(aligned, outPath, await loadApkSigningKey(key), { minSdk: OVERLAY_MIN_SDK });
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Where an overlay goes on its partition (Android scans <partition>/overlay/). */
export const overlayPath = (o: ResolvedOverlay) => `overlay/${o.name}/${o.name}.apk`;

/** The WebView providers overlay: package, and the resource WebViewUpdateService reads. */
export const WEBVIEW_OVERLAY = {
  name: 'omie-webview-providers',
  package: 'org.omie.overlay.webview',
} as const;

/**
 * config_webview_packages (frameworks/base core/res/res/xml/config_webview_packages.xml) listing
 * the product's WebView providers: its apps with role webview, then `endpoints.webviewProviders`.
 */
export function webviewPackagesXml(providers: Array<{ package: string; description: string }>): string {
  return `<?xml version="1.0" encoding="utf-8"?>
<!-- Generated by Omie Kit: the product's WebView providers (apps with role: webview). -->
<webviewproviders>
${providers
  .map(
    (p) =>
      `    <webviewprovider description="${xmlAttr(p.description)}" packageName="${xmlAttr(p.package)}" availableByDefault="true">\n    </webviewprovider>\n`,
  )
  .join('')}</webviewproviders>
`;
}

/**
 * The overlay naming the product's WebView providers, targeting the framework on /product;
 * null when the product names none (the base's own list then stands).
 */
export function webviewOverlay(product: ResolvedProduct): OverlaySource | null {
  const providers = [
    ...product.apps
      .filter((a) => a.role === 'webview')
      .map((a) => ({ package: a.package, description: a.label })),
    ...(product.product.endpoints?.webviewProviders ?? []),
  ];
  if (!providers.length) return null;
  return {
    name: WEBVIEW_OVERLAY.name,
    package: WEBVIEW_OVERLAY.package,
    target: 'android',
    partition: 'product',
    priority: 5,
    description: 'WebView providers: the apps of the product with role webview',
    values: [],
    xml: [],
    generatedXml: { config_webview_packages: webviewPackagesXml(providers) },
    file: product.file,
    dir: product.dir,
  };
}
