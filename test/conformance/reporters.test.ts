import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Ajv2020 } from 'ajv/dist/2020.js';
import AjvDraft04 from 'ajv-draft-04';
import addFormats from 'ajv-formats';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { jsonSchemaText } from '../../scripts/cli/json-schemas.ts';
import { runChecks } from '../../scripts/conformance/engine.ts';
import { memoryView } from '../../scripts/conformance/memory-view.ts';
import { anchor } from '../../scripts/conformance/reporters/html.ts';
import { parseFormats, writeReports, writeStepSummary } from '../../scripts/conformance/reporters/index.ts';
import { markdownSummary } from '../../scripts/conformance/reporters/markdown.ts';
import { loadSpec } from '../../scripts/conformance/spec.ts';
import { loadSpecData } from '../../scripts/conformance/spec-data.ts';
import { conformanceSchemas, type Report, reportSchema } from '../../scripts/conformance/spec-schema.ts';
import { ROOT, workDir } from '../helpers.ts';
import { hostTool } from '../host-tools.ts';
import { cleanFixture } from './fixtures.ts';
import { JUNIT_XSD } from './junit-xsd.ts';
import { violations } from './violations.ts';

const dir = join(workDir('conformance'), 'reporters');
const XMLLINT = hostTool('xmllint');
const CHROMIUM = hostTool('chromium');
const withXmllint = it.skipIf(!XMLLINT.present);
const withChromium = it.skipIf(!CHROMIUM.present);
let report: Report;
let files: Record<string, string>;

/** A report with every status: 4 fails (one SHOULD), a waiver, an error, not-applicables. */
async function mixedReport(): Promise<Report> {
  const spec = await loadSpec(resolve(ROOT, 'spec'));
  const data = await loadSpecData(spec.dir);
  const f = cleanFixture();
  violations['2.1/C-0-1'].image?.apply(f); // Google package
  violations['3.2/C-0-3'].image?.apply(f); // SHOULD
  violations['6.1/C-0-6'].image?.apply(f); // waived below
  violations['6.2/C-0-1'].image?.apply(f); // su
  // No boot image and no cmdline descriptor: 6.2/C-0-2 does not apply, with the reason.
  f.sys.cmdline = null;
  f.sys.rawPartitions = ['vbmeta'];
  f.sys.files.product['etc/permissions/evil <&> "quoted".xml'] =
    '<permissions><privapp-permissions package="com.google.android.gsf"/></permissions>';
  return runChecks(spec, memoryView(f.sys, 'out/omie <tablet> & "images"'), {
    profile: 'image',
    product: f.product,
    data,
    now: new Date('2026-06-01T00:00:00Z'),
    waivers: [
      { id: '6.1/C-0-6', reason: 'partner HSM pending', expires: '2026-12-31', source: 'waivers.yaml' },
    ],
    checks: undefined,
  }).then(async (r) => {
    // Turn one result into an error, the way a crashing check would.
    const i = r.results.findIndex((x) => x.id === '7.1/C-0-3');
    r.results[i] = {
      ...r.results[i],
      status: 'error',
      message: 'internal error: boom',
      evidence: [{ detail: 'INTERNAL: boom' }],
    };
    const { summarize } = await import('../../scripts/conformance/engine.ts');
    r.summary = summarize(r.results);
    return r;
  });
}

beforeAll(async () => {
  await rm(dir, { recursive: true, force: true });
  await mkdir(dir, { recursive: true });
  report = await mixedReport();
  files = await writeReports(report, dir, parseFormats('json,junit,sarif,html'));
});

