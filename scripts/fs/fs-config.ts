/**
 * Ownership, modes and capabilities for files, in the spirit of Android's fs_config: a list of
 * rules matched by path (exact path, or a directory prefix ending in "*"), later rules winning.
 * Used when creating a filesystem from a host directory (the host cannot hold Android uids, labels
 * or capabilities for an unprivileged user, so they are applied from this list afterwards).
 */
import { InputError } from '../errors.ts';

/** Linux capability numbers (include/uapi/linux/capability.h), as Android's fs_config names them. */
export const CAPABILITIES: Record<string, number> = {
  CHOWN: 0,
  DAC_OVERRIDE: 1,
  DAC_READ_SEARCH: 2,
  FOWNER: 3,
  FSETID: 4,
  KILL: 5,
  SETGID: 6,
  SETUID: 7,
  SETPCAP: 8,
  LINUX_IMMUTABLE: 9,
  NET_BIND_SERVICE: 10,
  NET_BROADCAST: 11,
  NET_ADMIN: 12,
  NET_RAW: 13,
  IPC_LOCK: 14,
  IPC_OWNER: 15,
  SYS_MODULE: 16,
  SYS_RAWIO: 17,
  SYS_CHROOT: 18,
  SYS_PTRACE: 19,
  SYS_PACCT: 20,
  SYS_ADMIN: 21,
  SYS_BOOT: 22,
  SYS_NICE: 23,
  SYS_RESOURCE: 24,
  SYS_TIME: 25,
  SYS_TTY_CONFIG: 26,
  MKNOD: 27,
  LEASE: 28,
  AUDIT_WRITE: 29,
  AUDIT_CONTROL: 30,
  SETFCAP: 31,
  MAC_OVERRIDE: 32,
  MAC_ADMIN: 33,
  SYSLOG: 34,
  WAKE_ALARM: 35,
  BLOCK_SUSPEND: 36,
  AUDIT_READ: 37,
  PERFMON: 38,
  BPF: 39,
  CHECKPOINT_RESTORE: 40,
};

/**
 * security.capability value (struct vfs_cap_data, VFS_CAP_REVISION_2, little endian) for a set of
 * capabilities, with the effective bit set and no inheritable set — what Android's fs_config writes.
 */
export function capabilitiesXattr(caps: Array<string | number>): Buffer {
  let mask = 0n;
  for (const c of caps) {
    const n = typeof c === 'number' ? c : CAPABILITIES[c.replace(/^CAP_/, '')];
    if (n === undefined || n < 0 || n > 63)
      throw new InputError(`unknown capability ${c}`, { code: 'CAPABILITY' });
    mask |= 1n << BigInt(n);
  }
  const b = Buffer.alloc(20);
  b.writeUInt32LE(0x02000000 | 1, 0); // VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE
  b.writeUInt32LE(Number(mask & 0xffffffffn), 4); // permitted[0]
  b.writeUInt32LE(0, 8); // inheritable[0]
  b.writeUInt32LE(Number(mask >> 32n), 12); // permitted[1]
  b.writeUInt32LE(0, 16); // inheritable[1]
  return b;
}

/** Capability names in a vfs_cap_data value (hex), permitted set. */
export function capabilityNames(hex: string): string[] {
  const b = Buffer.from(hex, 'hex');
  if (b.length < 12) return [];
  let mask = BigInt(b.readUInt32LE(4));
  if (b.length >= 20) mask |= BigInt(b.readUInt32LE(12)) << 32n;
  return Object.entries(CAPABILITIES)
    .filter(([, n]) => (mask >> BigInt(n)) & 1n)
    .map(([k]) => k);
}

export interface FsConfigRule {
  /** Exact path ("/system/bin/foo") or a prefix ending in "*" ("/system/bin/*"). */
  path: string;
  mode?: number;
  uid?: number;
  gid?: number;
  capabilities?: string[];
}

export interface ResolvedConfig {
  mode?: number;
  uid: number;
  gid: number;
  capabilities?: string[];
}

/** Applies the rules to a path: later matching rules override earlier ones field by field. */
export function resolveFsConfig(rules: FsConfigRule[], path: string): ResolvedConfig {
  const out: ResolvedConfig = { uid: 0, gid: 0 };
  for (const r of rules) {
    const hit = r.path.endsWith('*') ? path.startsWith(r.path.slice(0, -1)) : path === r.path;
    if (!hit) continue;
    if (r.mode !== undefined) out.mode = r.mode;
    if (r.uid !== undefined) out.uid = r.uid;
    if (r.gid !== undefined) out.gid = r.gid;
    if (r.capabilities !== undefined) out.capabilities = r.capabilities;
  }
  return out;
}
