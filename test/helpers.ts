import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { execa } from 'execa';

export const ROOT = resolve(import.meta.dirname, '..');

/** A per-area scratch directory under test/.work (git-ignored). */
export function workDir(area: string): string {
  const d = resolve(ROOT, 'test/.work', area);
  mkdirSync(d, { recursive: true });
  return d;
}

/** Runs the real `omie` CLI as a user would. */
export async function omie(args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}) {
  const r = await execa(process.execPath, [resolve(ROOT, 'scripts/omie.mjs'), ...args], {
    reject: false,
    cwd: opts.cwd ?? ROOT,
    env: opts.env,
  });
  return { stdout: String(r.stdout), stderr: String(r.stderr), exitCode: r.exitCode ?? -1 };
}

/** ../shared/oracles, present in CI; absent elsewhere (only cross-checks are then skipped). */
export const ORACLES = resolve(ROOT, '../shared/oracles');

/**
 * Deterministic PRNG (mulberry32) for fuzzing, so a failing case can be replayed by its seed.
 */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Returns a copy of `buf` with a few random mutations (bit flips, byte sets, truncation, splices). */
export function mutate(buf: Buffer, rnd: () => number): Buffer {
  let b = Buffer.from(buf);
  const n = 1 + Math.floor(rnd() * 4);
  for (let i = 0; i < n; i++) {
    const op = Math.floor(rnd() * 5);
    const at = Math.floor(rnd() * Math.max(1, b.length));
    if (op === 0 && b.length) b[at] ^= 1 << Math.floor(rnd() * 8);
    else if (op === 1 && b.length) b[at] = Math.floor(rnd() * 256);
    else if (op === 2) b = b.subarray(0, at);
    else if (op === 3 && b.length >= 4)
      b.writeUInt32LE(rnd() < 0.5 ? 0xffffffff : Math.floor(rnd() * 0x100000000), Math.min(at, b.length - 4));
    else if (op === 4)
      b = Buffer.concat([b.subarray(0, at), Buffer.from([Math.floor(rnd() * 256)]), b.subarray(at)]);
  }
  return b;
}
