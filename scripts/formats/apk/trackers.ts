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

/** Character trie over the prefix signatures: one walk along a class name finds every prefix it starts with. */
interface TrieNode {
  next: Map<number, TrieNode>;
  /** Trackers with a prefix ending here. */
  ends: Compiled[];
}

export class TrackerDatabase {
  private readonly compiled: Compiled[];
  private readonly trie: TrieNode = { next: new Map(), ends: [] };
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
      for (const p of c.prefixes) {
        let n = this.trie;
        for (let i = 0; i < p.length; i++) {
          const ch = p.charCodeAt(i);
          let m = n.next.get(ch);
          if (!m) {
            m = { next: new Map(), ends: [] };
            n.next.set(ch, m);
          }
          n = m;
        }
        if (!n.ends.includes(c)) n.ends.push(c);
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
    for (const cls of classNames) {
      // A tracker counts a class once, even when several of its prefixes match.
      found.length = 0;
      let n: TrieNode | undefined = this.trie;
      for (let i = 0; i < cls.length; i++) {
        n = n.next.get(cls.charCodeAt(i));
        if (!n) break;
        for (const c of n.ends) if (!found.includes(c)) found.push(c);
      }
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

let cached: TrackerDatabase | null = null;
export function defaultTrackers(): TrackerDatabase {
  cached ??= TrackerDatabase.load();
  return cached;
}
