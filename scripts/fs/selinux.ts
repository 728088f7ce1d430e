/**
 * SELinux file_contexts: parse the text format and look up the label of a path the way Android's
 * libselinux (label_file backend) does:
 *  - each line is `<path regex> [<file type>] <context>`; `#` comments and blank lines are skipped;
 *  - the regex is anchored by adding `^` and `$` around it as text (`^re$`, as compile_regex does:
 *    a top-level alternation `a|b` is therefore "starts with a or ends with b"), and `.` matches
 *    every character (PCRE2_DOTALL); POSIX classes (`[[:alnum:]]`) are translated for JS;
 *  - the file type (`--` file, `-d` dir, `-l` symlink, `-c`, `-b`, `-s`, `-p`) restricts a line to
 *    that type; a lookup with an unknown type matches every line;
 *  - specs without regex meta characters (exact paths) are moved after the regex ones, keeping their
 *    relative order (libselinux sort_specs), and the LAST matching spec wins; a backslash escapes
 *    the next character, so `/system/build\.prop` counts as an exact path (spec_hasMetaChars);
 *  - a context of `<<none>>` means "do not label" (lookup returns null).
 * Several files (plat, system_ext, product, vendor, odm) are simply concatenated in that order.
 * The compiled form (file_contexts.bin, magic 0xf97cff8a) is refused with a clear error.
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

/** libselinux SELINUX_MAGIC_COMPILED_FCONTEXT, little endian at the start of file_contexts.bin. */
export const COMPILED_FCONTEXT_MAGIC = 0xf97cff8a;

function refuseCompiled(source?: string): never {
  throw new FormatError({
    format: 'file_contexts',
    reason: 'compiled file_contexts.bin is not supported; use the text file_contexts',
    field: 'magic',
    offset: 0,
    expected: 'text',
    found: `0x${COMPILED_FCONTEXT_MAGIC.toString(16)}`,
    file: source,
  });
}

