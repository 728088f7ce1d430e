/** Writes a report in the requested formats; appends a job summary on GitHub Actions. */
import { appendFile, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InputError } from '../../errors.ts';
import type { Report } from '../spec-schema.ts';
import { htmlReport } from './html.ts';
import { junitXml } from './junit.ts';
import { markdownSummary } from './markdown.ts';
import { sarifLog } from './sarif.ts';

export const REPORT_FORMATS = ['json', 'junit', 'sarif', 'html'] as const;
export type ReportFormat = (typeof REPORT_FORMATS)[number];

export const REPORT_FILES: Record<ReportFormat, string> = {
  json: 'report.json',
  junit: 'junit.xml',
  sarif: 'report.sarif',
  html: 'report.html',
};

export function parseFormats(list: string): ReportFormat[] {
  const out: ReportFormat[] = [];
  for (const f of list
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    if (!(REPORT_FORMATS as readonly string[]).includes(f))
      throw new InputError(`unknown report format ${JSON.stringify(f)}`, {
        code: 'CHECK_FORMAT',
        context: { expected: REPORT_FORMATS.join(', '), found: f },
      });
    out.push(f as ReportFormat);
  }
  return out;
}

export function renderReport(report: Report, format: ReportFormat): string {
  switch (format) {
    case 'json':
      return `${JSON.stringify(report, null, 2)}\n`;
    case 'junit':
      return junitXml(report);
    case 'sarif':
      return `${JSON.stringify(sarifLog(report), null, 2)}\n`;
    case 'html':
      return htmlReport(report);
  }
}

/** Writes each format into `dir`; returns format → path. */
export async function writeReports(
  report: Report,
  dir: string,
  formats: readonly ReportFormat[],
): Promise<Record<string, string>> {
  await mkdir(dir, { recursive: true });
  const out: Record<string, string> = {};
  for (const f of formats) {
    const p = join(dir, REPORT_FILES[f]);
    await writeFile(p, renderReport(report, f));
    out[f] = p;
  }
  return out;
}

/** Appends the Markdown summary to $GITHUB_STEP_SUMMARY when running on GitHub Actions. */
export async function writeStepSummary(
  report: Report,
  env: NodeJS.ProcessEnv = process.env,
): Promise<string | undefined> {
  const file = env.GITHUB_STEP_SUMMARY;
  if (!file) return undefined;
  await appendFile(file, markdownSummary(report));
  return file;
}
