import type { Command } from 'commander';
import { ExitCode, InputError } from '../../errors.ts';
import type { ModelKind } from '../../model/schemas.ts';
import { globalOpts } from '../main.ts';
import { makeOutput } from '../output.ts';

export function registerValidate(program: Command): void {
  program
    .command('validate')
    .description('validate device, product, app and overlay YAML files against their schemas and each other')
    .argument(
      '<file...>',
      'YAML files (kind guessed from the name: device.yaml, app.yaml, overlay.yaml, products/*.yaml)',
    )
    .option('--kind <kind>', 'force the kind: device | product | app | overlay')
    .addHelpText(
      'after',
      '\nEvery problem is printed as file:line:col: field.path: message (expected …, found …). Exit 0 valid, 2 invalid.',
    )
    .action(async (files: string[], opts: { kind?: string }, cmd: Command) => {
      const out = makeOutput(globalOpts(cmd).json);
      if (opts.kind && !['device', 'product', 'app', 'overlay'].includes(opts.kind)) {
        throw new InputError(`--kind must be device, product, app or overlay, not ${opts.kind}`, {
          code: 'USAGE',
        });
      }
      const { formatIssue, validateFile } = await import('../../model/index.ts');
      const results = [];
      for (const f of files)
        results.push({ file: f, ...(await validateFile(f, opts.kind as ModelKind | undefined)) });
      const ok = results.every((r) => r.issues.length === 0);
      out.result({ ok, files: results }, (v) =>
        v.files
          .map((r) =>
            r.issues.length === 0 ? `ok  ${r.file} (${r.kind})` : r.issues.map(formatIssue).join('\n'),
          )
          .join('\n'),
      );
      process.exitCode = ok ? ExitCode.ok : ExitCode.input;
    });
}
