/**
 * Typed model of AndroidManifest.xml from its binary XML, with resource references resolved
 * through resources.arsc (default configuration). Attributes are matched by their framework
 * resource id first (what PackageParser does; survives obfuscated attribute names), then by
 * android-namespace name.
 */
import { FormatError } from '../../errors.ts';
import type { ResourceTable } from './arsc.ts';
import { ANDROID_NS, parseAxml, ValueType, type XmlAttribute, type XmlElement } from './axml.ts';

/** android:attr resource ids from framework-res public.xml (stable across releases). */
const ATTR_IDS: Record<string, number> = {
  label: 0x01010001,
  icon: 0x01010002,
  name: 0x01010003,
  permission: 0x01010006,
  readPermission: 0x01010007,
  writePermission: 0x01010008,
  protectionLevel: 0x01010009,
  permissionGroup: 0x0101000a,
  sharedUserId: 0x0101000b,
  hasCode: 0x0101000c,
  persistent: 0x0101000d,
  enabled: 0x0101000e,
  debuggable: 0x0101000f,
  exported: 0x01010010,
  process: 0x01010011,
  authorities: 0x01010018,
  grantUriPermissions: 0x0101001b,
  priority: 0x0101001c,
  value: 0x01010024,
  resource: 0x01010025,
  mimeType: 0x01010026,
  scheme: 0x01010027,
  host: 0x01010028,
  port: 0x01010029,
  path: 0x0101002a,
  pathPrefix: 0x0101002b,
  pathPattern: 0x0101002c,
  minSdkVersion: 0x0101020c,
  versionCode: 0x0101021b,
  versionCodeMajor: 0x01010576,
  versionName: 0x0101021c,
  targetSdkVersion: 0x01010270,
  maxSdkVersion: 0x01010271,
  testOnly: 0x01010272,
  backupAgent: 0x0101027f,
  allowBackup: 0x01010280,
  required: 0x0101028e,
  usesCleartextTraffic: 0x010104ec,
  compileSdkVersion: 0x01010572,
  compileSdkVersionCodename: 0x01010573,
};

/**
 * Application meta-data every WebView provider declares (frameworks/base WebViewFactory): the
 * native library it loads from the provider.
 */
export const WEBVIEW_LIBRARY_META_DATA = 'com.android.webview.WebViewLibrary';

/** PermissionInfo protection level bits (android.content.pm.PermissionInfo). */
const PROTECTION_BASE = ['normal', 'dangerous', 'signature', 'signatureOrSystem', 'internal'];
const PROTECTION_FLAGS: Array<[number, string]> = [
  [0x10, 'privileged'],
  [0x20, 'development'],
  [0x40, 'appop'],
  [0x80, 'pre23'],
  [0x100, 'installer'],
  [0x200, 'verifier'],
  [0x400, 'preinstalled'],
  [0x800, 'setup'],
  [0x1000, 'instant'],
  [0x2000, 'runtime'],
  [0x4000, 'oem'],
  [0x8000, 'vendorPrivileged'],
  [0x10000, 'textClassifier'],
  [0x20000, 'configurator'],
  [0x40000, 'incidentReportApprover'],
  [0x80000, 'appPredictor'],
  [0x100000, 'companion'],
  [0x200000, 'retailDemo'],
  [0x400000, 'recents'],
  [0x800000, 'role'],
  [0x1000000, 'knownSigner'],
];

/** Text form of a protectionLevel int, as in the manifest ("signature|privileged"). */
export function protectionLevelName(v: number): string {
  const parts = [PROTECTION_BASE[v & 0xf] ?? `base${v & 0xf}`];
  for (const [bit, n] of PROTECTION_FLAGS) if (v & bit) parts.push(n);
  return parts.join('|');
}

export interface IntentFilter {
  actions: string[];
  categories: string[];
  data: Array<Record<string, string>>;
  priority?: number;
}

export type ComponentType = 'activity' | 'activity-alias' | 'service' | 'receiver' | 'provider';

export interface Component {
  type: ComponentType;
  /** Fully qualified class name. */
  name: string;
  /**
   * Effective exported flag: the explicit android:exported, else (before Android 12 rules) true
   * when the component has intent filters, as PackageParser decides.
   */
  exported: boolean;
  exportedExplicit: boolean | null;
  permission: string | null;
  authorities: string | null;
  enabled: boolean;
  intentFilters: IntentFilter[];
  metaData: MetaData[];
}

export interface MetaData {
  name: string;
  value: string | number | boolean | null;
  resource: string | null;
}

export interface UsesPermission {
  name: string;
  maxSdkVersion: number | null;
}

export interface DeclaredPermission {
  name: string;
  /** e.g. "normal", "dangerous", "signature|privileged". */
  protectionLevel: string;
  group: string | null;
}

