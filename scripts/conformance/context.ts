/**
 * CheckContext: the view plus derived facts that several checks share (merged props, APK facts,
 * platform XMLs, overlay resources), each computed once per run.
 */
import { basename } from 'node:path';
import { asOmieError } from '../errors.ts';
import type { BuildReference } from './build-ref.ts';
import type { MainlineModule } from './mainline.ts';
import type { ProductFacts, RepoApp } from './product.ts';
import type { Profile, Requirement } from './spec-schema.ts';
import type { ApexFacts, ApexRef, ApkFacts, ApkRef, SystemView } from './view.ts';
import { allElements, parseXml, type XmlElement } from './xml.ts';

export interface AppInfo {
  ref: ApkRef;
  facts?: ApkFacts;
  /** Why the APK could not be read (it is then evidence of its own). */
  error?: string;
}

export interface ApexInfo {
  ref: ApexRef;
  facts?: ApexFacts;
  /** Why the APEX could not be read (it is then evidence of its own). */
  error?: string;
}

export interface ConfigXml {
  partition: string;
  /** Path from the partition root. */
  file: string;
  /** etc/<kind>: permissions, sysconfig, default-permissions, preferred-apps. */
  kind: string;
  roots: XmlElement[];
  elements: XmlElement[];
  error?: string;
}

export interface TrackerSignature {
  name: string;
  category?: string;
  /** Dotted class-name prefixes, e.g. `com.google.firebase.analytics.`. */
  prefixes: string[];
}

/** Data files next to the spec, loaded by the engine (spec/trackers.yaml, spec/known-signers.yaml). */
export interface SpecData {
  trackers: TrackerSignature[];
  /** Known signers: SHA-256 → { name, kind } where kind is e.g. google | aosp-test-key | platform. */
  knownSigners: Map<string, { name: string; kind: string }>;
  /** Pins declared in prebuilt-apps/ of the repository: package → signer digests. */
  repoPins: Map<string, string[]>;
  /** Google's Mainline modules and their AOSP replacements (spec/mainline-modules.yaml). */
  mainline?: MainlineModule[];
  /** Apps declared in prebuilt-apps/ of the repository (role, internet reason), by package. */
  repoApps?: Map<string, RepoApp>;
  /** Signers the repository's products vouch for (APK key, trust.baseSigners), with the product file. */
  repoProductSigners?: Array<{ sha256: string; source: string }>;
}

export const CONFIG_DIRS = [
  'etc/permissions',
  'etc/sysconfig',
  'etc/default-permissions',
  'etc/preferred-apps',
];

export class Facts {
  private memo = new Map<string, Promise<unknown>>();
  constructor(
    readonly view: SystemView,
    readonly product: ProductFacts | undefined,
    readonly data: SpecData,
  ) {}

  private once<T>(key: string, f: () => Promise<T>): Promise<T> {
    let p = this.memo.get(key) as Promise<T> | undefined;
    if (!p) {
      p = f();
      this.memo.set(key, p);
    }
    return p;
  }

  partitions(): Promise<string[]> {
    return this.once('partitions', () => this.view.partitions());
  }

  props(): Promise<Record<string, string>> {
    return this.once('props', () => this.view.props());
  }

  /** Every APK with its facts (or the error reading it). */
  apps(): Promise<AppInfo[]> {
    return this.once('apps', async () => {
      const refs = await this.view.apks();
      const out: AppInfo[] = [];
      for (const ref of refs) {
        try {
          out.push({ ref, facts: await this.view.apkFacts(ref) });
        } catch (e) {
          out.push({ ref, error: asOmieError(e).message });
        }
      }
      return out;
    });
  }

  /** APKs whose facts were read. */
  async readableApps(): Promise<Array<{ ref: ApkRef; facts: ApkFacts }>> {
    return (await this.apps()).filter((a): a is { ref: ApkRef; facts: ApkFacts } => Boolean(a.facts));
  }

  /** Every APEX with its facts (or the error reading it). */
  apexes(): Promise<ApexInfo[]> {
    return this.once('apexes', async () => {
      const out: ApexInfo[] = [];
      for (const ref of await this.view.apexes()) {
        try {
          out.push({ ref, facts: await this.view.apexFacts(ref) });
        } catch (e) {
          out.push({ ref, error: asOmieError(e).message });
        }
      }
      return out;
    });
  }

  /**
   * Why a check that reads `input` has nothing to judge on this view, or undefined when the
   * input is there. A check returns not-applicable with this reason instead of passing on nothing.
   */
  async missing(input: 'apks' | 'config-xmls' | 'props' | 'framework-res'): Promise<string | undefined> {
    switch (input) {
      case 'apks':
        return (await this.apps()).length ? undefined : 'no APK on any partition: nothing to check';
      case 'config-xmls':
        return (await this.configXmls()).length
          ? undefined
          : `no XML under ${CONFIG_DIRS.join(', ')} of any partition: nothing to check`;
      case 'props':
        return Object.keys(await this.props()).length
          ? undefined
          : 'no build.prop (or getprop) to read: nothing to check';
      case 'framework-res':
        return (await this.frameworkRes())
          ? undefined
          : 'framework-res.apk (package android) is not on the image, so the platform defaults cannot be read';
    }
  }

  /** framework-res.apk (package `android`), when present. */
  async frameworkRes(): Promise<{ ref: ApkRef; facts: ApkFacts } | undefined> {
    return (await this.readableApps()).find((a) => a.facts.package === 'android');
  }

