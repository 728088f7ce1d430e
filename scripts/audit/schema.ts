import { z } from 'zod';

const severity = z.enum(['high', 'medium', 'low']);

export const warningSchema = z.strictObject({
  id: z
    .string()
    .regex(/^OMIE-AUDIT-[A-Z-]+$/)
    .describe('stable warning ID'),
  severity,
  title: z.string(),
  explanation: z.string().describe('one line for the owner'),
  details: z
    .array(z.string())
    .describe('what triggered it: permission names, tracker names, component names'),
});

export const appAuditSchema = z.strictObject({
  file: z.string(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  package: z.string().nullable(),
  label: z.string().nullable(),
  versionName: z.string().nullable(),
  signers: z.array(z.string().regex(/^[0-9a-f]{64}$/)).describe('SHA-256 of each signer certificate'),
  warnings: z.array(warningSchema),
  worst: severity.nullable().describe('highest severity among the warnings, null when none'),
  error: z.string().optional().describe('set when the file could not be read as an APK'),
});

export const auditReportSchema = z
  .strictObject({
    schema: z.literal('omie.audit/1'),
    tool: z.strictObject({ name: z.literal('omie'), version: z.string() }),
    apps: z.array(appAuditSchema),
  })
  .describe(
    '`omie audit --format json`: health warnings for apps an owner might install (the contract an on-device installer consumes)',
  );

export type AuditWarning = z.output<typeof warningSchema>;
export type AppAudit = z.output<typeof appAuditSchema>;
export type AuditReport = z.output<typeof auditReportSchema>;
