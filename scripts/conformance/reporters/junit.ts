/**
 * JUnit XML (the schema Jenkins and most CI dashboards read): one <testsuite> per spec section,
 * one <testcase> per requirement; fail → <failure>, error → <error>, waived / not-applicable →
 * <skipped> with the reason.
 */
import type { Report, RequirementResult } from '../spec-schema.ts';
import { evidenceLine } from './text.ts';

export function xmlEscape(s: string): string {
  // XML 1.0 forbids most C0 controls even escaped: drop them.
  return s
    .replace(/[\u0000-\u0008\u000b\u000c\u000e-\u001f\ufffe\uffff]/g, '')
    .replace(/[&<>"']/g, (c) => `&${{ '&': 'amp', '<': 'lt', '>': 'gt', '"': 'quot', "'": 'apos' }[c]};`);
}

function evidenceText(r: RequirementResult): string {
  return r.evidence.map((e) => `- ${evidenceLine(e)}`).join('\n');
}

const secs = (ms: number) => (ms / 1000).toFixed(3);

export function junitXml(report: Report): string {
  const bySection = new Map<string, RequirementResult[]>();
  for (const r of report.results)
    bySection.set(r.section.split('.')[0], [...(bySection.get(r.section.split('.')[0]) ?? []), r]);
  const count = (rs: RequirementResult[], ...s: string[]) => rs.filter((r) => s.includes(r.status)).length;
  const all = report.results;
  const lines = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    `<testsuites name="${xmlEscape(`Omie conformance ${report.spec.version} (${report.profile})`)}" tests="${all.length}" failures="${count(all, 'fail')}" errors="${count(all, 'error')}" time="${secs(report.durationMs)}">`,
  ];
  for (const [section, rs] of bySection) {
    const time = rs.reduce((a, r) => a + r.durationMs, 0);
    lines.push(
      `  <testsuite name="omie.conformance.${xmlEscape(section)}" tests="${rs.length}" failures="${count(rs, 'fail')}" errors="${count(rs, 'error')}" skipped="${count(rs, 'waived', 'not-applicable')}" time="${secs(time)}" timestamp="${report.startedAt.replace(/\.\d+Z$/, '')}" hostname="${xmlEscape(report.target.input)}">`,
    );
    lines.push('    <properties>');
    lines.push(`      <property name="spec.version" value="${xmlEscape(report.spec.version)}"/>`);
    lines.push(`      <property name="profile" value="${report.profile}"/>`);
    lines.push(`      <property name="target" value="${xmlEscape(report.target.input)}"/>`);
    // JUnit has one `skipped` count: say how many of them were waived and how many did not apply.
    lines.push(`      <property name="omie.waived" value="${count(rs, 'waived')}"/>`);
    lines.push(`      <property name="omie.notApplicable" value="${count(rs, 'not-applicable')}"/>`);
    lines.push('    </properties>');
    for (const r of rs) {
      const name = `${r.id} [${r.level}] ${r.title}`;
      const head = `    <testcase name="${xmlEscape(name)}" classname="omie.conformance.${xmlEscape(r.section)}" time="${secs(r.durationMs)}"`;
      const body = `${r.message}\n${evidenceText(r)}\n\nWhy: ${r.rationale}\nHow checked: ${r.howChecked}`;
      if (r.status === 'pass') lines.push(`${head}/>`);
      else if (r.status === 'fail')
        lines.push(
          `${head}>`,
          `      <failure message="${xmlEscape(r.message)}" type="${r.level}">${xmlEscape(body)}</failure>`,
          '    </testcase>',
        );
      else if (r.status === 'error')
        lines.push(
          `${head}>`,
          `      <error message="${xmlEscape(r.message)}" type="error">${xmlEscape(body)}</error>`,
          '    </testcase>',
        );
      else
        lines.push(
          `${head}>`,
          `      <skipped message="${xmlEscape(`${r.status}: ${r.message}`)}"/>`,
          '    </testcase>',
        );
    }
    lines.push('  </testsuite>');
  }
  lines.push('</testsuites>', '');
  return lines.join('\n');
}
