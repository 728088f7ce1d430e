/**
 * The common, read-only view of a partition filesystem (ext4 or erofs), and the edit operations the
 * build applies to either. Paths are absolute inside the filesystem ("/system/build.prop"), never
 * host paths. Everything here is plain data so a Plan or a listing can be written as JSON.
 */

export type FsEntryType = 'file' | 'dir' | 'symlink' | 'chardev' | 'blockdev' | 'fifo' | 'socket';

export interface FsEntry {
  /** Absolute path inside the filesystem, "/" for the root. */
  path: string;
  type: FsEntryType;
  /** Permission bits including setuid/setgid/sticky (st_mode & 0o7777). */
  mode: number;
  uid: number;
  gid: number;
  /** Size in bytes (file data, symlink target length, directory size). */
  size: number;
  /** Symlink target, for symlinks. */
  target?: string;
  /** security.selinux without its trailing NUL, when present. */
  label?: string;
  /** security.capability value as lowercase hex (vfs_cap_data), when present. */
  capabilities?: string;
  /** Every extended attribute, name -> value as lowercase hex. */
  xattrs: Record<string, string>;
}

/**
 * Where one entry's data lies in its image, as byte ranges in file order (blocks of regular
 * files, directories and long symlinks; inline data and packed tails are left out, as they share
 * metadata blocks). What an incremental OTA diffs file by file.
 */
export interface FileDataRanges {
  path: string;
  ranges: Array<[start: number, end: number]>;
}

/** Read access to a filesystem image without mounting it. */
export interface FsReader {
  readonly kind: 'ext4' | 'erofs';
  readonly imagePath: string;
  /** Every entry of the tree (root included), sorted by path. Cached after the first call. */
  list(): Promise<FsEntry[]>;
  /** One entry, or null when the path does not exist. */
  stat(path: string): Promise<FsEntry | null>;
  exists(path: string): Promise<boolean>;
  /** A regular file's bytes (meant for small files: manifests, XML, props, APKs). */
  readFile(path: string): Promise<Buffer>;
  /** Copies the regular file at `path` to a host file (streams; fine for large files). */
  copyOut(path: string, hostPath: string): Promise<void>;
  /** Releases temporary files (extraction caches). */
  close(): Promise<void>;
}

/** Owner, mode and labels for an added or changed entry. */
export interface FsMeta {
  mode: number;
  uid: number;
  gid: number;
  /** SELinux context without NUL; null/undefined: leave unset. */
  label?: string | null;
  /** vfs_cap_data as hex (see capabilitiesHex in fs-config.ts). */
  capabilities?: string | null;
}

/**
 * One edit. `remove` is recursive. `write` replaces an existing file. Parent directories of added
 * entries must exist or be created by an earlier `mkdir` in the same list.
 */
export type FsEdit =
  | { op: 'remove'; path: string }
  | ({ op: 'mkdir'; path: string } & FsMeta)
  | ({ op: 'write'; path: string; source: string } & FsMeta)
  | ({ op: 'symlink'; path: string; target: string } & Omit<FsMeta, 'mode'>)
  | ({ op: 'setattr'; path: string } & Partial<FsMeta>);

/** Normalises an in-filesystem path: leading "/", no trailing "/", no "." / ".." / empty segments. */
export function normPath(p: string): string {
  const parts = p.split('/').filter((s) => s !== '' && s !== '.');
  if (parts.includes('..')) throw new Error(`path escapes the filesystem root: ${p}`);
  return `/${parts.join('/')}`;
}

export function parentOf(p: string): string {
  const n = normPath(p);
  const i = n.lastIndexOf('/');
  return i <= 0 ? '/' : n.slice(0, i);
}

export function baseName(p: string): string {
  const n = normPath(p);
  return n.slice(n.lastIndexOf('/') + 1);
}

/** Joins in-filesystem path segments. */
export function joinFs(...parts: string[]): string {
  return normPath(parts.join('/'));
}

export function fileTypeFromMode(mode: number): FsEntryType {
  switch (mode & 0o170000) {
    case 0o040000:
      return 'dir';
    case 0o120000:
      return 'symlink';
    case 0o020000:
      return 'chardev';
    case 0o060000:
      return 'blockdev';
    case 0o010000:
      return 'fifo';
    case 0o140000:
      return 'socket';
    default:
      return 'file';
  }
}

export function typeBits(t: FsEntryType): number {
  return {
    file: 0o100000,
    dir: 0o040000,
    symlink: 0o120000,
    chardev: 0o020000,
    blockdev: 0o060000,
    fifo: 0o010000,
    socket: 0o140000,
  }[t];
}

/** Fills label/capabilities from the xattr map. */
export function withDerivedXattrs(e: Omit<FsEntry, 'label' | 'capabilities'>): FsEntry {
  const out: FsEntry = { ...e };
  const sel = e.xattrs['security.selinux'];
  if (sel !== undefined) out.label = Buffer.from(sel, 'hex').toString('utf8').replace(/\0+$/, '');
  const cap = e.xattrs['security.capability'];
  if (cap !== undefined) out.capabilities = cap;
  return out;
}

/** Encodes a SELinux label as the xattr value Android writes (NUL-terminated, like e2fsdroid/mkfs.erofs). */
export function labelXattr(label: string): Buffer {
  return Buffer.from(`${label}\0`, 'utf8');
}
