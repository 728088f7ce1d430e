import { existsSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { z } from 'zod';
import pkg from '../../package.json' with { type: 'json' };
import { sha256File } from '../build/record.ts';
import type { Report } from '../conformance/spec-schema.ts';

export const IN_TOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';
export const IN_TOTO_STATEMENT_V1 = 'https://in-toto.io/Statement/v1';
export const OMIE_CONFORMANCE_PREDICATE = 'https://omie.example/attestation/conformance/v1';

const digestSet = z.strictObject({ sha256: z.string().regex(/^[0-9a-f]{64}$/) });

export const predicateSchema = z.strictObject({
  tool: z.strictObject({ name: z.string(), version: z.string() }),
  time: z.string().describe('when the check ran (ISO 8601)'),
  spec: z.strictObject({ version: z.string(), sha256: z.string() }),
  profile: z.string(),
  product: z.strictObject({ name: z.string(), version: z.string() }).optional(),
  summary: z.strictObject({
    total: z.number(),
    pass: z.number(),
    fail: z.number(),
    waived: z.number(),
    conforms: z.boolean(),
  }),
  results: z.array(
    z.strictObject({
      id: z.string(),
      level: z.enum(['MUST', 'SHOULD']),
      status: z.enum(['pass', 'fail', 'waived', 'not-applicable', 'error']),
      waiver: z.strictObject({ reason: z.string(), expires: z.string() }).optional(),
    }),
  ),
});

export const statementSchema = z
  .strictObject({
    _type: z.literal(IN_TOTO_STATEMENT_V1),
    subject: z.array(z.strictObject({ name: z.string(), digest: digestSet })).min(1),
    predicateType: z.literal(OMIE_CONFORMANCE_PREDICATE),
    predicate: predicateSchema,
  })
  .describe('in-toto Statement v1 carried in the DSSE envelope written by `omie check --attest`');
export type ConformanceStatement = z.output<typeof statementSchema>;

/**
 * The artifacts an attestation binds: every *.img of an image folder (partitions, vbmeta, super)
 * or, for a single file (super.img, fastboot zip), that file.
 */
export async function imageSubjects(input: string): Promise<Array<{ name: string; path: string }>> {
  if (!existsSync(input)) return [];
  if ((await stat(input)).isDirectory()) {
    return (await readdir(input))
      .filter((f) => f.endsWith('.img'))
      .sort()
      .map((f) => ({ name: f, path: join(input, f) }));
  }
  return [{ name: basename(input), path: input }];
}

export async function makeStatement(report: Report, input: string): Promise<ConformanceStatement> {
  const subject = [];
  for (const s of await imageSubjects(input))
    subject.push({ name: s.name, digest: { sha256: await sha256File(s.path) } });
  return {
    _type: IN_TOTO_STATEMENT_V1,
    subject,
    predicateType: OMIE_CONFORMANCE_PREDICATE,
    predicate: {
      tool: { name: 'omie-kit', version: pkg.version },
      time: report.startedAt,
      spec: { version: report.spec.version, sha256: report.spec.sha256 },
      profile: report.profile,
      product: report.product ? { name: report.product.name, version: report.product.version } : undefined,
      summary: {
        total: report.summary.total,
        pass: report.summary.pass,
        fail: report.summary.fail,
        waived: report.summary.waived,
        conforms: report.summary.conforms,
      },
      results: report.results.map((r) => ({
        id: r.id,
        level: r.level,
        status: r.status,
        waiver: r.waiver ? { reason: r.waiver.reason, expires: r.waiver.expires } : undefined,
      })),
    },
  };
}
