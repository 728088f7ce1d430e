/**
 * Fastboot over TCP (system/core/fastboot/README.md "TCP Protocol v1", fastboot/tcp.cpp): both sides
 * send the 4-byte handshake "FB01" ("FB" + 2-digit version; the lower version wins), then every
 * fastboot packet travels as [8-byte big-endian length][payload]. Responses are one frame each;
 * download data may be split over any number of frames.
 */
import { connect, type Socket } from 'node:net';
import { EnvironmentError } from '../../errors.ts';
import { type FastbootTransport, TransportError } from './protocol.ts';

export const TCP_HANDSHAKE = Buffer.from('FB01', 'ascii');
/** Fastboot's default TCP port. */
export const FASTBOOT_TCP_PORT = 5554;

/**
 * Pull-style reader over a socket: `read(n)` resolves with exactly n bytes. Pauses the socket while
 * more than `highWater` bytes are buffered, so a fast sender cannot fill memory.
 */
export class SocketReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private waiter?: () => void;
  private ended = false;
  private error?: Error;

  constructor(
    private readonly sock: Socket,
    private readonly highWater = 8 << 20,
    /** Sees every received chunk first (fault injection); calls `push` itself when it wants it delivered. */
    intercept?: (c: Buffer, push: (c: Buffer) => void) => void,
  ) {
    sock.on('data', (c: Buffer) => (intercept ? intercept(c, (x) => this.push(x)) : this.push(c)));
    sock.on('end', () => this.finish());
    sock.on('close', () => this.finish());
    sock.on('error', (e) => {
      this.error ??= e;
      this.wake();
    });
  }

  /** Feeds bytes (also used by fault injection to cut a stream at an exact byte). */
  push(c: Buffer): void {
    this.chunks.push(c);
    this.buffered += c.length;
    if (this.buffered > this.highWater) this.sock.pause();
    this.wake();
  }

  finish(): void {
    this.ended = true;
    this.wake();
  }

  get available(): number {
    return this.buffered;
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  private wait(): Promise<void> {
    return new Promise((res) => {
      this.waiter = res;
    });
  }

  /** Exactly `n` bytes; throws TransportError if the stream ends first. */
  async read(n: number): Promise<Buffer> {
    while (this.buffered < n) {
      if (this.error)
        throw new TransportError(`connection error: ${this.error.message}`, { cause: this.error });
      if (this.ended) throw new TransportError(`connection closed (wanted ${n} bytes, had ${this.buffered})`);
      this.sock.resume();
      await this.wait();
    }
    return this.take(n);
  }

  /** Between 1 and `max` bytes, as soon as any are available (never copies: at most one received chunk). */
  async readSome(max: number): Promise<Buffer> {
    while (this.buffered === 0) {
      if (this.error)
        throw new TransportError(`connection error: ${this.error.message}`, { cause: this.error });
      if (this.ended) throw new TransportError('connection closed');
      this.sock.resume();
      await this.wait();
    }
    return this.take(Math.min(max, this.chunks[0].length));
  }

  private take(n: number): Buffer {
    let out: Buffer;
    const first = this.chunks[0];
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let o = 0;
      while (o < n) {
        const c = this.chunks[0];
        const k = Math.min(c.length, n - o);
        c.copy(out, o, 0, k);
        o += k;
        if (k === c.length) this.chunks.shift();
        else this.chunks[0] = c.subarray(k);
      }
    }
    this.buffered -= n;
    if (this.buffered <= this.highWater) this.sock.resume();
    return out;
  }
}

/** Writes honouring backpressure: resolves once the socket can take more. */
export function socketWrite(sock: Socket, data: Buffer | Buffer[]): Promise<void> {
  return new Promise((res, rej) => {
    if (sock.destroyed) {
      rej(new TransportError('connection closed'));
      return;
    }
    const bufs = Array.isArray(data) ? data : [data];
    let ok = true;
    for (const b of bufs) ok = sock.write(b) && ok;
    if (ok) res();
    else {
      const onDrain = () => {
        sock.off('close', onClose);
        res();
      };
      const onClose = () => {
        sock.off('drain', onDrain);
        rej(new TransportError('connection closed while sending'));
      };
      sock.once('drain', onDrain);
      sock.once('close', onClose);
    }
  });
}