describe('report.json', () => {
  it('matches the zod schema and the published JSON Schema', async () => {
    const doc = JSON.parse(await readFile(files.json, 'utf8'));
    expect(() => reportSchema.parse(doc)).not.toThrow();
    const schema = JSON.parse(readFileSync(resolve(ROOT, 'spec/schemas/report.schema.json'), 'utf8'));
    const ajv = new Ajv2020({ strict: false, allErrors: true });
    addFormats.default(ajv);
    const validate = ajv.compile(schema);
    expect(validate(doc), JSON.stringify(validate.errors)).toBe(true);
    // A broken document is rejected (the schema is not vacuous).
    expect(validate({ ...doc, summary: { ...doc.summary, pass: 'many' } })).toBe(false);
    expect(doc.summary).toMatchObject({
      fail: 4,
      waived: 1,
      error: 1,
      mustFailed: 4,
      shouldFailed: 1,
      conforms: false,
    });
    expect(doc.results.find((r: { id: string }) => r.id === '6.2/C-0-2')).toMatchObject({
      status: 'not-applicable',
      message: expect.stringContaining('no kernel command line'),
    });
    // 6.2/C-0-2 and the three device-only requirements 6.4/C-1-1..3.
    expect(doc.summary.notApplicable).toBe(4);
  });

  it('the published schemas are generated from the zod schemas', () => {
    for (const { json, schema } of conformanceSchemas) {
      expect(readFileSync(resolve(ROOT, json), 'utf8'), `${json} is stale: run omie schemas --write`).toBe(
        jsonSchemaText(schema, json),
      );
    }
  });
});

