/**
 * Runs debugfs (e2fsprogs) in batch mode and splits its output per command. debugfs echoes each
 * command as "debugfs: <command>" on stdout before the command's own output, and prints errors on
 * stderr (unordered relative to stdout), so callers get per-command stdout plus the error lines.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EnvironmentError, InputError } from '../errors.ts';
import { runTool } from '../host/tools.ts';

export interface DebugfsResult {
  /** Output of each command, in order (without the echoed command line). */
  outputs: string[];
  /** stderr lines that are errors (the version banner is dropped). */
  errors: string[];
}

/**
 * Quotes one argument for debugfs's command parser (libss ss_parse): arguments with spaces or quotes
 * are double-quoted, a quote inside being written twice. Line breaks and NUL cannot be passed.
 */
export function dq(arg: string): string {
  if (/[\n\r\0]/.test(arg))
    throw new InputError(`path cannot be passed to debugfs: ${JSON.stringify(arg)}`, {
      code: 'EXT4_PATH',
      context: { path: arg },
    });
  return /[\s\\'"#;]/.test(arg) || arg === '' ? `"${arg.replace(/"/g, '""')}"` : arg;
}

export async function debugfs(
  image: string,
  commands: string[],
  opts: { write?: boolean; epoch?: number } = {},
): Promise<DebugfsResult> {
  if (commands.length === 0) return { outputs: [], errors: [] };
  const dir = await mkdtemp(join(tmpdir(), 'omie-debugfs-'));
  try {
    const cmdFile = join(dir, 'cmds');
    await writeFile(cmdFile, `${commands.join('\n')}\n`);
    const env: Record<string, string> = {};
    if (opts.epoch !== undefined) {
      // debugfs stamps new inodes and touched directories with "now": pin it for reproducible images.
      env.E2FSPROGS_FAKE_TIME = String(opts.epoch);
    }
    const args = [...(opts.write ? ['-w'] : []), '-f', cmdFile, image];
    const r = await runTool('debugfs', args, { reject: false, env, maxBuffer: 1024 * 1024 * 1024 });
    if (r.exitCode !== 0)
      throw new EnvironmentError(
        `debugfs failed on ${image}: ${r.stderr.trim().split('\n').slice(-3).join(' ')}`,
        {
          code: 'DEBUGFS_FAILED',
          context: { image, exitCode: r.exitCode },
        },
      );
    const outputs: string[] = [];
    let cur: string[] | null = null;
    for (const line of r.stdout.split('\n')) {
      if (line.startsWith('debugfs: ')) {
        if (cur) outputs.push(cur.join('\n'));
        cur = [];
      } else if (cur) cur.push(line);
    }
    if (cur) outputs.push(cur.join('\n'));
    const errors = r.stderr
      .split('\n')
      .map((l) => l.trimEnd())
      .filter((l) => l && !/^debugfs \d+\.\d+/.test(l));
    return { outputs, errors };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Throws when a write session reported errors (debugfs goes on after a failed command). */
export function assertNoErrors(image: string, r: DebugfsResult, what: string): void {
  if (r.errors.length === 0) return;
  throw new EnvironmentError(
    `debugfs reported errors while ${what} on ${image}: ${r.errors.slice(0, 5).join('; ')}`,
    {
      code: 'DEBUGFS_ERRORS',
      context: { image, errors: r.errors.slice(0, 50) },
    },
  );
}
