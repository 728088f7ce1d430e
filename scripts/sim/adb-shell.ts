/**
 * The virtual device's tiny `sh`: enough of toybox/mksh for what hosts run over `adb shell`
 * (getprop, pm, cmd package, settings, cat, ls, [ / test, grep, id, echo, …) with `;`, `&&`, `||`,
 * `|`, quoting, variables and `$?`, `for … in …; do …; done`, `if/elif/else/fi`, and
 * `>`/`>>`/`2>`/`2>&1` redirections into /data. Unknown commands fail like mksh:
 * "/system/bin/sh: X: not found", status 127.
 */
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, posix } from 'node:path';
import type { SettingsNamespace } from './settings.ts';
import type { DeviceView } from './view.ts';

export interface ShellContext {
  view: DeviceView;
  /** `reboot [target]` from the shell. */
  reboot(target: string): Promise<void>;
}

export interface ShellResult {
  stdout: Buffer;
  stderr: Buffer;
  exitCode: number;
  /** The line ran `exit`: an interactive shell ends here. */
  exited?: boolean;
}

type Op = ';' | '&&' | '||' | '|';
interface Word {
  text: string;
}
interface Redirect {
  fd: 1 | 2;
  /** Target path, or "&1"/"&2". */
  to: string;
  append: boolean;
}
type Token = { op: Op } | Word | { redirect: Omit<Redirect, 'to'> & { to?: string } };

class Out {
  chunks: Buffer[] = [];
  write(s: string | Buffer): void {
    this.chunks.push(typeof s === 'string' ? Buffer.from(s) : s);
  }
  get buffer(): Buffer {
    return Buffer.concat(this.chunks);
  }
}

/** Runs one command line and collects its output and status. */
export async function runShell(
  line: string,
  ctx: ShellContext,
  stdin: Buffer = Buffer.alloc(0),
  /** `$?` before the first command (the previous line's status in an interactive shell). */
  previousStatus = 0,
  opts: { mergeStderr?: boolean } = {},
): Promise<ShellResult> {
  const stdout = new Out();
  // Shell v1 has one stream: stderr goes where stdout goes, in order.
  const stderr = opts.mergeStderr ? stdout : new Out();
  let list: List;
  try {
    list = new Parser(tokenize(line)).parseProgram();
  } catch (e) {
    return {
      stdout: Buffer.alloc(0),
      stderr: Buffer.from(`/system/bin/sh: ${(e as Error).message}\n`),
      exitCode: 2,
    };
  }
  const env: Env = { vars: new Map(Object.entries(BASE_VARS)), status: previousStatus, steps: 0 };
  const status = await execList(list, env, stdin, stdout, stderr, ctx);
  const exited = status <= EXIT_REQUESTED;
  return {
    stdout: stdout.buffer,
    stderr: opts.mergeStderr ? Buffer.alloc(0) : stderr.buffer,
    exitCode: (exited ? EXIT_REQUESTED - status : status) & 0xff,
    ...(exited ? { exited: true } : {}),
  };
}

/** `exit N` is reported as EXIT_REQUESTED - N so that no shared state is needed. */
const EXIT_REQUESTED = -1000;
/** Upper bound on commands run per line, so a pathological line cannot spin forever. */
const MAX_STEPS = 100_000;
const BASE_VARS: Record<string, string> = {
  HOME: '/',
  PATH: '/system/bin:/system/xbin',
  USER: 'shell',
  SHELL: '/system/bin/sh',
};

interface Env {
  vars: Map<string, string>;
  status: number;
  steps: number;
}

type Command =
  | { kind: 'simple'; words: string[]; redirects: Redirect[] }
  | { kind: 'for'; name: string; words: string[]; body: List }
  | { kind: 'if'; branches: Array<{ cond: List; body: List }>; otherwise: List | null };
type Pipeline = Command[];
interface AndOr {
  first: Pipeline;
  rest: Array<{ op: '&&' | '||'; pipeline: Pipeline }>;
}
type List = AndOr[];

const RESERVED = new Set(['do', 'done', 'then', 'fi', 'else', 'elif', 'in']);

/** Recursive-descent parser for the subset of sh grammar the device shell runs. */
class Parser {
  private i = 0;
  constructor(private readonly t: Token[]) {}

  parseProgram(): List {
    const l = this.parseList(new Set());
    if (this.i < this.t.length) throw new Error(`syntax error: unexpected '${describe(this.t[this.i])}'`);
    return l;
  }

