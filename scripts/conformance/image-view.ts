/**
 * imageView: a SystemView over an Android image offline — a folder of partition images, a
 * super.img, a sparse image or a fastboot/factory zip (unpacked with scripts/build/open-base.ts),
 * read through the kit's ext4/erofs readers (scripts/fs), AVB parser and boot image parser.
 * Nothing is mounted and nothing needs root.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { asOmieError, InputError } from '../errors.ts';
import {
  calculateVbmetaDigest,
  type PartitionsVerification,
  readAvbImage,
  type TrustedHashtree,
  verifyPartitions,
  verifyVbmeta,
} from '../formats/avb/index.ts';
import { publicTestKeyName } from '../formats/avb/keys.ts';
import { readBootImage } from '../formats/bootimg.ts';
import { type OpenedApex, openApex } from '../fs/apex.ts';
import { detectFilesystem, type FsEntry, type FsReader, openFilesystem } from '../fs/index.ts';
import type { ProgressFn } from '../progress.ts';
import { readApexFacts } from './apex-facts.ts';
import { readApkFacts } from './apk-facts.ts';
import { openInput } from './open-input.ts';
import {
  type ApexFacts,
  type ApexRef,
  type ApkFacts,
  type ApkRef,
  CMDLINE_PARTITIONS,
  type FileEntry,
  mergedBuildProps,
  type SystemView,
  type VbmetaFacts,
} from './view.ts';

export interface ImageViewOptions {
  /** Scratch folder (default: a new temp folder, removed on close). */
  workDir?: string;
  onProgress?: ProgressFn;
  /**
   * Hashtree digests the caller took of these very image files (a build, just after writing
   * them): their data blocks are not hashed again (see verifyPartitions' trustedHashtrees).
   */
  trustedHashtrees?: Map<string, TrustedHashtree>;
}

interface Mounted {
  fs: FsReader;
  /** In-filesystem prefix of the partition root: "/system" for a system-as-root image, else "". */
  root: string;
  children: Map<string, FsEntry[]>;
  /** Sub-trees shown as partitions of their own (a GSI's /system/product): left out here. */
  exclude: string[];
}

/** Partitions a GSI keeps inside system.img, at /system/<name> (the root /<name> links there). */
const NESTED_IN_SYSTEM = ['system_ext', 'product'];

/** Opens an image for checking. Throws InputError when the input is not an image we can read. */
export async function imageView(input: string, opts: ImageViewOptions = {}): Promise<SystemView> {
  if (!existsSync(input))
    throw new InputError(`${input}: no such file or folder`, {
      code: 'CHECK_INPUT_MISSING',
      context: { input },
    });
  const ownWork = !opts.workDir;
  const work = opts.workDir ?? (await mkdtemp(join(tmpdir(), 'omie-check-')));
  await mkdir(work, { recursive: true });
  try {
    const base = await openInput(input, work, { onProgress: opts.onProgress });
    const images = base.images;
    const mounted = new Map<string, Mounted>();
    for (const [name, path] of Object.entries(images)) {
      if (!(await detectFilesystem(path).catch(() => null))) continue;
      const fs = await openFilesystem(path);
      const list = await fs.list();
      const root = name === 'system' && list.some((e) => e.path === '/system/build.prop') ? '/system' : '';
      const children = new Map<string, FsEntry[]>();
      for (const e of list) {
        if (e.path === '/') continue;
        const parent = e.path.slice(0, e.path.lastIndexOf('/')) || '/';
        const arr = children.get(parent) ?? [];
        arr.push(e);
        children.set(parent, arr);
      }
      mounted.set(name, { fs, root, children, exclude: [] });
    }
    mountNested(mounted);
    if (mounted.size === 0)
      throw new InputError(`${input}: no ext4 or erofs partition found`, {
        code: 'CHECK_NO_FILESYSTEM',
        context: { input, images: Object.keys(images) },
        hint: 'omie check reads system/vendor/product partitions; pass a folder of *.img, a super.img or a fastboot zip',
      });
    return makeView(input, base.kind, images, mounted, work, ownWork, opts);
  } catch (e) {
    if (ownWork) await rm(work, { recursive: true, force: true });
    throw e;
  }
}

/**
 * A GSI (or any build without separate product/system_ext images) keeps those partitions as
 * directories of system.img; Android sees them at /product and /system_ext all the same, so the
 * checker reads them as partitions of their own, and the system partition without them.
 */
function mountNested(mounted: Map<string, Mounted>): void {
  const sys = mounted.get('system');
  if (!sys?.root || sys.root !== '/system') return;
  for (const name of NESTED_IN_SYSTEM) {
    const dir = `/system/${name}`;
    if (mounted.has(name) || !(sys.children.get(dir) ?? []).length) continue;
    if (!(sys.children.get('/system') ?? []).some((e) => e.path === dir && e.type === 'dir')) continue;
    mounted.set(name, { fs: sys.fs, root: dir, children: sys.children, exclude: [] });
    sys.exclude.push(dir);
  }
}

const excluded = (m: Mounted, path: string) => m.exclude.some((x) => path === x || path.startsWith(`${x}/`));