export interface ApkManifest {
  package: string;
  /** android:versionCode: the low 32 bits of the long version code, as aapt prints it. */
  versionCode: number;
  /** android:versionCodeMajor (0 when absent): the high 32 bits. */
  versionCodeMajor: number;
  /** PackageInfo.getLongVersionCode(): versionCodeMajor << 32 | versionCode (unsigned low half). */
  longVersionCode: number;
  versionName: string | null;
  minSdkVersion: number;
  targetSdkVersion: number;
  maxSdkVersion: number | null;
  compileSdkVersion: number | null;
  compileSdkVersionCodename: string | null;
  sharedUserId: string | null;
  /** Application label resolved through resources.arsc (default config); null if none. */
  label: string | null;
  usesPermissions: UsesPermission[];
  permissions: DeclaredPermission[];
  application: {
    persistent: boolean;
    debuggable: boolean;
    allowBackup: boolean;
    /** null = not declared (platform default depends on targetSdk: true below 28). */
    usesCleartextTraffic: boolean | null;
    testOnly: boolean;
    hasCode: boolean;
    backupAgent: string | null;
    className: string | null;
  };
  components: Component[];
  usesLibraries: Array<{ name: string; required: boolean }>;
  metaData: MetaData[];
  queries: { packages: string[]; providers: string[]; intents: number };
}

type Val = string | number | boolean | null;

class Attrs {
  constructor(
    private readonly el: XmlElement,
    private readonly res: ResourceTable | null,
  ) {}

  private find(name: string): XmlAttribute | undefined {
    const id = ATTR_IDS[name];
    const a = this.el.attributes;
    return (
      (id !== undefined ? a.find((x) => x.resourceId === id) : undefined) ??
      a.find(
        (x) =>
          x.name === name &&
          (x.namespace === ANDROID_NS || x.namespace === null) &&
          (x.resourceId === null || id === undefined),
      )
    );
  }

  /** Value with references into the app's own resources resolved. */
  get(name: string): Val {
    const a = this.find(name);
    if (!a) return null;
    const t = a.typed;
    if ((t.type === ValueType.REFERENCE || t.type === ValueType.DYNAMIC_REFERENCE) && this.res) {
      const v = this.res.resolve(t.data);
      if (v) return v.value;
    }
    if (t.type === ValueType.STRING) return t.value ?? a.raw;
    if (t.type === ValueType.NULL) return a.raw;
    return t.value;
  }

  raw(name: string): XmlAttribute | undefined {
    return this.find(name);
  }

  str(name: string): string | null {
    const v = this.get(name);
    return v === null ? null : String(v);
  }

  int(name: string): number | null {
    const v = this.get(name);
    if (typeof v === 'number') return v;
    if (typeof v === 'string' && /^-?\d+$/.test(v.trim())) return Number.parseInt(v, 10);
    return null;
  }

  bool(name: string): boolean | null {
    const v = this.get(name);
    if (typeof v === 'boolean') return v;
    if (v === 'true') return true;
    if (v === 'false') return false;
    if (typeof v === 'number') return v !== 0;
    return null;
  }
}

function qualify(pkg: string, name: string | null): string | null {
  if (!name) return null;
  if (name.startsWith('.')) return pkg + name;
  if (!name.includes('.')) return `${pkg}.${name}`;
  return name;
}

function metaDataOf(el: XmlElement, res: ResourceTable | null): MetaData[] {
  return el.children
    .filter((c) => c.name === 'meta-data')
    .map((c) => {
      const a = new Attrs(c, res);
      const resAttr = a.raw('resource');
      return {
        name: a.str('name') ?? '',
        value: a.get('value'),
        resource: resAttr ? String(resAttr.typed.value) : null,
      };
    });
}

/**
 * SDK versions may be integers or codenames (strings, for previews); a codename maps to
 * "preview" = 10000 as the platform does for unreleased SDKs.
 */
function sdk(a: Attrs, name: string): number | null {
  const v = a.get(name);
  if (v === null) return null;
  if (typeof v === 'number') return v;
  const s = String(v);
  return /^\d+$/.test(s) ? Number(s) : 10000;
}

