import { accessSync, constants, existsSync, opendirSync, readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { hostFiles, hostTools, installHint, toolVersion, which } from './tools.ts';
import {
  evaluateUdevRules,
  loadUdevRules,
  type RulesFile,
  rulesGrantAccess,
  type UdevOutcome,
  type UdevUser,
} from './udev.ts';

export interface ToolCheck {
  name: string;
  found: boolean;
  path: string | null;
  version: string | null;
  debianPackage: string;
  required: boolean;
  purpose: string;
  install?: string;
}

export interface Finding {
  id: string;
  ok: boolean;
  message: string;
  fix?: string;
  /** Machine-readable facts behind the finding (--json). */
  details?: Record<string, unknown>;
}

export interface DoctorReport {
  ok: boolean;
  node: { version: string; ok: boolean; required: string };
  tools: ToolCheck[];
  files: Array<{ path: string; found: boolean; debianPackage: string; required: boolean; install?: string }>;
  usb: Finding[];
}

const NODE_MIN = [20, 19];

export async function runDoctor(): Promise<DoctorReport> {
  const tools = await Promise.all(
    hostTools.map(async (t): Promise<ToolCheck> => {
      const path = which(t.name);
      const version = path ? await toolVersion(t).catch(() => null) : null;
      return {
        name: t.name,
        found: path !== null,
        path,
        version,
        debianPackage: t.debianPackage,
        required: t.required,
        purpose: t.purpose,
        install: path ? undefined : installHint([t.debianPackage]),
      };
    }),
  );
  const files = hostFiles.map((f) => {
    const found = existsSync(f.path);
    return {
      path: f.path,
      found,
      debianPackage: f.debianPackage,
      required: f.required,
      install: found ? undefined : installHint([f.debianPackage]),
    };
  });
  const [maj, min] = process.versions.node.split('.').map(Number);
  const nodeOk = maj > NODE_MIN[0] || (maj === NODE_MIN[0] && min >= NODE_MIN[1]);
  const usb = checkUsb();
  const ok =
    nodeOk &&
    tools.every((t) => t.found || !t.required) &&
    files.every((f) => f.found || !f.required) &&
    usb.every((u) => u.ok);
  return {
    ok,
    node: { version: process.versions.node, ok: nodeOk, required: `>=${NODE_MIN.join('.')}` },
    tools,
    files,
    usb,
  };
}

/** USB vendor IDs of common Android device and SoC makers (the bootloader may use the SoC's). */
export const ANDROID_USB_VENDORS: Readonly<Record<string, string>> = {
  '18d1': 'Google (fastbootd and most bootloaders)',
  '04e8': 'Samsung',
  '22b8': 'Motorola',
  '1004': 'LG',
  '0fce': 'Sony',
  '0bb4': 'HTC',
  '2717': 'Xiaomi',
  '2a70': 'OnePlus',
  '22d9': 'OPPO',
  '17ef': 'Lenovo',
  '0b05': 'ASUS',
  '2e04': 'HMD (Nokia)',
  '2ae5': 'Fairphone',
  '05c6': 'Qualcomm',
  '0e8d': 'MediaTek',
  '1782': 'Unisoc',
  '2207': 'Rockchip',
  '1f3a': 'Allwinner',
};

/** The udev rule that gives group plugdev and the desktop session access to a vendor's devices. */
export const udevRuleLine = (vendor: string) =>
  `SUBSYSTEM=="usb", ATTR{idVendor}=="${vendor}", MODE="0660", GROUP="plugdev", TAG+="uaccess"`;

const RULES_FILE = '/etc/udev/rules.d/51-android.rules';
/** Debian's rules for many Android vendors (android-sdk-platform-tools-common). */
const DEBIAN_RULES = '51-android.rules';
const ruleFix = (vendors: string[], rules: RulesFile[]) =>
  `${rules.some((r) => r.path.endsWith(`/${DEBIAN_RULES}`)) ? '' : "sudo apt-get install android-sdk-platform-tools-common (Debian's 51-android.rules), or "}add ${vendors.length > 1 ? 'these lines' : 'this line'} to ${RULES_FILE}: ${vendors.map(udevRuleLine).join(' ; ')} - then sudo udevadm control --reload-rules && sudo udevadm trigger, and re-plug the device`;

export interface AndroidUsbDevice {
  /** Kernel name, e.g. "1-1.4". */
  port: string;
  vendorId: string;
  productId: string;
  serial?: string;
  /** fastboot (ff/42/03) or adb (ff/42/01). */
  interface: 'fastboot' | 'adb';
  devnode: string;
}

const readAttr = (dir: string, name: string) => {
  try {
    return readFileSync(join(dir, name), 'utf8').trim();
  } catch {
    return undefined;
  }
};

/**
 * Entry names of a directory through opendir(3), not scandir(3) as readdirSync does: the same
 * listing, but one that an LD_PRELOAD library can redirect (the emulated USB bus in the tests).
 */
function listDir(path: string): string[] {
  const names: string[] = [];
  const d = opendirSync(path);
  try {
    for (let e = d.readSync(); e; e = d.readSync()) names.push(e.name);
  } finally {
    d.closeSync();
  }
  return names;
}

/** USB devices with a fastboot or adb interface, from sysfs. */
export function androidUsbDevices(sysfs = '/sys/bus/usb/devices'): AndroidUsbDevice[] {
  let names: string[];
  try {
    names = listDir(sysfs);
  } catch {
    return [];
  }
  const out: AndroidUsbDevice[] = [];
  for (const name of names.filter((n) => !n.includes(':')).sort()) {
    const dir = join(sysfs, name);
    const vendorId = readAttr(dir, 'idVendor');
    const busnum = Number(readAttr(dir, 'busnum'));
    const devnum = Number(readAttr(dir, 'devnum'));
    if (!vendorId || !busnum || !devnum) continue;
    let kind: AndroidUsbDevice['interface'] | undefined;
    for (const i of names.filter((n) => n.startsWith(`${name}:`))) {
      const cls = ['bInterfaceClass', 'bInterfaceSubClass', 'bInterfaceProtocol'].map((a) =>
        readAttr(join(sysfs, i), a),
      );
      if (cls[0] === 'ff' && cls[1] === '42' && (cls[2] === '03' || cls[2] === '01'))
        kind = cls[2] === '03' ? 'fastboot' : (kind ?? 'adb');
    }
    if (!kind) continue;
    out.push({
      port: name,
      vendorId,
      productId: readAttr(dir, 'idProduct') ?? '',
      serial: readAttr(dir, 'serial'),
      interface: kind,
      devnode: `/dev/bus/usb/${String(busnum).padStart(3, '0')}/${String(devnum).padStart(3, '0')}`,
    });
  }
  return out;
}

/** The user running this, with the groups this process has (what opening a node is checked against). */
function currentUser(): UdevUser & { listedIn: string[] } {
  const u = userInfo();
  const byGid = new Map<number, string>();
  const listedIn: string[] = [];
  try {
    for (const line of readFileSync('/etc/group', 'utf8').split('\n')) {
      const [name, , gid, members] = line.split(':');
      if (!name || gid === undefined) continue;
      byGid.set(Number(gid), name);
      if ((members ?? '').split(',').includes(u.username)) listedIn.push(name);
    }
  } catch {}
  const gids = process.getgroups?.() ?? [];
  return {
    name: u.username,
    uid: u.uid,
    groups: [...new Set([u.gid, ...gids])].map((g) => byGid.get(g) ?? String(g)),
    listedIn,
  };
}

export interface UsbCheckOptions {
  rulesDirs?: readonly string[];
  sysfs?: string;
  user?: UdevUser & { listedIn?: string[] };
}

/**
 * Real devices need udev rules that give the user access to their USB device nodes (without
 * them, fastboot and adb see "no permissions"): whether the installed rules grant access to
 * Android vendors' devices, whether this user is in the group they grant it to, and for every
 * Android device plugged in, whether its /dev/bus/usb node is open to this user now.
 */
export function checkUsb(opts: UsbCheckOptions = {}): Finding[] {
  const out: Finding[] = [];
  const rules = loadUdevRules(opts.rulesDirs);
  const user = opts.user ?? currentUser();
  const outcome = (vendor: string, product = '4ee0') =>
    evaluateUdevRules(rules, { idVendor: vendor, idProduct: product });
  // Whether the rules let anyone but root in: by mode, group, owner or uaccess.
  const nobody: UdevUser = { name: '', uid: -1, groups: [] };
  const granted = (o: UdevOutcome) => {
    const v = rulesGrantAccess(o, nobody);
    return v.ok || v.viaGroup !== undefined || o.owner !== undefined;
  };

  const google = outcome('18d1');
  const covered = Object.keys(ANDROID_USB_VENDORS).filter((v) => granted(outcome(v)));
  const missing = Object.keys(ANDROID_USB_VENDORS).filter((v) => !covered.includes(v));
  const files = [...new Set(google.setBy.map((w) => w.replace(/:\d+$/, '')))];
  out.push(
    granted(google)
      ? {
          id: 'udev-rules',
          ok: true,
          message: `udev rules give access to Android USB devices (${files.join(', ')}: ${describeOutcome(google)}); vendors covered: ${covered.length} of ${Object.keys(ANDROID_USB_VENDORS).length} common ones${missing.length ? ` (not: ${missing.map((v) => `${v} ${ANDROID_USB_VENDORS[v]}`).join(', ')})` : ''}`,
          ...(missing.length
            ? { fix: `for a device of a vendor not covered: ${ruleFix(missing.slice(0, 1), rules)}` }
            : {}),
          details: { files, rules18d1: google, covered, missing },
        }
      : {
          id: 'udev-rules',
          ok: false,
          message:
            'no udev rule gives access to Android USB devices (vendor 18d1 at least): fastboot and adb would find them but could not open them ("no permissions")',
          fix: ruleFix(['18d1'], rules),
          details: { files: rules.map((r) => r.path), covered, missing },
        },
  );

  const group = rulesGrantAccess(google, nobody).viaGroup;
  if (user.uid === 0) out.push({ id: 'usb-group', ok: true, message: 'running as root: no group needed' });
  else if (group)
    out.push(
      user.groups.includes(group)
        ? {
            id: 'usb-group',
            ok: true,
            message: `user ${user.name} is in group ${group}, which the rules give access to`,
          }
        : {
            id: 'usb-group',
            ok: false,
            message: `user ${user.name} is not in group ${group}, which the udev rules give access to${google.tags.includes('uaccess') ? ' (the rules also let the user logged in at the desktop in, but not over SSH)' : ''}`,
            fix: user.listedIn?.includes(group)
              ? `you were added to ${group}: log out and back in (or run \`newgrp ${group}\`) so this session has it`
              : `sudo usermod -aG ${group} ${user.name}, then log out and back in`,
          },
    );

  const devices = androidUsbDevices(opts.sysfs);
  for (const d of devices) {
    const o = evaluateUdevRules(rules, { idVendor: d.vendorId, idProduct: d.productId, kernel: d.port });
    let writable = true;
    try {
      accessSync(d.devnode, constants.R_OK | constants.W_OK);
    } catch {
      writable = false;
    }
    const name = `${d.interface} device ${d.serial || '(no serial)'} (${d.vendorId}:${d.productId}, USB ${d.port})`;
    const verdict = rulesGrantAccess(o, user);
    out.push({
      id: `usb-device:${d.port}`,
      ok: writable,
      message: writable
        ? `${name}: ${d.devnode} is open to ${user.name}`
        : `${name}: ${d.devnode} is not writable by ${user.name} (rules: ${describeOutcome(o)})`,
      ...(writable
        ? {}
        : {
            fix: !granted(o)
              ? ruleFix([d.vendorId], rules)
              : verdict.viaGroup && !user.groups.includes(verdict.viaGroup)
                ? `sudo usermod -aG ${verdict.viaGroup} ${user.name}, then log out and back in`
                : 'the rules grant access but the node does not reflect them: sudo udevadm control --reload-rules && sudo udevadm trigger, then re-plug the device',
          }),
      details: { ...d, writable, rules: o },
    });
  }
  if (!devices.length)
    out.push({
      id: 'usb-devices',
      ok: true,
      message:
        'no Android device on USB right now (plug one in, in fastboot or with USB debugging, and re-run to check its access)',
    });
  return out;
}

function describeOutcome(o: UdevOutcome): string {
  const parts = [
    `mode ${o.mode ?? '0664 (default)'}`,
    `group ${o.group ?? 'root'}`,
    ...(o.owner ? [`owner ${o.owner}`] : []),
    ...(o.tags.includes('uaccess') ? ['uaccess'] : []),
  ];
  return parts.join(', ');
}
