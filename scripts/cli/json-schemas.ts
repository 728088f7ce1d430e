import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { statementSchema } from '../attest/statement.ts';
import { auditReportSchema } from '../audit/schema.ts';
import { conformanceSchemas } from '../conformance/spec-schema.ts';
import { personalCloudConfigSchema } from '../model/personal-cloud.ts';
import { modelSchemas } from '../model/schemas.ts';

/** Every JSON Schema the kit publishes in spec/schemas/, with the zod schema it comes from. */
export function allSchemas(): Array<{ json: string; schema: z.ZodType }> {
  return [
    ...Object.values(modelSchemas),
    ...conformanceSchemas,
    { json: 'spec/schemas/audit.schema.json', schema: auditReportSchema },
    { json: 'spec/schemas/attestation-statement.schema.json', schema: statementSchema },
    { json: 'spec/schemas/personal-cloud.schema.json', schema: personalCloudConfigSchema },
  ];
}

/** JSON Schema text for a zod schema (input side: what a user writes in YAML). */
export function jsonSchemaText(schema: z.ZodType, file: string): string {
  const js = z.toJSONSchema(schema, {
    io: 'input',
    unrepresentable: 'any',
    target: 'draft-2020-12',
  }) as Record<string, unknown>;
  return `${JSON.stringify({ $id: `https://omie.example/${file}`, ...js }, null, 2)}\n`;
}

export interface SchemaStatus {
  file: string;
  upToDate: boolean;
}

/** Compares (and with write=true, rewrites) every generated schema file under root. */
export async function syncSchemas(root: string, write: boolean): Promise<SchemaStatus[]> {
  const out: SchemaStatus[] = [];
  for (const { json, schema } of allSchemas()) {
    const want = jsonSchemaText(schema, json);
    const have = await readFile(join(root, json), 'utf8').catch(() => '');
    if (write && have !== want) await writeFile(join(root, json), want);
    out.push({ file: json, upToDate: have === want });
  }
  return out;
}
