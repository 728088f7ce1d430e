import { writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { InputError } from '../../errors.ts';
import { globalOpts } from '../main.ts';
import { makeOutput } from '../output.ts';

export function registerAudit(program: Command): void {
  program
    .command('audit')
    .description(
      'app health warnings: what in an APK could breach the customer side of an Omie (trackers, permissions, signers, …)',
    )
    .argument('<apk...>', 'APK files')
    .option('--format <fmt>', 'text | json | html', 'text')
    .option('--html <file>', 'also write the HTML report to a file')
    .option(
      '--personal-cloud <package>',
      "package of the owner's personal cloud (backups to it are not flagged)",
    )
    .addHelpText(
      'after',
      '\n`--format json` (or --json) is the contract an on-device installer consumes: spec/schemas/audit.schema.json.\nExit 0 when no app has a high-severity warning, 1 otherwise.',
    )
    .action(
      async (apks: string[], o: { format: string; html?: string; personalCloud?: string }, cmd: Command) => {
        const json = globalOpts(cmd).json || o.format === 'json';
        if (!['text', 'json', 'html'].includes(o.format))
          throw new InputError(`--format must be text, json or html, not ${o.format}`, { code: 'USAGE' });
        const { auditApks } = await import('../../audit/index.ts');
        const { auditHtml } = await import('../../audit/html.ts');
        const report = await auditApks(apks, { personalCloudPackage: o.personalCloud });
        if (o.html) await writeFile(o.html, auditHtml(report));
        if (o.format === 'html' && !json) process.stdout.write(auditHtml(report));
        else {
          makeOutput(json).result(report, (r) =>
            r.apps
              .map((a) =>
                [
                  `${a.label ?? '?'} (${a.package ?? a.file}) — ${a.warnings.length ? `${a.warnings.length} warning(s)` : 'no warnings'}`,
                  ...a.warnings.map(
                    (w) =>
                      `  [${w.severity.toUpperCase()}] ${w.title}: ${w.explanation}\n      ${w.id}: ${w.details.join('; ')}`,
                  ),
                ].join('\n'),
              )
              .join('\n\n'),
          );
        }
        process.exitCode = report.apps.some((a) => a.worst === 'high') ? 1 : 0;
      },
    );
}