  private peekWord(): string | null {
    const t = this.t[this.i];
    return t && 'text' in t ? t.text : null;
  }

  private skipSeparators(): void {
    while (this.i < this.t.length) {
      const t = this.t[this.i];
      if ('op' in t && t.op === ';') this.i++;
      else break;
    }
  }

  private expectWord(w: string): void {
    this.skipSeparators();
    if (this.peekWord() !== w) throw new Error(`syntax error: '${w}' expected`);
    this.i++;
  }

  /** Commands until one of `stop` appears in command position (or the end). */
  private parseList(stop: Set<string>): List {
    const list: List = [];
    for (;;) {
      this.skipSeparators();
      if (this.i >= this.t.length) break;
      const w = this.peekWord();
      if (w !== null && stop.has(w)) break;
      list.push(this.parseAndOr(stop));
      const t = this.t[this.i];
      if (t && 'op' in t && t.op === ';') continue;
      if (this.i < this.t.length && !(w !== null && stop.has(this.peekWord() ?? ''))) {
        const nw = this.peekWord();
        if (nw !== null && stop.has(nw)) break;
        throw new Error(`syntax error: unexpected '${describe(this.t[this.i])}'`);
      }
    }
    return list;
  }

  private parseAndOr(stop: Set<string>): AndOr {
    const first = this.parsePipeline(stop);
    const rest: AndOr['rest'] = [];
    for (;;) {
      const t = this.t[this.i];
      if (t && 'op' in t && (t.op === '&&' || t.op === '||')) {
        this.i++;
        rest.push({ op: t.op, pipeline: this.parsePipeline(stop) });
      } else break;
    }
    return { first, rest };
  }

  private parsePipeline(stop: Set<string>): Pipeline {
    const p: Pipeline = [this.parseCommand(stop)];
    for (;;) {
      const t = this.t[this.i];
      if (t && 'op' in t && t.op === '|') {
        this.i++;
        p.push(this.parseCommand(stop));
      } else break;
    }
    return p;
  }

  private parseCommand(stop: Set<string>): Command {
    const w = this.peekWord();
    if (w === 'for') {
      this.i++;
      const name = this.peekWord();
      if (!name || !/^[A-Za-z_]\w*$/.test(name)) throw new Error('syntax error: bad for loop variable');
      this.i++;
      const words: string[] = [];
      if (this.peekWord() === 'in') {
        this.i++;
        for (;;) {
          const x = this.peekWord();
          if (x === null) break;
          words.push(x);
          this.i++;
        }
      }
      this.expectWord('do');
      const body = this.parseList(new Set(['done']));
      this.expectWord('done');
      return { kind: 'for', name, words, body };
    }
    if (w === 'if') {
      this.i++;
      const branches: Array<{ cond: List; body: List }> = [];
      let otherwise: List | null = null;
      for (;;) {
        const cond = this.parseList(new Set(['then']));
        this.expectWord('then');
        const body = this.parseList(new Set(['elif', 'else', 'fi']));
        branches.push({ cond, body });
        this.skipSeparators();
        const k = this.peekWord();
        this.i++;
        if (k === 'elif') continue;
        if (k === 'else') {
          otherwise = this.parseList(new Set(['fi']));
          this.expectWord('fi');
        } else if (k !== 'fi') throw new Error("syntax error: 'fi' expected");
        break;
      }
      return { kind: 'if', branches, otherwise };
    }
    if (w !== null && RESERVED.has(w) && !stop.has(w)) throw new Error(`syntax error: unexpected '${w}'`);
    const words: string[] = [];
    const redirects: Redirect[] = [];
    for (; this.i < this.t.length; this.i++) {
      const t = this.t[this.i];
      if ('op' in t) break;
      if ('redirect' in t) {
        let to = t.redirect.to;
        if (to === undefined) {
          const next = this.t[this.i + 1];
          if (!next || !('text' in next)) throw new Error('syntax error: missing redirection target');
          to = next.text;
          this.i++;
        }
        redirects.push({ fd: t.redirect.fd, append: t.redirect.append, to });
      } else {
        if (words.length === 0 && stop.has(t.text)) break;
        words.push(t.text);
      }
    }
    if (words.length === 0 && redirects.length === 0) {
      const t = this.t[this.i];
      throw new Error(`syntax error: unexpected '${t ? describe(t) : 'end of line'}'`);
    }
    return { kind: 'simple', words, redirects };
  }
}

