/** A short Markdown summary for GitHub Actions' job summary ($GITHUB_STEP_SUMMARY). */
import type { Report } from '../spec-schema.ts';

const cell = (s: string) => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

export function markdownSummary(report: Report): string {
  const s = report.summary;
  const lines = [
    `## Omie conformance: ${s.conforms ? '✅ conforms' : '❌ does not conform'}`,
    '',
    `\`${report.target.input}\` · profile **${report.profile}** · spec ${report.spec.version}${report.product ? ` · product ${report.product.name} ${report.product.version}` : ''}`,
    '',
    '| pass | fail | error | waived | n/a |',
    '| ---: | ---: | ---: | ---: | ---: |',
    `| ${s.pass} | ${s.fail} | ${s.error} | ${s.waived} | ${s.notApplicable} |`,
    '',
  ];
  const bad = report.results.filter(
    (r) => r.status === 'fail' || r.status === 'error' || r.status === 'waived',
  );
  if (bad.length) {
    lines.push('| result | requirement | level | why |', '| --- | --- | --- | --- |');
    for (const r of bad)
      lines.push(`| ${r.status} | **${r.id}** ${cell(r.title)} | ${r.level} | ${cell(r.message)} |`);
    lines.push('');
  }
  return `${lines.join('\n')}\n`;
}
