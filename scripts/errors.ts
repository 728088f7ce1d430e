/**
 * Typed errors shared by every module. Each carries a stable `code`, the process exit code the CLI
 * maps it to, and a `context` object (file, offset, field, expected, found, …) that is printed for
 * people and emitted as-is with `--json`.
 */

/** Exit codes of the `omie` CLI (documented in README). */
export const ExitCode = {
  ok: 0,
  checkFailed: 1,
  input: 2,
  environment: 3,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

export type ErrorContext = Record<string, unknown>;

export class OmieError extends Error {
  readonly code: string;
  readonly exitCode: ExitCode;
  readonly context: ErrorContext;
  /** What the user can do about it, one sentence. */
  readonly hint?: string;

  constructor(
    message: string,
    opts: { code: string; exitCode?: ExitCode; context?: ErrorContext; hint?: string; cause?: unknown },
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.code = opts.code;
    this.exitCode = opts.exitCode ?? ExitCode.input;
    this.context = opts.context ?? {};
    this.hint = opts.hint;
  }

  toJSON(): Record<string, unknown> {
    return {
      name: this.name,
      code: this.code,
      message: this.message,
      context: this.context,
      hint: this.hint,
    };
  }
}

/** Bad user input: a YAML file, an argument, a missing file. Exit 2. */
export class InputError extends OmieError {
  constructor(
    message: string,
    opts: { code?: string; context?: ErrorContext; hint?: string; cause?: unknown } = {},
  ) {
    super(message, { code: opts.code ?? 'INPUT', exitCode: ExitCode.input, ...opts });
  }
}

/** The host is missing something (a tool, a permission, a device). Exit 3. */
export class EnvironmentError extends OmieError {
  constructor(
    message: string,
    opts: { code?: string; context?: ErrorContext; hint?: string; cause?: unknown } = {},
  ) {
    super(message, { code: opts.code ?? 'ENVIRONMENT', exitCode: ExitCode.environment, ...opts });
  }
}

export interface FormatErrorDetails {
  /** Format name, e.g. "sparse", "lp-metadata", "vbmeta", "axml". */
  format: string;
  /** What is wrong, e.g. "bad magic", "truncated", "length out of range". */
  reason: string;
  field?: string;
  offset?: number | bigint;
  expected?: unknown;
  found?: unknown;
  file?: string;
}

/** A binary artifact does not follow its format. Exit 2. */
export class FormatError extends OmieError {
  readonly format: string;
  readonly offset?: number | bigint;
  readonly field?: string;

  constructor(d: FormatErrorDetails, opts: { code?: string; cause?: unknown; hint?: string } = {}) {
    super(FormatError.describe(d), {
      code: opts.code ?? `${d.format.toUpperCase().replace(/[^A-Z0-9]+/g, '_')}_INVALID`,
      exitCode: ExitCode.input,
      context: { ...d, offset: typeof d.offset === 'bigint' ? d.offset.toString() : d.offset },
      cause: opts.cause,
      hint: opts.hint,
    });
    this.format = d.format;
    this.offset = d.offset;
    this.field = d.field;
  }

  static describe(d: FormatErrorDetails): string {
    const where = [
      d.file ? d.file : undefined,
      d.offset !== undefined ? `offset ${d.offset} (0x${d.offset.toString(16)})` : undefined,
      d.field ? `field ${d.field}` : undefined,
    ]
      .filter(Boolean)
      .join(', ');
    const evf =
      d.expected !== undefined || d.found !== undefined
        ? `: expected ${fmt(d.expected)}, found ${fmt(d.found)}`
        : '';
    return `${d.format}: ${d.reason}${where ? ` at ${where}` : ''}${evf}`;
  }
}

/** A signature or digest does not match. Exit 1 (the artifact fails verification). */
export class VerificationError extends OmieError {
  readonly scheme: string;
  constructor(
    scheme: string,
    message: string,
    opts: { code?: string; context?: ErrorContext; hint?: string; cause?: unknown } = {},
  ) {
    super(`${scheme}: ${message}`, {
      code: opts.code ?? `${scheme.toUpperCase().replace(/[^A-Z0-9]+/g, '_')}_VERIFY_FAILED`,
      exitCode: ExitCode.checkFailed,
      context: { scheme, ...opts.context },
      hint: opts.hint,
      cause: opts.cause,
    });
    this.scheme = scheme;
  }
}

function fmt(v: unknown): string {
  if (typeof v === 'number') return Number.isInteger(v) && v > 9 ? `${v} (0x${v.toString(16)})` : String(v);
  if (typeof v === 'bigint') return v.toString();
  if (Buffer.isBuffer(v)) return v.toString('hex');
  if (typeof v === 'string') return JSON.stringify(v);
  return JSON.stringify(v) ?? String(v);
}

/** Wraps anything thrown into an OmieError so callers print one shape. */
export function asOmieError(e: unknown): OmieError {
  if (e instanceof OmieError) return e;
  const err = e instanceof Error ? e : new Error(String(e));
  const nodeCode = (err as NodeJS.ErrnoException).code;
  if (nodeCode === 'ENOENT' || nodeCode === 'EACCES' || nodeCode === 'EISDIR' || nodeCode === 'ENOTDIR') {
    return new InputError(err.message, {
      code: nodeCode,
      context: { path: (err as NodeJS.ErrnoException).path },
    });
  }
  return new OmieError(`internal error: ${err.message}`, {
    code: 'INTERNAL',
    exitCode: ExitCode.environment,
    context: { stack: err.stack },
    cause: err,
  });
}
