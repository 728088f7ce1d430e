import { readFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { isMap, isScalar, isSeq, LineCounter, type Node, parseDocument } from 'yaml';
import { InputError } from '../errors.ts';

/** Where a value came from: file and 1-based line/column. */
export interface Position {
  file: string;
  line: number;
  col: number;
}

/** A YAML document turned into plain data, with the position of every value and key by path. */
export interface SourcedYaml {
  file: string;
  data: unknown;
  /** Position of the value at a path ("" = root, "partitions.0.size"). */
  valueAt: Map<string, Position>;
  /** Position of the key for a mapping entry at a path ("partitions.0.size"). */
  keyAt: Map<string, Position>;
  /** Every file read (the document and its includes). */
  files: string[];
}

export const pathKey = (path: ReadonlyArray<PropertyKey>): string => path.map(String).join('.');

/**
 * Loads a YAML file keeping positions. A mapping may say `include: file.yaml` (or a list): the
 * included fragment's keys are merged in first, and the mapping's own keys override them, so
 * shared pieces (a partition table, a set of removals) live in one file.
 */
export async function loadYaml(file: string, seen: string[] = []): Promise<SourcedYaml> {
  const abs = resolve(file);
  if (seen.includes(abs)) {
    throw new InputError(`include cycle: ${[...seen, abs].join(' -> ')}`, {
      code: 'YAML_INCLUDE_CYCLE',
      context: { file: abs },
    });
  }
  const text = await readFile(abs, 'utf8').catch((e: NodeJS.ErrnoException) => {
    throw new InputError(`cannot read ${abs}: ${e.code ?? e.message}`, {
      code: e.code ?? 'READ_FAILED',
      context: { file: abs },
    });
  });
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0];
    const p = lc.linePos(e.pos[0]);
    throw new InputError(`${abs}:${p.line}:${p.col}: YAML syntax error: ${e.message.split('\n')[0]}`, {
      code: 'YAML_SYNTAX',
      context: { file: abs, line: p.line, col: p.col },
    });
  }
  const out: SourcedYaml = { file: abs, data: undefined, valueAt: new Map(), keyAt: new Map(), files: [abs] };
  const posOf = (n: Node | null | undefined): Position => {
    const off = n?.range?.[0] ?? 0;
    const p = lc.linePos(off);
    return { file: abs, line: p.line, col: p.col };
  };

  const convert = async (node: unknown, path: string[]): Promise<unknown> => {
    const here = pathKey(path);
    out.valueAt.set(here, posOf(node as Node));
    if (isMap(node)) {
      const obj: Record<string, unknown> = {};
      for (const pair of node.items) {
        const key = isScalar(pair.key) ? String(pair.key.value) : String(pair.key);
        if (key === 'include') {
          const targets = toStringList(pair.value, abs, posOf(pair.value as Node));
          for (const t of targets) {
            const inc = await loadYaml(resolve(dirname(abs), t), [...seen, abs]);
            if (typeof inc.data !== 'object' || inc.data === null || Array.isArray(inc.data)) {
              throw new InputError(`${inc.file}: an included fragment must be a mapping`, {
                code: 'YAML_INCLUDE_NOT_MAPPING',
                context: { file: inc.file },
              });
            }
            Object.assign(obj, inc.data);
            out.files.push(...inc.files);
            const prefix = here ? `${here}.` : '';
            for (const [k, v] of inc.valueAt) if (k !== '') out.valueAt.set(prefix + k, v);
            for (const [k, v] of inc.keyAt) out.keyAt.set(prefix + k, v);
          }
          continue;
        }
        const childPath = [...path, key];
        out.keyAt.set(pathKey(childPath), posOf(pair.key as Node));
        obj[key] = await convert(pair.value, childPath);
      }
      return obj;
    }
    if (isSeq(node)) {
      const arr: unknown[] = [];
      for (const [i, item] of node.items.entries()) arr.push(await convert(item, [...path, String(i)]));
      return arr;
    }
    if (isScalar(node)) {
      const v = node.value;
      // Dates stay strings (waiver expiry etc. are validated by schema).
      return v instanceof Date ? v.toISOString().slice(0, 10) : v;
    }
    return node === null || node === undefined ? null : (node as { toJSON?: () => unknown }).toJSON?.();
  };
  out.data = await convert(doc.contents, []);
  return out;
}

function toStringList(node: unknown, file: string, pos: Position): string[] {
  if (isScalar(node) && typeof node.value === 'string') return [node.value];
  if (isSeq(node) && node.items.every((i) => isScalar(i) && typeof i.value === 'string')) {
    return node.items.map((i) => String((i as { value: string }).value));
  }
  throw new InputError(
    `${file}:${pos.line}:${pos.col}: include must be a file name or a list of file names`,
    {
      code: 'YAML_INCLUDE_INVALID',
      context: { file, line: pos.line, col: pos.col },
    },
  );
}

/** Best position for a path: the value, else the nearest ancestor that has one. */
export function positionFor(src: SourcedYaml, path: ReadonlyArray<PropertyKey>, preferKey = false): Position {
  const parts = path.map(String);
  for (let n = parts.length; n >= 0; n--) {
    const k = parts.slice(0, n).join('.');
    const p = preferKey ? (src.keyAt.get(k) ?? src.valueAt.get(k)) : (src.valueAt.get(k) ?? src.keyAt.get(k));
    if (p) return p;
  }
  return { file: src.file, line: 1, col: 1 };
}
