/**
 * What udev rules do to a USB device node: enough of udev's rule language (udev(7)) to tell
 * whether the installed rules let a user open an Android device — the match keys a USB "add"
 * event has (SUBSYSTEM, ACTION, KERNEL, DRIVER, ATTR/ATTRS, ENV, TAG), GOTO/LABEL, the ENV and
 * TAG assignments, and MODE/GROUP/OWNER with `:=` finality. Rules are read as udevd reads them:
 * every *.rules file of the rules directories, sorted by file name, a file in /etc hiding one of
 * the same name further down. A rule with a key that cannot be evaluated here (PROGRAM, TEST, an
 * ENV set by a udev builtin) is taken not to match, so the verdict errs on "no access".
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** Rules directories, highest priority first (systemd's udev: /etc, /run, then the system's). */
export const UDEV_RULES_DIRS = [
  '/etc/udev/rules.d',
  '/run/udev/rules.d',
  '/lib/udev/rules.d',
  '/usr/lib/udev/rules.d',
];

export interface RulesFile {
  path: string;
  text: string;
}

/** The facts a USB device's "add" uevent carries, as rules see them. */
export interface UsbDeviceFacts {
  /** "18d1" (lower-case hex, as sysfs shows it). */
  idVendor: string;
  idProduct: string;
  /** The kernel's device name, e.g. "1-1.4". */
  kernel?: string;
  /** More sysfs attributes (serial, manufacturer, ...). */
  attrs?: Record<string, string>;
}

/** What the rules set on the device node. */
export interface UdevOutcome {
  mode?: string;
  group?: string;
  owner?: string;
  tags: string[];
  /** The rules (path:line) that set mode, group, owner or the uaccess tag on this device. */
  setBy: string[];
}

/** The rule files udevd would read from `dirs`, in its order. */
export function loadUdevRules(dirs: readonly string[] = UDEV_RULES_DIRS): RulesFile[] {
  const byName = new Map<string, string>();
  for (const d of dirs) {
    let names: string[];
    try {
      names = readdirSync(d);
    } catch {
      continue;
    }
    for (const n of names) if (n.endsWith('.rules') && !byName.has(n)) byName.set(n, join(d, n));
  }
  return [...byName.keys()].sort().flatMap((n) => {
    const path = byName.get(n) as string;
    try {
      return [{ path, text: readFileSync(path, 'utf8') }];
    } catch {
      return []; // unreadable (or masked by a link to /dev/null, which reads empty anyway)
    }
  });
}

interface Key {
  name: string;
  attr?: string;
  op: '==' | '!=' | '=' | '+=' | '-=' | ':=';
  value: string;
}

interface Rule {
  keys: Key[];
  where: string;
}

const KEY_RE = /^\s*,?\s*([A-Z_]+)(?:\{([^}]*)\})?\s*(==|!=|\+=|-=|:=|=)\s*"((?:[^"\\]|\\.)*)"/;

