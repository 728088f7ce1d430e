/**
 * Plain-text lines for people at a terminal: one evidence item as `partition/path: package …:
 * detail`, and, for a report that fails, each failing requirement with its first offenders, so
 * a refused build or a failing `omie check` says what to fix without opening a report.
 */
import type { Evidence, Report, RequirementResult } from '../spec-schema.ts';

/** `product/priv-app/X/X.apk: package org.x, ro.foo=bar: detail`. */
export function evidenceLine(e: Evidence): string {
  const where = [e.partition, e.file].filter(Boolean).join('/');
  const what = [
    e.package && `package ${e.package}`,
    e.prop && `${e.prop}${e.value !== undefined ? `=${e.value}` : ''}`,
    !e.prop && e.value && `value ${e.value}`,
  ]
    .filter(Boolean)
    .join(', ');
  return [where, what, e.detail].filter(Boolean).join(': ');
}

/** Requirements that make the report not conform, or count against it: failed or errored. */
export function failingResults(report: Report): RequirementResult[] {
  return report.results.filter((r) => r.status === 'fail' || r.status === 'error');
}

export interface DigestOptions {
  /** Evidence lines shown per requirement (default 5). */
  perRequirement?: number;
  /** Where the full report is, when one was written. */
  reportPath?: string;
}

/**
 * For each failing requirement: `ID [LEVEL] title: message`, then its first offenders. Empty
 * when nothing failed.
 */
export function failureDigest(report: Report, opts: DigestOptions = {}): string[] {
  const n = opts.perRequirement ?? 5;
  const lines: string[] = [];
  for (const r of failingResults(report)) {
    lines.push(`${r.id} [${r.level}] ${r.title}: ${r.message}`);
    for (const e of r.evidence.slice(0, n)) lines.push(`  - ${evidenceLine(e)}`);
    if (r.evidence.length > n)
      lines.push(
        `  … and ${r.evidence.length - n} more${opts.reportPath ? ` (see ${opts.reportPath})` : ''}`,
      );
  }
  return lines;
}