function describe(t: Token): string {
  return 'op' in t ? t.op : 'text' in t ? t.text : '>';
}

/** Replaces `$NAME`/`$?` markers left by the tokenizer with their values at run time. */
function expandWord(w: string, env: Env): string {
  return w.replace(VAR_MARK_RE, (_m, name: string) =>
    name === '?' ? String(env.status) : (env.vars.get(name) ?? ''),
  );
}

async function execList(
  list: List,
  env: Env,
  stdin: Buffer,
  out: Out,
  err: Out,
  ctx: ShellContext,
): Promise<number> {
  for (const ao of list) {
    let status = await execPipeline(ao.first, env, stdin, out, err, ctx);
    if (status <= EXIT_REQUESTED) return status;
    env.status = status;
    for (const r of ao.rest) {
      if ((r.op === '&&') !== (env.status === 0)) continue;
      status = await execPipeline(r.pipeline, env, stdin, out, err, ctx);
      if (status <= EXIT_REQUESTED) return status;
      env.status = status;
    }
  }
  return env.status;
}

async function execPipeline(
  p: Pipeline,
  env: Env,
  stdin: Buffer,
  out: Out,
  err: Out,
  ctx: ShellContext,
): Promise<number> {
  let input = stdin;
  let status = 0;
  for (const [k, cmd] of p.entries()) {
    const last = k === p.length - 1;
    const o = last ? out : new Out();
    status = await execCommand(cmd, env, input, o, err, ctx);
    if (status <= EXIT_REQUESTED) return status;
    if (!last) input = o.buffer;
  }
  return status;
}

async function execCommand(
  cmd: Command,
  env: Env,
  stdin: Buffer,
  out: Out,
  err: Out,
  ctx: ShellContext,
): Promise<number> {
  if (++env.steps > MAX_STEPS) {
    err.write('sh: too many commands\n');
    return 1;
  }
  if (cmd.kind === 'for') {
    const words = cmd.words
      .map((w) => expandWord(w, env))
      .flatMap((w) => w.split(/[ \t\n]+/).filter(Boolean));
    let status = 0;
    for (const w of words) {
      env.vars.set(cmd.name, w);
      status = await execList(cmd.body, env, stdin, out, err, ctx);
      if (status <= EXIT_REQUESTED) return status;
    }
    return status;
  }
  if (cmd.kind === 'if') {
    for (const b of cmd.branches) {
      const c = await execList(b.cond, env, stdin, out, err, ctx);
      if (c <= EXIT_REQUESTED) return c;
      if (c === 0) return execList(b.body, env, stdin, out, err, ctx);
    }
    return cmd.otherwise ? execList(cmd.otherwise, env, stdin, out, err, ctx) : 0;
  }
  const argv = cmd.words.map((w) => expandWord(w, env));
  // NAME=value with no command: a shell variable.
  if (argv.length > 0 && argv.every((a) => /^[A-Za-z_]\w*=/.test(a))) {
    for (const a of argv) env.vars.set(a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1));
    return 0;
  }
  const o = new Out();
  const e = new Out();
  let status = await runSimple(argv, stdin, o, e, ctx);
  const routed = await applyRedirects(
    cmd.redirects.map((r) => ({ ...r, to: expandWord(r.to, env) })),
    o,
    e,
    ctx,
  );
  if (routed.exit !== undefined && status > EXIT_REQUESTED) status = routed.exit;
  out.write(routed.out);
  err.write(routed.err);
  if (routed.err2out.length) out.write(routed.err2out);
  return status;
}

async function applyRedirects(
  redirects: Redirect[],
  o: Out,
  e: Out,
  ctx: ShellContext,
): Promise<{ out: Buffer; err: Buffer; err2out: Buffer; exit?: number }> {
  let out = o.buffer;
  let err = e.buffer;
  let err2out = Buffer.alloc(0);
  for (const r of redirects) {
    const data = r.fd === 1 ? out : err;
    if (r.to === '&1' && r.fd === 2) {
      err2out = Buffer.concat([err2out, err]);
      err = Buffer.alloc(0);
      continue;
    }
    if (r.to === '&2' && r.fd === 1) {
      err = Buffer.concat([err, out]);
      out = Buffer.alloc(0);
      continue;
    }
    if (r.fd === 1) out = Buffer.alloc(0);
    else err = Buffer.alloc(0);
    if (r.to === '/dev/null') continue;
    const res = await ctx.view.resolve(r.to);
    if (res?.kind !== 'host' || !res.writable) {
      return { out, err: Buffer.from(`sh: can't create ${r.to}: Read-only file system\n`), err2out, exit: 1 };
    }
    await mkdir(dirname(res.hostPath), { recursive: true });
    let prev = Buffer.alloc(0);
    if (r.append) prev = await readFile(res.hostPath).catch(() => Buffer.alloc(0));
    await writeFile(res.hostPath, Buffer.concat([prev, data]));
  }
  return { out, err, err2out };
}

