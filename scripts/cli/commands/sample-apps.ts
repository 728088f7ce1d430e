import { readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { globalOpts } from '../main.ts';
import { makeOutput, table } from '../output.ts';
import { makeProgress } from '../progress.ts';

export function registerSampleApps(program: Command): void {
  program
    .command('sample-apps')
    .description(
      'generate the Omie sample apps (real APKs: aapt + smali + apksigner; real APEXes for .apex modules) declared `generated: true` in prebuilt-apps/',
    )
    .argument('[names...]', 'app folders (default: every generated app)')
    .addHelpText(
      'after',
      '\nThe signing key (and the AVB key of the APEX payloads) is created on first run in $OMIE_HOME/keys/omie-sample-apps (default ~/.omie), never in the repo.',
    )
    .action(async (names: string[], _o, cmd: Command) => {
      const { json } = globalOpts(cmd);
      const out = makeOutput(json);
      const { findRepoRoot } = await import('../../model/index.ts');
      const { generateSampleApps } = await import('../../sample/apps.ts');
      const root = findRepoRoot(process.cwd());
      const all = names.length ? names : readdirSync(join(root, 'prebuilt-apps')).sort();
      const progress = makeProgress(json);
      const apps = await generateSampleApps(resolve(root), all, progress);
      progress.stop();
      out.result(apps, (a) =>
        table(
          a.map((x) => [x.name, x.package, x.sha256.slice(0, 16)]),
          ['app', 'package', 'sha256'],
        ),
      );
    });
}
