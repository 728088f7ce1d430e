/**
 * ext4 images read and edited without mounting or root:
 *  - reading: the TypeScript reader of ext4-read.ts (Ext4Reader); the debugfs-based reader it
 *    replaced (DebugfsExt4Reader: `ls -p`, `ea_list`, `ea_get -x`, `stat`, `dump`, `rdump`) is kept
 *    as a test oracle;
 * through e2fsprogs:
 *  - editing: one `debugfs -w` session per edit list (rm/rmdir walked bottom-up since debugfs has no
 *    recursive rm, mkdir, write, symlink, set_inode_field, ea_set/ea_rm), `e2fsck -E unshare_blocks`
 *    first when the image uses Android's shared_blocks (dedupe) feature, resize2fs to grow when the
 *    additions do not fit and `resize2fs -M` to shrink at the end, `e2fsck -fn` to check;
 *  - creating: `mke2fs -t ext4 -d DIR` (sorted, reproducible with fixed UUID/hash seed/time), then a
 *    debugfs pass that sets modes, owners, times, SELinux labels and capabilities from rules.
 */
import {
  chmod,
  stat as hostStat,
  lchown,
  lstat,
  mkdir,
  mkdtemp,
  open,
  readdir,
  readFile,
  rm,
  symlink,
  truncate,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EnvironmentError, FormatError, InputError, VerificationError } from '../errors.ts';
import { runTool } from '../host/tools.ts';
import type { ProgressFn } from '../progress.ts';
import { assertNoErrors, debugfs, dq } from './debugfs.ts';
import { Ext4Image } from './ext4-read.ts';
import { capabilitiesXattr, type FsConfigRule, resolveFsConfig } from './fs-config.ts';
import type { FileContexts } from './selinux.ts';
import {
  type FileDataRanges,
  type FsEdit,
  type FsEntry,
  type FsReader,
  fileTypeFromMode,
  labelXattr,
  normPath,
  parentOf,
  typeBits,
  withDerivedXattrs,
} from './types.ts';

export const EXT4_MAGIC_OFFSET = 1024 + 0x38;
export const EXT4_MAGIC = 0xef53;

/** Superblock facts read through `debugfs -R stats`. */
export interface Ext4Info {
  blockSize: number;
  blockCount: number;
  freeBlocks: number;
  inodeCount: number;
  freeInodes: number;
  features: string[];
  uuid: string;
  volumeName: string;
}

export async function ext4Info(image: string): Promise<Ext4Info> {
  const r = await debugfs(image, ['stats -h']);
  const s = r.outputs[0] ?? '';
  const field = (name: string): string => {
    const m = new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(s);
    if (!m)
      throw new FormatError({
        format: 'ext4',
        reason: `superblock field missing in debugfs stats`,
        field: name,
        file: image,
      });
    return m[1].trim();
  };
  return {
    blockSize: Number(field('Block size')),
    blockCount: Number(field('Block count')),
    freeBlocks: Number(field('Free blocks')),
    inodeCount: Number(field('Inode count')),
    freeInodes: Number(field('Free inodes')),
    features: field('Filesystem features').split(/\s+/).filter(Boolean),
    uuid: field('Filesystem UUID'),
    volumeName: field('Filesystem volume name').replace(/^<none>$/, ''),
  };
}

/** True when the first bytes look like an ext2/3/4 superblock. */
export function isExt4(head: Buffer): boolean {
  return head.length >= EXT4_MAGIC_OFFSET + 2 && head.readUInt16LE(EXT4_MAGIC_OFFSET) === EXT4_MAGIC;
}

interface LsEntry {
  name: string;
  ino: number;
  mode: number;
  uid: number;
  gid: number;
  size: number;
}

/** Parses `ls -p` lines: /ino/mode(octal)/uid/gid/name/size/ (size empty for directories). */
export function parseLsP(out: string): LsEntry[] {
  const res: LsEntry[] = [];
  for (const line of out.split('\n')) {
    if (!line.startsWith('/')) continue;
    const f = line.split('/');
    // ['', ino, mode, uid, gid, ...name, size, '']
    if (f.length < 8) continue;
    const size = f[f.length - 2];
    const name = f.slice(5, f.length - 2).join('/');
    res.push({
      ino: Number(f[1]),
      mode: Number.parseInt(f[2], 8),
      uid: Number(f[3]),
      gid: Number(f[4]),
      name,
      size: size === '' ? 0 : Number(size),
    });
  }
  return res;
}

/**
 * Parses `ea_list` output (debugfs/xattrs.c print_xattr): `  NAME (LEN) = VALUE`, the name printed
 * with print_c_string escapes, the value either in quotes with those escapes or, when less than 7/8
 * of it is printable, as hex bytes. Values debugfs elides (>= 40 bytes in stat format) come back as
 * null with their length, to be fetched with `ea_get -x`; so does any value whose decoding does not
 * give the announced length. `system.data` (where inline_data files keep their bytes; the kernel
 * does not list it) is dropped.
 */
