import type { Command } from 'commander';
import { ExitCode } from '../../errors.ts';
import { globalOpts } from '../main.ts';
import { makeOutput } from '../output.ts';

export function registerSchemas(program: Command): void {
  program
    .command('schemas')
    .description(
      "check (or with --write regenerate) the JSON Schemas in spec/schemas/ from the kit's schema definitions",
    )
    .option('--write', 'rewrite stale schema files')
    .addHelpText(
      'after',
      '\nExit 0 when every schema file is up to date (or was rewritten), 1 when one is stale.',
    )
    .action(async (opts: { write?: boolean }, cmd: Command) => {
      const out = makeOutput(globalOpts(cmd).json);
      const { syncSchemas } = await import('../json-schemas.ts');
      const { findRepoRoot } = await import('../../model/index.ts');
      const status = await syncSchemas(findRepoRoot(process.cwd()), Boolean(opts.write));
      out.result(status, (s) =>
        s.map((x) => `${x.upToDate ? 'ok   ' : opts.write ? 'wrote' : 'STALE'} ${x.file}`).join('\n'),
      );
      process.exitCode = opts.write || status.every((s) => s.upToDate) ? ExitCode.ok : ExitCode.checkFailed;
    });
}