describe('JUnit XML', () => {
  withXmllint(`validates against the JUnit XSD with xmllint ${XMLLINT.reason}`, async () => {
    const xmllint = XMLLINT.path;
    const xsd = join(dir, 'junit.xsd');
    await writeFile(xsd, JUNIT_XSD);
    const ok = await execa(xmllint, ['--noout', '--schema', xsd, files.junit], { reject: false });
    expect(ok.exitCode, ok.stderr).toBe(0);
    // The validator does catch a broken file (negative control).
    const broken = join(dir, 'broken.xml');
    await writeFile(
      broken,
      (await readFile(files.junit, 'utf8')).replace('<testcase name=', '<testcase nam='),
    );
    const bad = await execa(xmllint, ['--noout', '--schema', xsd, broken], { reject: false });
    expect(bad.exitCode).not.toBe(0);
  });

  it('has one testcase per requirement and the right outcome counts', async () => {
    const xml = await readFile(files.junit, 'utf8');
    expect((xml.match(/<testcase /g) ?? []).length).toBe(report.results.length);
    expect((xml.match(/<failure /g) ?? []).length).toBe(4);
    expect((xml.match(/<error /g) ?? []).length).toBe(1);
    expect((xml.match(/<skipped /g) ?? []).length).toBe(report.summary.waived + report.summary.notApplicable);
    expect((xml.match(/<skipped message="not-applicable: /g) ?? []).length).toBe(
      report.summary.notApplicable,
    );
    expect((xml.match(/<skipped message="waived: /g) ?? []).length).toBe(report.summary.waived);
    expect(xml).toContain('<skipped message="not-applicable: the image carries no kernel command line');
    const counted = (name: string) =>
      [...xml.matchAll(new RegExp(`<property name="${name}" value="(\\d+)"/>`, 'g'))].reduce(
        (n, m) => n + Number(m[1]),
        0,
      );
    expect(counted('omie.notApplicable')).toBe(report.summary.notApplicable);
    expect(counted('omie.waived')).toBe(report.summary.waived);
    expect(xml).toContain('&lt;tablet&gt; &amp; &quot;images&quot;');
  });
});

describe('SARIF', () => {
  it('validates against the SARIF 2.1.0 JSON schema', async () => {
    const schemaFile = resolve(ROOT, 'node_modules/@microsoft/jest-sarif/lib/schemas/sarif-2.1.0-rtm.5.json');
    expect(existsSync(schemaFile)).toBe(true);
    const ajv = new AjvDraft04.default({ strict: false, allErrors: true, unicodeRegExp: false });
    addFormats.default(ajv);
    const validate = ajv.compile(JSON.parse(readFileSync(schemaFile, 'utf8')));
    const doc = JSON.parse(await readFile(files.sarif, 'utf8'));
    expect(validate(doc), JSON.stringify(validate.errors?.slice(0, 5))).toBe(true);
    expect(validate({ ...doc, version: '2.0.0' })).toBe(false);
  });

  it('has a rule per requirement with the rationale as help, and located results', async () => {
    const doc = JSON.parse(await readFile(files.sarif, 'utf8'));
    const run = doc.runs[0];
    expect(run.tool.driver.rules).toHaveLength(report.results.length);
    const rule = run.tool.driver.rules.find((r: { id: string }) => r.id === '2.1/C-0-1');
    expect(rule.help.text).toContain('Google Play services');
    const res = run.results.find((r: { ruleId: string }) => r.ruleId === '6.2/C-0-1');
    expect(res.locations[0].physicalLocation.artifactLocation.uri).toBe('system/xbin/su');
    const waived = run.results.find((r: { ruleId: string }) => r.ruleId === '6.1/C-0-6');
    expect(waived.suppressions[0].justification).toContain('partner HSM pending');
    const failing = run.results.filter((r: { kind: string }) => r.kind === 'fail');
    expect(failing.filter((r: { suppressions?: unknown }) => !r.suppressions)).toHaveLength(5);
    // Not-applicable is its own verdict, with the reason, never a failure.
    const na = run.results.filter((r: { kind: string }) => r.kind === 'notApplicable');
    expect(na).toHaveLength(report.summary.notApplicable);
    expect(na.every((r: { level: string }) => r.level === 'none')).toBe(true);
    expect(na.find((r: { ruleId: string }) => r.ruleId === '6.2/C-0-2').message.text).toContain(
      'no kernel command line',
    );
  });
});

describe('HTML', () => {
  it('is self-contained, lists failures first and links rationale anchors', async () => {
    const html = await readFile(files.html, 'utf8');
    expect(html).not.toMatch(/<(script|link)\b|src=["']https?:|url\(/i);
    const first = html.indexOf('<section class="result');
    expect(html.slice(first, first + 200)).toContain('data-status="fail"');
    expect(html).toContain(`href="#${anchor('2.1/C-0-1')}"`);
    expect(html).toContain(`id="${anchor('2.1/C-0-1')}"`);
    expect(html).toContain('&lt;tablet&gt;');
    // A not-applicable requirement shows its own badge and the reason.
    const na = html.slice(html.indexOf(`id="${anchor('6.2/C-0-2')}"`));
    expect(na.slice(0, 600)).toContain('data-status="not-applicable"');
    expect(na.slice(0, 900)).toContain('no kernel command line');
  });

  withChromium(`shows the summary counts when rendered by headless Chromium ${CHROMIUM.reason}`, async () => {
    const r = await execa(
      CHROMIUM.path,
      [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-dev-shm-usage',
        '--user-data-dir=' + join(dir, 'chrome-profile'),
        '--dump-dom',
        `file://${files.html}`,
      ],
      { reject: false, timeout: 60_000 },
    );
    expect(r.exitCode, r.stderr.slice(-2000)).toBe(0);
    const dom = r.stdout;
    const count = (status: string) =>
      Number(new RegExp(`<span class="n" data-status="${status}">(\\d+)</span>`).exec(dom)?.[1]);
    expect(count('pass')).toBe(report.summary.pass);
    expect(count('fail')).toBe(4);
    expect(count('error')).toBe(1);
    expect(count('waived')).toBe(1);
    expect(count('not-applicable')).toBe(report.summary.notApplicable);
    expect(dom).toMatch(/id="verdict" data-conforms="false">Does not conform</);
  });
});

describe('GitHub step summary', () => {
  it('appends a Markdown summary when GITHUB_STEP_SUMMARY is set, nothing otherwise', async () => {
    const file = join(dir, 'step-summary.md');
    await writeFile(file, '# earlier step\n');
    expect(await writeStepSummary(report, { GITHUB_STEP_SUMMARY: file })).toBe(file);
    const md = await readFile(file, 'utf8');
    expect(md.startsWith('# earlier step\n')).toBe(true);
    expect(md).toContain('❌ does not conform');
    expect(md).toContain('| 2.1/C-0-1'.replace('| ', '| fail | **'));
    expect(await writeStepSummary(report, {})).toBeUndefined();
    expect(markdownSummary(report)).toContain(`| ${report.summary.pass} | 4 | 1 | 1 |`);
  });
});