/** Shell words and operators; `$?` and `$VAR` are expanded outside single quotes. */
export function tokenize(line: string): Token[] {
  const out: Token[] = [];
  let i = 0;
  const n = line.length;
  while (i < n) {
    const c = line[i];
    if (c === ' ' || c === '\t') {
      i++;
      continue;
    }
    if (c === '\n' || c === ';') {
      out.push({ op: ';' });
      i++;
      continue;
    }
    if (c === '#') break;
    if (c === '&' && line[i + 1] === '&') {
      out.push({ op: '&&' });
      i += 2;
      continue;
    }
    if (c === '|' && line[i + 1] === '|') {
      out.push({ op: '||' });
      i += 2;
      continue;
    }
    if (c === '|') {
      out.push({ op: '|' });
      i++;
      continue;
    }
    const redir = /^([12]?)(>>?)(&[12])?/.exec(line.slice(i));
    if (redir && (c === '>' || ((c === '1' || c === '2') && line[i + 1] === '>'))) {
      out.push({
        redirect: { fd: redir[1] === '2' ? 2 : 1, append: redir[2] === '>>', to: redir[3] },
      });
      i += redir[0].length;
      continue;
    }
    if (c === '&') {
      // Background jobs run in the foreground here: same output, same order.
      out.push({ op: ';' });
      i++;
      continue;
    }
    if (c === '<') throw new Error('syntax error: input redirection is not supported');
    // A word: concatenation of quoted and unquoted parts.
    let w = '';
    while (i < n && !' \t\n;|&><'.includes(line[i])) {
      const ch = line[i];
      if (ch === "'") {
        const end = line.indexOf("'", i + 1);
        if (end < 0) throw new Error("unterminated '");
        w += line.slice(i + 1, end);
        i = end + 1;
      } else if (ch === '"') {
        i++;
        while (i < n && line[i] !== '"') {
          if (line[i] === '\\' && i + 1 < n && '"\\$`'.includes(line[i + 1])) {
            w += line[i + 1];
            i += 2;
          } else if (line[i] === '$') {
            const r = expand(line, i);
            w += r.value;
            i = r.next;
          } else w += line[i++];
        }
        if (i >= n) throw new Error('unterminated "');
        i++;
      } else if (ch === '\\' && i + 1 < n) {
        w += line[i + 1];
        i += 2;
      } else if (ch === '$') {
        const r = expand(line, i);
        w += r.value;
        i = r.next;
      } else w += line[i++];
    }
    if (w.length || (i < n && !' \t'.includes(line[i]))) out.push({ text: w });
    else if (w === '' && i > 0 && (line[i - 1] === '"' || line[i - 1] === "'")) out.push({ text: '' });
  }
  return out;
}

const VAR_MARK_RE = /\u0000\$([A-Za-z_][A-Za-z0-9_]*|\?)\u0000/g;
function varMark(name: string): string {
  return `\u0000$${name}\u0000`;
}

function expand(line: string, i: number) {
  // Variables are resolved when the command runs (after the previous one finished), not at parse time.
  if (line[i + 1] === '?') return { value: varMark('?'), next: i + 2 };
  const m = /^\$(\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))/.exec(line.slice(i));
  if (!m) return { value: '$', next: i + 1 };
  return { value: varMark(m[2] ?? m[3]), next: i + m[0].length };
}

type Builtin = (argv: string[], stdin: Buffer, o: Out, e: Out, ctx: ShellContext) => Promise<number>;

