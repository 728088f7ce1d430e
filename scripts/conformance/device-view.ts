/**
 * deviceView: a SystemView over a live device through the adb server (@devicefarmer/adbkit):
 * `getprop`, `pm list packages -f`, `settings get`, `cat` of platform XMLs, APKs pulled to a
 * temp folder for signer and tracker checks. Shell access goes through a small `AdbShell`
 * interface so tests (and other transports) can provide their own.
 */
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Adb as AdbClass } from '@devicefarmer/adbkit';
import { EnvironmentError, InputError } from '../errors.ts';
import { readApkFacts } from './apk-facts.ts';
import type { ApkFacts, ApkRef, FileEntry, SystemView } from './view.ts';

/** What the device view needs from a transport. */
export interface AdbShell {
  readonly serial: string;
  shell(cmd: string): Promise<string>;
  pull(remote: string, local: string): Promise<void>;
}

/** AdbShell over the adb server (ADB_SERVER_SOCKET / host:port as adbkit reads them). */
export async function adbkitShell(
  serial: string,
  opts: { host?: string; port?: number } = {},
): Promise<AdbShell> {
  // adbkit is CommonJS: its classes hang off the default export under ESM. Loaded lazily so the
  // CLI does not pay for it unless a device is checked.
  const mod = (await import('@devicefarmer/adbkit')) as unknown as {
    default?: { Adb?: typeof AdbClass };
    Adb?: typeof AdbClass;
  };
  const Adb = (mod.default?.Adb ?? mod.Adb) as typeof AdbClass;
  const client = Adb.createClient({
    host: opts.host,
    port:
      opts.port ??
      (process.env.ANDROID_ADB_SERVER_PORT ? Number(process.env.ANDROID_ADB_SERVER_PORT) : undefined),
  });
  let devices: Array<{ id: string; type: string }>;
  try {
    devices = await client.listDevices();
  } catch (e) {
    throw new EnvironmentError(`cannot reach the adb server: ${(e as Error).message}`, {
      code: 'ADB_SERVER',
      hint: 'start it with `adb start-server` (or check ANDROID_ADB_SERVER_PORT)',
    });
  }
  const d = devices.find((x) => x.id === serial);
  if (!d)
    throw new InputError(`device ${serial} is not connected`, {
      code: 'DEVICE_NOT_FOUND',
      context: { serial, connected: devices.map((x) => `${x.id} (${x.type})`) },
      hint: 'see `adb devices`',
    });
  if (d.type !== 'device')
    throw new EnvironmentError(`device ${serial} is ${d.type}`, {
      code: 'DEVICE_NOT_READY',
      context: { serial, state: d.type },
      hint: d.type === 'unauthorized' ? 'accept the USB debugging prompt on the device' : undefined,
    });
  const dev = client.getDevice(serial);
  return {
    serial,
    async shell(cmd) {
      const stream = await dev.shell(cmd);
      return (await Adb.util.readAll(stream)).toString('utf8');
    },
    async pull(remote, local) {
      const t = await dev.pull(remote);
      await pipeline(t, createWriteStream(local));
    },
  };
}

const PARTITION_ROOTS: Record<string, string> = {
  system: '/system',
  system_ext: '/system_ext',
  product: '/product',
  vendor: '/vendor',
  odm: '/odm',
};

/** Single-quotes a path for the device shell. */
const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** Parses `getprop` output: `[key]: [value]` lines. */
export function parseGetprop(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const m of text.matchAll(/^\[([^\]]+)\]: \[([\s\S]*?)\]$/gm)) out[m[1]] = m[2];
  return out;
}

/** Which partition an on-device path lives on (`/system/priv-app/…` → system). */
export function partitionOfPath(p: string): { partition: string; rel: string } {
  for (const [name, root] of Object.entries(PARTITION_ROOTS)) {
    if (p.startsWith(`${root}/`)) return { partition: name, rel: p.slice(root.length + 1) };
  }
  if (p.startsWith('/apex/')) return { partition: 'apex', rel: p.slice(6) };
  return { partition: 'data', rel: p.replace(/^\/+/, '') };
}

