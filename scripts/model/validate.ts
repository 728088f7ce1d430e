import { basename } from 'node:path';
import type { z } from 'zod';
import { InputError } from '../errors.ts';
import { type ModelKind, modelSchemas } from './schemas.ts';
import { loadYaml, type Position, pathKey, positionFor, type SourcedYaml } from './yaml-source.ts';

/** One problem in a YAML file, located precisely. */
export interface ValidationIssue {
  file: string;
  line: number;
  col: number;
  /** Dotted field path, e.g. "partitions.2.size". */
  path: string;
  message: string;
  expected?: string;
  found?: string;
}

export function formatIssue(i: ValidationIssue): string {
  const ef = i.expected !== undefined ? ` (expected ${i.expected}, found ${i.found ?? 'nothing'})` : '';
  return `${i.file}:${i.line}:${i.col}: ${i.path || '(root)'}: ${i.message}${ef}`;
}

/** Thrown by loaders when a file does not validate; carries every issue. */
export class ModelValidationError extends InputError {
  readonly issues: ValidationIssue[];
  constructor(issues: ValidationIssue[]) {
    super(
      `${issues.length} problem(s) in ${[...new Set(issues.map((i) => i.file))].join(', ')}:\n${issues.map(formatIssue).join('\n')}`,
      {
        code: 'MODEL_INVALID',
        context: { issues },
      },
    );
    this.issues = issues;
  }
}

/** Guesses which model a YAML file is, from its name and then its keys. */
export function guessKind(file: string, data: unknown): ModelKind | undefined {
  const base = basename(file);
  if (base === 'device.yaml') return 'device';
  if (base === 'app.yaml') return 'app';
  if (base === 'overlay.yaml') return 'overlay';
  if (/\/products\/[^/]+\.ya?ml$/.test(file)) return 'product';
  if (data && typeof data === 'object') {
    const d = data as Record<string, unknown>;
    if ('codename' in d) return 'device';
    if ('identity' in d || 'signing' in d) return 'product';
    if ('role' in d) return 'app';
    if ('target' in d && 'values' in d) return 'overlay';
  }
  return undefined;
}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing (missing)';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return `${typeof v} ${JSON.stringify(v)}`;
}

type ZIssue = z.core.$ZodIssue;

function valueAtPath(data: unknown, path: ReadonlyArray<PropertyKey>): unknown {
  let cur: unknown = data;
  for (const p of path) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[String(p)];
  }
  return cur;
}

/** Converts zod issues to located ValidationIssues. */
export function toIssues(
  src: SourcedYaml,
  issues: readonly ZIssue[],
  base: PropertyKey[] = [],
  schema?: z.ZodType,
): ValidationIssue[] {
  if (schema) schemaFor.set(src, schema);
  const out: ValidationIssue[] = [];
  const at = (
    pos: Position,
    path: PropertyKey[],
    rest: Omit<ValidationIssue, 'file' | 'line' | 'col' | 'path'>,
  ) => out.push({ file: pos.file, line: pos.line, col: pos.col, path: pathKey(path), ...rest });
  for (const iss of issues) {
    const path = [...base, ...iss.path];
    const found = valueAtPath(src.data, path);
    switch (iss.code) {
      case 'unrecognized_keys':
        for (const k of iss.keys) {
          const near = closest(k, knownKeys(schemaOf(src), path));
          at(positionFor(src, [...path, k], true), [...path, k], {
            message: `unknown key "${k}"${near ? ` (did you mean "${near}"?)` : ' (unknown keys are not allowed)'}`,
          });
        }
        break;
      case 'invalid_type':
        if (found === undefined) {
          at(positionFor(src, path.slice(0, -1)), path, {
            message: `missing required field "${String(path[path.length - 1])}"`,
            expected: iss.expected,
            found: 'nothing (missing)',
          });
        } else {
          at(positionFor(src, path), path, {
            message: 'wrong type',
            expected: iss.expected,
            found: describe(found),
          });
        }
        break;
      case 'invalid_union': {
        // Report the branch that got furthest (fewest issues), so the message is about what the user meant.
        const branches = iss.errors.filter((b) => b.length > 0).sort((a, b) => a.length - b.length);
        if (branches.length > 0 && !(found === undefined || typeof found !== 'object')) {
          out.push(...toIssues(src, branches[0], path));
        } else {
          at(positionFor(src, path), path, {
            message: 'matches none of the allowed forms',
            expected: 'one of the documented forms',
            found: describe(found),
          });
        }
        break;
      }
      case 'invalid_value':
        at(positionFor(src, path), path, {
          message: 'not an allowed value',
          expected: iss.values.map((v) => JSON.stringify(v)).join(' | '),
          found: describe(found),
        });
        break;
      case 'invalid_format':
      case 'too_small':
      case 'too_big':
        at(positionFor(src, path), path, {
          message:
            iss.code === 'invalid_format'
              ? 'wrong format'
              : iss.code === 'too_small'
                ? 'too small or too short'
                : 'too big or too long',
          expected: iss.message.replace(/^(Invalid input: )?(expected )?/i, ''),
          found: describe(found),
        });
        break;
      default:
        at(positionFor(src, path), path, {
          message: iss.message,
          found: found === undefined ? undefined : describe(found),
        });
    }
  }
  return out;
}

