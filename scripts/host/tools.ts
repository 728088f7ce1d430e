import { accessSync, constants, existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { Options as ExecaOptions } from 'execa';
import { EnvironmentError } from '../errors.ts';
import table from './tools.json' with { type: 'json' };

export interface HostTool {
  name: string;
  debianPackage: string;
  versionArgs: string[] | null;
  purpose: string;
  required: boolean;
}

export interface HostFile {
  path: string;
  debianPackage: string;
  purpose: string;
  required: boolean;
}

/** Debian's multiarch triplet for this machine, which library paths contain. */
const MULTIARCH: Record<string, string> = {
  x64: 'x86_64-linux-gnu',
  arm64: 'aarch64-linux-gnu',
  arm: 'arm-linux-gnueabihf',
  ia32: 'i386-linux-gnu',
  riscv64: 'riscv64-linux-gnu',
};

export const hostTools: readonly HostTool[] = table.tools;
export const hostFiles: readonly HostFile[] = table.files.map((f) => ({
  ...f,
  path: f.path.replace('$MULTIARCH', MULTIARCH[process.arch] ?? `${process.arch}-linux-gnu`),
}));

export const FRAMEWORK_RES = '/usr/share/android-framework-res/framework-res.apk';

const located = new Map<string, string | null>();

/** Absolute path of a command on PATH, or null. */
export function which(name: string): string | null {
  if (located.has(name)) return located.get(name)!;
  let found: string | null = null;
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, name);
    try {
      accessSync(p, constants.X_OK);
      found = p;
      break;
    } catch {
      /* not here */
    }
  }
  located.set(name, found);
  return found;
}

export function installHint(pkgs: string[]): string {
  return `install it with: sudo apt-get update && sudo apt-get install -y ${[...new Set(pkgs)].join(' ')} (or run \`npm start\`, which installs host tools as root)`;
}

/** Path of a host tool, or an EnvironmentError naming the Debian package that provides it. */
export function requireTool(name: string): string {
  const p = which(name);
  if (p) return p;
  const t = hostTools.find((x) => x.name === name);
  throw new EnvironmentError(`host tool not found: ${name}`, {
    code: 'TOOL_MISSING',
    context: { tool: name, debianPackage: t?.debianPackage },
    hint: installHint([t?.debianPackage ?? name]),
  });
}

export function requireFile(path: string): string {
  if (existsSync(path)) return path;
  const f = hostFiles.find((x) => x.path === path);
  throw new EnvironmentError(`host file not found: ${path}`, {
    code: 'FILE_MISSING',
    context: { path, debianPackage: f?.debianPackage },
    hint: installHint([f?.debianPackage ?? 'the package providing it']),
  });
}

export interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

// execa and its dependencies take ~85 ms to load: on first use, or ahead of it with
// preloadToolRunner while a command waits on I/O anyway.
let execaModule: Promise<typeof import('execa')> | undefined;
const loadExeca = () => {
  execaModule ??= import('execa');
  return execaModule;
};

/** Starts loading the process runner now, so that the first runTool does not wait for it. */
export function preloadToolRunner(): void {
  loadExeca().catch(() => {}); // a failure surfaces at the first runTool
}

/**
 * Runs a host tool. Non-zero exit becomes an EnvironmentError carrying the command line and
 * the tool's stderr, unless `reject: false`.
 */
export async function runTool(
  name: string,
  args: readonly string[],
  opts: ExecaOptions & { reject?: boolean } = {},
): Promise<RunResult> {
  const bin = requireTool(name);
  const { execa } = await loadExeca();
  const t0 = performance.now();
  const r = await execa(bin, args, { reject: false, stripFinalNewline: true, ...opts, encoding: 'utf8' });
  if (process.env.OMIE_TRACE_TOOLS)
    process.stderr.write(
      `omie: ${((performance.now() - t0) / 1000).toFixed(2)}s ${name} ${args.join(' ')}\n`,
    );
  const res: RunResult = {
    stdout: String(r.stdout ?? ''),
    stderr: String(r.stderr ?? ''),
    exitCode: r.exitCode ?? -1,
  };
  if (opts.reject !== false && res.exitCode !== 0) {
    throw new EnvironmentError(
      `${name} failed (exit ${res.exitCode}): ${lastLines(res.stderr || res.stdout)}`,
      {
        code: 'TOOL_FAILED',
        context: { tool: name, args, exitCode: res.exitCode, stderr: res.stderr.slice(-4000) },
      },
    );
  }
  return res;
}

function lastLines(s: string, n = 6): string {
  return s.trim().split('\n').slice(-n).join('\n');
}

/** First line that looks like a version for a tool, or null when the tool has no version flag. */
export async function toolVersion(t: HostTool): Promise<string | null> {
  if (!t.versionArgs) return null;
  const { execa } = await loadExeca();
  const r = await execa(t.name, t.versionArgs, { reject: false, timeout: 20_000, all: true });
  const out = String(r.all ?? '');
  const line = out.split('\n').find((l) => /\d+\.\d+/.test(l)) ?? out.split('\n')[0] ?? '';
  return line.trim() || null;
}
