import type { Command } from 'commander';
import { ExitCode } from '../../errors.ts';
import type { DoctorReport } from '../../host/doctor.ts';
import { globalOpts } from '../main.ts';
import { makeOutput, table } from '../output.ts';

export function registerDoctor(program: Command): void {
  program
    .command('doctor')
    .description('check host tools, their versions, Node, and USB/udev access for real devices')
    .addHelpText(
      'after',
      '\nExit 0 when everything required is present, 3 otherwise. --json lists every tool with found, version, debianPackage.',
    )
    .action(async (_opts, cmd: Command) => {
      const out = makeOutput(globalOpts(cmd).json);
      const { runDoctor } = await import('../../host/doctor.ts');
      const report = await runDoctor();
      out.result(report, human);
      // Missing USB access does not stop builds or the virtual device, so it only warns.
      const blocking =
        !report.node.ok ||
        report.tools.some((t) => t.required && !t.found) ||
        report.files.some((f) => f.required && !f.found);
      process.exitCode = blocking ? ExitCode.environment : ExitCode.ok;
    });
}

function human(r: DoctorReport): string {
  const rows = r.tools.map((t) => [
    t.found ? 'ok' : t.required ? 'MISSING' : 'missing',
    t.name,
    t.version ?? (t.found ? '(no version flag)' : ''),
    t.debianPackage,
  ]);
  const lines = [
    `node ${r.node.version} ${r.node.ok ? 'ok' : `too old, need ${r.node.required}`}`,
    '',
    table(rows, ['', 'tool', 'version', 'debian package']),
  ];
  for (const f of r.files)
    lines.push(`${f.found ? 'ok' : f.required ? 'MISSING' : 'missing'}  ${f.path} (${f.debianPackage})`);
  const missing = [
    ...r.tools.filter((t) => !t.found).map((t) => t.debianPackage),
    ...r.files.filter((f) => !f.found).map((f) => f.debianPackage),
  ];
  if (missing.length)
    lines.push(
      '',
      `To install what is missing: sudo apt-get update && sudo apt-get install -y ${[...new Set(missing)].join(' ')}`,
    );
  lines.push('', 'USB:');
  for (const u of r.usb)
    lines.push(`  ${u.ok ? 'ok' : 'WARN'}  ${u.message}${u.fix ? `\n        fix: ${u.fix}` : ''}`);
  return lines.join('\n');
}