function abs(m: Mounted, path: string): string {
  const p = path.replace(/^\/+|\/+$/g, '');
  return `${m.root}/${p}`.replace(/\/+$/, '') || '/';
}

function makeView(
  input: string,
  kind: string,
  images: Record<string, string>,
  mounted: Map<string, Mounted>,
  work: string,
  ownWork: boolean,
  opts: ImageViewOptions,
): SystemView {
  let apkCache: Promise<ApkRef[]> | undefined;
  let apexCache: ApexRef[] | undefined;
  const factsCache = new Map<string, Promise<ApkFacts>>();
  /** Each APEX opened once (its payload extracted), by `<partition>/<path>`; closed with the view. */
  const opened = new Map<string, Promise<OpenedApex>>();
  const apexFactsCache = new Map<string, Promise<ApexFacts>>();
  const openApexRef = (ref: ApexRef) => {
    const key = `${ref.partition}/${ref.path}`;
    let p = opened.get(key);
    if (!p) {
      p = (async () => {
        const m = mounted.get(ref.partition);
        if (!m) throw new InputError(`no partition ${ref.partition}`);
        if (!existsSync(ref.localPath)) {
          await mkdir(dirname(ref.localPath), { recursive: true });
          await m.fs.copyOut(abs(m, ref.path), ref.localPath);
        }
        return openApex(ref.localPath, join(work, 'apex-payloads', String(opened.size)));
      })();
      opened.set(key, p);
    }
    return p;
  };
  let vbCache: Promise<VbmetaFacts[] | null> | undefined;
  let contentsCache: Promise<PartitionsVerification | null> | undefined;
  const view: SystemView = {
    kind: 'image',
    input,
    description: `${kind} image ${input}`,
    async partitions() {
      return [...mounted.keys()];
    },
    async allPartitions() {
      return Object.keys(images).sort();
    },
    async listFiles(partition, dir) {
      const m = mounted.get(partition);
      if (!m) return [];
      const base = abs(m, dir);
      return (m.children.get(base) ?? [])
        .filter((e) => !excluded(m, e.path))
        .map((e): FileEntry => {
          const rel = e.path.slice(m.root.length + 1);
          return {
            name: e.path.slice(e.path.lastIndexOf('/') + 1),
            path: rel,
            type: e.type === 'file' || e.type === 'dir' || e.type === 'symlink' ? e.type : 'other',
            size: e.size,
            mode: e.mode,
          };
        });
    },
    async readFile(partition, path) {
      const m = mounted.get(partition);
      if (!m) return null;
      const st = await m.fs.stat(abs(m, path));
      if (st?.type !== 'file') return null;
      return m.fs.readFile(abs(m, path));
    },
    async props() {
      return mergedBuildProps(view, [...mounted.keys()]);
    },
    apks() {
      apkCache ??= (async () => {
        const out: ApkRef[] = [];
        for (const [partition, m] of mounted) {
          for (const list of m.children.values()) {
            for (const e of list) {
              if (e.type !== 'file' || !e.path.endsWith('.apk') || !e.path.startsWith(`${m.root}/`)) continue;
              if (excluded(m, e.path)) continue;
              const rel = e.path.slice(m.root.length + 1);
              out.push({ partition, path: rel, localPath: join(work, 'apks', partition, rel) });
            }
          }
        }
        // APKs inside APEXes, where a device mounts them: /apex/<name>/<path in the payload>.
        for (const [i, ref] of (await view.apexes()).entries()) {
          const facts = await view.apexFacts(ref).catch(() => null);
          for (const inner of facts?.apks ?? []) {
            const path = `${facts!.name}/${inner}`;
            out.push({
              partition: 'apex',
              path,
              localPath: join(work, 'apks', 'apex', String(i), inner),
              apex: `${ref.partition}/${ref.path}`,
            });
          }
        }
        out.sort((a, b) => `${a.partition}/${a.path}`.localeCompare(`${b.partition}/${b.path}`));
        return out;
      })();
      return apkCache;
    },
    apkFacts(ref) {
      const key = `${ref.apex ?? ''}|${ref.partition}/${ref.path}`;
      let p = factsCache.get(key);
      if (!p) {
        p = (async () => {
          if (!existsSync(ref.localPath)) {
            await mkdir(dirname(ref.localPath), { recursive: true });
            if (ref.apex) {
              const apex = (await view.apexes()).find((a) => `${a.partition}/${a.path}` === ref.apex);
              const o = apex && (await openApexRef(apex));
              if (!o?.fs) throw new InputError(`${ref.apex}: the APEX payload is not readable`);
              await o.fs.copyOut(`/${ref.path.slice(ref.path.indexOf('/') + 1)}`, ref.localPath);
            } else {
              const m = mounted.get(ref.partition);
              if (!m) throw new InputError(`no partition ${ref.partition}`);
              await m.fs.copyOut(abs(m, ref.path), ref.localPath);
            }
          }
          return readApkFacts(ref.localPath);
        })();
        factsCache.set(key, p);
      }
      return p;
    },
    async apexes() {
      if (apexCache) return apexCache;
      const out: ApexRef[] = [];
      for (const [partition, m] of mounted) {
        for (const e of m.children.get(abs(m, 'apex')) ?? []) {
          if (e.type !== 'file' || !/\.c?apex$/.test(e.path) || excluded(m, e.path)) continue;
          const rel = e.path.slice(m.root.length + 1);
          out.push({ partition, path: rel, localPath: join(work, 'apexes', partition, rel) });
        }
      }
      out.sort((a, b) => `${a.partition}/${a.path}`.localeCompare(`${b.partition}/${b.path}`));
      apexCache = out;
      return out;
    },
    apexFacts(ref) {
      const key = `${ref.partition}/${ref.path}`;
      let p = apexFactsCache.get(key);
      if (!p) {
        p = openApexRef(ref).then(readApexFacts);
        apexFactsCache.set(key, p);
      }
      return p;
    },
    async settings() {
      return undefined;
    },
    async kernelCmdline() {
      const parts: string[] = [];
      for (const b of CMDLINE_PARTITIONS) {
        if (!images[b]) continue;
        try {
          const info = await readBootImage(images[b]);
          if (info.cmdline) parts.push(info.cmdline);
          if (info.bootconfig) parts.push(info.bootconfig.replace(/\n/g, ' '));
        } catch {
          /* not a boot image (e.g. an empty placeholder): nothing to add */
        }
      }
      for (const v of (await view.vbmeta()) ?? [])
        for (const d of v.descriptors) if (d.kind === 'cmdline' && d.value) parts.push(d.value);
      return parts.length ? parts.join(' ') : null;
    },
    vbmeta() {
      vbCache ??= readVbmetas(images);
      return vbCache;
    },
    async vbmetaDigest() {
      return images.vbmeta ? calculateVbmetaDigest(images.vbmeta, (name) => images[name]) : null;
    },
    avbContents() {
      contentsCache ??= images.vbmeta
        ? verifyPartitions(images.vbmeta, {
            resolvePartition: (name) => images[name],
            trustedHashtrees: opts.trustedHashtrees,
            onProgress: opts.onProgress,
          })
        : Promise.resolve(null);
      return contentsCache;
    },
    async close() {
      for (const o of opened.values()) await (await o.catch(() => null))?.close();
      for (const fs of new Set([...mounted.values()].map((m) => m.fs))) await fs.close().catch(() => {});
      if (ownWork) await rm(work, { recursive: true, force: true });
    },
  };
  return view;
}