export function parseEaList(out: string): Array<{ name: string; length: number; value: Buffer | null }> {
  const res: Array<{ name: string; length: number; value: Buffer | null }> = [];
  for (const line of out.split('\n')) {
    const m = /^ {2}(.+?) \((\d+)\)(?: = (.*))?$/.exec(line);
    if (!m) continue;
    const name = unescapeCString(m[1]).toString('latin1');
    if (name === 'system.data') continue;
    const length = Number(m[2]);
    let value: Buffer | null = null;
    if (m[3] !== undefined) {
      const v = m[3].trimEnd();
      if (v.startsWith('"') && v.endsWith('"') && v.length >= 2) value = unescapeCString(v.slice(1, -1));
      else value = parseHexBytes(v);
      if (value.length !== length) value = null; // unexpected rendering: fetch it exactly
    } else if (length === 0) value = Buffer.alloc(0);
    res.push({ name, length, value });
  }
  return res;
}

const C_ESCAPES: Record<string, number> = {
  a: 7,
  b: 8,
  f: 12,
  n: 10,
  t: 9,
  v: 11,
  '\\': 92,
  "'": 39,
  '"': 34,
};

/** Reverses e2fsprogs support/cstring.c print_c_string: \a \b \f \n \t \v \\ \' \" and \ooo. */
export function unescapeCString(s: string): Buffer {
  const raw = Buffer.from(s, 'utf8');
  const bytes: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    if (raw[i] !== 0x5c || i + 1 >= raw.length) {
      bytes.push(raw[i]);
      continue;
    }
    const next = String.fromCharCode(raw[i + 1]);
    const oct = raw.subarray(i + 1, i + 4).toString('latin1');
    if (/^[0-7]{3}$/.test(oct)) {
      bytes.push(Number.parseInt(oct, 8) & 0xff);
      i += 3;
    } else if (C_ESCAPES[next] !== undefined) {
      bytes.push(C_ESCAPES[next]);
      i += 1;
    } else bytes.push(raw[i]);
  }
  return Buffer.from(bytes);
}

export function parseHexBytes(s: string): Buffer {
  const hex = s.trim().split(/\s+/).filter(Boolean);
  if (hex.some((h) => !/^[0-9a-fA-F]{2}$/.test(h))) return Buffer.alloc(0);
  return Buffer.from(hex.join(''), 'hex');
}

const EA_BATCH = 4000;

/**
 * The former reader, through debugfs batch sessions. Kept as the oracle the TypeScript reader
 * (Ext4Reader) is tested against; the build does not use it.
 */
export class DebugfsExt4Reader implements FsReader {
  readonly kind = 'ext4' as const;
  private cache: FsEntry[] | null = null;
  private byPath: Map<string, FsEntry> | null = null;

  constructor(readonly imagePath: string) {}

  async list(onProgress?: ProgressFn): Promise<FsEntry[]> {
    if (this.cache) return this.cache;
    const img = this.imagePath;
    const raw: Array<{ path: string; ls: LsEntry }> = [];
    const rootLs = parseLsP((await debugfs(img, ['ls -p /'])).outputs[0] ?? '').find((e) => e.name === '.');
    if (!rootLs)
      throw new FormatError({ format: 'ext4', reason: 'cannot list the root directory', file: img });
    raw.push({ path: '/', ls: rootLs });
    let level = ['/'];
    while (level.length) {
      const r = await debugfs(
        img,
        level.map((d) => `ls -p ${dq(d)}`),
      );
      const next: string[] = [];
      level.forEach((dir, i) => {
        for (const e of parseLsP(r.outputs[i] ?? '')) {
          if (e.name === '.' || e.name === '..' || e.ino === 0 || e.name === '') continue;
          const path = dir === '/' ? `/${e.name}` : `${dir}/${e.name}`;
          raw.push({ path, ls: e });
          if ((e.mode & 0o170000) === 0o040000) next.push(path);
        }
      });
      level = next;
    }
    onProgress?.({ stage: 'ext4 list', done: raw.length, total: raw.length * 2, unit: 'items' });
    // Extended attributes, in batches.
    const xattrs = new Map<string, Record<string, string>>();
    const pending: Array<{ path: string; name: string }> = [];
    for (let i = 0; i < raw.length; i += EA_BATCH) {
      const batch = raw.slice(i, i + EA_BATCH);
      const r = await debugfs(
        img,
        batch.map((e) => `ea_list ${dq(e.path)}`),
      );
      batch.forEach((e, j) => {
        const map: Record<string, string> = {};
        for (const a of parseEaList(r.outputs[j] ?? '')) {
          if (a.value) map[a.name] = a.value.toString('hex');
          else pending.push({ path: e.path, name: a.name });
        }
        xattrs.set(e.path, map);
      });
    }
    for (let i = 0; i < pending.length; i += EA_BATCH) {
      const batch = pending.slice(i, i + EA_BATCH);
      const r = await debugfs(
        img,
        batch.map((p) => `ea_get -x ${dq(p.path)} ${dq(p.name)}`),
      );
      batch.forEach((p, j) => {
        // Output: "<name> (<len>) = xx xx ..." (the value in hex with -x).
        const out = (r.outputs[j] ?? '').trim();
        const eq = out.indexOf(' = ');
        xattrs.get(p.path)![p.name] = parseHexBytes(eq >= 0 ? out.slice(eq + 3) : out).toString('hex');
      });
    }
    // Symlink targets.
    const links = raw.filter((e) => (e.ls.mode & 0o170000) === 0o120000);
    const targets = new Map<string, string>();
    if (links.length) {
      const r = await debugfs(
        img,
        links.map((l) => `stat ${dq(l.path)}`),
      );
      const slow: string[] = [];
      links.forEach((l, j) => {
        const m = /Fast link dest: "(.*)"$/m.exec(r.outputs[j] ?? '');
        if (m) targets.set(l.path, m[1]);
        else slow.push(l.path);
      });
      const sizes = new Map(links.map((l) => [l.path, l.ls.size]));
      for (const p of slow) targets.set(p, await this.slowLinkTarget(p, sizes.get(p) ?? 0));
    }
    const entries = raw.map((e) =>
      withDerivedXattrs({
        path: e.path,
        type: fileTypeFromMode(e.ls.mode),
        mode: e.ls.mode & 0o7777,
        uid: e.ls.uid,
        gid: e.ls.gid,
        size: targets.has(e.path) ? Buffer.byteLength(targets.get(e.path)!) : e.ls.size,
        ...(targets.has(e.path) ? { target: targets.get(e.path) } : {}),
        xattrs: xattrs.get(e.path) ?? {},
      }),
    );
    entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    this.cache = entries;
    this.byPath = new Map(entries.map((e) => [e.path, e]));
    return entries;
  }

