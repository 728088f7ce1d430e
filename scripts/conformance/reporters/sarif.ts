/**
 * SARIF 2.1.0 (OASIS) for code-scanning UIs: one rule per requirement (help = rationale), one
 * result per failing, erroring or waived requirement (waived as a suppression), located at the
 * partition/file of its evidence, and one `notApplicable` result (level none) per requirement
 * that did not apply, with the reason.
 */
import type { Report, RequirementResult } from '../spec-schema.ts';

export const SARIF_SCHEMA = 'https://json.schemastore.org/sarif-2.1.0.json';

function level(r: RequirementResult): 'error' | 'warning' | 'note' {
  if (r.status === 'error') return 'error';
  return r.level === 'MUST' ? 'error' : 'warning';
}

function locations(r: RequirementResult) {
  const seen = new Set<string>();
  const out: Array<Record<string, unknown>> = [];
  for (const e of r.evidence) {
    if (!e.partition && !e.file) continue;
    // A relative URI reference: each path segment percent-encoded (file names may hold spaces, <, &).
    const uri = [e.partition, ...(e.file ?? '').split('/')]
      .filter((s): s is string => Boolean(s))
      .map((s) => encodeURIComponent(s))
      .join('/');
    if (seen.has(uri)) continue;
    seen.add(uri);
    out.push({
      physicalLocation: { artifactLocation: { uri, uriBaseId: 'IMAGE' } },
      message: { text: e.detail },
    });
    if (out.length >= 10) break;
  }
  return out;
}

export function sarifLog(report: Report): Record<string, unknown> {
  const rules = report.results.map((r) => ({
    id: r.id,
    name: r.title.replace(/[^A-Za-z0-9]+(.)?/g, (_m, c: string | undefined) => (c ? c.toUpperCase() : '')),
    shortDescription: { text: r.title },
    fullDescription: { text: `${r.title}. ${r.rationale}` },
    help: {
      text: `${r.rationale}\n\nHow it is checked: ${r.howChecked}`,
      markdown: `**Why:** ${r.rationale}\n\n**How it is checked (${report.profile}):** ${r.howChecked}`,
    },
    defaultConfiguration: { level: r.level === 'MUST' ? 'error' : 'warning' },
    properties: { level: r.level, section: r.section, tags: ['omie', 'conformance', `section-${r.section}`] },
  }));
  const index = new Map(report.results.map((r, i) => [r.id, i]));
  const results = report.results
    .filter((r) => r.status === 'fail' || r.status === 'error' || r.status === 'waived')
    .map((r) => {
      const evidence = r.evidence
        .map((e) => e.detail)
        .slice(0, 5)
        .join('; ');
      const res: Record<string, unknown> = {
        ruleId: r.id,
        ruleIndex: index.get(r.id),
        level: level(r),
        kind: 'fail',
        message: { text: `${r.message}${evidence ? ` — ${evidence}` : ''}` },
        properties: { status: r.status, evidence: r.evidence },
      };
      const locs = locations(r);
      if (locs.length) res.locations = locs;
      if (r.status === 'waived' && r.waiver)
        res.suppressions = [
          {
            kind: 'external',
            status: 'accepted',
            justification: `${r.waiver.reason} (until ${r.waiver.expires}, ${r.waiver.source})`,
          },
        ];
      return res;
    });
  const notApplicable = report.results
    .filter((r) => r.status === 'not-applicable')
    .map((r) => ({
      ruleId: r.id,
      ruleIndex: index.get(r.id),
      // SARIF §3.27.10: a result whose kind is not `fail` has level `none`.
      kind: 'notApplicable',
      level: 'none',
      message: { text: r.message },
      properties: { status: r.status },
    }));
  return {
    $schema: SARIF_SCHEMA,
    version: '2.1.0',
    runs: [
      {
        tool: {
          driver: {
            name: 'omie check',
            version: report.tool.version,
            semanticVersion: report.tool.version,
            informationUri: 'https://omie.example/spec',
            rules,
            properties: { specVersion: report.spec.version, specSha256: report.spec.sha256 },
          },
        },
        originalUriBaseIds: { IMAGE: { description: { text: `partitions of ${report.target.input}` } } },
        invocations: [{ executionSuccessful: report.summary.error === 0, startTimeUtc: report.startedAt }],
        results: [...results, ...notApplicable],
        properties: { profile: report.profile, summary: report.summary, target: report.target },
      },
    ],
  };
}