/** vbmeta.img plus every chained vbmeta it names (vbmeta_system.img, or a footer on the partition). */
async function readVbmetas(images: Record<string, string>): Promise<VbmetaFacts[] | null> {
  if (!images.vbmeta) return null;
  const out: VbmetaFacts[] = [];
  const queue = ['vbmeta'];
  const seen = new Set<string>();
  while (queue.length) {
    const name = queue.shift() as string;
    if (seen.has(name) || !images[name]) continue;
    seen.add(name);
    let img: Awaited<ReturnType<typeof readAvbImage>>;
    try {
      img = await readAvbImage(images[name]);
    } catch (e) {
      out.push({
        partition: name,
        algorithm: 'UNREADABLE',
        rollbackIndex: 0,
        flags: 0,
        signatureValid: false,
        verifyError: asOmieError(e).message,
        descriptors: [],
      });
      continue;
    }
    const v = img.vbmeta;
    let algorithm = 'UNKNOWN';
    let signatureValid = false;
    let verifyError: string | undefined;
    let publicKeySha256: string | undefined;
    let testName: string | undefined;
    try {
      const r = verifyVbmeta(v, { file: images[name] });
      algorithm = r.algorithm;
      signatureValid = r.signed;
      publicKeySha256 = r.publicKeySha256;
      testName = r.publicTestKey;
    } catch (e) {
      verifyError = asOmieError(e).message;
      if (v.publicKey.length) publicKeySha256 = createHash('sha256').update(v.publicKey).digest('hex');
    }
    const facts: VbmetaFacts = {
      partition: name,
      algorithm,
      publicKeySha256,
      publicTestKeyName: testName,
      rollbackIndex: Number(v.header.rollbackIndex),
      flags: v.header.flags,
      signatureValid,
      verifyError,
      descriptors: v.descriptors.map((d) => {
        switch (d.kind) {
          case 'hashtree':
            return { kind: 'hashtree' as const, partition: d.partitionName };
          case 'hash':
            return { kind: 'hash' as const, partition: d.partitionName };
          case 'kernel_cmdline':
            return { kind: 'cmdline' as const, value: d.kernelCmdline };
          case 'property':
            return { kind: 'property' as const, key: d.key, value: d.value.toString('utf8') };
          case 'chain_partition': {
            queue.push(d.partitionName);
            return {
              kind: 'chain' as const,
              partition: d.partitionName,
              rollbackIndexLocation: d.rollbackIndexLocation,
              publicKeySha256: createHash('sha256').update(d.publicKey).digest('hex'),
              publicTestKeyName: publicTestKeyName(d.publicKey),
            };
          }
          default:
            return { kind: 'other' as const };
        }
      }),
    };
    out.push(facts);
  }
  return out;
}
