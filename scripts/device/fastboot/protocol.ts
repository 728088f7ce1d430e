/**
 * The fastboot command/response state machine (system/core/fastboot/README.md, "Transport and
 * Framing"), independent of the transport (USB bulk endpoints or TCP frames):
 *
 *   host: command (ASCII, ≤ 4096 bytes)
 *   device: INFO… / TEXT… (any number; streamed to callbacks), then OKAY | FAIL | DATA%08x
 *   DATA: host sends exactly that many bytes (download) or reads them (upload), then OKAY | FAIL.
 *
 * Every wait for a response has a timeout. A FAIL becomes a {@link FastbootFailError} (the device
 * refused: retrying will not help); a broken or silent link becomes a {@link TransportError}
 * (reconnect and retry).
 */
import { EnvironmentError, OmieError } from '../../errors.ts';

export interface FastbootTransport {
  /** Sends one packet: a command or a piece of download data. */
  write(data: Buffer): Promise<void>;
  /** Sends several buffers as one packet without concatenating them (optional optimisation). */
  writeFrame?(parts: Buffer[]): Promise<void>;
  /** Reads one packet of at most `maxLen` bytes. */
  read(maxLen: number): Promise<Buffer>;
  close(): Promise<void>;
}

/** The link broke, timed out, or spoke garbage. Retryable after reconnecting. */
export class TransportError extends EnvironmentError {
  constructor(
    message: string,
    opts: { code?: string; cause?: unknown; context?: Record<string, unknown>; hint?: string } = {},
  ) {
    super(message, { ...opts, code: opts.code ?? 'FASTBOOT_TRANSPORT' });
  }
}

/** The device answered FAIL. */
export class FastbootFailError extends OmieError {
  readonly command: string;
  readonly deviceMessage: string;
  constructor(command: string, deviceMessage: string, hint?: string) {
    super(`fastboot ${redact(command)} failed: ${deviceMessage || '(no message)'}`, {
      code: 'FASTBOOT_FAIL',
      exitCode: 3,
      context: { command: redact(command), device: deviceMessage },
      hint,
    });
    this.command = command;
    this.deviceMessage = deviceMessage;
  }
}

function redact(cmd: string): string {
  return cmd.length > 80 ? `${cmd.slice(0, 80)}…` : cmd;
}

export interface CommandOptions {
  /** Time allowed between two device packets (INFO resets it). Default 30 s. */
  timeoutMs?: number;
  onInfo?: (line: string) => void;
  onText?: (text: string) => void;
}

export interface CommandResult {
  /** The OKAY payload (the variable's value for getvar). */
  value: string;
  /** INFO lines received before OKAY (getvar all). */
  info: string[];
}

/**
 * Largest response packet read at once. The protocol caps responses at 256 bytes, but some
 * bootloaders send longer OKAY/INFO payloads over TCP; a whole frame up to 64 KiB is one response
 * (the AOSP client would split it at 256 and misread the rest as a new status).
 */
const MAX_RESPONSE = 64 * 1024;
const MAX_COMMAND = 4096;
/** Zero-length packets tolerated while waiting for one response (a device looping on them is broken). */
const MAX_EMPTY_PACKETS = 16;

export class FastbootProtocol {
  constructor(readonly transport: FastbootTransport) {}

  /** Sends a command and waits for OKAY (resolves), FAIL (throws FastbootFailError). */
  async command(cmd: string, opts: CommandOptions = {}): Promise<CommandResult> {
    await this.send(cmd);
    const r = await this.response(cmd, opts);
    if (r.kind === 'DATA') throw new TransportError(`unexpected DATA response to ${redact(cmd)}`);
    return r.result;
  }

