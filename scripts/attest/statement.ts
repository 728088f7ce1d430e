import { existsSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { z } from 'zod';
import pkg from '../../package.json' with { type: 'json' };
import { sha256File } from '../build/record.ts';
import type { Report } from '../conformance/spec-schema.ts';
import { InputError } from '../errors.ts';

export const IN_TOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';
export const IN_TOTO_STATEMENT_V1 = 'https://in-toto.io/Statement/v1';
/** v2: names every spec file, the product's files, the target's vbmeta digest and the waivers. */
export const OMIE_CONFORMANCE_PREDICATE = 'https://omie.example/attestation/conformance/v2';

const sha256 = z.string().regex(/^[0-9a-f]{64}$/);
const digestSet = z.strictObject({ sha256 });
const namedFile = z.strictObject({ file: z.string().describe('file name'), sha256 });

export const predicateSchema = z.strictObject({
  tool: z.strictObject({ name: z.string(), version: z.string() }).describe('the kit that ran the check'),
  time: z.string().describe('when the check ran (ISO 8601)'),
  spec: z
    .strictObject({
      version: z.string(),
      sha256: sha256.describe('SHA-256 over "<sha256>  <path>" lines of `files`, sorted by path'),
      files: z
        .array(z.strictObject({ path: z.string(), sha256 }))
        .min(1)
        .describe('every spec file the check read: spec.yaml, section files, data files'),
    })
    .describe('exactly which spec was applied'),
  profile: z.enum(['image', 'device']),
  product: z
    .strictObject({
      name: z.string(),
      version: z.string(),
      yaml: namedFile.describe('the product YAML'),
      deviceProfile: namedFile.optional().describe('its device profile (device.yaml)'),
    })
    .optional(),
  target: z
    .strictObject({
      kind: z.enum(['image', 'device']),
      vbmetaDigest: sha256
        .optional()
        .describe(
          'avbtool calculate_vbmeta_digest of the image; a device: the ro.boot.vbmeta.digest it reported',
        ),
      device: z
        .strictObject({ serial: z.string(), verifiedBootState: z.string().optional() })
        .optional()
        .describe('a device attestation: which device, in which verified boot state'),
      build: z
        .strictObject({ source: z.string(), vbmetaDigest: sha256 })
        .optional()
        .describe('a device attestation: the build the device was checked against'),
    })
    .describe('what was checked (the subjects carry the image digests)'),
  waivers: z
    .array(z.strictObject({ id: z.string(), reason: z.string(), expires: z.string(), source: z.string() }))
    .describe('every waiver in force, used or not'),
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
 * The artifacts an image attestation binds: every *.img of an image folder (partitions, vbmeta,
 * super) or, for a single file (super.img, fastboot zip), that file.
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

/** The subject name of a device attestation: its vbmeta digest is the subject's digest. */
export const deviceSubjectName = (serial: string) => `device:${serial}`;

async function namedDigest(file: string): Promise<{ file: string; sha256: string }> {
  if (!existsSync(file))
    throw new InputError(`${file}: the checked product file is gone; an attestation must name its digest`, {
      code: 'ATTEST_INPUT_MISSING',
      context: { file },
    });
  return { file: basename(file), sha256: await sha256File(file) };
}

/**
 * The statement for a report: image attestations bind the image files (`input`), device ones
 * the device's reported vbmeta digest; the predicate names the spec files, profile, kit,
 * product files, target and waivers, so a verifier can tell exactly what was checked.
 */
export async function makeStatement(report: Report, input?: string): Promise<ConformanceStatement> {
  const subject: ConformanceStatement['subject'] = [];
  const t = report.target;
  if (t.kind === 'device') {
    if (!t.vbmetaDigest)
      throw new InputError(`device ${t.input} reports no ro.boot.vbmeta.digest: there is nothing to attest`, {
        code: 'ATTEST_NO_SUBJECT',
        context: { serial: t.input },
        hint: 'a device attestation binds the vbmeta digest its bootloader verified',
      });
    subject.push({ name: deviceSubjectName(t.input), digest: { sha256: t.vbmetaDigest } });
  } else {
    if (!input)
      throw new InputError('an image attestation needs the image it binds', { code: 'ATTEST_NO_SUBJECT' });
    for (const s of await imageSubjects(input))
      subject.push({ name: s.name, digest: { sha256: await sha256File(s.path) } });
  }
  const p = report.product;
  return {
    _type: IN_TOTO_STATEMENT_V1,
    subject,
    predicateType: OMIE_CONFORMANCE_PREDICATE,
    predicate: {
      tool: { name: 'omie-kit', version: pkg.version },
      time: report.startedAt,
      spec: { version: report.spec.version, sha256: report.spec.sha256, files: report.spec.files },
      profile: report.profile,
      product: p
        ? {
            name: p.name,
            version: p.version,
            yaml: await namedDigest(p.file),
            ...(p.deviceProfile ? { deviceProfile: await namedDigest(p.deviceProfile) } : {}),
          }
        : undefined,
      target: {
        kind: t.kind,
        ...(t.vbmetaDigest ? { vbmetaDigest: t.vbmetaDigest } : {}),
        ...(t.kind === 'device'
          ? {
              device: {
                serial: t.input,
                ...(t.verifiedBootState ? { verifiedBootState: t.verifiedBootState } : {}),
              },
            }
          : {}),
        ...(t.build ? { build: t.build } : {}),
      },
      waivers: (report.waivers ?? []).map((w) => ({
        id: w.id,
        reason: w.reason,
        expires: w.expires,
        source: basename(w.source),
      })),
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
