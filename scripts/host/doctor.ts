import { accessSync, constants, existsSync, readdirSync, readFileSync } from 'node:fs';
import { userInfo } from 'node:os';
import { hostFiles, hostTools, installHint, toolVersion, which } from './tools.ts';

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
}

export interface DoctorReport {
  ok: boolean;
  node: { version: string; ok: boolean; required: string };
  tools: ToolCheck[];
  files: Array<{ path: string; found: boolean; debianPackage: string; install?: string }>;
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
      install: found ? undefined : installHint([f.debianPackage]),
    };
  });
  const [maj, min] = process.versions.node.split('.').map(Number);
  const nodeOk = maj > NODE_MIN[0] || (maj === NODE_MIN[0] && min >= NODE_MIN[1]);
  const usb = checkUsb();
  const ok =
    nodeOk &&
    tools.every((t) => t.found || !t.required) &&
    files.every((f) => f.found) &&
    usb.every((u) => u.ok);
  return {
    ok,
    node: { version: process.versions.node, ok: nodeOk, required: `>=${NODE_MIN.join('.')}` },
    tools,
    files,
    usb,
  };
}

const UDEV_DIRS = ['/etc/udev/rules.d', '/lib/udev/rules.d', '/usr/lib/udev/rules.d'];

/**
 * Real devices need udev rules that give the user access to Android USB interfaces
 * (vendor IDs 18d1 Google/fastboot, and the OEM's). Without them adb shows "no permissions"
 * and fastboot sees nothing.
 */
export function checkUsb(): Finding[] {
  const out: Finding[] = [];
  const rules = UDEV_DIRS.flatMap((d) => {
    try {
      return readdirSync(d).map((f) => `${d}/${f}`);
    } catch {
      return [];
    }
  }).filter((p) => {
    try {
      return /18d1|android|adb|fastboot/i.test(readFileSync(p, 'utf8'));
    } catch {
      return false;
    }
  });
  out.push(
    rules.length > 0
      ? { id: 'udev-rules', ok: true, message: `udev rules for Android devices: ${rules.join(', ')}` }
      : {
          id: 'udev-rules',
          ok: false,
          message:
            'no udev rules for Android USB devices (adb would say "no permissions", fastboot would see no device)',
          fix: 'sudo apt-get install android-sdk-platform-tools-common (ships 51-android.rules), then `sudo udevadm control --reload-rules && sudo udevadm trigger` and re-plug the device; add your own vendor ID to /etc/udev/rules.d/51-android.rules if it is not listed',
        },
  );
  const user = userInfo().username;
  if (existsSync('/dev/bus/usb')) {
    let writable = true;
    try {
      for (const bus of readdirSync('/dev/bus/usb')) {
        for (const dev of readdirSync(`/dev/bus/usb/${bus}`))
          accessSync(`/dev/bus/usb/${bus}/${dev}`, constants.W_OK);
      }
    } catch {
      writable = false;
    }
    out.push(
      writable
        ? { id: 'usb-access', ok: true, message: `user ${user} can open USB devices` }
        : {
            id: 'usb-access',
            ok: false,
            message: `user ${user} cannot open every USB device node under /dev/bus/usb`,
            fix: `sudo usermod -aG plugdev ${user} and log in again (the Android udev rules grant access to group plugdev)`,
          },
    );
  } else {
    out.push({
      id: 'usb-access',
      ok: true,
      message: 'no USB bus on this host (virtual devices over TCP still work)',
    });
  }
  return out;
}
