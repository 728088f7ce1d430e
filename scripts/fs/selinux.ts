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
}

/** A compiled set of file_contexts, ready for lookups. */
export class FileContexts {
  private readonly compiled: Compiled[];

  constructor(readonly specs: FileContextSpec[]) {
    const withMeta: FileContextSpec[] = [];
    const exact: FileContextSpec[] = [];
    for (const s of specs) (hasMetaChars(s.regex) ? withMeta : exact).push(s);
    this.compiled = [...withMeta, ...exact].map((s) => ({ ...s, re: compile(s) }));
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