  /**
   * download:%08x then the data phase. `produce` must write exactly `size` bytes through `send`;
   * `send` applies backpressure. Resolves after the device's final OKAY.
   */
  async download(
    size: number,
    produce: (send: (parts: Buffer[]) => Promise<void>) => Promise<void>,
    opts: CommandOptions & { onBytes?: (done: number) => void } = {},
  ): Promise<void> {
    if (!Number.isInteger(size) || size <= 0 || size > 0xffffffff)
      throw new OmieError(`download size out of range: ${size}`, { code: 'FASTBOOT_DOWNLOAD_SIZE' });
    const cmd = `download:${size.toString(16).padStart(8, '0')}`;
    await this.send(cmd);
    const r = await this.response(cmd, opts);
    if (r.kind !== 'DATA') throw new TransportError(`device answered OKAY to ${cmd} without a data phase`);
    if (r.size !== size)
      throw new TransportError(`device asked for ${r.size} bytes, ${size} offered`, {
        context: { command: cmd },
      });
    let sent = 0;
    await produce(async (parts) => {
      const n = parts.reduce((a, p) => a + p.length, 0);
      if (sent + n > size) throw new TransportError(`download producer overran ${size} bytes`);
      if (this.transport.writeFrame) await this.transport.writeFrame(parts);
      else for (const p of parts) await this.transport.write(p);
      sent += n;
      opts.onBytes?.(sent);
    });
    if (sent !== size) throw new TransportError(`download producer wrote ${sent} of ${size} bytes`);
    const done = await this.response(cmd, opts);
    if (done.kind === 'DATA') throw new TransportError(`unexpected DATA after download`);
  }

  /** Runs a command that answers DATA%08x and sends data back (upload/fetch); returns the bytes via `sink`. */
  async readData(
    cmd: string,
    sink: (chunk: Buffer) => void | Promise<void>,
    opts: CommandOptions = {},
  ): Promise<number> {
    await this.send(cmd);
    const r = await this.response(cmd, opts);
    if (r.kind !== 'DATA') return 0;
    let left = r.size;
    while (left > 0) {
      const chunk = await this.withTimeout(this.transport.read(Math.min(left, 1 << 20)), opts.timeoutMs, cmd);
      left -= chunk.length;
      await sink(chunk);
    }
    const done = await this.response(cmd, opts);
    if (done.kind === 'DATA') throw new TransportError('unexpected DATA after upload');
    return r.size;
  }

  private async send(cmd: string): Promise<void> {
    const b = Buffer.from(cmd, 'utf8');
    if (b.length > MAX_COMMAND)
      throw new OmieError(`fastboot command too long (${b.length} bytes)`, { code: 'FASTBOOT_COMMAND' });
    await this.transport.write(b);
  }

  private async response(
    cmd: string,
    opts: CommandOptions,
  ): Promise<{ kind: 'OKAY'; result: CommandResult } | { kind: 'DATA'; size: number }> {
    const info: string[] = [];
    let empty = 0;
    for (;;) {
      const pkt = await this.withTimeout(this.transport.read(MAX_RESPONSE), opts.timeoutMs, cmd);
      // A zero-length packet is USB framing (a device terminating a transfer), not a response.
      if (pkt.length === 0 && ++empty <= MAX_EMPTY_PACKETS) continue;
      if (pkt.length < 4)
        throw new TransportError(`short fastboot response (${pkt.length} bytes) to ${redact(cmd)}`);
      const kind = pkt.subarray(0, 4).toString('latin1');
      const msg = pkt.subarray(4).toString('utf8').replace(/\0+$/, '');
      switch (kind) {
        case 'OKAY':
          return { kind: 'OKAY', result: { value: msg, info } };
        case 'FAIL':
          throw new FastbootFailError(cmd, msg);
        case 'INFO':
          info.push(msg);
          opts.onInfo?.(msg);
          break;
        case 'TEXT':
          opts.onText?.(msg);
          break;
        case 'DATA': {
          if (!/^[0-9a-fA-F]{8}$/.test(msg))
            throw new TransportError(`malformed DATA response: ${JSON.stringify(msg)}`);
          return { kind: 'DATA', size: Number.parseInt(msg, 16) };
        }
        default:
          throw new TransportError(`unknown fastboot response ${JSON.stringify(kind)} to ${redact(cmd)}`);
      }
    }
  }

  private withTimeout<T>(p: Promise<T>, ms: number | undefined, cmd: string): Promise<T> {
    const t = ms ?? 30_000;
    if (!Number.isFinite(t) || t <= 0) return p;
    return new Promise<T>((res, rej) => {
      const timer = setTimeout(() => {
        rej(new TransportError(`no answer to ${redact(cmd)} within ${t} ms`));
        this.transport.close().catch(() => {});
      }, t);
      p.then(
        (v) => {
          clearTimeout(timer);
          res(v);
        },
        (e) => {
          clearTimeout(timer);
          rej(e);
        },
      );
    });
  }
}