const builtins: Record<string, Builtin> = {
  true: async () => 0,
  false: async () => 1,
  ':': async () => 0,
  exit: async (argv) => EXIT_REQUESTED - ((Number.parseInt(argv[1] ?? '0', 10) || 0) & 0xff),
  echo: async (argv, _in, o) => {
    let args = argv.slice(1);
    let newline = true;
    if (args[0] === '-n') {
      newline = false;
      args = args.slice(1);
    }
    o.write(args.join(' ') + (newline ? '\n' : ''));
    return 0;
  },
  id: async (_a, _in, o) => {
    o.write(
      'uid=2000(shell) gid=2000(shell) groups=2000(shell),1004(input),1007(log),1011(adb),1015(sdcard_rw),1028(sdcard_r),3001(net_bt_admin),3002(net_bt),3003(inet),3006(net_bw_stats) context=u:r:shell:s0\n',
    );
    return 0;
  },
  whoami: async (_a, _in, o) => {
    o.write('shell\n');
    return 0;
  },
  pwd: async (_a, _in, o) => {
    o.write('/\n');
    return 0;
  },
  uname: async (argv, _in, o) => {
    o.write(argv.includes('-a') ? 'Linux localhost 6.1.0-omie #1 SMP PREEMPT aarch64 Toybox\n' : 'Linux\n');
    return 0;
  },
  getprop: async (argv, _in, o, _e, ctx) => {
    const props = await ctx.view.props();
    if (argv.length > 1) {
      o.write(`${props.get(argv[1]) ?? argv[2] ?? ''}\n`);
      return 0;
    }
    for (const [k, v] of props) o.write(`[${k}]: [${v}]\n`);
    return 0;
  },
  setprop: async (argv, _in, _o, e) => {
    if (argv.length !== 3) {
      e.write('setprop: need 2 arguments\n');
      return 1;
    }
    e.write(`Failed to set property '${argv[1]}' to '${argv[2]}'.\nSee dmesg for error reason.\n`);
    return 1;
  },
  sh: async (argv, stdin, o, e, ctx) => {
    if (argv[1] !== '-c' || argv[2] === undefined) {
      e.write('sh: only `sh -c COMMAND` is supported here\n');
      return 2;
    }
    const r = await runShell(argv[2], ctx, stdin);
    o.write(r.stdout);
    e.write(r.stderr);
    return r.exitCode;
  },
  pm: async (argv, _in, o, e, ctx) => pm(argv.slice(1), o, e, ctx),
  cmd: async (argv, _in, o, e, ctx) => {
    if (argv[1] === 'package') return pm(argv.slice(2), o, e, ctx);
    if (argv[1] === 'settings') return settings(argv.slice(2), o, e, ctx);
    e.write(`cmd: Can't find service: ${argv[1] ?? ''}\n`);
    return 20;
  },
  settings: async (argv, _in, o, e, ctx) => settings(argv.slice(1), o, e, ctx),
  cat: async (argv, stdin, o, e, ctx) => {
    const files = argv.slice(1).filter((a) => a !== '-');
    if (files.length === 0) {
      o.write(stdin);
      return 0;
    }
    let rc = 0;
    for (const f of files) {
      const r = await ctx.view.resolve(f);
      if (r?.kind === 'virtual-dir') {
        e.write(`cat: ${f}: Is a directory\n`);
        rc = 1;
        continue;
      }
      try {
        if (r?.kind === 'virtual-file') {
          o.write(r.content);
          continue;
        }
        if (!r) throw Object.assign(new Error(), { code: 'ENOENT' });
        o.write(await readFile(r.hostPath));
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        e.write(`cat: ${f}: ${code === 'EISDIR' ? 'Is a directory' : 'No such file or directory'}\n`);
        rc = 1;
      }
    }
    return rc;
  },
  ls: async (argv, _in, o, e, ctx) => {
    const flags = argv
      .slice(1)
      .filter((a) => a.startsWith('-'))
      .join('');
    const paths = argv.slice(1).filter((a) => !a.startsWith('-'));
    if (paths.length === 0) paths.push('/');
    let rc = 0;
    for (const p of paths) {
      const entries = await listEntries(ctx, p);
      if (!entries) {
        e.write(`ls: ${p}: No such file or directory\n`);
        rc = 1;
        continue;
      }
      let list =
        entries.isDir && flags.includes('a')
          ? [
              { name: '.', dir: true, size: 4096, mode: 0o40755 },
              { name: '..', dir: true, size: 4096, mode: 0o40755 },
              ...entries.items,
            ]
          : entries.items;
      if (!flags.includes('a')) list = list.filter((x) => !x.name.startsWith('.'));
      if (paths.length > 1) o.write(`${p}:\n`);
      for (const x of list) {
        const name = x.name + (flags.includes('p') && x.dir ? '/' : '');
        if (flags.includes('l'))
          o.write(
            `${modeString(x.mode)} 1 root root ${String(x.size).padStart(8)} 2009-01-01 00:00 ${name}\n`,
          );
        else o.write(`${name}\n`);
      }
    }
    return rc;
  },
  '[': async (argv, _in, _o, e, ctx) => {
    if (argv[argv.length - 1] !== ']') {
      e.write('[: missing ]\n');
      return 2;
    }
    return testExpr(argv.slice(1, -1), ctx, e);
  },
  test: async (argv, _in, _o, e, ctx) => testExpr(argv.slice(1), ctx, e),
  mkdir: async (argv, _in, _o, e, ctx) => {
    let rc = 0;
    for (const p of argv.slice(1).filter((a) => !a.startsWith('-'))) {
      const r = await ctx.view.resolve(p);
      if (r?.kind !== 'host' || !r.writable) {
        e.write(`mkdir: '${p}': Read-only file system\n`);
        rc = 1;
        continue;
      }
      await mkdir(r.hostPath, { recursive: true });
    }
    return rc;
  },
  rm: async (argv, _in, _o, e, ctx) => {
    const force = argv.some((a) => /^-[a-z]*f/.test(a));
    const recursive = argv.some((a) => /^-[a-z]*r/i.test(a));
    let rc = 0;
    for (const p of argv.slice(1).filter((a) => !a.startsWith('-'))) {
      const r = await ctx.view.resolve(p);
      if (r?.kind !== 'host' || !r.writable) {
        e.write(`rm: ${p}: Read-only file system\n`);
        rc = 1;
        continue;
      }
      try {
        const st = await stat(r.hostPath);
        if (st.isDirectory() && !recursive) {
          e.write(`rm: ${p}: Is a directory\n`);
          rc = 1;
          continue;
        }
        await rm(r.hostPath, { recursive, force });
      } catch {
        if (!force) {
          e.write(`rm: ${p}: No such file or directory\n`);
          rc = 1;
        }
      }
    }
    return rc;
  },
  grep: async (argv, stdin, o, e) => {
    const flags = argv.filter((a) => /^-[a-zA-Z]+$/.test(a)).join('');
    const rest = argv.slice(1).filter((a) => !/^-[a-zA-Z]+$/.test(a));
    if (rest.length === 0) {
      e.write('grep: no pattern\n');
      return 2;
    }
    let re: RegExp;
    try {
      const src = flags.includes('F') ? rest[0].replace(/[.*+?^${}()|[\]\\]/g, '\\$&') : rest[0];
      re = new RegExp(src, flags.includes('i') ? 'i' : '');
    } catch {
      e.write(`grep: bad regex '${rest[0]}'\n`);
      return 2;
    }
    const lines = stdin.toString('utf8').split('\n');
    if (lines[lines.length - 1] === '') lines.pop();
    const hits = lines.filter((l) => re.test(l) !== flags.includes('v'));
    if (flags.includes('c')) o.write(`${hits.length}\n`);
    else if (!flags.includes('q')) o.write(hits.map((l) => `${l}\n`).join(''));
    return hits.length ? 0 : 1;
  },
  wc: async (argv, stdin, o) => {
    const text = stdin.toString('utf8');
    if (argv.includes('-l')) o.write(`${text.split('\n').length - 1}\n`);
    else
      o.write(`${text.split('\n').length - 1} ${text.split(/\s+/).filter(Boolean).length} ${stdin.length}\n`);
    return 0;
  },
  reboot: async (argv, _in, _o, _e, ctx) => {
    await ctx.reboot(argv[1] ?? '');
    return 0;
  },
};