  async stat(path: string): Promise<FsEntry | null> {
    await this.list();
    return this.byPath!.get(normPath(path)) ?? null;
  }

  async exists(path: string): Promise<boolean> {
    return (await this.stat(path)) !== null;
  }

  async copyOut(path: string, hostPath: string): Promise<void> {
    const p = normPath(path);
    const e = await this.stat(p);
    if (e?.type !== 'file')
      throw new InputError(`${this.imagePath}: no regular file ${p}`, {
        code: 'FS_NOT_FOUND',
        context: { image: this.imagePath, path: p },
      });
    await this.dump(p, hostPath, e.size);
  }

  /**
   * `dump` of one inode to a host file, cut to the inode's size: debugfs 1.47 writes the whole
   * 60-byte inline area for inline_data files (and symlinks) whatever their size.
   */
  private async dump(p: string, hostPath: string, size: number): Promise<void> {
    const r = await debugfs(this.imagePath, [`dump ${dq(p)} ${dq(hostPath)}`]);
    if (r.errors.length)
      throw new InputError(`${this.imagePath}: cannot read ${p}: ${r.errors.join('; ')}`, {
        code: 'FS_NOT_FOUND',
        context: { image: this.imagePath, path: p },
      });
    if ((await hostStat(hostPath)).size > size) await truncate(hostPath, size);
  }

  async readFile(path: string): Promise<Buffer> {
    const dir = await mkdtemp(join(tmpdir(), 'omie-ext4-read-'));
    try {
      const out = join(dir, 'f');
      await this.copyOut(path, out);
      return await readFile(out);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /** A slow (block or inline) symlink's target, read as data. */
  private async slowLinkTarget(p: string, size: number): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'omie-ext4-link-'));
    try {
      await this.dump(p, join(dir, 'l'), size);
      return (await readFile(join(dir, 'l'))).toString('utf8');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  /** Extracts the subtree at `path` into hostDir (debugfs rdump; owners/labels are not kept on the host). */
  async extractTree(path: string, hostDir: string): Promise<void> {
    const p = normPath(path);
    const r = await debugfs(this.imagePath, [`rdump ${dq(p)} ${dq(hostDir)}`]);
    assertNoErrors(this.imagePath, r, 'extracting');
    // rdump has the same inline_data over-read as dump: cut files back to their sizes.
    const base = p === '/' ? '' : p.slice(0, p.lastIndexOf('/'));
    for (const e of await this.list()) {
      if (e.type !== 'file' || !(e.path === p || e.path.startsWith(p === '/' ? '/' : `${p}/`))) continue;
      const host = join(hostDir, e.path.slice(base.length + 1));
      const st = await hostStat(host).catch(() => null);
      if (st && st.size > e.size) await truncate(host, e.size);
    }
  }

  /** Forgets the cached listing (after the image was edited). */
  invalidate(): void {
    this.cache = null;
    this.byPath = null;
  }

  async close(): Promise<void> {}
}

/** Largest file readFile returns in memory (copyOut streams anything). */
const MAX_READ_FILE = 512 * 1024 * 1024;
/** Copy chunk for copyOut. */
const COPY_CHUNK = 4 * 1024 * 1024;
/** More entries than this in one tree means a corrupt image (hard-linked directory loops etc.). */
const MAX_ENTRIES = 10_000_000;

/**
 * FsReader over an ext4 image file, in TypeScript (ext4-read.ts). Gives what debugfs gave: modes
 * with their type bits split off, 32-bit owners, sizes (0 for directories, the target's length for
 * symlinks), xattrs named with e2fsprogs' prefixes as raw hex, "system.data" (inline data) left out.
 */
export class Ext4Reader implements FsReader {
  readonly kind = 'ext4' as const;
  private img: Ext4Image;
  private cache: FsEntry[] | null = null;
  private byPath: Map<string, FsEntry> | null = null;
  private inoOf = new Map<string, number>();

