/**
 * Schemas of the conformance spec (spec/spec.yaml + spec/requirements/*.yaml) and of the
 * report `omie check` writes (report.json). Their JSON Schemas live in spec/schemas/ and are
 * generated from these zod schemas (`omie schemas --write`).
 */
import { z } from 'zod';

/** CDD-style requirement ID: `<section>/C-<condition>-<n>`, e.g. `3.2/C-1-1`. */
export const requirementId = z
  .string()
  .regex(/^\d+(\.\d+)*\/C-\d+-\d+$/, 'a requirement ID like 3.2/C-1-1')
  .describe('stable CDD-style ID <section>/C-<condition>-<n>; C-0 applies always, C-1+ under a condition');

export const profileName = z.enum(['image', 'device']);
export type Profile = z.output<typeof profileName>;

export const requirementSchema = z
  .strictObject({
    id: requirementId,
    level: z
      .enum(['MUST', 'SHOULD'])
      .describe('MUST fails the check; SHOULD is reported but does not fail it'),
    title: z.string().min(1),
    rationale: z.string().min(1).describe("why the requirement protects the device's owner"),
    check: z
      .strictObject({
        image: z.string().min(1).describe('how it is checked offline on an image'),
        device: z.string().min(1).describe('how it is checked on a live device over adb'),
      })
      .describe('how the checker evaluates the requirement, per profile'),
    profiles: z.array(profileName).min(1).describe('the profiles the requirement belongs to'),
    params: z
      .record(z.string(), z.unknown())
      .default({})
      .describe('data the check uses (package patterns, digests, …), so it can change without code'),
  })
  .describe('one conformance requirement');
export type Requirement = z.output<typeof requirementSchema>;

export const sectionFileSchema = z
  .strictObject({
    section: z.string().regex(/^\d+(\.\d+)*$/),
    title: z.string().min(1),
    description: z.string().optional(),
    requirements: z.array(requirementSchema).min(1),
  })
  .describe('spec/requirements/<family>.yaml: the requirements of one section');
export type SectionFile = z.output<typeof sectionFileSchema>;

export const specSchema = z
  .strictObject({
    specVersion: z.string().regex(/^\d+\.\d+\.\d+$/, 'a semantic version like 1.0.0'),
    title: z.string().min(1),
    sections: z
      .array(
        z.strictObject({
          id: z.string().regex(/^\d+(\.\d+)*$/),
          title: z.string().min(1),
          file: z.string().min(1).describe('path of the section file, relative to spec.yaml'),
        }),
      )
      .min(1),
  })
  .describe('spec/spec.yaml: the Omie conformance spec (version and sections)');
export type SpecYaml = z.output<typeof specSchema>;

export const resultStatus = z.enum(['pass', 'fail', 'waived', 'not-applicable', 'error']);
export type ResultStatus = z.output<typeof resultStatus>;

export const evidenceSchema = z
  .strictObject({
    partition: z.string().optional(),
    file: z.string().optional(),
    package: z.string().optional(),
    prop: z.string().optional(),
    value: z.string().optional(),
    detail: z.string(),
  })
  .describe('one fact behind a result: where it was found and what it is');
export type Evidence = z.output<typeof evidenceSchema>;

export const waiverSchema = z.strictObject({
  id: requirementId,
  reason: z.string().min(1),
  expires: z.string().regex(/^\d{4}-\d{2}-\d{2}$/, 'a date YYYY-MM-DD'),
});
export type Waiver = z.output<typeof waiverSchema>;

export const waiversFileSchema = z
  .strictObject({ waivers: z.array(waiverSchema) })
  .describe('a --waivers file: requirement IDs waived with a reason until an expiry date');

export const resultSchema = z.strictObject({
  id: requirementId,
  section: z.string(),
  level: z.enum(['MUST', 'SHOULD']),
  title: z.string(),
  rationale: z.string(),
  howChecked: z.string().describe('the check text of the profile that ran'),
  status: resultStatus,
  message: z.string().describe('one line: why it passed, failed or did not apply'),
  evidence: z.array(evidenceSchema),
  waiver: z
    .strictObject({ reason: z.string(), expires: z.string(), expired: z.boolean(), source: z.string() })
    .optional()
    .describe('the waiver that applied; an expired waiver leaves the result failed'),
  durationMs: z.number().nonnegative(),
});
export type RequirementResult = z.output<typeof resultSchema>;

export const summarySchema = z.strictObject({
  total: z.number().int(),
  pass: z.number().int(),
  fail: z.number().int(),
  waived: z.number().int(),
  notApplicable: z.number().int(),
  error: z.number().int(),
  mustFailed: z.number().int().describe('MUST requirements that failed or errored'),
  shouldFailed: z.number().int().describe('SHOULD requirements that failed or errored'),
  conforms: z.boolean().describe('true when every MUST passed, was waived or did not apply'),
});
export type Summary = z.output<typeof summarySchema>;

export const reportSchema = z
  .strictObject({
    reportVersion: z.literal(1),
    tool: z.strictObject({ name: z.literal('omie'), version: z.string() }),
    spec: z.strictObject({
      version: z.string(),
      sha256: z
        .string()
        .regex(/^[0-9a-f]{64}$/)
        .describe('digest of the spec files as loaded: SHA-256 over "<sha256>  <path>" lines of `files`'),
      dir: z.string(),
      files: z
        .array(z.strictObject({ path: z.string(), sha256: z.string().regex(/^[0-9a-f]{64}$/) }))
        .describe('every spec file the check read (spec.yaml, section files, data files) with its SHA-256'),
    }),
    target: z.strictObject({
      kind: profileName,
      input: z.string().describe('the image path or device serial checked'),
      description: z.string(),
      partitions: z.array(z.string()),
      vbmetaDigest: z
        .string()
        .optional()
        .describe(
          'image: avbtool calculate_vbmeta_digest of its vbmeta; device: the ro.boot.vbmeta.digest it reports',
        ),
      verifiedBootState: z.string().optional().describe('device: ro.boot.verifiedbootstate'),
      build: z
        .strictObject({ source: z.string(), vbmetaDigest: z.string() })
        .optional()
        .describe('device: the build it was checked against (--image)'),
    }),
    profile: profileName,
    product: z
      .strictObject({
        name: z.string(),
        version: z.string(),
        file: z.string(),
        deviceProfile: z.string().optional().describe("the product's device profile (device.yaml)"),
      })
      .optional(),
    waivers: z
      .array(z.strictObject({ ...waiverSchema.shape, source: z.string() }))
      .optional()
      .describe('every waiver in force (product and --waivers file), used or not'),
    startedAt: z.string().describe('ISO 8601 time'),
    durationMs: z.number().nonnegative(),
    summary: summarySchema,
    results: z.array(resultSchema),
  })
  .describe('report.json written by `omie check`: one result per requirement of the spec');
export type Report = z.output<typeof reportSchema>;

/** The JSON Schema files this module owns, for `omie schemas --write`. */
export const conformanceSchemas = [
  { json: 'spec/schemas/spec.schema.json', schema: specSchema },
  { json: 'spec/schemas/requirements.schema.json', schema: sectionFileSchema },
  { json: 'spec/schemas/report.schema.json', schema: reportSchema },
] as const;