async function runSimple(argv: string[], stdin: Buffer, o: Out, e: Out, ctx: ShellContext): Promise<number> {
  if (argv.length === 0) return 0;
  const name = argv[0].replace(/^\/system\/bin\//, '');
  const fn = Object.hasOwn(builtins, name) ? builtins[name] : undefined;
  if (!fn) {
    e.write(`/system/bin/sh: ${argv[0]}: not found\n`);
    return 127;
  }
  try {
    return await fn([name, ...argv.slice(1)], stdin, o, e, ctx);
  } catch (err) {
    e.write(`${name}: ${(err as Error).message}\n`);
    return 1;
  }
}

interface LsItem {
  name: string;
  dir: boolean;
  size: number;
  mode: number;
}

/** A directory's entries (or the file itself), or null when the path does not exist. */
async function listEntries(
  ctx: ShellContext,
  p: string,
): Promise<{ isDir: boolean; items: LsItem[] } | null> {
  const r = await ctx.view.resolve(p);
  if (!r) return null;
  if (r.kind === 'virtual-file')
    return {
      isDir: false,
      items: [{ name: posix.basename(p), dir: false, size: r.content.length, mode: 0o100444 }],
    };
  if (r.kind === 'virtual-dir') {
    const items: LsItem[] = [];
    for (const n of r.entries) {
      const sub = await ctx.view.resolve(posix.join(p, n));
      if (sub?.kind === 'virtual-file') {
        items.push({ name: n, dir: false, size: sub.content.length, mode: 0o100444 });
        continue;
      }
      const st = sub?.kind === 'host' ? await stat(sub.hostPath).catch(() => null) : null;
      const dir = sub?.kind === 'virtual-dir' || st?.isDirectory() === true;
      items.push({
        name: n,
        dir,
        size: st?.size ?? (dir ? 4096 : 0),
        mode: st?.mode ?? (dir ? 0o40755 : 0o100644),
      });
    }
    return { isDir: true, items };
  }
  const st = await stat(r.hostPath).catch(() => null);
  if (!st) return null;
  if (!st.isDirectory())
    return { isDir: false, items: [{ name: posix.basename(p), dir: false, size: st.size, mode: st.mode }] };
  const items: LsItem[] = [];
  for (const d of (await readdir(r.hostPath, { withFileTypes: true })).sort((a, b) =>
    a.name < b.name ? -1 : 1,
  )) {
    const full = await stat(posix.join(r.hostPath, d.name)).catch(() => null);
    items.push({
      name: d.name,
      dir: full?.isDirectory() ?? d.isDirectory(),
      size: full?.size ?? 0,
      mode: full?.mode ?? 0o100644,
    });
  }
  return { isDir: true, items };
}

function modeString(mode: number): string {
  const type = (mode & 0o170000) === 0o040000 ? 'd' : (mode & 0o170000) === 0o120000 ? 'l' : '-';
  const rwx = (b: number) => `${b & 4 ? 'r' : '-'}${b & 2 ? 'w' : '-'}${b & 1 ? 'x' : '-'}`;
  return type + rwx((mode >> 6) & 7) + rwx((mode >> 3) & 7) + rwx(mode & 7);
}

/** `test` / `[`: file tests (-e -f -d -s -r), string tests (-z -n = !=), integer compares, `!`. */
async function testExpr(args: string[], ctx: ShellContext, e: Out): Promise<number> {
  if (args[0] === '!') return (await testExpr(args.slice(1), ctx, e)) === 0 ? 1 : 0;
  if (args.length === 0) return 1;
  if (args.length === 1) return args[0] !== '' ? 0 : 1;
  if (args.length === 2) {
    const [op, v] = args;
    if (op === '-z') return v === '' ? 0 : 1;
    if (op === '-n') return v !== '' ? 0 : 1;
    if (['-e', '-f', '-d', '-s', '-r'].includes(op)) {
      const r = await ctx.view.resolve(v);
      let isDir = false;
      let isFile = false;
      let size = 0;
      if (r?.kind === 'virtual-dir') isDir = true;
      else if (r?.kind === 'virtual-file') {
        isFile = true;
        size = r.content.length;
      } else if (r?.kind === 'host') {
        const st = await stat(r.hostPath).catch(() => null);
        isDir = st?.isDirectory() ?? false;
        isFile = st?.isFile() ?? false;
        size = st?.size ?? 0;
      }
      const ok =
        op === '-d' ? isDir : op === '-f' ? isFile : op === '-s' ? isFile && size > 0 : isDir || isFile;
      return ok ? 0 : 1;
    }
  }
  if (args.length === 3) {
    const [a, op, b] = args;
    if (op === '=' || op === '==') return a === b ? 0 : 1;
    if (op === '!=') return a !== b ? 0 : 1;
    const ints: Record<string, (x: number, y: number) => boolean> = {
      '-eq': (x, y) => x === y,
      '-ne': (x, y) => x !== y,
      '-lt': (x, y) => x < y,
      '-le': (x, y) => x <= y,
      '-gt': (x, y) => x > y,
      '-ge': (x, y) => x >= y,
    };
    if (ints[op]) {
      const x = Number.parseInt(a, 10);
      const y = Number.parseInt(b, 10);
      if (Number.isNaN(x) || Number.isNaN(y)) {
        e.write(`test: bad number\n`);
        return 2;
      }
      return ints[op](x, y) ? 0 : 1;
    }
  }
  e.write(`test: unknown operand\n`);
  return 2;
}

async function pm(args: string[], o: Out, e: Out, ctx: ShellContext): Promise<number> {
  if (args[0] === 'list' && args[1] === 'packages') {
    const opts = args.slice(2);
    const showPath = opts.includes('-f');
    const onlySystem = opts.includes('-s');
    const onlyThird = opts.includes('-3');
    const showUid = opts.includes('-U');
    const filter = opts.find((a) => !a.startsWith('-'));
    if (opts.includes('--apex-only')) {
      // PackageManagerShellCommand: APEX packages only, their file as the source dir.
      for (const a of await ctx.view.activeApexes())
        if (!filter || a.package.includes(filter))
          o.write(`package:${showPath ? `${a.path}=` : ''}${a.package}\n`);
      return 0;
    }
    // Apps get uids from FIRST_APPLICATION_UID (10000) in install order, as a fresh device would.
    let uid = 10_000;
    for (const p of await ctx.view.packages()) {
      const appUid = uid++;
      if (onlySystem && !p.system) continue;
      if (onlyThird && p.system) continue;
      if (filter && !p.name.includes(filter)) continue;
      // PackageManagerShellCommand: "package:" [sourceDir "="] name [" uid:" uid]
      o.write(`package:${showPath ? `${p.path}=` : ''}${p.name}${showUid ? ` uid:${appUid}` : ''}\n`);
    }
    return 0;
  }
  if (args[0] === 'uninstall' && args[args.length - 1]) {
    const name = args[args.length - 1];
    const p = (await ctx.view.packages()).find((x) => x.name === name);
    if (!p) {
      o.write('Failure [DELETE_FAILED_INTERNAL_ERROR]\n');
      return 1;
    }
    if (p.system) {
      // System apps can only be removed for the user; the partition stays untouched.
      o.write('Failure [DELETE_FAILED_INTERNAL_ERROR]\n');
      return 1;
    }
    // The install folder, and its "~~random" parent on the Android 11+ layout.
    const pkgDir = posix.dirname(p.path);
    const parent = posix.dirname(pkgDir);
    const r = await ctx.view.resolve(posix.basename(parent).startsWith('~~') ? parent : pkgDir);
    if (r?.kind === 'host' && r.writable) await rm(r.hostPath, { recursive: true, force: true });
    o.write('Success\n');
    return 0;
  }
  if (args[0] === 'path' && args[1]) {
    const p = (await ctx.view.packages()).find((x) => x.name === args[1]);
    if (!p) return 1;
    o.write(`package:${p.path}\n`);
    return 0;
  }
  e.write(`Unknown command: ${args.join(' ')}\n`);
  return 1;
}

async function settings(args: string[], o: Out, e: Out, ctx: ShellContext): Promise<number> {
  const rest = args.filter((a, i) => !(a === '--user' || args[i - 1] === '--user'));
  const [verb, ns, key, value] = rest;
  if (!['global', 'secure', 'system'].includes(ns ?? '')) {
    e.write('Invalid namespace\nusage:  settings [--user <USER_ID> | current] get namespace key\n');
    return 255;
  }
  const space = ns as SettingsNamespace;
  if (verb === 'get' && key) {
    o.write(`${(await ctx.view.settings())[space][key] ?? 'null'}\n`);
    return 0;
  }
  if (verb === 'put' && key && value !== undefined) {
    await ctx.view.putSetting(space, key, value);
    return 0;
  }
  if (verb === 'delete' && key) {
    await ctx.view.putSetting(space, key, null);
    o.write('Deleted 1 rows\n');
    return 0;
  }
  if (verb === 'list') {
    for (const [k, v] of Object.entries((await ctx.view.settings())[space]).sort()) o.write(`${k}=${v}\n`);
    return 0;
  }
  e.write('usage:  settings [--user <USER_ID> | current] get namespace key\n');
  return 255;
}