function parseRules(f: RulesFile): Rule[] {
  const out: Rule[] = [];
  const lines = f.text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const lineNo = i + 1;
    let line = lines[i];
    while (line.endsWith('\\') && i + 1 < lines.length) line = line.slice(0, -1) + lines[++i];
    if (/^\s*(#|$)/.test(line)) continue;
    const keys: Key[] = [];
    let rest = line;
    for (;;) {
      const m = KEY_RE.exec(rest);
      if (!m) break;
      keys.push({ name: m[1], attr: m[2], op: m[3] as Key['op'], value: m[4].replace(/\\(.)/g, '$1') });
      rest = rest.slice(m[0].length);
    }
    if (keys.length && !rest.replace(/[\s,]/g, '')) out.push({ keys, where: `${f.path}:${lineNo}` });
  }
  return out;
}

/** udev's pattern match: shell glob (*, ?, [...]) with "|" between alternatives. */
function globMatch(pattern: string, value: string): boolean {
  return pattern.split('|').some((alt) => {
    let re = '';
    for (let i = 0; i < alt.length; i++) {
      const c = alt[i];
      if (c === '*') re += '.*';
      else if (c === '?') re += '.';
      else if (c === '[') {
        const end = alt.indexOf(']', i + 2);
        if (end < 0) re += '\\[';
        else {
          re += `[${alt
            .slice(i + 1, end)
            .replace(/^!/, '^')
            .replace(/\\/g, '\\\\')}]`;
          i = end;
        }
      } else re += c.replace(/[.+^${}()|\\]/g, '\\$&');
    }
    return new RegExp(`^${re}$`).test(value);
  });
}

/** Evaluates `files` for the "add" event of `dev`; returns what ends up set on its node. */
export function evaluateUdevRules(files: readonly RulesFile[], dev: UsbDeviceFacts): UdevOutcome {
  const attrs: Record<string, string> = {
    idVendor: dev.idVendor.toLowerCase(),
    idProduct: dev.idProduct.toLowerCase(),
    ...dev.attrs,
  };
  const env: Record<string, string> = {
    SUBSYSTEM: 'usb',
    DEVTYPE: 'usb_device',
    ID_VENDOR_ID: attrs.idVendor,
    ID_MODEL_ID: attrs.idProduct,
  };
  const out: UdevOutcome = { tags: [], setBy: [] };
  const final = new Set<string>();
  const value = (k: Key): string | undefined => {
    switch (k.name) {
      case 'ACTION':
        return 'add';
      case 'SUBSYSTEM':
      case 'SUBSYSTEMS':
        return 'usb';
      case 'KERNEL':
      case 'KERNELS':
        return dev.kernel;
      case 'DRIVER':
      case 'DRIVERS':
        return 'usb';
      case 'ATTR':
      case 'ATTRS':
        return attrs[k.attr ?? ''];
      case 'ENV':
        return env[k.attr ?? ''] ?? '';
      default:
        return undefined;
    }
  };
  const matches = (k: Key): boolean => {
    if (k.name === 'TAG') return (k.op === '==') === out.tags.some((t) => globMatch(k.value, t));
    const v = value(k);
    if (v === undefined) return false; // cannot evaluate: the rule is taken not to apply
    return (k.op === '==') === globMatch(k.value, v);
  };
  for (const f of files) {
    let skipTo: string | undefined;
    for (const r of parseRules(f)) {
      if (skipTo !== undefined) {
        if (r.keys.some((k) => k.name === 'LABEL' && k.value === skipTo)) skipTo = undefined;
        continue;
      }
      if (!r.keys.filter((k) => k.op === '==' || k.op === '!=').every(matches)) continue;
      for (const k of r.keys) {
        if (k.op === '==' || k.op === '!=') continue;
        if (k.name === 'GOTO') skipTo = k.value;
        else if (k.name === 'ENV' && k.attr) env[k.attr] = k.value;
        else if (k.name === 'TAG') {
          if (k.op === '-=') out.tags = out.tags.filter((t) => t !== k.value);
          else {
            if (k.op === '=' || k.op === ':=') out.tags = [];
            if (!out.tags.includes(k.value)) out.tags.push(k.value);
          }
          if (k.value === 'uaccess') out.setBy.push(r.where);
        } else if (k.name === 'MODE' || k.name === 'GROUP' || k.name === 'OWNER') {
          if (final.has(k.name)) continue;
          if (k.op === ':=') final.add(k.name);
          out[k.name.toLowerCase() as 'mode' | 'group' | 'owner'] = k.value;
          out.setBy.push(r.where);
        }
      }
    }
  }
  return out;
}

export interface UdevUser {
  name: string;
  uid: number;
  /** Names of the groups the user is in. */
  groups: string[];
}

export interface AccessVerdict {
  /** The rules give this user read-write access to the node. */
  ok: boolean;
  /** How: "root", "owner", "group plugdev", "everyone", "uaccess (the active local session)". */
  via?: string;
  /** Access would be granted by membership in this group. */
  viaGroup?: string;
}

/** Whether the node the rules produce is read-write for `user` (uaccess: the desktop session's user). */
export function rulesGrantAccess(o: UdevOutcome, user: UdevUser): AccessVerdict {
  if (user.uid === 0) return { ok: true, via: 'root' };
  // Without a MODE rule, usbfs nodes are 0664 root:root (udev's default for usb_device).
  const mode = Number.parseInt(o.mode ?? '0664', 8);
  const rw = (shift: number) => ((mode >> shift) & 6) === 6;
  if (o.owner === user.name && rw(6)) return { ok: true, via: 'owner' };
  if (rw(0)) return { ok: true, via: 'everyone' };
  const group = o.group && rw(3) ? o.group : undefined;
  if (group && user.groups.includes(group)) return { ok: true, via: `group ${group}`, viaGroup: group };
  if (o.tags.includes('uaccess'))
    return { ok: true, via: 'uaccess (the active local session)', viaGroup: group };
  return { ok: false, viaGroup: group };
}