  constructor(readonly imagePath: string) {
    this.img = new Ext4Image(imagePath);
  }

  async list(onProgress?: ProgressFn): Promise<FsEntry[]> {
    if (this.cache) return this.cache;
    const img = this.img;
    const entries: FsEntry[] = [];
    const inoOf = new Map<string, number>();
    await img.use(async () => {
      const seenDirs = new Set<number>();
      const total = img.sb.inodesCount;
      const visit = async (ino: number, path: string): Promise<void> => {
        const inode = await img.inode(ino);
        const type = fileTypeFromMode(inode.mode);
        if (path === '/' && type !== 'dir')
          img.fail('root inode is not a directory', {
            field: 'i_mode',
            offset: inode.pos,
            found: inode.mode,
          });
        const xattrs: Record<string, string> = {};
        for (const x of await img.xattrs(inode))
          if (x.name !== 'system.data') xattrs[x.name] = x.value.toString('hex');
        let target: string | undefined;
        if (type === 'symlink') target = (await img.symlinkTarget(inode)).toString('utf8');
        entries.push(
          withDerivedXattrs({
            path,
            type,
            mode: inode.mode & 0o7777,
            uid: inode.uid,
            gid: inode.gid,
            size: target !== undefined ? Buffer.byteLength(target) : type === 'dir' ? 0 : inode.size,
            ...(target !== undefined ? { target } : {}),
            xattrs,
          }),
        );
        inoOf.set(path, ino);
        if (entries.length > MAX_ENTRIES)
          img.fail('too many entries (directory loop?)', {
            expected: `<= ${MAX_ENTRIES}`,
            found: entries.length,
          });
        if (type !== 'dir') return;
        if (seenDirs.has(ino))
          img.fail(`directory cycle at ${path}`, { field: 'inode', offset: inode.pos, found: ino });
        seenDirs.add(ino);
        for (const d of await img.readDir(inode)) {
          if (d.name === '.' || d.name === '..') continue;
          if (d.name === '' || d.name.includes('/'))
            img.fail(`invalid file name in ${path}`, { field: 'name', offset: inode.pos, found: d.name });
          await visit(d.ino, path === '/' ? `/${d.name}` : `${path}/${d.name}`);
        }
        onProgress?.({ stage: 'ext4 list', done: entries.length, total, unit: 'items' });
      };
      await visit(2, '/');
    });
    entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    this.cache = entries;
    this.byPath = new Map(entries.map((e) => [e.path, e]));
    this.inoOf = inoOf;
    return entries;
  }

  /** Where every file, directory and long symlink keeps its data (extents or block maps). */
  async fileDataRanges(): Promise<FileDataRanges[]> {
    await this.list();
    const img = this.img;
    const out: FileDataRanges[] = [];
    await img.use(async () => {
      const bs = img.sb.blockSize;
      for (const [path, ino] of [...this.inoOf].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
        const runs = await img.dataRuns(await img.inode(ino));
        if (runs.length)
          out.push({ path, ranges: runs.map((r) => [r.physical * bs, (r.physical + r.len) * bs]) });
      }
    });
    return out;
  }

  async stat(path: string): Promise<FsEntry | null> {
    await this.list();
    return this.byPath!.get(normPath(path)) ?? null;
  }

  async exists(path: string): Promise<boolean> {
    return (await this.stat(path)) !== null;
  }

  private async regularFile(path: string): Promise<{ p: string; entry: FsEntry; ino: number }> {
    const p = normPath(path);
    const entry = await this.stat(p);
    if (entry?.type !== 'file')
      throw new InputError(`${this.imagePath}: no regular file ${p}`, {
        code: 'FS_NOT_FOUND',
        context: { image: this.imagePath, path: p },
      });
    return { p, entry, ino: this.inoOf.get(p)! };
  }

  async readFile(path: string): Promise<Buffer> {
    const { p, entry, ino } = await this.regularFile(path);
    if (entry.size > MAX_READ_FILE)
      throw new InputError(`${this.imagePath}: ${p} is too large to read into memory`, {
        code: 'FS_TOO_LARGE',
        context: { image: this.imagePath, path: p, size: entry.size, max: MAX_READ_FILE },
        hint: 'copy it out to a file instead (copyOut streams)',
      });
    return this.img.use(async () => {
      const inode = await this.img.inode(ino);
      return this.img.readRange(inode, 0, inode.size);
    });
  }

