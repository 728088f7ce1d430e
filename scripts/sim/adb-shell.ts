/**
 * The virtual device's tiny `sh`: enough of toybox/mksh for what hosts run over `adb shell`
 * (getprop, pm, settings, cat, ls, id, echo, …) with `;`, `&&`, `||`, `|`, quoting, `$?`, and
 * `>`/`2>`/`2>&1` redirections. Unknown commands fail like mksh: "sh: X: not found", status 127.
 */
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, posix } from 'node:path';
import type { DeviceView, SettingsNamespace } from './view.ts';

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
interface SimpleCommand {
  argv: string[];
  redirects: Redirect[];
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
  let status = previousStatus;
  let tokens: Token[];
  try {
    tokens = tokenize(line);
  } catch (e) {
    return { stdout: Buffer.alloc(0), stderr: Buffer.from(`sh: ${(e as Error).message}\n`), exitCode: 2 };
  }
  // Split into and/or lists of pipelines.
  let i = 0;
  let pendingOp: Op | null = null;
  while (i < tokens.length) {
    const pipeline: SimpleCommand[] = [{ argv: [], redirects: [] }];
    for (; i < tokens.length; i++) {
      const t = tokens[i];
      if ('op' in t) {
        if (t.op === '|') {
          pipeline.push({ argv: [], redirects: [] });
          continue;
        }
        break;
      }
      const cur = pipeline[pipeline.length - 1];
      if ('redirect' in t) {
        let to = t.redirect.to;
        if (to === undefined) {
          const next = tokens[i + 1];
          if (!next || !('text' in next)) return syntaxError(stdout, stderr, 'missing redirection target');
          to = next.text;
          i++;
        }
        cur.redirects.push({ fd: t.redirect.fd, append: t.redirect.append, to });
      } else cur.argv.push(t.text);
    }
    const op = i < tokens.length ? (tokens[i] as { op: Op }).op : null;
    i++;
    const run = pendingOp === null || pendingOp === ';' || (pendingOp === '&&' ? status === 0 : status !== 0);
    if (run && pipeline.some((c) => c.argv.length)) {
      let input = stdin;
      for (const [k, cmd] of pipeline.entries()) {
        const last = k === pipeline.length - 1;
        const o = new Out();
        const e = new Out();
        const argv = cmd.argv.map((a) => a.split(STATUS_MARK).join(String(status)));
        status = await runSimple(argv, input, o, e, ctx);
        const routed = await applyRedirects(cmd.redirects, o, e, ctx);
        if (routed.exit !== undefined) status = routed.exit;
        if (last) {
          stdout.write(routed.out);
        } else {
          input = routed.out;
        }
        stderr.write(routed.err);
        if (routed.err2out.length) (last ? stdout : stderr).write(routed.err2out);
        if (status <= EXIT_REQUESTED) break;
      }
      if (status <= EXIT_REQUESTED) {
        return {
          stdout: stdout.buffer,
          stderr: opts.mergeStderr ? Buffer.alloc(0) : stderr.buffer,
          exitCode: (EXIT_REQUESTED - status) & 0xff,
          exited: true,
        };
      }
    }
    pendingOp = op;
  }
  return {
    stdout: stdout.buffer,
    stderr: opts.mergeStderr ? Buffer.alloc(0) : stderr.buffer,
    exitCode: status & 0xff,
  };
}

/** `exit N` is reported as EXIT_REQUESTED - N so that no shared state is needed. */
const EXIT_REQUESTED = -1000;
const STATUS_MARK = '\u0000?\u0000';

function syntaxError(stdout: Out, stderr: Out, msg: string): ShellResult {
  stderr.write(`sh: syntax error: ${msg}\n`);
  return { stdout: stdout.buffer, stderr: stderr.buffer, exitCode: 2 };
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
  const env: Record<string, string> = { HOME: '/', PATH: '/system/bin:/system/xbin', USER: 'shell' };
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
            const r = expand(line, i, env);
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
        const r = expand(line, i, env);
        w += r.value;
        i = r.next;
      } else w += line[i++];
    }
    if (w.length || (i < n && !' \t'.includes(line[i]))) out.push({ text: w });
    else if (w === '' && i > 0 && (line[i - 1] === '"' || line[i - 1] === "'")) out.push({ text: '' });
  }
  return out;
}

function expand(line: string, i: number, env: Record<string, string>) {
  // `$?` is resolved when the command runs (after the previous one finished), not at parse time.
  if (line[i + 1] === '?') return { value: STATUS_MARK, next: i + 2 };
  const m = /^\$(\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))/.exec(line.slice(i));
  if (!m) return { value: '$', next: i + 1 };
  return { value: env[m[2] ?? m[3]] ?? '', next: i + m[0].length };
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
    const flags = argv.filter((a) => a.startsWith('-')).join('');
    const paths = argv.slice(1).filter((a) => !a.startsWith('-'));
    if (paths.length === 0) paths.push('/');
    let rc = 0;
    for (const p of paths) {
      const r = await ctx.view.resolve(p);
      let names: string[] = [];
      if (r?.kind === 'virtual-dir') names = r.entries;
      else {
        try {
          if (!r) throw new Error();
          const st = await stat(r.hostPath);
          names = st.isDirectory() ? (await readdir(r.hostPath)).sort() : [posix.basename(p)];
        } catch {
          e.write(`ls: ${p}: No such file or directory\n`);
          rc = 1;
          continue;
        }
      }
      if (!flags.includes('a')) names = names.filter((x) => !x.startsWith('.'));
      if (paths.length > 1) o.write(`${p}:\n`);
      o.write(names.map((x) => `${x}\n`).join(''));
    }
    return rc;
  },
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

async function pm(args: string[], o: Out, e: Out, ctx: ShellContext): Promise<number> {
  if (args[0] === 'list' && args[1] === 'packages') {
    const opts = args.slice(2);
    const showPath = opts.includes('-f');
    const onlySystem = opts.includes('-s');
    const onlyThird = opts.includes('-3');
    const filter = opts.find((a) => !a.startsWith('-'));
    for (const p of await ctx.view.packages()) {
      if (onlySystem && !p.system) continue;
      if (onlyThird && p.system) continue;
      if (filter && !p.name.includes(filter)) continue;
      o.write(showPath ? `package:${p.path}=${p.name}\n` : `package:${p.name}\n`);
    }
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
