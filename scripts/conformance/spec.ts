/**
 * Loads the conformance spec: spec.yaml names the sections, each section file lists its
 * requirements. Every file is validated with its zod schema; an error names the file, the field
 * path and what was expected.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join, relative, resolve, sep } from 'node:path';
import { parse } from 'yaml';
import type { z } from 'zod';
import { InputError } from '../errors.ts';
import { type Requirement, type SectionFile, sectionFileSchema, specSchema } from './spec-schema.ts';

/** The spec shipped with the kit. */
export const DEFAULT_SPEC_DIR = resolve(import.meta.dirname, '../../spec');

export interface SpecFile {
  /** Path relative to the spec folder, `/`-separated. */
  path: string;
  sha256: string;
}

/** Data files beside spec.yaml that checks consult (scripts/conformance/spec-data.ts) when present. */
export const SPEC_DATA_FILES = ['trackers.yaml', 'known-signers.yaml'];

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
  /**
   * SHA-256 over the list of `files` (path and digest of each): names the exact spec a report
   * used, its data files included.
   */
  sha256: string;
  /** Every file of the spec a check reads (spec.yaml, section files, data files), with its SHA-256. */
  files: SpecFile[];
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
  const files: SpecFile[] = [];
  const digest = (path: string, text: string | Buffer) =>
    files.push({ path, sha256: createHash('sha256').update(text).digest('hex') });
  const top = await readYaml(join(abs, 'spec.yaml'), specSchema);
  digest('spec.yaml', top.text);
  const sections: SpecSection[] = [];
  const seen = new Map<string, string>();
  for (const s of top.value.sections) {
    const file = join(abs, s.file);
    const { value, text } = await readYaml(file, sectionFileSchema);
    digest(relative(abs, file).split(sep).join('/'), text);
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
  for (const f of SPEC_DATA_FILES) {
    const bytes = await readFile(join(abs, f)).catch(() => undefined);
    if (bytes) digest(f, bytes);
  }
  return {
    version: top.value.specVersion,
    title: top.value.title,
    dir: abs,
    sha256: specDigest(files),
    files,
    sections,
    requirements: sections.flatMap((s) => s.requirements),
  };
}

/** One digest for a list of spec files: SHA-256 of `<sha256>  <path>\n` lines, sorted by path. */
export function specDigest(files: SpecFile[]): string {
  const lines = [...files]
    .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
    .map((f) => `${f.sha256}  ${f.path}\n`);
  return createHash('sha256').update(lines.join('')).digest('hex');
}

/** Files that differ between two spec file lists: changed, missing from `b`, or only in `b`. */
export function diffSpecFiles(
  a: SpecFile[],
  b: SpecFile[],
): Array<{ path: string; change: 'changed' | 'missing' | 'added' }> {
  const bm = new Map(b.map((f) => [f.path, f.sha256]));
  const am = new Map(a.map((f) => [f.path, f.sha256]));
  const out: Array<{ path: string; change: 'changed' | 'missing' | 'added' }> = [];
  for (const f of a) {
    const other = bm.get(f.path);
    if (other === undefined) out.push({ path: f.path, change: 'missing' });
    else if (other !== f.sha256) out.push({ path: f.path, change: 'changed' });
  }
  for (const f of b) if (!am.has(f.path)) out.push({ path: f.path, change: 'added' });
  return out;
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
