/**
 * SELinux file_contexts: parse the text format and look up the label of a path the way Android's
 * libselinux (label_file backend) does:
 *  - each line is `<path regex> [<file type>] <context>`; `#` comments and blank lines are skipped;
 *  - the regex is anchored at both ends (`^(?:re)$`);
 *  - the file type (`--` file, `-d` dir, `-l` symlink, `-c`, `-b`, `-s`, `-p`) restricts a line to
 *    that type; a lookup with an unknown type matches every line;
 *  - specs without regex meta characters (exact paths) are moved after the regex ones, keeping their
 *    relative order (libselinux sort_specs), and the LAST matching spec wins;
 *  - a context of `<<none>>` means "do not label" (lookup returns null).
 * Several files (plat, system_ext, product, vendor, odm) are simply concatenated in that order.
 */
import { FormatError } from '../errors.ts';
import type { FsEntryType } from './types.ts';

export interface FileContextSpec {
  regex: string;
  fileType: FsEntryType | null;
  /** Context, or null for <<none>>. */
  context: string | null;
  line: number;
  /** Source file name (for messages). */
  source?: string;
}

const TYPE_FLAGS: Record<string, FsEntryType> = {
  '--': 'file',
  '-d': 'dir',
  '-l': 'symlink',
  '-c': 'chardev',
  '-b': 'blockdev',
  '-s': 'socket',
  '-p': 'fifo',
};

/** Parses file_contexts text. Throws FormatError naming the line on malformed input. */
export function parseFileContexts(text: string, source?: string): FileContextSpec[] {
  const specs: FileContextSpec[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i].trim();
    if (!raw || raw.startsWith('#')) continue;
    const f = raw.split(/\s+/);
    let spec: FileContextSpec;
    if (f.length === 2) spec = { regex: f[0], fileType: null, context: ctx(f[1]), line: i + 1, source };
    else if (f.length === 3) {
      const t = TYPE_FLAGS[f[1]];
      if (!t)
        throw new FormatError({
          format: 'file_contexts',
          reason: 'unknown file type specifier',
          field: `line ${i + 1}`,
          expected: Object.keys(TYPE_FLAGS),
          found: f[1],
          file: source,
        });
      spec = { regex: f[0], fileType: t, context: ctx(f[2]), line: i + 1, source };
    } else
      throw new FormatError({
        format: 'file_contexts',
        reason: 'expected "<regex> [type] <context>"',
        field: `line ${i + 1}`,
        found: raw.slice(0, 200),
        file: source,
      });
    specs.push(spec);
  }
  return specs;
}

function ctx(s: string): string | null {
  return s === '<<none>>' ? null : s;
}

const META = /[.^$?*+|[({\\]/;

interface Compiled extends FileContextSpec {
  re: RegExp;
}

/** A compiled set of file_contexts, ready for lookups. */
export class FileContexts {
  private readonly compiled: Compiled[];

  constructor(readonly specs: FileContextSpec[]) {
    const withMeta: FileContextSpec[] = [];
    const exact: FileContextSpec[] = [];
    for (const s of specs) (META.test(s.regex) ? withMeta : exact).push(s);
    this.compiled = [...withMeta, ...exact].map((s) => ({ ...s, re: compile(s) }));
  }

  static parse(text: string, source?: string): FileContexts {
    return new FileContexts(parseFileContexts(text, source));
  }

  /** Concatenates several parsed files (plat first, then system_ext, product, vendor, odm). */
  static concat(...files: FileContexts[]): FileContexts {
    return new FileContexts(files.flatMap((f) => f.specs));
  }

  /**
   * Label for `path` (absolute, as seen on the running device, e.g. "/product/app/X/X.apk"), or null
   * when no spec matches or the matching spec says <<none>>.
   */
  lookup(path: string, type?: FsEntryType): string | null {
    const m = this.match(path, type);
    return m ? m.context : null;
  }

  /** The spec that decides `path`'s label, or null. */
  match(path: string, type?: FsEntryType): FileContextSpec | null {
    for (let i = this.compiled.length - 1; i >= 0; i--) {
      const c = this.compiled[i];
      if (type && c.fileType && c.fileType !== type) continue;
      if (c.re.test(path)) return c;
    }
    return null;
  }
}

function compile(s: FileContextSpec): RegExp {
  try {
    // PCRE and JS agree on the syntax file_contexts use (classes, groups, alternation, quantifiers).
    return new RegExp(`^(?:${s.regex})$`, 's');
  } catch (e) {
    throw new FormatError(
      {
        format: 'file_contexts',
        reason: 'invalid regular expression',
        field: `line ${s.line}`,
        found: s.regex,
        file: s.source,
      },
      { cause: e },
    );
  }
}