export async function deviceView(
  serialOrShell: string | AdbShell,
  opts: { workDir?: string } = {},
): Promise<SystemView> {
  const adb = typeof serialOrShell === 'string' ? await adbkitShell(serialOrShell) : serialOrShell;
  const ownWork = !opts.workDir;
  const work = opts.workDir ?? (await mkdtemp(join(tmpdir(), 'omie-check-device-')));
  const partitionsPresent = async () => {
    const out = await adb.shell(
      `for d in ${Object.values(PARTITION_ROOTS).join(' ')}; do [ -d $d ] && echo $d; done`,
    );
    const present = new Set(out.split('\n').map((s) => s.trim()));
    return Object.entries(PARTITION_ROOTS)
      .filter(([, r]) => present.has(r))
      .map(([n]) => n);
  };
  let parts: Promise<string[]> | undefined;
  let apkCache: Promise<ApkRef[]> | undefined;
  let propCache: Promise<Record<string, string>> | undefined;
  const facts = new Map<string, Promise<ApkFacts>>();
  const view: SystemView = {
    kind: 'device',
    input: adb.serial,
    description: `device ${adb.serial}`,
    partitions() {
      parts ??= partitionsPresent();
      return parts;
    },
    async allPartitions() {
      const out = await adb.shell('ls /dev/block/by-name/ 2>/dev/null');
      const names = out
        .split(/\s+/)
        .filter(Boolean)
        .map((n) => n.replace(/_[ab]$/, ''));
      return [...new Set([...(await view.partitions()), ...names])].sort();
    },
    async listFiles(partition, dir) {
      const root = PARTITION_ROOTS[partition];
      if (!root) return [];
      const base = `${root}/${dir}`.replace(/\/+$/, '');
      // One line per entry: type letter and name (toybox ls -p marks directories with '/').
      const out = await adb.shell(`ls -1ap ${q(base)} 2>/dev/null`);
      const res: FileEntry[] = [];
      for (const raw of out.split('\n')) {
        const line = raw.replace(/\r$/, '');
        if (!line || line === './' || line === '../') continue;
        const isDir = line.endsWith('/');
        const name = isDir ? line.slice(0, -1) : line;
        res.push({
          name,
          path: dir ? `${dir.replace(/\/+$/, '')}/${name}` : name,
          type: isDir ? 'dir' : 'file',
        });
      }
      return res;
    },
    async readFile(partition, path) {
      const root = PARTITION_ROOTS[partition];
      if (!root) return null;
      const out = await adb.shell(
        `[ -f ${q(`${root}/${path}`)} ] && cat ${q(`${root}/${path}`)} || echo __OMIE_NO_FILE__`,
      );
      return out.trim() === '__OMIE_NO_FILE__' ? null : Buffer.from(out, 'utf8');
    },
    props() {
      propCache ??= adb.shell('getprop').then(parseGetprop);
      return propCache;
    },
    apks() {
      apkCache ??= (async () => {
        // -f: APK path, -s: system (preinstalled) packages only, -u: include uninstalled-for-user.
        const out = await adb.shell('pm list packages -f -s -u');
        const refs: ApkRef[] = [];
        for (const m of out.matchAll(/^package:(.+\.apk)=([\w.]+)\s*$/gm)) {
          const { partition, rel } = partitionOfPath(m[1]);
          refs.push({
            partition,
            path: rel,
            localPath: join(work, 'apks', partition, rel),
            packageHint: m[2],
          });
        }
        return refs;
      })();
      return apkCache;
    },
    apkFacts(ref) {
      const key = `${ref.partition}/${ref.path}`;
      let p = facts.get(key);
      if (!p) {
        p = (async () => {
          await mkdir(dirname(ref.localPath), { recursive: true });
          const remote = PARTITION_ROOTS[ref.partition]
            ? `${PARTITION_ROOTS[ref.partition]}/${ref.path}`
            : `/${ref.partition === 'apex' ? 'apex/' : ''}${ref.path}`;
          await adb.pull(remote, ref.localPath);
          return readApkFacts(ref.localPath);
        })();
        facts.set(key, p);
      }
      return p;
    },
    async settings(ns, key) {
      const v = (await adb.shell(`settings get ${ns} ${q(key)}`)).trim();
      return v === '' || v === 'null' ? null : v;
    },
    async kernelCmdline() {
      const v = (await adb.shell('cat /proc/cmdline 2>/dev/null')).trim();
      return v || null;
    },
    async vbmeta() {
      return null;
    },
    shell: (cmd) => adb.shell(cmd),
    async close() {
      if (ownWork) await rm(work, { recursive: true, force: true });
    },
  };
  return view;
}
