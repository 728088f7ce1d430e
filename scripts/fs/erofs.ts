/**
 * erofs images: a metadata reader in TypeScript (superblock, inodes, directories, xattrs, and the
 * data of uncompressed files), following the on-disk format of the Linux kernel's fs/erofs/erofs_fs.h,
 * plus extraction and rebuilding with erofs-utils.
 *
 * erofs-utils 1.5 (Debian) neither restores xattrs when extracting (`fsck.erofs --extract`) nor
 * prints them (`dump.erofs`), and its mkfs has no `--fs-config-file`/`--mount-point` (those exist in
 * Android's build only). So the rebuild is: extract the data with fsck.erofs, apply the edits on the
 * host tree, put back every owner, mode, SELinux label and capability read by this module (chown,
 * chmod, setxattr: needs root, or runs under fakeroot), then `mkfs.erofs -T<epoch> -U<uuid>` which
 * copies owners and xattrs from the host tree. Labels for added files are computed from the image's
 * own file_contexts by the caller (see selinux.ts), which is what `--file-contexts` would do.
 */
import {
  copyFile,
  type FileHandle,
  mkdir,
  mkdtemp,
  open,
  readFile,
  rm,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { EnvironmentError, FormatError, InputError, VerificationError } from '../errors.ts';
import { runTool, which } from '../host/tools.ts';
import type { ProgressFn } from '../progress.ts';
import {
  type FsEdit,
  type FsEntry,
  type FsReader,
  fileTypeFromMode,
  labelXattr,
  normPath,
  withDerivedXattrs,
} from './types.ts';

export const EROFS_SUPER_OFFSET = 1024;
export const EROFS_MAGIC = 0xe0f5e1e2;

const LAYOUT_FLAT_PLAIN = 0;
const LAYOUT_COMPRESSED_FULL = 1;
const LAYOUT_FLAT_INLINE = 2;
const LAYOUT_COMPRESSED_COMPACT = 3;
const LAYOUT_CHUNK_BASED = 4;

/** xattr name prefixes by e_name_index (erofs_fs.h / xattr.h). */
const XATTR_PREFIX: Record<number, string> = {
  1: 'user.',
  2: 'system.posix_acl_access',
  3: 'system.posix_acl_default',
  4: 'trusted.',
  6: 'security.',
};

export interface ErofsSuper {
  blockSize: number;
  rootNid: number;
  inodes: bigint;
  buildTime: bigint;
  blocks: number;
  metaBlkAddr: number;
  xattrBlkAddr: number;
  uuid: string;
  volumeName: string;
  featureCompat: number;
  featureIncompat: number;
}

export function isErofs(head: Buffer): boolean {
  return head.length >= EROFS_SUPER_OFFSET + 4 && head.readUInt32LE(EROFS_SUPER_OFFSET) === EROFS_MAGIC;
}

export function parseErofsSuper(b: Buffer, file?: string): ErofsSuper {
  if (b.length < 128)
    throw new FormatError({ format: 'erofs', reason: 'truncated superblock', offset: 1024, file });
  const magic = b.readUInt32LE(0);
  if (magic !== EROFS_MAGIC)
    throw new FormatError({
      format: 'erofs',
      reason: 'bad magic',
      field: 'magic',
      offset: 1024,
      expected: EROFS_MAGIC,
      found: magic,
      file,
    });
  const blkszbits = b.readUInt8(12);
  if (blkszbits < 9 || blkszbits > 16)
    throw new FormatError({
      format: 'erofs',
      reason: 'block size out of range',
      field: 'blkszbits',
      expected: '9..16',
      found: blkszbits,
      file,
    });
  const uuid = b.subarray(48, 64).toString('hex');
  return {
    featureCompat: b.readUInt32LE(8),
    blockSize: 1 << blkszbits,
    rootNid: b.readUInt16LE(14),
    inodes: b.readBigUInt64LE(16),
    buildTime: b.readBigUInt64LE(24),
    blocks: b.readUInt32LE(36),
    metaBlkAddr: b.readUInt32LE(40),
    xattrBlkAddr: b.readUInt32LE(44),
    uuid: `${uuid.slice(0, 8)}-${uuid.slice(8, 12)}-${uuid.slice(12, 16)}-${uuid.slice(16, 20)}-${uuid.slice(20)}`,
    volumeName: b.subarray(64, 80).toString('latin1').replace(/\0.*$/s, ''),
    featureIncompat: b.readUInt32LE(80),
  };
}

interface Inode {
  nid: number;
  layout: number;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  /** raw_blkaddr (flat layouts). */
  blkaddr: number;
  /** Byte offset of the inode in the image. */
  pos: number;
  /** Size of the inode structure (32 or 64). */
  isize: number;
  /** Size of the inline xattr area. */
  xattrSize: number;
  xattrs: Record<string, string>;
}

const MAX_DIRS = 1_000_000;

/** FsReader for erofs images. File data: read directly for flat layouts, via fsck.erofs extraction otherwise. */
export class ErofsReader implements FsReader {
  readonly kind = 'erofs' as const;
  private fh: FileHandle | null = null;
  private sb: ErofsSuper | null = null;
  private fileSize = 0;
  private cache: FsEntry[] | null = null;
  private inodes = new Map<string, Inode>();
  private extracted: string | null = null;

  constructor(readonly imagePath: string) {}

  async superblock(): Promise<ErofsSuper> {
    await this.openImage();
    return this.sb!;
  }

  private async openImage(): Promise<void> {
    if (this.fh) return;
    this.fh = await open(this.imagePath, 'r');
    this.fileSize = (await this.fh.stat()).size;
    this.sb = parseErofsSuper(await this.read(EROFS_SUPER_OFFSET, 128), this.imagePath);
  }

  private async read(pos: number, len: number): Promise<Buffer> {
    if (pos < 0 || len < 0 || pos + len > this.fileSize)
      throw new FormatError({
        format: 'erofs',
        reason: 'read beyond end of image',
        offset: pos,
        expected: `<= ${this.fileSize}`,
        found: pos + len,
        file: this.imagePath,
      });
    const b = Buffer.alloc(len);
    const { bytesRead } = await this.fh!.read(b, 0, len, pos);
    if (bytesRead !== len)
      throw new FormatError({ format: 'erofs', reason: 'short read', offset: pos, file: this.imagePath });
    return b;
  }

  private async inode(nid: number): Promise<Inode> {
    const sb = this.sb!;
    const pos = sb.metaBlkAddr * sb.blockSize + nid * 32;
    const h = await this.read(pos, 32);
    const format = h.readUInt16LE(0);
    const extended = (format & 1) === 1;
    const layout = (format >> 1) & 0x7;
    const icount = h.readUInt16LE(2);
    let ino: Inode;
    if (extended) {
      const x = await this.read(pos, 64);
      const size = x.readBigUInt64LE(8);
      if (size > BigInt(Number.MAX_SAFE_INTEGER))
        throw new FormatError({
          format: 'erofs',
          reason: 'inode size too large',
          field: 'i_size',
          offset: pos,
          file: this.imagePath,
        });
      ino = {
        nid,
        layout,
        pos,
        isize: 64,
        mode: x.readUInt16LE(4),
        size: Number(size),
        blkaddr: x.readUInt32LE(16),
        uid: x.readUInt32LE(24),
        gid: x.readUInt32LE(28),
        xattrSize: 0,
        xattrs: {},
      };
    } else {
      ino = {
        nid,
        layout,
        pos,
        isize: 32,
        mode: h.readUInt16LE(4),
        size: h.readUInt32LE(8),
        blkaddr: h.readUInt32LE(16),
        uid: h.readUInt16LE(24),
        gid: h.readUInt16LE(26),
        xattrSize: 0,
        xattrs: {},
      };
    }
    if (layout > LAYOUT_CHUNK_BASED)
      throw new FormatError({
        format: 'erofs',
        reason: 'unknown data layout',
        field: 'i_format',
        offset: pos,
        found: layout,
        file: this.imagePath,
      });
    if (icount > 0) {
      ino.xattrSize = 12 + (icount - 1) * 4;
      ino.xattrs = await this.readXattrs(pos + ino.isize, ino.xattrSize);
    }
    return ino;
  }

  private async readXattrs(pos: number, size: number): Promise<Record<string, string>> {
    const sb = this.sb!;
    const area = await this.read(pos, size);
    const out: Record<string, string> = {};
    const shared = area.readUInt8(4);
    let off = 12 + shared * 4;
    if (off > size)
      throw new FormatError({
        format: 'erofs',
        reason: 'shared xattr count overflows the xattr area',
        offset: pos,
        file: this.imagePath,
      });
    for (let i = 0; i < shared; i++) {
      const id = area.readUInt32LE(12 + i * 4);
      const e = await this.read(sb.xattrBlkAddr * sb.blockSize + id * 4, 4);
      const nameLen = e.readUInt8(0);
      const valueLen = e.readUInt16LE(2);
      const full = await this.read(sb.xattrBlkAddr * sb.blockSize + id * 4, 4 + nameLen + valueLen);
      this.addXattr(out, full, 0);
    }
    while (off + 4 <= size) {
      const nameLen = area.readUInt8(off);
      const valueLen = area.readUInt16LE(off + 2);
      const len = 4 + nameLen + valueLen;
      if (off + len > size)
        throw new FormatError({
          format: 'erofs',
          reason: 'xattr entry overflows the xattr area',
          offset: pos + off,
          file: this.imagePath,
        });
      this.addXattr(out, area, off);
      off += (len + 3) & ~3;
    }
    return out;
  }

  private addXattr(out: Record<string, string>, b: Buffer, off: number): void {
    const nameLen = b.readUInt8(off);
    const index = b.readUInt8(off + 1);
    const valueLen = b.readUInt16LE(off + 2);
    const name = b.subarray(off + 4, off + 4 + nameLen).toString('latin1');
    const value = b.subarray(off + 4 + nameLen, off + 4 + nameLen + valueLen);
    const prefix = XATTR_PREFIX[index] ?? (index === 0 ? '' : `index${index}.`);
    out[prefix + name] = value.toString('hex');
  }

  /** Bytes of a flat (uncompressed) inode's data. */
  private async flatData(ino: Inode, start = 0, len = ino.size): Promise<Buffer> {
    const sb = this.sb!;
    const bs = sb.blockSize;
    if (ino.layout === LAYOUT_FLAT_PLAIN) return this.read(ino.blkaddr * bs + start, len);
    if (ino.layout !== LAYOUT_FLAT_INLINE)
      throw new FormatError({
        format: 'erofs',
        reason: 'not a flat inode',
        found: ino.layout,
        file: this.imagePath,
      });
    const fullBlocks = Math.floor(ino.size / bs) - (ino.size % bs === 0 && ino.size > 0 ? 0 : 0);
    const tailStart = Math.floor(ino.size / bs) * bs;
    const parts: Buffer[] = [];
    const end = start + len;
    if (start < tailStart && fullBlocks > 0) {
      const a = start;
      const b = Math.min(end, tailStart);
      parts.push(await this.read(ino.blkaddr * bs + a, b - a));
    }
    if (end > tailStart) {
      const inlinePos = ino.pos + ino.isize + ino.xattrSize;
      const a = Math.max(start, tailStart) - tailStart;
      const b = end - tailStart;
      parts.push(await this.read(inlinePos + a, b - a));
    }
    return Buffer.concat(parts);
  }

  private async readDir(ino: Inode): Promise<Array<{ name: string; nid: number }>> {
    if (ino.layout !== LAYOUT_FLAT_PLAIN && ino.layout !== LAYOUT_FLAT_INLINE)
      throw new FormatError({
        format: 'erofs',
        reason: 'compressed directories are not supported',
        found: ino.layout,
        file: this.imagePath,
      });
    const bs = this.sb!.blockSize;
    const data = await this.flatData(ino);
    const out: Array<{ name: string; nid: number }> = [];
    for (let blk = 0; blk * bs < data.length; blk++) {
      const b = data.subarray(blk * bs, Math.min((blk + 1) * bs, data.length));
      if (b.length < 12) break;
      const first = b.readUInt16LE(8);
      const count = Math.floor(first / 12);
      if (first % 12 !== 0 || count === 0 || first > b.length)
        throw new FormatError({
          format: 'erofs',
          reason: 'bad directory block',
          field: 'nameoff',
          found: first,
          offset: ino.pos,
          file: this.imagePath,
        });
      for (let i = 0; i < count; i++) {
        const nid = b.readBigUInt64LE(i * 12);
        const nameoff = b.readUInt16LE(i * 12 + 8);
        const nextoff = i + 1 < count ? b.readUInt16LE((i + 1) * 12 + 8) : b.length;
        if (nameoff > nextoff || nextoff > b.length)
          throw new FormatError({
            format: 'erofs',
            reason: 'bad directory entry name offset',
            offset: ino.pos,
            file: this.imagePath,
          });
        let name = b.subarray(nameoff, nextoff).toString('utf8');
        if (i + 1 === count) name = name.replace(/\0.*$/s, '');
        out.push({ name, nid: Number(nid) });
      }
    }
    return out;
  }

  async list(onProgress?: ProgressFn): Promise<FsEntry[]> {
    if (this.cache) return this.cache;
    await this.openImage();
    const entries: FsEntry[] = [];
    const seenDirs = new Set<number>();
    const visit = async (nid: number, path: string) => {
      const ino = await this.inode(nid);
      this.inodes.set(path, ino);
      const type = fileTypeFromMode(ino.mode);
      let target: string | undefined;
      if (type === 'symlink') {
        if (ino.size > 4096)
          throw new FormatError({
            format: 'erofs',
            reason: 'symlink too long',
            offset: ino.pos,
            file: this.imagePath,
          });
        target = (await this.flatData(ino)).toString('utf8');
      }
      entries.push(
        withDerivedXattrs({
          path,
          type,
          mode: ino.mode & 0o7777,
          uid: ino.uid,
          gid: ino.gid,
          size: ino.size,
          ...(target !== undefined ? { target } : {}),
          xattrs: ino.xattrs,
        }),
      );
      if (type !== 'dir') return;
      if (seenDirs.has(nid) || seenDirs.size > MAX_DIRS)
        throw new FormatError({
          format: 'erofs',
          reason: 'directory cycle',
          offset: ino.pos,
          file: this.imagePath,
        });
      seenDirs.add(nid);
      for (const d of await this.readDir(ino)) {
        if (d.name === '.' || d.name === '..') continue;
        if (!d.name || d.name.includes('/'))
          throw new FormatError({
            format: 'erofs',
            reason: 'invalid file name',
            found: d.name,
            offset: ino.pos,
            file: this.imagePath,
          });
        await visit(d.nid, path === '/' ? `/${d.name}` : `${path}/${d.name}`);
      }
      onProgress?.({
        stage: 'erofs list',
        done: entries.length,
        total: Number(this.sb!.inodes),
        unit: 'items',
      });
    };
    await visit(this.sb!.rootNid, '/');
    entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    this.cache = entries;
    return entries;
  }

  async stat(path: string): Promise<FsEntry | null> {
    const p = normPath(path);
    return (await this.list()).find((e) => e.path === p) ?? null;
  }

  async exists(path: string): Promise<boolean> {
    return (await this.stat(path)) !== null;
  }

  /** True when some regular file uses a compressed layout (the rebuild then compresses too). */
  async isCompressed(): Promise<boolean> {
    await this.list();
    return [...this.inodes.values()].some(
      (i) => i.layout === LAYOUT_COMPRESSED_FULL || i.layout === LAYOUT_COMPRESSED_COMPACT,
    );
  }

  async readFile(path: string): Promise<Buffer> {
    const p = normPath(path);
    await this.list();
    const ino = this.inodes.get(p);
    if (!ino || fileTypeFromMode(ino.mode) !== 'file')
      throw new InputError(`${this.imagePath}: no regular file ${p}`, {
        code: 'FS_NOT_FOUND',
        context: { image: this.imagePath, path: p },
      });
    if (ino.layout === LAYOUT_FLAT_PLAIN || ino.layout === LAYOUT_FLAT_INLINE) return this.flatData(ino);
    return readFile(join(await this.extractAll(), p));
  }

  async copyOut(path: string, hostPath: string): Promise<void> {
    const p = normPath(path);
    await this.list();
    const ino = this.inodes.get(p);
    if (ino && (ino.layout === LAYOUT_FLAT_PLAIN || ino.layout === LAYOUT_FLAT_INLINE)) {
      const out = await open(hostPath, 'w');
      try {
        const chunk = 1 << 20;
        for (let off = 0; off < ino.size; off += chunk)
          await out.write(await this.flatData(ino, off, Math.min(chunk, ino.size - off)));
      } finally {
        await out.close();
      }
      return;
    }
    if (!ino)
      throw new InputError(`${this.imagePath}: no file ${p}`, { code: 'FS_NOT_FOUND', context: { path: p } });
    await copyFile(join(await this.extractAll(), p), hostPath);
  }

  /** Extracts the whole image once (fsck.erofs --extract) for compressed/chunked file data. */
  private async extractAll(): Promise<string> {
    if (this.extracted) return this.extracted;
    const dir = await mkdtemp(join(tmpdir(), 'omie-erofs-x-'));
    await extractErofs(this.imagePath, join(dir, 'root'));
    this.extracted = join(dir, 'root');
    return this.extracted;
  }

  async close(): Promise<void> {
    await this.fh?.close();
    this.fh = null;
    if (this.extracted) await rm(dirname(this.extracted), { recursive: true, force: true });
    this.extracted = null;
  }
}

/** `fsck.erofs --extract=DIR` (data, modes, owners when root; no xattrs in erofs-utils 1.5). */
export async function extractErofs(image: string, dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  await mkdir(dirname(dir), { recursive: true });
  const root = process.getuid?.() === 0;
  await runTool('fsck.erofs', [`--extract=${dir}`, ...(root ? ['--preserve'] : ['--no-preserve']), image]);
}

/** `fsck.erofs IMAGE`: throws VerificationError when the image does not check clean. */
export async function checkErofs(image: string): Promise<void> {
  const r = await runTool('fsck.erofs', [image], { reject: false });
  if (r.exitCode !== 0)
    throw new VerificationError('erofs', `fsck.erofs reports problems in ${image} (exit ${r.exitCode})`, {
      code: 'EROFS_FSCK',
      context: { image, report: `${r.stdout}\n${r.stderr}`.trim().slice(-4000) },
    });
}

export interface BuildErofsOptions {
  uuid: string;
  /** Fixed timestamp for every inode (default SOURCE_DATE_EPOCH or 0). */
  epoch?: number;
  /** lz4hc compression (what Android uses); default false. */
  compress?: boolean;
}

/**
 * Metadata for each host path (relative to the tree root, "/" for the root): applied with chown,
 * chmod and setxattr before mkfs.erofs, which copies owners and xattrs from the host tree.
 */
export type ErofsMetadata = Array<{
  path: string;
  mode: number;
  uid: number;
  gid: number;
  xattrs: Record<string, string>;
}>;

/**
 * Builds an erofs image from a host tree, with owners, modes and xattrs taken from `meta` (every
 * host entry missing from it keeps root:root and its host mode, and no xattrs).
 */
export async function buildErofs(
  srcDir: string,
  image: string,
  meta: ErofsMetadata,
  opts: BuildErofsOptions,
): Promise<void> {
  const epoch =
    opts.epoch ??
    (process.env.SOURCE_DATE_EPOCH && /^\d+$/.test(process.env.SOURCE_DATE_EPOCH)
      ? Number(process.env.SOURCE_DATE_EPOCH)
      : 0);
  const work = await mkdtemp(join(tmpdir(), 'omie-erofs-build-'));
  try {
    const metaFile = join(work, 'meta.json');
    await writeFile(metaFile, JSON.stringify({ root: srcDir, entries: meta }));
    const script = join(work, 'apply.py');
    await writeFile(script, APPLY_META_PY);
    const mkfsArgs = [
      `-T${epoch}`,
      `-U${opts.uuid}`,
      ...(opts.compress ? ['-zlz4hc'] : []),
      '--quiet',
      image,
      srcDir,
    ];
    await rm(image, { force: true });
    if (process.getuid?.() === 0) {
      await runTool('python3', [script, metaFile]);
      await runTool('mkfs.erofs', mkfsArgs);
    } else {
      // Without root, owners and security.* xattrs cannot be set on the host: fakeroot records them
      // and serves them back to mkfs.erofs in the same session.
      if (!which('fakeroot'))
        throw new EnvironmentError('rebuilding erofs images needs root or fakeroot', {
          code: 'TOOL_MISSING',
          context: { tool: 'fakeroot', debianPackage: 'fakeroot' },
          hint: 'install fakeroot (apt-get install fakeroot) or run as root',
        });
      const sh = `python3 "$1" "$2" && mkfs.erofs ${mkfsArgs.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ')}`;
      await runTool('fakeroot', ['--', 'sh', '-c', sh, 'sh', script, metaFile]);
    }
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/** Sets owners, modes and xattrs on a host tree (python3: Node has no xattr API). */
const APPLY_META_PY = `
import json, os, sys
cfg = json.load(open(sys.argv[1]))
root = cfg['root']
for e in cfg['entries']:
    p = os.path.join(root, e['path'].lstrip('/')) if e['path'] != '/' else root
    if not os.path.lexists(p):
        continue
    islink = os.path.islink(p)
    os.lchown(p, e['uid'], e['gid'])
    if not islink:
        os.chmod(p, e['mode'])
    for name in os.listxattr(p, follow_symlinks=False):
        if name not in e['xattrs']:
            os.removexattr(p, name, follow_symlinks=False)
    for name, value in sorted(e['xattrs'].items()):
        os.setxattr(p, name, bytes.fromhex(value), follow_symlinks=False)
`;

export interface ErofsEditOptions {
  epoch?: number;
  /** Keep the image's UUID (default) or set another. */
  uuid?: string;
  /** Force compression on/off; default: same as the input image. */
  compress?: boolean;
  onProgress?: ProgressFn;
}

/**
 * Applies edits to an erofs image: extract → edit the host tree → restore metadata → mkfs.erofs →
 * fsck.erofs. Writes `outImage` (may equal `image`).
 */
export async function applyErofsEdits(
  image: string,
  outImage: string,
  edits: FsEdit[],
  opts: ErofsEditOptions = {},
): Promise<void> {
  const reader = new ErofsReader(image);
  const work = await mkdtemp(join(tmpdir(), 'omie-erofs-edit-'));
  try {
    const sb = await reader.superblock();
    const entries = await reader.list();
    const compress = opts.compress ?? (await reader.isCompressed());
    await reader.close();
    const root = join(work, 'root');
    opts.onProgress?.({ stage: 'erofs extract', done: 0, total: 1, unit: 'items' });
    await extractErofs(image, root);
    const meta = new Map(
      entries.map((e) => [
        e.path,
        { path: e.path, mode: e.mode, uid: e.uid, gid: e.gid, xattrs: { ...e.xattrs } },
      ]),
    );
    const host = (p: string) => (p === '/' ? root : join(root, p.slice(1)));
    const setXattrs = (
      m: { xattrs: Record<string, string> },
      label?: string | null,
      caps?: string | null,
    ) => {
      if (label) m.xattrs['security.selinux'] = labelXattr(label).toString('hex');
      else if (label === null) delete m.xattrs['security.selinux'];
      if (caps) m.xattrs['security.capability'] = caps;
      else if (caps === null) delete m.xattrs['security.capability'];
    };
    for (const e of edits) {
      const p = normPath(e.path);
      switch (e.op) {
        case 'remove':
          if (!meta.has(p))
            throw new InputError(`cannot remove ${p}: not found`, {
              code: 'FS_NOT_FOUND',
              context: { path: p, image },
            });
          await rm(host(p), { recursive: true, force: true });
          for (const k of [...meta.keys()]) if (k === p || k.startsWith(`${p}/`)) meta.delete(k);
          break;
        case 'mkdir': {
          await mkdir(host(p), { recursive: false }).catch((err: NodeJS.ErrnoException) => {
            if (err.code !== 'EEXIST')
              throw new InputError(`cannot mkdir ${p}: ${err.code}`, {
                code: 'FS_NO_PARENT',
                context: { path: p },
              });
          });
          const m = { path: p, mode: e.mode, uid: e.uid, gid: e.gid, xattrs: meta.get(p)?.xattrs ?? {} };
          setXattrs(m, e.label, e.capabilities);
          meta.set(p, m);
          break;
        }
        case 'write': {
          if (meta.has(p)) await rm(host(p), { recursive: true, force: true });
          await copyFile(e.source, host(p)).catch((err: NodeJS.ErrnoException) => {
            throw new InputError(`cannot write ${p}: ${err.code}`, {
              code: 'FS_NO_PARENT',
              context: { path: p, source: e.source },
            });
          });
          const m = { path: p, mode: e.mode, uid: e.uid, gid: e.gid, xattrs: {} };
          setXattrs(m, e.label, e.capabilities);
          meta.set(p, m);
          break;
        }
        case 'symlink': {
          await rm(host(p), { recursive: true, force: true });
          await symlink(e.target, host(p));
          const m = { path: p, mode: 0o777, uid: e.uid, gid: e.gid, xattrs: {} };
          setXattrs(m, e.label, e.capabilities);
          meta.set(p, m);
          break;
        }
        case 'setattr': {
          const m = meta.get(p);
          if (!m)
            throw new InputError(`cannot change ${p}: not found`, {
              code: 'FS_NOT_FOUND',
              context: { path: p, image },
            });
          if (e.mode !== undefined) m.mode = e.mode;
          if (e.uid !== undefined) m.uid = e.uid;
          if (e.gid !== undefined) m.gid = e.gid;
          setXattrs(m, e.label, e.capabilities);
          break;
        }
      }
    }
    opts.onProgress?.({ stage: 'erofs rebuild', done: 0, total: 1, unit: 'items' });
    const tmpOut = join(work, 'out.img');
    await buildErofs(root, tmpOut, [...meta.values()], {
      uuid: opts.uuid ?? sb.uuid,
      epoch: opts.epoch,
      compress,
    });
    await checkErofs(tmpOut);
    await copyFile(tmpOut, outImage);
    opts.onProgress?.({ stage: 'erofs rebuild', done: 1, total: 1, unit: 'items' });
  } finally {
    await reader.close();
    await rm(work, { recursive: true, force: true });
  }
}
