import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import type { BenchFn, BenchResult } from '../../bench/types.ts';
import { InputError } from '../../errors.ts';
import { globalOpts } from '../main.ts';
import { makeOutput, table } from '../output.ts';

/**
 * Bench areas, each a scripts/bench/<area>.ts exporting `bench`; imported by name (not by a
 * computed path), so the bundled CLI carries them too.
 */
const BENCHES: Record<string, () => Promise<{ bench: BenchFn }>> = {
  adb: () => import('../../bench/adb.ts'),
  apk: () => import('../../bench/apk.ts'),
  avb: () => import('../../bench/avb.ts'),
  build: () => import('../../bench/build.ts'),
  flash: () => import('../../bench/flash.ts'),
  sparse: () => import('../../bench/sparse.ts'),
};

function areas(): string[] {
  return Object.keys(BENCHES).sort();
}

export function registerBench(program: Command): void {
  program
    .command('bench')
    .description(
      'benchmarks: our tools side by side with the reference tools in the same run, printed as ratios',
    )
    .option('--only <areas>', `comma-separated areas (${areas().join(', ')})`)
    .option('--size-mib <n>', 'image size for image benchmarks', '1024')
    .option('--work-dir <dir>', 'scratch folder (needs a few GiB)', '.omie/bench')
    .addHelpText(
      'after',
      '\nTimes are machine-dependent; the ratios (measured in the same run) are what to compare against the goals.',
    )
    .action(async (o: { only?: string; sizeMib: string; workDir: string }, cmd: Command) => {
      const out = makeOutput(globalOpts(cmd).json);
      const wanted = o.only ? o.only.split(',').map((s) => s.trim()) : areas();
      const unknown = wanted.filter((w) => !areas().includes(w));
      if (unknown.length)
        throw new InputError(`unknown bench area(s): ${unknown.join(', ')}`, {
          code: 'USAGE',
          context: { known: areas() },
        });
      const results: Array<BenchResult & { area: string }> = [];
      for (const area of wanted) {
        const workDir = resolve(o.workDir, area);
        mkdirSync(workDir, { recursive: true });
        const mod = await BENCHES[area]();
        out.info(`== ${area}`);
        const log = (line: string) => (out.json ? process.stderr.write(`${line}\n`) : out.info(`   ${line}`));
        for (const r of await mod.bench({ sizeMiB: Number(o.sizeMib), workDir, log }))
          results.push({ area, ...r });
      }
      out.result(results, (rs) =>
        table(
          rs.map((r) => [
            r.area,
            r.name,
            r.ours.toFixed(3),
            `${r.reference.toFixed(3)} (${r.referenceName})`,
            r.ratio.toFixed(2),
            r.floorRatio === undefined ? '' : `${r.floorRatio.toFixed(2)}x`,
            r.goal,
            r.notes ?? '',
          ]),
          ['area', 'benchmark', 'ours', 'reference', 'ratio', 'vs floor', 'goal', 'notes'],
        ),
      );
    });
}
