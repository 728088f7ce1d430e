/**
 * deviceView: a SystemView over a live device through the adb server (@devicefarmer/adbkit):
 * `getprop`, `pm list packages -f`, `settings get`, `cat` of platform XMLs, APKs pulled to a
 * temp folder for signer and tracker checks. Shell access goes through a small `AdbShell`
 * interface so tests (and other transports) can provide their own.
 */
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { AdbHost, type AdbOptions } from '../device/adb.ts';
import { parseGetprop, parsePmList } from '../device/adb-output.ts';
import { EnvironmentError, InputError } from '../errors.ts';
import { type OpenedApex, openApex } from '../fs/apex.ts';
import { readApexFacts } from './apex-facts.ts';
import { readApkFacts } from './apk-facts.ts';
import type { ApexFacts, ApexRef, ApkFacts, ApkRef, FileEntry, SystemView } from './view.ts';

/** What the device view needs from a transport. */
export interface AdbShell {
  readonly serial: string;
  /** Runs a command; stdout and the exit status (stderr is not mixed in). */
  shell(cmd: string): Promise<{ stdout: string; exitCode: number }>;
  pull(remote: string, local: string): Promise<void>;
}

/** AdbShell over the adb server, through the kit's adb layer (scripts/device/adb.ts). */
export async function adbHostShell(serial: string, opts: AdbOptions = {}): Promise<AdbShell> {
  const host = new AdbHost(opts);
  const devices = await host.devices();
  const d = devices.find((x) => x.serial === serial);
  if (!d)
    throw new InputError(`device ${serial} is not connected`, {
      code: 'DEVICE_NOT_FOUND',
      context: { serial, connected: devices.map((x) => `${x.serial} (${x.state})`) },
      hint: 'see `adb devices` (for a TCP device: `adb connect host:port`)',
    });
  if (d.state !== 'device')
    throw new EnvironmentError(`device ${serial} is ${d.state}`, {
      code: 'DEVICE_NOT_READY',
      context: { serial, state: d.state },
      hint: d.state === 'unauthorized' ? 'accept the USB debugging prompt on the device' : undefined,
    });
  return {
    serial,
    async shell(cmd) {
      const r = await host.shell(serial, cmd);
      return { stdout: r.stdout, exitCode: r.exitCode };
    },
    pull: (remote, local) => host.pull(serial, remote, local),
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
  opts: { workDir?: string; adb?: AdbOptions } = {},
): Promise<SystemView> {
  const adb = typeof serialOrShell === 'string' ? await adbHostShell(serialOrShell, opts.adb) : serialOrShell;
  /** stdout of a command, '' when it failed (missing file, permission denied, unknown command). */
  const run = async (cmd: string) => {
    const r = await adb.shell(cmd);
    return r.exitCode === 0 ? r.stdout : '';
  };
  const ownWork = !opts.workDir;
  const work = opts.workDir ?? (await mkdtemp(join(tmpdir(), 'omie-check-device-')));
  const partitionsPresent = async () => {
    const present = new Set((await run('ls -a /')).split(/\s+/).filter(Boolean));
    return Object.keys(PARTITION_ROOTS).filter((n) => present.has(n));
  };
  let parts: Promise<string[]> | undefined;
  let apkCache: Promise<ApkRef[]> | undefined;
  let propCache: Promise<Record<string, string>> | undefined;
  const facts = new Map<string, Promise<ApkFacts>>();
  let apexCache: Promise<ApexRef[]> | undefined;
  const apexFacts = new Map<string, Promise<ApexFacts>>();
  const opened: Array<Promise<OpenedApex>> = [];
  /** Where a ref's file is on the device. */
  const remotePath = (ref: { partition: string; path: string }) =>
    PARTITION_ROOTS[ref.partition]
      ? `${PARTITION_ROOTS[ref.partition]}/${ref.path}`
      : `/${ref.partition === 'apex' ? 'apex/' : ref.partition === 'data' ? 'data/' : ''}${ref.path}`;
  const view: SystemView = {
    kind: 'device',
    input: adb.serial,
    description: `device ${adb.serial}`,
    partitions() {
      parts ??= partitionsPresent();
      return parts;
    },
    async allPartitions() {
      const out = await run('ls /dev/block/by-name/');
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
      const out = await run(`ls -1ap ${q(base)}`);
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
      const r = await adb.shell(`cat ${q(`${root}/${path}`)}`);
      return r.exitCode === 0 ? Buffer.from(r.stdout, 'utf8') : null;
    },
    props() {
      propCache ??= run('getprop').then(parseGetprop);
      return propCache;
    },
    apks() {
      apkCache ??= (async () => {
        // -f: APK path, -s: system (preinstalled) packages only, -u: include uninstalled-for-user.
        const out = await run('pm list packages -f -s -u');
        const refs: ApkRef[] = [];
        for (const p of parsePmList(out)) {
          if (!p.path.endsWith('.apk')) continue;
          const { partition, rel } = partitionOfPath(p.path);
          refs.push({
            partition,
            path: rel,
            localPath: join(work, 'apks', partition, rel),
            packageHint: p.name,
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
          await adb.pull(remotePath(ref), ref.localPath);
          return readApkFacts(ref.localPath);
        })();
        facts.set(key, p);
      }
      return p;
    },
    apexes() {
      apexCache ??= (async () => {
        // The active APEXes (a module updated from /data/apex/active included), with their files.
        const out = await run('pm list packages -f --apex-only');
        const refs: ApexRef[] = [];
        for (const p of parsePmList(out)) {
          if (!/\.c?apex$/.test(p.path)) continue;
          const { partition, rel } = partitionOfPath(p.path);
          refs.push({
            partition,
            path: rel,
            localPath: join(work, 'apexes', partition, rel),
            packageHint: p.name,
          });
        }
        return refs;
      })();
      return apexCache;
    },
    apexFacts(ref) {
      const key = `${ref.partition}/${ref.path}`;
      let p = apexFacts.get(key);
      if (!p) {
        const o = (async () => {
          await mkdir(dirname(ref.localPath), { recursive: true });
          await adb.pull(remotePath(ref), ref.localPath);
          return openApex(ref.localPath, join(work, 'apex-payloads', String(opened.length)));
        })();
        opened.push(o);
        p = o.then(readApexFacts);
        apexFacts.set(key, p);
      }
      return p;
    },
    async settings(ns, key) {
      const v = (await run(`settings get ${ns} ${q(key)}`)).trim();
      return v === '' || v === 'null' ? null : v;
    },
    async kernelCmdline() {
      const v = (await run('cat /proc/cmdline')).trim();
      return v || null;
    },
    async vbmeta() {
      return null;
    },
    shell: run,
    async close() {
      for (const o of opened) await (await o.catch(() => null))?.close();
      if (ownWork) await rm(work, { recursive: true, force: true });
    },
  };
  return view;
}
