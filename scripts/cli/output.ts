import { ExitCode, type OmieError } from '../errors.ts';

/** How a command talks to the user: human text on a TTY or plain, or one JSON document with --json. */
export interface Output {
  readonly json: boolean;
  /** Human-readable line(s); suppressed with --json. */
  info(text: string): void;
  /** Warning on stderr (both modes). */
  warn(text: string): void;
  /** The command's result: printed as JSON with --json, else by `human`. */
  result<T>(value: T, human?: (v: T) => string): void;
}

export function makeOutput(json: boolean): Output {
  return {
    json,
    info(text) {
      if (!json) process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
    },
    warn(text) {
      process.stderr.write(`warning: ${text}\n`);
    },
    result(value, human) {
      if (json) process.stdout.write(`${JSON.stringify(value, jsonReplacer, 2)}\n`);
      else if (human) {
        const s = human(value);
        if (s) process.stdout.write(s.endsWith('\n') ? s : `${s}\n`);
      }
    },
  };
}

export function jsonReplacer(_key: string, v: unknown): unknown {
  if (typeof v === 'bigint') return v.toString();
  if (Buffer.isBuffer(v)) return v.toString('hex');
  if (v instanceof Uint8Array) return Buffer.from(v).toString('hex');
  return v;
}

/** Longest structured context value shown to people as JSON. */
const CONTEXT_WIDTH = 300;

export function printError(e: OmieError, json: boolean): void {
  if (json) {
    process.stdout.write(`${JSON.stringify({ ok: false, error: e.toJSON() }, jsonReplacer, 2)}\n`);
    return;
  }
  const lines = [`error: ${e.message}`];
  for (const [k, v] of Object.entries(e.context)) {
    if (v === undefined || k === 'stack' || (typeof v === 'string' && e.message.includes(v))) continue;
    let text = typeof v === 'string' ? v : JSON.stringify(v, jsonReplacer);
    // Long structured context (lists of offenders, which the message sums up) is for scripts.
    if (typeof v !== 'string' && text.length > CONTEXT_WIDTH)
      text = Array.isArray(v) ? `${v.length} item(s), listed with --json` : 'listed with --json';
    lines.push(`  ${k}: ${text}`);
  }
  if (e.hint) lines.push(`  hint: ${e.hint}`);
  if (e.exitCode === ExitCode.environment && e.code === 'INTERNAL' && e.context.stack)
    lines.push(String(e.context.stack));
  process.stderr.write(`${lines.join('\n')}\n`);
}

/** Simple table for human output. */
export function table(rows: string[][], header?: string[]): string {
  const all = header ? [header, ...rows] : rows;
  const widths: number[] = [];
  for (const r of all) {
    for (const [i, c] of r.entries()) widths[i] = Math.max(widths[i] ?? 0, c.length);
  }
  const fmtRow = (r: string[]) =>
    r
      .map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  const out = all.map(fmtRow);
  if (header) out.splice(1, 0, widths.map((w) => '-'.repeat(w)).join('  '));
  return out.join('\n');
}