export function parseManifest(axml: Buffer, res: ResourceTable | null, file?: string): ApkManifest {
  const doc = parseAxml(axml, file);
  const root = doc.root;
  if (root.name !== 'manifest')
    throw new FormatError({
      format: 'manifest',
      reason: 'root element is not <manifest>',
      found: root.name,
      file,
    });
  const m = new Attrs(root, res);
  const pkgAttr = root.attributes.find((a) => a.name === 'package' && !a.namespace);
  const pkg = pkgAttr ? String(pkgAttr.typed.value ?? pkgAttr.raw ?? '') : '';
  if (!pkg)
    throw new FormatError({
      format: 'manifest',
      reason: 'missing package attribute',
      field: 'manifest/@package',
      file,
    });
  const usesSdk = root.children.find((c) => c.name === 'uses-sdk');
  const sdkAttrs = usesSdk ? new Attrs(usesSdk, res) : null;
  const minSdk = sdkAttrs ? (sdk(sdkAttrs, 'minSdkVersion') ?? 1) : 1;
  const targetSdk = sdkAttrs ? (sdk(sdkAttrs, 'targetSdkVersion') ?? minSdk) : minSdk;
  const app = root.children.find((c) => c.name === 'application');
  const aa = app ? new Attrs(app, res) : null;

  const components: Component[] = [];
  for (const c of app?.children ?? []) {
    if (!['activity', 'activity-alias', 'service', 'receiver', 'provider'].includes(c.name)) continue;
    const a = new Attrs(c, res);
    const filters: IntentFilter[] = c.children
      .filter((f) => f.name === 'intent-filter')
      .map((f) => {
        const fa = new Attrs(f, res);
        const pr = fa.int('priority');
        const names = (tag: string) =>
          f.children.filter((x) => x.name === tag).map((x) => new Attrs(x, res).str('name') ?? '');
        return {
          actions: names('action'),
          categories: names('category'),
          data: f.children
            .filter((x) => x.name === 'data')
            .map((x) =>
              Object.fromEntries(
                x.attributes.map((at) => [at.name, String(new Attrs(x, res).get(at.name) ?? at.raw ?? '')]),
              ),
            ),
          ...(pr !== null ? { priority: pr } : {}),
        };
      });
    const explicit = a.bool('exported');
    components.push({
      type: c.name as ComponentType,
      name: qualify(pkg, a.str(c.name === 'activity-alias' ? 'name' : 'name')) ?? '',
      exported: explicit ?? (c.name === 'provider' ? targetSdk < 17 : filters.length > 0),
      exportedExplicit: explicit,
      permission: a.str('permission'),
      authorities: a.str('authorities'),
      enabled: a.bool('enabled') ?? true,
      intentFilters: filters,
      metaData: metaDataOf(c, res),
    });
  }
  const queries = root.children.filter((c) => c.name === 'queries');
  const versionCode = m.int('versionCode') ?? 0;
  const versionCodeMajor = m.int('versionCodeMajor') ?? 0;
  return {
    package: pkg,
    versionCode,
    versionCodeMajor,
    longVersionCode: versionCodeMajor * 2 ** 32 + (versionCode >>> 0),
    versionName: m.str('versionName'),
    minSdkVersion: minSdk,
    targetSdkVersion: targetSdk,
    maxSdkVersion: sdkAttrs ? sdk(sdkAttrs, 'maxSdkVersion') : null,
    compileSdkVersion: m.int('compileSdkVersion'),
    compileSdkVersionCodename: m.str('compileSdkVersionCodename'),
    sharedUserId: m.str('sharedUserId'),
    label: aa?.str('label') ?? null,
    usesPermissions: root.children
      .filter(
        (c) =>
          c.name === 'uses-permission' ||
          c.name === 'uses-permission-sdk-23' ||
          c.name === 'uses-permission-sdk-m',
      )
      .map((c) => {
        const a = new Attrs(c, res);
        return { name: a.str('name') ?? '', maxSdkVersion: a.int('maxSdkVersion') };
      }),
    permissions: root.children
      .filter((c) => c.name === 'permission')
      .map((c) => {
        const a = new Attrs(c, res);
        const pl = a.get('protectionLevel');
        return {
          name: a.str('name') ?? '',
          protectionLevel: typeof pl === 'number' ? protectionLevelName(pl) : (pl?.toString() ?? 'normal'),
          group: a.str('permissionGroup'),
        };
      }),
    application: {
      persistent: aa?.bool('persistent') ?? false,
      debuggable: aa?.bool('debuggable') ?? false,
      allowBackup: aa?.bool('allowBackup') ?? true,
      usesCleartextTraffic: aa?.bool('usesCleartextTraffic') ?? null,
      testOnly: aa?.bool('testOnly') ?? false,
      hasCode: aa?.bool('hasCode') ?? true,
      backupAgent: qualify(pkg, aa?.str('backupAgent') ?? null),
      className: qualify(pkg, aa?.str('name') ?? null),
    },
    components,
    usesLibraries: (app?.children ?? [])
      .filter((c) => c.name === 'uses-library')
      .map((c) => {
        const a = new Attrs(c, res);
        return { name: a.str('name') ?? '', required: a.bool('required') ?? true };
      }),
    metaData: app ? metaDataOf(app, res) : [],
    queries: {
      packages: queries.flatMap((q) =>
        q.children.filter((c) => c.name === 'package').map((c) => new Attrs(c, res).str('name') ?? ''),
      ),
      providers: queries.flatMap((q) =>
        q.children
          .filter((c) => c.name === 'provider')
          .map((c) => new Attrs(c, res).str('authorities') ?? ''),
      ),
      intents: queries.reduce((n, q) => n + q.children.filter((c) => c.name === 'intent').length, 0),
    },
  };
}
