/**
 * scripts/omie.mjs restarts itself with its memory settings: the exit code and signals must pass
 * through, and the real CLI process must not outlive a launcher that is killed.
 */
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { buildBundle } from '../../scripts/cli/bundle.mjs';
import { writePayload } from '../../scripts/formats/payload/writer.ts';
import { omie, ROOT, workDir } from '../helpers.ts';

const alive = (pid: number) =>
  existsSync(`/proc/${pid}`) && !/\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));

function childrenOf(pid: number): number[] {
  const path = `/proc/${pid}/task/${pid}/children`;
  return existsSync(path) ? readFileSync(path, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number) : [];
}

async function until(what: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!what()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Starts `omie sim` on free ports; resolves once it is listening, with both process ids. */
async function startSim(): Promise<{ launcher: ReturnType<typeof spawn>; cli: number }> {
  const launcher = spawn(
    process.execPath,
    [join(ROOT, 'scripts/omie.mjs'), 'sim', '--adb-port', '0', '--fastboot-port', '0'],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  launcher.stdout?.on('data', (d) => {
    out += d;
  });
  await until(() => /Ctrl-C stops it/.test(out));
  const [cli] = childrenOf(launcher.pid as number);
  return { launcher, cli };
}

let started: number[] = [];
afterEach(() => {
  for (const pid of started) if (alive(pid)) process.kill(pid, 'SIGKILL');
  started = [];
});

describe('omie launcher', () => {
  it('runs the CLI in a child with a small young generation and passes its exit code on', async () => {
    expect((await omie(['no-such-command'])).exitCode).toBe(2);
    const { launcher, cli } = await startSim();
    started.push(launcher.pid as number, cli);
    expect(readFileSync(`/proc/${cli}/cmdline`, 'utf8').split('\0')).toContain('--max-semi-space-size=4');
    expect(readFileSync(`/proc/${cli}/environ`, 'utf8').split('\0')).toContain(
      'MALLOC_MMAP_THRESHOLD_=1048576',
    );
    const exited = new Promise<number | null>((r) => launcher.once('exit', (code) => r(code)));
    launcher.kill('SIGTERM');
    expect(await exited).toBe(0); // the sim stops cleanly on SIGTERM, forwarded by the launcher
    await until(() => !alive(cli));
  }, 60_000);

  it('the CLI process exits when its launcher is killed with SIGKILL', async () => {
    const { launcher, cli } = await startSim();
    started.push(launcher.pid as number, cli);
    expect(alive(cli)).toBe(true);
    launcher.kill('SIGKILL');
    await until(() => !alive(cli), 10_000);
  }, 60_000);

  it('runs the bundled CLI while it matches the sources, and the sources once one differs', async () => {
    const dir = join(workDir('launcher'), 'bundle');
    const main = await buildBundle(dir);
    const env = { OMIE_BUNDLE_DIR: dir, OMIE_TRACE_LAUNCH: '1' };
    // --help reads the bench folder and `schemas` the spec folder, both relative to their own
    // modules: the bundle must keep each module's import.meta.
    const help = await omie(['--help'], { env });
    expect(help.stderr).toContain(`omie: running ${main}`);
    expect(help.stdout).toContain('Usage: omie');
    // Every bench area is carried (they are imported by name, not by a computed path).
    const benchHelp = await omie(['bench', '--help'], { env });
    const areas = readdirSync(join(ROOT, 'scripts/bench'))
      .filter((f) => f.endsWith('.ts') && f !== 'types.ts')
      .map((f) => f.slice(0, -3));
    expect(areas.length).toBeGreaterThan(3);
    for (const a of areas)
      expect(benchHelp.stdout.replace(/\s+/g, ' ')).toMatch(new RegExp(`areas \\(.*\\b${a}\\b`));
    // Worker threads get no TypeScript loader from the launcher: the bundle carries its own build
    // of the payload extractor's worker, and the sources boot theirs through tsx. Same bytes.
    const W = workDir('launcher-ota');
    const image = join(W, 'system.img');
    writeFileSync(image, Buffer.from(Array.from({ length: 64 * 4096 }, (_, i) => (i * 7919) >> 5)));
    const payload = join(W, 'payload.bin');
    await writePayload(payload, {
      partitions: [{ name: 'system', imagePath: image, ops: 'mixed' }],
      chunkSize: 16 * 4096,
    });
    for (const [runner, runEnv] of [
      [main, env],
      ['the sources (tsx)', { ...env, OMIE_NO_BUNDLE: '1' }],
    ] as const) {
      const out = join(W, runner === main ? 'bundled' : 'sources');
      const x = await omie(['--json', 'extract-ota', payload, out], { env: runEnv });
      expect(x.stderr).toContain(`omie: running ${runner}`);
      expect(x.exitCode, x.stderr).toBe(0);
      expect(readFileSync(join(out, 'system.img')).equals(readFileSync(image))).toBe(true);
    }
    expect(existsSync(join(dir, 'extract.worker.mjs'))).toBe(true);
    const schemas = await omie(['schemas'], { env });
    expect(schemas.exitCode).toBe(0);
    expect(schemas.stdout).toMatch(/ok +spec\/schemas\/product\.schema\.json/);
    expect((await omie(['--version'], { env: { ...env, OMIE_NO_BUNDLE: '1' } })).stderr).toContain(
      'running the sources (tsx)',
    );
    // A source changed since bundling (here: its recorded size no longer matches): the sources run.
    const manifest = join(dir, 'inputs.json');
    const m = JSON.parse(readFileSync(manifest, 'utf8')) as { inputs: Record<string, [number, number]> };
    m.inputs['scripts/errors.ts'][1] += 1;
    writeFileSync(manifest, JSON.stringify(m));
    const stale = await omie(['--version'], { env });
    expect(stale.stderr).toContain('running the sources (tsx)');
    expect(stale.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
  });
});