  async copyOut(path: string, hostPath: string): Promise<void> {
    const { ino } = await this.regularFile(path);
    await this.img.use(() => this.copyInode(ino, hostPath));
  }

  /** Streams one inode's data to a host file, in large chunks (holes written as zeros). */
  private async copyInode(ino: number, hostPath: string): Promise<void> {
    const inode = await this.img.inode(ino);
    const out = await open(hostPath, 'w');
    try {
      const buf = Buffer.allocUnsafe(Math.min(COPY_CHUNK, Math.max(inode.size, 1)));
      for (let off = 0; off < inode.size; off += buf.length) {
        const n = Math.min(buf.length, inode.size - off);
        await this.img.readRange(inode, off, n, buf, 0);
        await out.write(buf, 0, n);
      }
    } finally {
      await out.close();
    }
  }

  /**
   * Extracts the subtree at `path` into hostDir, like debugfs rdump: the subtree's own name is
   * created inside hostDir (the root's content goes straight into it), regular files, directories
   * and symlinks only, modes and times restored, owners too when running as root.
   */
  async extractTree(path: string, hostDir: string): Promise<void> {
    const p = normPath(path);
    const base = p === '/' ? '' : p.slice(0, p.lastIndexOf('/'));
    const within = (await this.list()).filter(
      (e) => e.path === p || e.path.startsWith(p === '/' ? '/' : `${p}/`),
    );
    if (!within.length)
      throw new InputError(`${this.imagePath}: no entry ${p}`, {
        code: 'FS_NOT_FOUND',
        context: { image: this.imagePath, path: p },
      });
    const asRoot = process.getuid?.() === 0;
    const done: Array<{ host: string; e: FsEntry; ino: number }> = [];
    await this.img.use(async () => {
      for (const e of within) {
        if (e.path === '/') continue;
        const host = join(hostDir, e.path.slice(base.length + 1));
        const ino = this.inoOf.get(e.path)!;
        if (e.type === 'dir') await mkdir(host, { recursive: true, mode: 0o700 });
        else if (e.type === 'file') await this.copyInode(ino, host);
        else if (e.type === 'symlink') {
          await rm(host, { force: true });
          await symlink(e.target ?? '', host);
          continue;
        } else continue; // rdump skips devices, FIFOs and sockets
        done.push({ host, e, ino });
      }
      // Children first, so read-only directories are locked only after they were filled.
      for (const { host, e, ino } of done.reverse()) {
        const inode = await this.img.inode(ino);
        // chown clears setuid/setgid: owners first, then the mode.
        if (asRoot) await lchown(host, e.uid, e.gid);
        await chmod(host, e.mode);
        await utimes(host, inode.raw.readUInt32LE(0x8), inode.raw.readUInt32LE(0x10));
      }
    });
  }

  /** Forgets the cached listing (after the image was edited). */
  invalidate(): void {
    this.cache = null;
    this.byPath = null;
    this.inoOf = new Map();
    this.img = new Ext4Image(this.imagePath);
  }

