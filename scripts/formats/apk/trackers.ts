/**
 * Tracker SDK detection by class name, against spec/trackers.yaml (id, name, category, codeSignature,
 * website, source). A code signature is a
 * Java-package prefix ("com.appsflyer.") or, written between slashes, a regular expression
 * ("/^com\.google\.android\.gms\.ads\.(?!identifier)/"); alternatives are separated by "|" in the
 * prefix form, like the Exodus Privacy ETIP signatures. Prefixes match at the start of the
 * fully-qualified class name.
 */
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parse } from 'yaml';
import { z } from 'zod';
import { InputError } from '../../errors.ts';

export const TRACKER_CATEGORIES = [
  'analytics',
  'advertisement',
  'crash reporting',
  'profiling',
  'location',
  'identification',
] as const;

const trackerSchema = z.object({
  id: z.string().regex(/^[a-z0-9][a-z0-9-]*$/),
  name: z.string().min(1),
  /** One category, or a list when the SDK does several things (primary first). */
  category: z.union([z.enum(TRACKER_CATEGORIES), z.array(z.enum(TRACKER_CATEGORIES)).min(1)]),
  codeSignature: z.string().min(2),
  website: z.string().url(),
  source: z.string().min(1),
});
const fileSchema = z.object({ trackers: z.array(trackerSchema).min(1) });

export type TrackerDefinition = z.infer<typeof trackerSchema>;

export interface TrackerMatch {
  id: string;
  name: string;
  categories: string[];
  website: string;
  source: string;
  /** How many defined classes matched. */
  classCount: number;
  /** Up to three matching class names, for people to check. */
  examples: string[];
}

export const DEFAULT_TRACKERS_FILE = resolve(import.meta.dirname, '../../../spec/trackers.yaml');

interface Compiled {
  def: TrackerDefinition;
  prefixes: string[];
  regex: RegExp | null;
}

export class TrackerDatabase {
  private readonly compiled: Compiled[];
  /**
   * Prefix signatures bucketed by their first two package segments ("com.google."): a class name
   * can only start with prefixes of its own bucket. Prefixes with fewer segments are tried always.
   */
  private readonly buckets = new Map<string, Array<{ c: Compiled; prefix: string }>>();
  private readonly unbucketed: Array<{ c: Compiled; prefix: string }> = [];
  private readonly regexes: Compiled[];

  constructor(readonly trackers: readonly TrackerDefinition[]) {
    this.compiled = trackers.map((def) => {
      const sig = def.codeSignature.trim();
      if (sig.startsWith('/') && sig.endsWith('/') && sig.length > 2)
        return { def, prefixes: [], regex: new RegExp(sig.slice(1, -1)) };
      return {
        def,
        prefixes: sig
          .split('|')
          .map((s) => s.trim())
          .filter(Boolean),
        regex: null,
      };
    });
    for (const c of this.compiled)
      for (const prefix of c.prefixes) {
        const key = bucketKey(prefix);
        if (key === null) this.unbucketed.push({ c, prefix });
        else {
          const list = this.buckets.get(key) ?? [];
          list.push({ c, prefix });
          this.buckets.set(key, list);
        }
      }
    this.regexes = this.compiled.filter((c) => c.regex);
  }

  static load(file = DEFAULT_TRACKERS_FILE): TrackerDatabase {
    let data: unknown;
    try {
      data = parse(readFileSync(file, 'utf8'));
    } catch (e) {
      throw new InputError(`cannot read tracker list ${file}: ${(e as Error).message}`, {
        code: 'TRACKERS_UNREADABLE',
        context: { file },
      });
    }
    const r = fileSchema.safeParse(data);
    if (!r.success)
      throw new InputError(
        `invalid tracker list ${file}: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
        {
          code: 'TRACKERS_INVALID',
          context: { file },
        },
      );
    const ids = new Set<string>();
    for (const t of r.data.trackers) {
      if (ids.has(t.id))
        throw new InputError(`duplicate tracker id ${t.id} in ${file}`, {
          code: 'TRACKERS_INVALID',
          context: { file },
        });
      ids.add(t.id);
    }
    return new TrackerDatabase(r.data.trackers);
  }

  /** Trackers whose signature matches any of the class names, most matched classes first. */
  match(classNames: Iterable<string>): TrackerMatch[] {
    const hits = new Map<Compiled, { n: number; ex: string[] }>();
    const hit = (c: Compiled, cls: string) => {
      const h = hits.get(c) ?? { n: 0, ex: [] };
      h.n++;
      if (h.ex.length < 3) h.ex.push(cls);
      hits.set(c, h);
    };
    const found: Compiled[] = [];
    const scan = (list: ReadonlyArray<{ c: Compiled; prefix: string }>, cls: string) => {
      for (const { c, prefix } of list) if (cls.startsWith(prefix) && !found.includes(c)) found.push(c);
    };
    for (const cls of classNames) {
      // A tracker counts a class once, even when several of its prefixes match.
      found.length = 0;
      const key = bucketKey(cls);
      const bucket = key === null ? undefined : this.buckets.get(key);
      if (bucket) scan(bucket, cls);
      if (this.unbucketed.length) scan(this.unbucketed, cls);
      for (const c of found) hit(c, cls);
      for (const c of this.regexes) if (c.regex!.test(cls)) hit(c, cls);
    }
    return [...hits]
      .map(([c, h]) => ({
        id: c.def.id,
        name: c.def.name,
        categories: typeof c.def.category === 'string' ? [c.def.category] : c.def.category,
        website: c.def.website,
        source: c.def.source,
        classCount: h.n,
        examples: h.ex,
      }))
      .sort((a, b) => b.classCount - a.classCount || a.id.localeCompare(b.id));
  }
}

/** "com.google.firebase.X" → "com.google." (through the second dot), or null. */
function bucketKey(name: string): string | null {
  const d1 = name.indexOf('.');
  const d2 = d1 < 0 ? -1 : name.indexOf('.', d1 + 1);
  return d2 < 0 ? null : name.slice(0, d2 + 1);
}

let cached: TrackerDatabase | null = null;
export function defaultTrackers(): TrackerDatabase {
  cached ??= TrackerDatabase.load();
  return cached;
}
