import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { resolve } from 'node:path';
import { execa } from 'execa';
import { type FixtureInput, inputName, inputsDigest } from './fixture-inputs.ts';

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

/**
 * Runs `make` once per test run across vitest workers: the first caller creates `dir` under a
 * lock folder; the others wait for its `.done` marker. The marker records the digest of `inputs`
 * (test/fixture-inputs.ts: the files and generator code the fixture is made from), so a fixture
 * cached under test/.work by an earlier run is made again when what it is made from changed.
 */
export async function onceInDir(
  dir: string,
  inputs: readonly FixtureInput[],
  make: () => Promise<void>,
  timeoutMs = 900_000,
): Promise<void> {
  const done = `${dir}.done`;
  const lock = `${dir}.lock`;
  const digest = inputsDigest(inputs);
  const current = () => {
    try {
      return (JSON.parse(readFileSync(done, 'utf8')) as { digest?: string }).digest === digest;
    } catch {
      return false; // no marker, or one from before markers held a digest
    }
  };
  const t0 = Date.now();
  for (;;) {
    if (current()) return;
    try {
      mkdirSync(lock, { recursive: false });
    } catch {
      if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${dir}`);
      await new Promise((r) => setTimeout(r, 1000));
      continue;
    }
    try {
      if (!current()) {
        rmSync(done, { force: true });
        rmSync(dir, { recursive: true, force: true });
        await make();
        const record = { digest, inputs: inputs.map(inputName), made: new Date().toISOString() };
        writeFileSync(done, `${JSON.stringify(record, null, 2)}\n`);
      }
      return;
    } finally {
      rmSync(lock, { recursive: true, force: true });
    }
  }
}

/** What the sample tree fixture is made from: the kit's tree (its APKs are made again) and the app generator. */
const SAMPLE_TREE_INPUTS: FixtureInput[] = [
  'device',
  'overlays',
  { path: 'prebuilt-apps', skip: /\.apk(\.sha256)?$/ },
  'scripts/sample/apps.ts',
  'scripts/keys/store.ts',
];

/** What scripts/sample/realistic-base.ts makes its base from: its own code (it follows its imports). */
export const REALISTIC_BASE_INPUTS: FixtureInput[] = ['scripts/sample/realistic-base.ts'];

/** Environment for the sample product in tests: its own OMIE_HOME (keys) under test/.work. */
export const SAMPLE_HOME = resolve(ROOT, 'test/.work/omie-home');

/**
 * A copy of the kit's device/, overlays/ and prebuilt-apps/ with the sample apps generated and
 * the sample partner keys created in SAMPLE_HOME, plus the sample base. Made once per run.
 */
export async function sampleFixture(): Promise<{
  tree: string;
  product: string;
  base: string;
  home: string;
}> {
  const { cpSync, mkdirSync } = await import('node:fs');
  const { join } = await import('node:path');
  const tree = resolve(ROOT, 'test/.work/sample-tree');
  const base = resolve(ROOT, 'test/.work/product-base');
  process.env.OMIE_HOME = SAMPLE_HOME;
  await onceInDir(tree, SAMPLE_TREE_INPUTS, async () => {
    mkdirSync(tree, { recursive: true });
    for (const d of ['device', 'overlays']) cpSync(join(ROOT, d), join(tree, d), { recursive: true });
    cpSync(join(ROOT, 'prebuilt-apps'), join(tree, 'prebuilt-apps'), {
      recursive: true,
      filter: (s) => !/\.(apk|c?apex)(\.sha256)?$/.test(s),
    });
    const { generateSampleApps } = await import('../scripts/sample/apps.ts');
    const { initKeys } = await import('../scripts/keys/store.ts');
    const { readdirSync } = await import('node:fs');
    await generateSampleApps(tree, readdirSync(join(tree, 'prebuilt-apps')).sort());
    await initKeys('omie-sample-partner');
  });
  await onceInDir(base, ['scripts/sample/base.ts'], async () => {
    const { generateSampleBase } = await import('../scripts/sample/base.ts');
    await generateSampleBase({ outDir: base });
  });
  return {
    tree,
    product: join(tree, 'device/omie/tablet/products/omie-tablet.yaml'),
    base,
    home: SAMPLE_HOME,
  };
}

/** Flips the bits of `mask` in the byte at `offset` of a file, in place (tamper tests). */
export async function flipByte(path: string, offset: number, mask = 0x40): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, offset);
    b[0] ^= mask;
    await fh.write(b, 0, 1, offset);
  } finally {
    await fh.close();
  }
}