  async close(): Promise<void> {}
}

export interface Ext4EditOptions {
  /** Timestamp for every touched inode (default: SOURCE_DATE_EPOCH or 0). */
  epoch?: number;
  /** Grow the image when the additions do not fit (default true). */
  grow?: boolean;
  /** Shrink the image to its minimum size after editing (resize2fs -M; default false). */
  shrink?: boolean;
  /** Run `e2fsck -fn` at the end and throw VerificationError when it is not clean (default true). */
  check?: boolean;
  onProgress?: ProgressFn;
}

export function defaultEpoch(): number {
  const s = process.env.SOURCE_DATE_EPOCH;
  return s && /^\d+$/.test(s) ? Number(s) : 0;
}

/**
 * Applies edits to an ext4 image in place, in one debugfs session: unshares blocks first when
 * needed, grows the filesystem when the new files do not fit, then optionally shrinks it.
 */
export async function applyExt4Edits(
  image: string,
  edits: FsEdit[],
  opts: Ext4EditOptions = {},
): Promise<void> {
  const epoch = opts.epoch ?? defaultEpoch();
  let info = await ext4Info(image);
  if (info.features.includes('shared_blocks')) {
    // Android dedupes identical blocks (mke2fs -E android_sparse + e2fsdroid -s); debugfs cannot
    // write such an image safely until every inode owns its blocks again. Unsharing needs room.
    await growBy(image, info, Math.ceil(info.blockCount * 0.5), epoch);
    await runTool('e2fsck', ['-fy', '-E', 'unshare_blocks', image], {
      reject: false,
      env: timeEnv(epoch),
    }).then((r) => {
      if (r.exitCode > 1)
        throw new EnvironmentError(`e2fsck -E unshare_blocks failed on ${image} (exit ${r.exitCode})`, {
          code: 'EXT4_UNSHARE',
          context: { image, stdout: r.stdout.slice(-2000) },
        });
    });
    // e2fsck leaves the feature flag set when it found nothing to unshare; every block now has
    // one owner, so clear it (debugfs would otherwise free blocks it believes may be shared).
    const r = await debugfs(image, ['feature -shared_blocks'], { write: true, epoch });
    assertNoErrors(image, r, 'clearing shared_blocks');
    info = await ext4Info(image);
  }
  if (opts.grow !== false) {
    const need = await blocksNeeded(edits, info.blockSize);
    const slack = 256;
    if (need.blocks + slack > info.freeBlocks || need.inodes + 16 > info.freeInodes) {
      const extra = Math.max(need.blocks + slack - info.freeBlocks, 0) + Math.ceil(info.blockCount * 0.05);
      await growBy(image, info, extra, epoch);
      info = await ext4Info(image);
    }
  }
  const reader = new Ext4Reader(image);
  const tree = await reader.list();
  const cmds = await editCommands(tree, edits, epoch);
  opts.onProgress?.({ stage: 'ext4 edit', done: 0, total: edits.length, unit: 'items' });
  try {
    const r = await debugfs(image, cmds.commands, { write: true, epoch });
    assertNoErrors(image, r, 'applying edits');
  } finally {
    await cmds.cleanup();
  }
  opts.onProgress?.({ stage: 'ext4 edit', done: edits.length, total: edits.length, unit: 'items' });
  if (opts.shrink) await shrinkExt4(image, epoch);
  if (opts.check !== false) await checkExt4(image);
}

async function blocksNeeded(edits: FsEdit[], bs: number): Promise<{ blocks: number; inodes: number }> {
  let blocks = 0;
  let inodes = 0;
  for (const e of edits) {
    if (e.op === 'write') {
      const st = await hostStat(e.source);
      blocks += Math.ceil(st.size / bs) + 1 + Math.ceil(st.size / (bs * 1024));
      inodes++;
    } else if (e.op === 'mkdir' || e.op === 'symlink') {
      blocks += 1;
      inodes++;
    }
  }
  return { blocks, inodes };
}

async function growBy(image: string, info: Ext4Info, extraBlocks: number, epoch: number): Promise<void> {
  const newCount = info.blockCount + extraBlocks;
  // The file may be larger than the filesystem (a partition image with room after it). resize2fs
  // truncates a regular file to the new filesystem size: give the partition its length back (the
  // bytes after the filesystem, e.g. an AVB hashtree, are stale after an edit anyway).
  const fileSize = (await hostStat(image)).size;
  if (fileSize < newCount * info.blockSize) await truncate(image, newCount * info.blockSize);
  await runTool('resize2fs', ['-f', image, String(newCount)], { env: timeEnv(epoch) });
  if ((await hostStat(image)).size < fileSize) await truncate(image, fileSize);
}

/** e2fsprogs stamp superblock times with "now" unless told otherwise: pin them for reproducible images. */
function timeEnv(epoch: number): Record<string, string> {
  return { E2FSPROGS_FAKE_TIME: String(epoch), E2FSCK_TIME: String(epoch), SOURCE_DATE_EPOCH: String(epoch) };
}

/** Shrinks the filesystem to its minimum (resize2fs -M) and truncates the file to match. */
export async function shrinkExt4(image: string, epoch = defaultEpoch()): Promise<void> {
  const env = timeEnv(epoch);
  await runTool('e2fsck', ['-fy', image], { reject: false, env });
  await runTool('resize2fs', ['-f', '-M', image], { env });
  const info = await ext4Info(image);
  await truncate(image, info.blockCount * info.blockSize);
}

/** `e2fsck -fn`: throws VerificationError with e2fsck's report when the filesystem is not clean. */
export async function checkExt4(image: string): Promise<void> {
  const r = await runTool('e2fsck', ['-fn', image], { reject: false });
  if (r.exitCode !== 0)
    throw new VerificationError('ext4', `e2fsck -fn reports problems in ${image} (exit ${r.exitCode})`, {
      code: 'EXT4_FSCK',
      context: { image, report: `${r.stdout}\n${r.stderr}`.trim().slice(-4000) },
    });
}

interface CommandList {
  commands: string[];
  cleanup(): Promise<void>;
}

/** Translates edits to debugfs commands; xattr values go through temp files (`ea_set -f`). */
async function editCommands(tree: FsEntry[], edits: FsEdit[], epoch: number): Promise<CommandList> {
  const tmp = await mkdtemp(join(tmpdir(), 'omie-ext4-edit-'));
  let n = 0;
  const valueFile = async (v: Buffer): Promise<string> => {
    const f = join(tmp, `v${n++}`);
    await writeFile(f, v);
    return f;
  };
  const present = new Map(tree.map((e) => [e.path, e]));
  const cmds: string[] = [];
  const times = (p: string) => {
    for (const f of ['atime', 'mtime', 'ctime', 'crtime']) cmds.push(`sif ${dq(p)} ${f} @${epoch}`);
  };
  const setXattrs = async (p: string, label?: string | null, caps?: string | null) => {
    if (label) cmds.push(`ea_set -f ${dq(await valueFile(labelXattr(label)))} ${dq(p)} security.selinux`);
    else if (label === null && present.get(p)?.label !== undefined)
      cmds.push(`ea_rm ${dq(p)} security.selinux`);
    if (caps)
      cmds.push(`ea_set -f ${dq(await valueFile(Buffer.from(caps, 'hex')))} ${dq(p)} security.capability`);
    else if (caps === null && present.get(p)?.capabilities !== undefined)
      cmds.push(`ea_rm ${dq(p)} security.capability`);
  };
  const removeTree = (p: string) => {
    const victims = [...present.keys()].filter((k) => k === p || k.startsWith(`${p}/`));
    victims.sort((a, b) => b.split('/').length - a.split('/').length || (a < b ? 1 : -1));
    for (const v of victims) {
      cmds.push(`${present.get(v)!.type === 'dir' ? 'rmdir' : 'rm'} ${dq(v)}`);
      present.delete(v);
    }
  };
  const needParent = (p: string) => {
    const parent = parentOf(p);
    if (present.get(parent)?.type !== 'dir')
      throw new InputError(`cannot add ${p}: parent directory ${parent} does not exist`, {
        code: 'FS_NO_PARENT',
        context: { path: p, parent },
      });
  };
  const placeholder = (path: string, type: FsEntry['type']): FsEntry => ({
    path,
    type,
    mode: 0,
    uid: 0,
    gid: 0,
    size: 0,
    xattrs: {},
  });
  try {
    for (const e of edits) {
      const p = normPath(e.path);
      if (p === '/' && e.op !== 'setattr')
        throw new InputError('cannot replace the root directory', { code: 'FS_ROOT' });
      switch (e.op) {
        case 'remove':
          if (!present.has(p))
            throw new InputError(`cannot remove ${p}: not found`, {
              code: 'FS_NOT_FOUND',
              context: { path: p },
            });
          removeTree(p);
          break;
        case 'mkdir':
          needParent(p);
          if (present.has(p)) {
            if (present.get(p)!.type !== 'dir')
              throw new InputError(`cannot mkdir ${p}: a non-directory exists there`, { code: 'FS_EXISTS' });
          } else {
            cmds.push(`mkdir ${dq(p)}`);
            present.set(p, placeholder(p, 'dir'));
          }
          cmds.push(`sif ${dq(p)} mode 0${(typeBits('dir') | (e.mode & 0o7777)).toString(8)}`);
          cmds.push(`sif ${dq(p)} uid ${e.uid}`, `sif ${dq(p)} gid ${e.gid}`);
          times(p);
          await setXattrs(p, e.label, e.capabilities);
          break;
        case 'write':
          needParent(p);
          if (present.has(p)) removeTree(p);
          cmds.push(`write ${dq(e.source)} ${dq(p)}`);
          present.set(p, placeholder(p, 'file'));
          cmds.push(`sif ${dq(p)} mode 0${(typeBits('file') | (e.mode & 0o7777)).toString(8)}`);
          cmds.push(`sif ${dq(p)} uid ${e.uid}`, `sif ${dq(p)} gid ${e.gid}`);
          times(p);
          await setXattrs(p, e.label, e.capabilities);
          break;
        case 'symlink':
          needParent(p);
          if (present.has(p)) removeTree(p);
          cmds.push(`symlink ${dq(p)} ${dq(e.target)}`);
          present.set(p, placeholder(p, 'symlink'));
          cmds.push(`sif ${dq(p)} uid ${e.uid}`, `sif ${dq(p)} gid ${e.gid}`);
          times(p);
          await setXattrs(p, e.label, e.capabilities);
          break;
        case 'setattr': {
          const cur = present.get(p);
          if (!cur)
            throw new InputError(`cannot change ${p}: not found`, {
              code: 'FS_NOT_FOUND',
              context: { path: p },
            });
          if (e.mode !== undefined)
            cmds.push(`sif ${dq(p)} mode 0${(typeBits(cur.type) | (e.mode & 0o7777)).toString(8)}`);
          if (e.uid !== undefined) cmds.push(`sif ${dq(p)} uid ${e.uid}`);
          if (e.gid !== undefined) cmds.push(`sif ${dq(p)} gid ${e.gid}`);
          await setXattrs(p, e.label, e.capabilities);
          break;
        }
      }
    }
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
  return { commands: cmds, cleanup: () => rm(tmp, { recursive: true, force: true }) };
}

export interface CreateExt4Options {
  /** Image size in bytes; default: computed from the content with headroom. */
  sizeBytes?: number;
  /** Filesystem UUID, also used as the directory hash seed (reproducible htree order). */
  uuid: string;
  /** Volume name (e.g. "/" for system-as-root, "vendor"). */
  volumeName?: string;
  epoch?: number;
  /** Where the image is mounted on the device ("/" for system-as-root, "/vendor"), for label lookups. */
  mountPoint: string;
  /** Owners, modes and capabilities by path (paths inside the image). Default: root, modes from host. */
  fsConfig?: FsConfigRule[];
  /** Labels: looked up for mountPoint + path. */
  fileContexts?: FileContexts;
  /** Shrink to the minimum size after population (resize2fs -M). */
  shrink?: boolean;
  onProgress?: ProgressFn;
}

/**
 * Creates an ext4 image from a host directory: `mke2fs -t ext4 -d DIR` with fixed UUID, hash seed
 * and time, then one debugfs pass setting owners/modes/times/labels/capabilities for every entry.
 */
export async function createExt4(srcDir: string, image: string, opts: CreateExt4Options): Promise<void> {
  const epoch = opts.epoch ?? defaultEpoch();
  const files = await walkHost(srcDir);
  let size = opts.sizeBytes;
  if (size === undefined) {
    let bytes = 0;
    for (const f of files) bytes += Math.ceil(Math.max(f.size, 1) / 4096) * 4096 + 256;
    size = Math.ceil((bytes * 1.15 + 16 * 1024 * 1024) / (1024 * 1024)) * 1024 * 1024;
  }
  await rm(image, { force: true });
  const env = timeEnv(epoch);
  await runTool(
    'mke2fs',
    [
      '-q',
      '-F',
      '-t',
      'ext4',
      '-b',
      '4096',
      '-I',
      '256',
      '-m',
      '0',
      // Read-only partitions need no journal (Android builds theirs without one too).
      '-O',
      '^has_journal',
      '-U',
      opts.uuid,
      '-E',
      `hash_seed=${opts.uuid}`,
      ...(opts.volumeName !== undefined ? ['-L', opts.volumeName] : []),
      '-d',
      srcDir,
      image,
      `${Math.ceil(size / 1024)}k`,
    ],
    { env },
  );
  const rules = opts.fsConfig ?? [];
  const edits: FsEdit[] = [
    { op: 'setattr', path: '/', mode: 0o755, uid: 0, gid: 0, label: labelFor(opts, '/', 'dir') },
  ];
  for (const f of files) {
    const cfg = resolveFsConfig(rules, f.path);
    const mode =
      cfg.mode ??
      (f.type === 'dir' ? 0o755 : f.type === 'symlink' ? 0o777 : f.hostMode & 0o111 ? 0o755 : 0o644);
    edits.push({
      op: 'setattr',
      path: f.path,
      ...(f.type === 'symlink' ? {} : { mode }),
      uid: cfg.uid,
      gid: cfg.gid,
      label: labelFor(opts, f.path, f.type),
      capabilities: cfg.capabilities?.length
        ? capabilitiesXattr(cfg.capabilities).toString('hex')
        : undefined,
    });
  }
  const reader = new Ext4Reader(image);
  const listed = await reader.list();
  // Entries mke2fs makes itself (lost+found) get a label too.
  const fromHost = new Set(files.map((f) => f.path));
  for (const e of listed)
    if (e.path !== '/' && !fromHost.has(e.path)) {
      const label = labelFor(opts, e.path, e.type);
      if (label) edits.push({ op: 'setattr', path: e.path, label });
    }
  const cmds = await editCommands(listed, edits, epoch);
  // Every inode gets the fixed time, including lost+found and the root.
  for (const e of await reader.list())
    for (const t of ['atime', 'mtime', 'ctime', 'crtime'])
      cmds.commands.push(`sif ${dq(e.path)} ${t} @${epoch}`);
  try {
    const r = await debugfs(image, cmds.commands, { write: true, epoch });
    assertNoErrors(image, r, 'setting owners and labels');
  } finally {
    await cmds.cleanup();
  }
  if (opts.shrink) await shrinkExt4(image, epoch);
  await checkExt4(image);
}

function labelFor(opts: CreateExt4Options, path: string, type: FsEntry['type']): string | undefined {
  if (!opts.fileContexts) return undefined;
  const dev = opts.mountPoint === '/' ? path : path === '/' ? opts.mountPoint : `${opts.mountPoint}${path}`;
  return opts.fileContexts.lookup(dev, type) ?? undefined;
}

interface HostEntry {
  path: string;
  type: 'file' | 'dir' | 'symlink';
  size: number;
  hostMode: number;
}

async function walkHost(root: string): Promise<HostEntry[]> {
  const out: HostEntry[] = [];
  const walk = async (dir: string, rel: string) => {
    const names = (await readdir(dir)).sort();
    for (const name of names) {
      const full = join(dir, name);
      const st = await lstat(full);
      const path = `${rel}/${name}`;
      const type = st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : 'file';
      out.push({ path, type, size: st.size, hostMode: st.mode });
      if (type === 'dir') await walk(full, path);
    }
  };
  await walk(root, '');
  return out;
}

/** Reads the first 2 KiB of a file (for magic detection). */
export async function readHead(path: string, n = 4096): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const b = Buffer.alloc(n);
    const { bytesRead } = await fh.read(b, 0, n, 0);
    return b.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}