/** Parses file_contexts text. Throws FormatError naming the line on malformed input. */
export function parseFileContexts(input: string | Buffer, source?: string): FileContextSpec[] {
  if (Buffer.isBuffer(input)) {
    if (input.length >= 4 && input.readUInt32LE(0) === COMPILED_FCONTEXT_MAGIC) refuseCompiled(source);
  }
  const text = Buffer.isBuffer(input) ? input.toString('utf8') : input;
  // The magic as latin1 text, or after a UTF-8 decode turned its invalid bytes into U+FFFD.
  if (/^(\u008a\u00ff\|\u00f9|\ufffd\ufffd\|\ufffd)/.test(text)) refuseCompiled(source);
  const specs: FileContextSpec[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i].trim();
    if (!raw || raw.startsWith('#')) continue;
    // libselinux read_spec_entries takes the first three tokens and ignores the rest (such as a
    // trailing comment).
    const f = raw.split(/\s+/).slice(0, 3);
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

/** libselinux spec_hasMetaChars: any of . ^ $ ? * + | [ ( { outside a backslash escape. */
export function hasMetaChars(regex: string): boolean {
  for (let i = 0; i < regex.length; i++) {
    const c = regex[i];
    if (c === '\\') i++;
    else if ('.^$?*+|[({'.includes(c)) return true;
  }
  return false;
}

interface Compiled extends FileContextSpec {
  re: RegExp;
  /** Text every matching path starts with (a cheap filter before the regex; may be empty). */
  prefix: string;
  /** Text every matching path contains (the longest such run found; may be empty). */
  required: string;
}

/** A compiled set of file_contexts, ready for lookups. */
export class FileContexts {
  private readonly compiled: Compiled[];
  /**
   * Indexes into `compiled` by the first path component of the literal prefix ("/system" for
   * "/system/bin/…"), and the specs whose prefix does not reach past it (checked for every path).
   */
  private readonly byTop = new Map<string, number[]>();
  private readonly anyTop: number[] = [];

  constructor(readonly specs: FileContextSpec[]) {
    const withMeta: FileContextSpec[] = [];
    const exact: FileContextSpec[] = [];
    for (const s of specs) (hasMetaChars(s.regex) ? withMeta : exact).push(s);
    this.compiled = [...withMeta, ...exact].map((s) => ({
      ...s,
      re: compile(s),
      prefix: literalPrefix(s.regex),
      required: requiredLiteral(s.regex),
    }));
    this.compiled.forEach((c, i) => {
      const top = topComponent(c.prefix);
      if (top === null) this.anyTop.push(i);
      else {
        const list = this.byTop.get(top) ?? [];
        list.push(i);
        this.byTop.set(top, list);
      }
    });
  }

  static parse(text: string | Buffer, source?: string): FileContexts {
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
    // Candidates: specs of the path's first component plus the unindexed ones, walked from the
    // last spec backwards (the last match wins) by merging the two index lists.
    const a = this.byTop.get(topComponent(path) ?? '') ?? [];
    const b = this.anyTop;
    let i = a.length - 1;
    let j = b.length - 1;
    while (i >= 0 || j >= 0) {
      const k = j < 0 || (i >= 0 && a[i] > b[j]) ? a[i--] : b[j--];
      const c = this.compiled[k];
      if (type && c.fileType && c.fileType !== type) continue;
      if (!path.startsWith(c.prefix) || !path.includes(c.required)) continue;
      if (c.re.test(path)) return c;
    }
    return null;
  }
}

function compile(s: FileContextSpec): RegExp {
  try {
    // PCRE and JS agree on the syntax file_contexts use (classes, groups, alternation, quantifiers)
    // except POSIX bracket classes, translated here.
    return new RegExp(`^${posixClasses(s.regex)}$`, 's');
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

const POSIX_CLASSES: Record<string, string> = {
  alnum: 'a-zA-Z0-9',
  alpha: 'a-zA-Z',
  blank: ' \\t',
  cntrl: '\\x00-\\x1f\\x7f',
  digit: '0-9',
  graph: '!-~',
  lower: 'a-z',
  print: ' -~',
  punct: '!-\\/:-@\\[-`{-~',
  space: '\\s',
  upper: 'A-Z',
  word: '\\w',
  xdigit: '0-9A-Fa-f',
};

/** `[[:alnum:]_]` → `[a-zA-Z0-9_]` (JS has no POSIX classes); an unknown class name is an error. */
function posixClasses(re: string): string {
  return re.replace(/\[:([a-z]+):\]/g, (m, name: string) => {
    const r = POSIX_CLASSES[name];
    if (r === undefined) throw new SyntaxError(`unknown POSIX class ${m}`);
    return r;
  });
}

/** "/system" for "/system/…" (a complete first component followed by "/"), else null. */
function topComponent(p: string): string | null {
  const slash = p.indexOf('/', 1);
  return p.startsWith('/') && slash > 1 ? p.slice(0, slash) : null;
}

/**
 * The literal text a spec's regex starts with, so lookups skip most specs without running their
 * regex (a real plat_file_contexts has thousands). Escaped punctuation counts as literal; the scan
 * stops at the first meta character, dropping the last literal when that is a quantifier making it
 * optional (`?`, `*`, `{`). A top-level alternation (`^a|b$` matches paths ending in b) has none.
 */
export function literalPrefix(regex: string): string {
  if (hasTopLevelAlternation(regex)) return '';
  const out: string[] = [];
  for (let i = 0; i < regex.length; i++) {
    const c = regex[i];
    if (c === '\\') {
      const next = regex[i + 1];
      if (next === undefined || /[0-9A-Za-z]/.test(next)) break; // \d, \w, \b, back-references
      out.push(next);
      i++;
    } else if ('.^$?*+|[({'.includes(c)) {
      if ('?*{'.includes(c)) out.pop();
      break;
    } else out.push(c);
  }
  return out.join('');
}

/**
 * The longest literal run outside any group or class that every match contains (e.g.
 * "/bin/hw/android.hardware.foo@1.0-service" in `/(vendor|system/vendor)/bin/hw/android\.hard…`),
 * so specs whose prefix is only "/" are still skipped cheaply. Empty with a top-level alternation.
 */
export function requiredLiteral(regex: string): string {
  if (hasTopLevelAlternation(regex)) return '';
  let best = '';
  let run: string[] = [];
  const end = (dropLast: boolean) => {
    if (dropLast) run.pop();
    if (run.length > best.length) best = run.join('');
    run = [];
  };
  for (let i = 0; i < regex.length; i++) {
    const c = regex[i];
    if (c === '\\') {
      const next = regex[i + 1];
      i++;
      if (next === undefined || /[0-9A-Za-z]/.test(next)) end(false);
      else run.push(next);
    } else if (c === '[') {
      // A class matches one variable character.
      end(false);
      i++;
      if (regex[i] === '^') i++;
      if (regex[i] === ']') i++;
      while (i < regex.length && regex[i] !== ']') i += regex[i] === '\\' ? 2 : 1;
    } else if (c === '(') {
      // A group's content is optional or has alternatives: skip it whole.
      end(false);
      let depth = 1;
      while (depth > 0 && ++i < regex.length) {
        if (regex[i] === '\\') i++;
        else if (regex[i] === '(') depth++;
        else if (regex[i] === ')') depth--;
      }
    } else if (c === '{') {
      // A quantifier: the previous atom may be absent, and its digits are no literal.
      end(true);
      while (i < regex.length && regex[i] !== '}') i++;
    } else if ('.^$?*+|)'.includes(c)) end('?*'.includes(c));
    else run.push(c);
  }
  end(false);
  return best;
}

function hasTopLevelAlternation(regex: string): boolean {
  let depth = 0;
  for (let i = 0; i < regex.length; i++) {
    const c = regex[i];
    if (c === '\\') i++;
    else if (c === '[') {
      // Skip the class; a ']' right after '[' or '[^' is literal.
      i++;
      if (regex[i] === '^') i++;
      if (regex[i] === ']') i++;
      while (i < regex.length && regex[i] !== ']') i += regex[i] === '\\' ? 2 : 1;
    } else if (c === '(') depth++;
    else if (c === ')') depth = Math.max(0, depth - 1);
    else if (c === '|' && depth === 0) return true;
  }
  return false;
}
