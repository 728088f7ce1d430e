/**
 * Loads the conformance spec: spec.yaml names the sections, each section file lists its
 * requirements. Every file is validated with its zod schema; an error names the file, the field
 * path and what was expected.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parse } from 'yaml';
import type { z } from 'zod';
import { InputError } from '../errors.ts';
import { type Requirement, type SectionFile, sectionFileSchema, specSchema } from './spec-schema.ts';

export interface SpecSection {
  id: string;
  title: string;
  description?: string;
  file: string;
  requirements: Requirement[];
}

export interface Spec {
  version: string;
  title: string;
  /** Absolute path of the spec folder. */
  dir: string;
  /** SHA-256 over spec.yaml and every section file, in order: names the exact spec a report used. */
  sha256: string;
  sections: SpecSection[];
  /** Every requirement, in spec order. */
  requirements: Requirement[];
}

async function readYaml<T extends z.ZodType>(
  file: string,
  schema: T,
): Promise<{ value: z.output<T>; text: string }> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new InputError(`cannot read spec file ${file}`, {
      code: 'SPEC_MISSING',
      context: { file },
      hint: 'pass --spec <dir> pointing at a folder with spec.yaml',
      cause: e,
    });
  }
  let raw: unknown;
  try {
    raw = parse(text);
  } catch (e) {
    throw new InputError(`${file}: not valid YAML: ${(e as Error).message}`, {
      code: 'SPEC_INVALID',
      context: { file },
    });
  }
  const r = schema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new InputError(`${file}: ${issue.path.join('.') || '(root)'}: ${issue.message}`, {
      code: 'SPEC_INVALID',
      context: { file, field: issue.path.join('.'), issues: r.error.issues.length },
    });
  }
  return { value: r.data, text };
}

/** Reads and validates `<dir>/spec.yaml` and its section files. */
export async function loadSpec(dir: string): Promise<Spec> {
  const abs = resolve(dir);
  const hash = createHash('sha256');
  const top = await readYaml(join(abs, 'spec.yaml'), specSchema);
  hash.update(top.text);
  const sections: SpecSection[] = [];
  const seen = new Map<string, string>();
  for (const s of top.value.sections) {
    const file = join(abs, s.file);
    const { value, text } = await readYaml(file, sectionFileSchema);
    hash.update(text);
    checkSection(file, s.id, value);
    for (const r of value.requirements) {
      const prior = seen.get(r.id);
      if (prior)
        throw new InputError(`${file}: requirement ${r.id} is already defined in ${prior}`, {
          code: 'SPEC_DUPLICATE_ID',
          context: { file, id: r.id },
        });
      seen.set(r.id, file);
    }
    sections.push({
      id: s.id,
      title: s.title,
      description: value.description,
      file,
      requirements: value.requirements,
    });
  }
  return {
    version: top.value.specVersion,
    title: top.value.title,
    dir: abs,
    sha256: hash.digest('hex'),
    sections,
    requirements: sections.flatMap((s) => s.requirements),
  };
}

function checkSection(file: string, id: string, value: SectionFile): void {
  if (value.section !== id)
    throw new InputError(`${file}: section is ${value.section} but spec.yaml lists it as ${id}`, {
      code: 'SPEC_INVALID',
      context: { file, field: 'section', expected: id, found: value.section },
    });
  for (const r of value.requirements) {
    const sec = r.id.split('/')[0];
    if (sec !== id && !sec.startsWith(`${id}.`))
      throw new InputError(`${file}: requirement ${r.id} is not in section ${id}`, {
        code: 'SPEC_INVALID',
        context: { file, field: 'id', expected: `${id}.*/C-n-m`, found: r.id },
      });
  }
}

/** The section part of a requirement ID (`3.2/C-1-1` → `3.2`). */
export function sectionOf(id: string): string {
  return id.split('/')[0];
}