export function frameHeader(len: number): Buffer {
  const h = Buffer.alloc(8);
  h.writeBigUInt64BE(BigInt(len), 0);
  return h;
}

/** Parses "tcp:host[:port]" / "host:port" into its parts. */
export function parseTcpAddress(addr: string): { host: string; port: number } {
  const s = addr.replace(/^tcp:/, '');
  const m = /^(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(s);
  if (!m) throw new EnvironmentError(`not a TCP fastboot address: ${addr}`, { code: 'FASTBOOT_ADDRESS' });
  return { host: m[1].replace(/^\[|\]$/g, ''), port: m[2] ? Number(m[2]) : FASTBOOT_TCP_PORT };
}

/** A connected FB01 transport. */
export class TcpTransport implements FastbootTransport {
  private frameLeft = 0;
  private constructor(
    private readonly sock: Socket,
    private readonly reader: SocketReader,
    readonly address: string,
  ) {}

  static async connect(address: string, opts: { timeoutMs?: number } = {}): Promise<TcpTransport> {
    const { host, port } = parseTcpAddress(address);
    const timeoutMs = opts.timeoutMs ?? 5000;
    const sock = await new Promise<Socket>((res, rej) => {
      const s = connect({ host, port, noDelay: true });
      const t = setTimeout(() => {
        s.destroy();
        rej(new TransportError(`timed out connecting to ${host}:${port}`));
      }, timeoutMs);
      s.once('connect', () => {
        clearTimeout(t);
        res(s);
      });
      s.once('error', (e) => {
        clearTimeout(t);
        rej(new TransportError(`cannot connect to ${host}:${port}: ${e.message}`, { cause: e }));
      });
    });
    const reader = new SocketReader(sock);
    const t = new TcpTransport(sock, reader, `tcp:${host}:${port}`);
    try {
      await socketWrite(sock, TCP_HANDSHAKE);
      const hs = await withTimeout(reader.read(4), timeoutMs, 'handshake');
      if (hs.subarray(0, 2).toString('ascii') !== 'FB' || !/^\d\d$/.test(hs.subarray(2).toString('ascii')))
        throw new TransportError(
          `bad fastboot handshake from ${host}:${port}: ${JSON.stringify(hs.toString('latin1'))}`,
        );
      if (Number(hs.subarray(2).toString('ascii')) < 1)
        throw new TransportError(
          `unsupported fastboot TCP protocol version ${hs.subarray(2).toString('ascii')}`,
        );
    } catch (e) {
      sock.destroy();
      throw e;
    }
    return t;
  }

  async write(data: Buffer): Promise<void> {
    await socketWrite(this.sock, [frameHeader(data.length), data]);
  }

  /** Sends many buffers as one frame (header + data) without copying them together. */
  async writeFrame(parts: Buffer[]): Promise<void> {
    const len = parts.reduce((n, p) => n + p.length, 0);
    await socketWrite(this.sock, [frameHeader(len), ...parts]);
  }

  async read(maxLen: number): Promise<Buffer> {
    if (this.frameLeft === 0) {
      const h = await this.reader.read(8);
      const len = h.readBigUInt64BE(0);
      if (len > BigInt(Number.MAX_SAFE_INTEGER))
        throw new TransportError(`frame length out of range: ${len}`);
      this.frameLeft = Number(len);
      if (this.frameLeft === 0) return Buffer.alloc(0);
    }
    const b = await this.reader.read(Math.min(maxLen, this.frameLeft));
    this.frameLeft -= b.length;
    return b;
  }

  async close(): Promise<void> {
    this.sock.end();
    this.sock.destroy();
  }

  /** Resolves when the device closes the connection (after a reboot command). */
  waitClosed(timeoutMs: number): Promise<boolean> {
    return new Promise((res) => {
      if (this.sock.destroyed || this.sock.readableEnded) return res(true);
      const t = setTimeout(() => res(false), timeoutMs);
      this.sock.once('close', () => {
        clearTimeout(t);
        res(true);
      });
    });
  }
}

export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  if (!Number.isFinite(ms) || ms <= 0) return p;
  return new Promise<T>((res, rej) => {
    const t = setTimeout(() => rej(new TransportError(`timed out after ${ms} ms waiting for ${what}`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        res(v);
      },
      (e) => {
        clearTimeout(t);
        rej(e);
      },
    );
  });
}
