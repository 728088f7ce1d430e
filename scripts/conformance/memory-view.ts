/**
 * An in-memory SystemView: a description of partitions, files and APK facts. Used by tests of
 * the per-requirement logic and by callers that already hold the facts (e.g. a build plan).
 */
import type { PartitionsVerification } from '../formats/avb/index.ts';
import type { Profile } from './spec-schema.ts';
import {
  type ApexFacts,
  type ApkFacts,
  type ApkRef,
  type FileEntry,
  mergedBuildProps,
  type SystemView,
  type VbmetaFacts,
} from './view.ts';

export interface MemorySystem {
  kind?: Profile;
  /** partition → path → content. Directories are implied by paths. */
  files: Record<string, Record<string, string | Buffer>>;
  apks: Array<{ partition: string; path: string; facts: ApkFacts | Error }>;
  apexes?: Array<{ partition: string; path: string; facts: ApexFacts | Error }>;
  /** `global/key` → value. Absent map = an image (no settings). */
  settings?: Record<string, string | null>;
  cmdline?: string | null;
  vbmeta?: VbmetaFacts[] | null;
  /** What verifying the partition bytes against vbmeta found (images). */
  avbContents?: PartitionsVerification | null;
  /** Partition images that are not filesystems (boot, vbmeta, dtbo…). */
  rawPartitions?: string[];
  /** getprop values on a device (override build.prop). */
  deviceProps?: Record<string, string>;
  shell?: (cmd: string) => string;
}

export function memoryView(sys: MemorySystem, input = 'memory'): SystemView {
  const fsPartitions = () => Object.keys(sys.files);
  const view: SystemView = {
    kind: sys.kind ?? 'image',
    input,
    description: `in-memory ${sys.kind ?? 'image'}`,
    async partitions() {
      return fsPartitions();
    },
    async allPartitions() {
      return [...new Set([...fsPartitions(), ...(sys.rawPartitions ?? [])])];
    },
    async listFiles(partition, dir) {
      const files = sys.files[partition] ?? {};
      const prefix = dir ? `${dir.replace(/\/$/, '')}/` : '';
      const out = new Map<string, FileEntry>();
      const paths = [
        ...Object.keys(files),
        ...sys.apks.filter((a) => a.partition === partition).map((a) => a.path),
      ];
      for (const p of paths) {
        if (!p.startsWith(prefix)) continue;
        const rest = p.slice(prefix.length);
        const [name, ...more] = rest.split('/');
        if (!name) continue;
        out.set(name, { name, path: prefix + name, type: more.length ? 'dir' : 'file' });
      }
      return [...out.values()];
    },
    async readFile(partition, path) {
      const v = sys.files[partition]?.[path];
      return v === undefined ? null : Buffer.isBuffer(v) ? v : Buffer.from(v);
    },
    async props() {
      return { ...(await mergedBuildProps(view, fsPartitions())), ...(sys.deviceProps ?? {}) };
    },
    async apks() {
      return sys.apks.map((a) => ({
        partition: a.partition,
        path: a.path,
        localPath: `/nonexistent/${a.partition}/${a.path}`,
      }));
    },
    async apkFacts(ref: ApkRef) {
      const a = sys.apks.find((x) => x.partition === ref.partition && x.path === ref.path);
      if (!a) throw new Error(`no APK ${ref.partition}/${ref.path}`);
      if (a.facts instanceof Error) throw a.facts;
      return a.facts;
    },
    async apexes() {
      return (sys.apexes ?? []).map((a) => ({
        partition: a.partition,
        path: a.path,
        localPath: `/nonexistent/${a.partition}/${a.path}`,
      }));
    },
    async apexFacts(ref) {
      const a = sys.apexes?.find((x) => x.partition === ref.partition && x.path === ref.path);
      if (!a) throw new Error(`no APEX ${ref.partition}/${ref.path}`);
      if (a.facts instanceof Error) throw a.facts;
      return a.facts;
    },
    async settings(ns, key) {
      if (!sys.settings) return undefined;
      return sys.settings[`${ns}/${key}`] ?? null;
    },
    async kernelCmdline() {
      return sys.cmdline ?? null;
    },
    async vbmeta() {
      return sys.vbmeta ?? null;
    },
    async close() {},
  };
  if (sys.avbContents !== undefined) {
    const contents = sys.avbContents;
    view.avbContents = async () => contents;
    view.vbmetaDigest = async () => contents?.vbmetaDigest ?? null;
  }
  if (sys.shell) {
    const sh = sys.shell;
    view.shell = async (cmd) => sh(cmd);
  }
  return view;
}

/** ApkFacts with safe defaults, for building fixtures. */
export function apkFacts(pkg: string, over: Partial<ApkFacts> = {}): ApkFacts {
  return {
    package: pkg,
    targetSdk: 34,
    minSdk: 29,
    debuggable: false,
    testOnly: false,
    usesPermissions: [],
    declaredPermissions: [],
    appMetaData: {},
    components: [],
    signing: { verified: true, schemes: [2, 3], signerSha256: [] },
    classes: [],
    resources: {},
    ...over,
  };
}

/** ApexFacts with safe defaults (a sound AOSP-style module), for building fixtures. */
export function apexFacts(name: string, over: Partial<ApexFacts> = {}): ApexFacts {
  return {
    name,
    package: name,
    version: 1,
    versionName: '',
    compressed: false,
    payloadKeySha256: 'aa'.repeat(32),
    signing: { verified: true, signerSha256: [] },
    payloadProblems: [],
    payloadFs: 'ext4',
    apks: [],
    jars: [],
    ...over,
  };
}
