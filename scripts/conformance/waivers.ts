/** Waivers: a requirement ID excused with a reason until an expiry date (inclusive). */
import { readFile } from 'node:fs/promises';
import { parse } from 'yaml';
import { InputError } from '../errors.ts';
import { type Waiver, waiversFileSchema } from './spec-schema.ts';

export interface SourcedWaiver extends Waiver {
  /** Where the waiver came from (product file or --waivers file). */
  source: string;
}

/** Reads a --waivers file (YAML or JSON: `{ waivers: [{ id, reason, expires }] }`). */
export async function loadWaiversFile(file: string): Promise<SourcedWaiver[]> {
  let raw: unknown;
  try {
    raw = parse(await readFile(file, 'utf8'));
  } catch (e) {
    throw new InputError(`cannot read waivers file ${file}: ${(e as Error).message}`, {
      code: 'WAIVERS_INVALID',
      context: { file },
    });
  }
  // yaml turns an unquoted 2027-01-01 into a string already (YAML 1.2 core schema), but be lenient.
  const r = waiversFileSchema.safeParse(raw);
  if (!r.success) {
    const i = r.error.issues[0];
    throw new InputError(`${file}: ${i.path.join('.') || '(root)'}: ${i.message}`, {
      code: 'WAIVERS_INVALID',
      context: { file, field: i.path.join('.') },
    });
  }
  for (const w of r.data.waivers) {
    if (Number.isNaN(Date.parse(`${w.expires}T00:00:00Z`)))
      throw new InputError(`${file}: waiver ${w.id}: ${w.expires} is not a real date`, {
        code: 'WAIVERS_INVALID',
        context: { file },
      });
  }
  return r.data.waivers.map((w) => ({ ...w, source: file }));
}

/** A waiver is valid through the whole of its expiry day (UTC). */
export function isExpired(w: Waiver, now: Date): boolean {
  return now.getTime() >= Date.parse(`${w.expires}T00:00:00Z`) + 86_400_000;
}