  /** Signer digests of the base's platform key (the signers of framework-res.apk). */
  async platformSigners(): Promise<Set<string>> {
    return new Set((await this.frameworkRes())?.facts.signing.signerSha256 ?? []);
  }

  /** Every platform XML under etc/{permissions,sysconfig,default-permissions,preferred-apps}. */
  configXmls(): Promise<ConfigXml[]> {
    return this.once('configXmls', async () => {
      const out: ConfigXml[] = [];
      for (const partition of await this.partitions()) {
        for (const dir of CONFIG_DIRS) {
          for (const e of await this.view.listFiles(partition, dir)) {
            if (e.type !== 'file' || !e.name.endsWith('.xml')) continue;
            const buf = await this.view.readFile(partition, e.path);
            if (!buf) continue;
            const kind = dir.slice(4);
            try {
              const roots = parseXml(buf.toString('utf8'), `${partition}/${e.path}`);
              out.push({ partition, file: e.path, kind, roots, elements: allElements(roots) });
            } catch (err) {
              out.push({
                partition,
                file: e.path,
                kind,
                roots: [],
                elements: [],
                error: asOmieError(err).message,
              });
            }
          }
        }
      }
      return out;
    });
  }

  /**
   * privapp-permissions allowlists per partition: partition → package → granted / denied.
   * SystemConfig keeps them per partition (system, vendor, product, system_ext), and an app
   * is matched against the allowlist of the partition it lives on.
   */
  privappAllowlists(): Promise<
    Map<string, Map<string, { grant: Set<string>; deny: Set<string>; files: string[] }>>
  > {
    return this.once('privapp', async () => {
      const out = new Map<string, Map<string, { grant: Set<string>; deny: Set<string>; files: string[] }>>();
      for (const x of await this.configXmls()) {
        if (x.kind !== 'permissions' && x.kind !== 'sysconfig') continue;
        for (const el of x.elements) {
          if (el.name !== 'privapp-permissions' || !el.attrs.package) continue;
          const byPkg = out.get(x.partition) ?? new Map();
          out.set(x.partition, byPkg);
          const entry = byPkg.get(el.attrs.package) ?? { grant: new Set(), deny: new Set(), files: [] };
          byPkg.set(el.attrs.package, entry);
          entry.files.push(x.file);
          for (const c of el.children) {
            if (c.name === 'permission' && c.attrs.name) entry.grant.add(c.attrs.name);
            if (c.name === 'deny-permission' && c.attrs.name) entry.deny.add(c.attrs.name);
          }
        }
      }
      return out;
    });
  }

  /** Every resource value named `name` set by an overlay APK (and by the target itself, e.g. framework-res). */
  async resourceValues(
    name: string,
  ): Promise<Array<{ app: { ref: ApkRef; facts: ApkFacts }; value: string | string[]; overlay: boolean }>> {
    const out: Array<{ app: { ref: ApkRef; facts: ApkFacts }; value: string | string[]; overlay: boolean }> =
      [];
    for (const app of await this.readableApps()) {
      const v = app.facts.resources[name];
      if (v === undefined) continue;
      out.push({ app, value: v, overlay: Boolean(app.facts.overlayTarget) });
    }
    return out;
  }

  /**
   * The value Android would use for a framework/NetworkStack resource: an overlay's value wins
   * over the target's own; undefined when neither sets it (the code's built-in default applies).
   */
  async effectiveResource(
    name: string,
  ): Promise<{ value: string | string[]; source: ApkRef; overlay: boolean } | undefined> {
    const vals = await this.resourceValues(name);
    const pick = vals.find((v) => v.overlay) ?? vals[0];
    return pick ? { value: pick.value, source: pick.app.ref, overlay: pick.overlay } : undefined;
  }

  /** Small text file from any partition where it exists: [{partition, path, text}]. */
  async textFiles(paths: string[]): Promise<Array<{ partition: string; path: string; text: string }>> {
    const out: Array<{ partition: string; path: string; text: string }> = [];
    for (const partition of await this.partitions()) {
      for (const p of paths) {
        const b = await this.view.readFile(partition, p);
        if (b) out.push({ partition, path: p, text: b.toString('utf8') });
      }
    }
    return out;
  }
}

export interface CheckContext {
  view: SystemView;
  profile: Profile;
  requirement: Requirement;
  params: Record<string, unknown>;
  product?: ProductFacts;
  /** The build a device must be running, when the check was given one (`--image` with `--device`). */
  build?: BuildReference;
  facts: Facts;
  /** Parameters of another requirement of the spec (shared data such as permission lists). */
  paramsOf(id: string): Record<string, unknown>;
}

/** `com.google.*` style patterns: `*` matches any run of characters. */
export function globToRegExp(glob: string): RegExp {
  return new RegExp(
    `^${glob
      .split('*')
      .map((s) => s.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
      .join('.*')}$`,
  );
}

export function matchesAny(value: string, globs: string[]): string | undefined {
  return globs.find((g) => globToRegExp(g).test(value));
}

export function stringList(v: unknown): string[] {
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
}

/** A short location for evidence: `priv-app/Foo/Foo.apk` → partition + file. */
export function apkWhere(ref: ApkRef): { partition: string; file: string } {
  return { partition: ref.partition, file: ref.path };
}

export function fileLabel(path: string): string {
  return basename(path);
}