export interface Parsed<K extends ModelKind> {
  kind: K;
  src: SourcedYaml;
  value: z.output<(typeof modelSchemas)[K]['schema']>;
}

/** Parses a loaded YAML against one model; throws ModelValidationError listing every issue. */
export function parseAs<K extends ModelKind>(kind: K, src: SourcedYaml): Parsed<K> {
  const r = modelSchemas[kind].schema.safeParse(src.data, { reportInput: true });
  if (!r.success) {
    const issues = toIssues(src, r.error.issues, [], modelSchemas[kind].schema);
    issues.sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line || a.col - b.col);
    throw new ModelValidationError(issues);
  }
  return { kind, src, value: r.data as Parsed<K>['value'] };
}

/** Issue located at a field of a loaded file, for semantic checks after the schema passed. */
export function issueAt(
  src: SourcedYaml,
  path: PropertyKey[],
  message: string,
  expected?: string,
  found?: string,
): ValidationIssue {
  const p = positionFor(src, path);
  return { file: p.file, line: p.line, col: p.col, path: pathKey(path), message, expected, found };
}

export async function loadAs<K extends ModelKind>(kind: K, file: string): Promise<Parsed<K>> {
  return parseAs(kind, await loadYaml(file));
}

const schemaFor = new WeakMap<SourcedYaml, z.ZodType>();
const schemaOf = (src: SourcedYaml) => schemaFor.get(src);

type Def = {
  type: string;
  shape?: Record<string, z.ZodType>;
  innerType?: z.ZodType;
  in?: z.ZodType;
  element?: z.ZodType;
  options?: z.ZodType[];
};

/** Keys an object schema allows at a path (through optional/default/pipe/array/union wrappers). */
function knownKeys(schema: z.ZodType | undefined, path: ReadonlyArray<PropertyKey>): string[] {
  const objects = (
    t: z.ZodType | undefined,
    rest: ReadonlyArray<PropertyKey>,
  ): Record<string, z.ZodType>[] => {
    if (!t) return [];
    const def = (t as unknown as { _zod: { def: Def } })._zod.def;
    if (def.innerType) return objects(def.innerType, rest);
    if (def.in) return objects(def.in, rest);
    if (def.options) return def.options.flatMap((o) => objects(o, rest));
    if (def.type === 'array') return rest.length ? objects(def.element, rest.slice(1)) : [];
    if (def.type === 'object' && def.shape)
      return rest.length ? objects(def.shape[String(rest[0])], rest.slice(1)) : [def.shape];
    return [];
  };
  return [...new Set(objects(schema, path).flatMap((s) => Object.keys(s)))];
}

/** The known key closest to a typo (edit distance <= 2), if any. */
function closest(word: string, candidates: string[]): string | undefined {
  let best: string | undefined;
  let bestD = 3;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestD) [best, bestD] = [c, d];
  }
  return best;
}

function editDistance(a: string, b: string): number {
  const dp = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = dp[0];
    dp[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = dp[j];
      dp[j] = Math.min(dp[j] + 1, dp[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return dp[b.length];
}
