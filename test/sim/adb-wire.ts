/** A minimal adb host speaking the transport protocol directly, to drive the sim's adbd in tests. */
import { connect, type Socket } from 'node:net';
import {
  A_CLSE,
  A_CNXN,
  A_OKAY,
  A_OPEN,
  A_VERSION,
  A_WRTE,
  type AdbPacket,
  AdbPacketReader,
  encodePacket,
  MAX_PAYLOAD,
} from '../../scripts/sim/adb-packet.ts';

export class WireClient {
  private reader = new AdbPacketReader();
  private queue: AdbPacket[] = [];
  private waiters: Array<() => void> = [];
  closed = false;

  private constructor(readonly socket: Socket) {
    socket.on('data', (c: Buffer) => {
      try {
        this.queue.push(...this.reader.push(c));
      } catch {
        socket.destroy();
      }
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => {});
  }

  static open(port: number): Promise<WireClient> {
    return new Promise((res, rej) => {
      const s = connect(port, '127.0.0.1', () => res(new WireClient(s)));
      s.once('error', rej);
    });
  }

  private wake() {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  send(command: number, arg0: number, arg1: number, data: Buffer | string = Buffer.alloc(0)): void {
    this.socket.write(
      encodePacket({ command, arg0, arg1, data: Buffer.isBuffer(data) ? data : Buffer.from(data) }),
    );
  }

  /** Next packet, or null on close/timeout. */
  async next(timeoutMs = 3000): Promise<AdbPacket | null> {
    const end = Date.now() + timeoutMs;
    while (this.queue.length === 0) {
      if (this.closed || Date.now() > end) return null;
      await new Promise<void>((res) => {
        this.waiters.push(res);
        setTimeout(res, 50);
      });
    }
    return this.queue.shift() ?? null;
  }

  async handshake(): Promise<AdbPacket | null> {
    this.send(A_CNXN, A_VERSION, MAX_PAYLOAD, 'host::features=shell_v2,cmd,stat_v2,ls_v2');
    const p = await this.next();
    if (p?.command === A_CNXN) this.reader.verifyChecksum = false;
    return p;
  }

  /** Opens a service, sends `input` (if any), and collects everything written back until CLSE. */
  async service(name: string, input: Buffer[] = [], localId = 7): Promise<{ opened: boolean; data: Buffer }> {
    this.send(A_OPEN, localId, 0, `${name}\0`);
    const first = await this.next();
    if (!first || first.command !== A_OKAY) return { opened: false, data: Buffer.alloc(0) };
    const remote = first.arg0;
    const chunks: Buffer[] = [];
    for (const b of input) {
      this.send(A_WRTE, localId, remote, b);
      // Wait for its OKAY (flow control), collecting any data that arrives meanwhile.
      for (;;) {
        const p = await this.next();
        if (!p) return { opened: true, data: Buffer.concat(chunks) };
        if (p.command === A_OKAY) break;
        if (p.command === A_WRTE) {
          chunks.push(p.data);
          this.send(A_OKAY, localId, remote);
        }
        if (p.command === A_CLSE) return { opened: true, data: Buffer.concat(chunks) };
      }
    }
    for (;;) {
      const p = await this.next();
      if (!p) break;
      if (p.command === A_WRTE) {
        chunks.push(p.data);
        this.send(A_OKAY, localId, remote);
      } else if (p.command === A_CLSE) break;
    }
    return { opened: true, data: Buffer.concat(chunks) };
  }

  close(): void {
    this.socket.destroy();
  }
}

/** Splits a shell v2 stream into stdout, stderr and the exit code. */
export function decodeShellV2(buf: Buffer): { stdout: string; stderr: string; exit: number | null } {
  let stdout = '';
  let stderr = '';
  let exit: number | null = null;
  let off = 0;
  while (off + 5 <= buf.length) {
    const id = buf[off];
    const len = buf.readUInt32LE(off + 1);
    const data = buf.subarray(off + 5, off + 5 + len);
    if (id === 1) stdout += data.toString();
    else if (id === 2) stderr += data.toString();
    else if (id === 3) exit = data[0];
    off += 5 + len;
  }
  return { stdout, stderr, exit };
}

export function syncRequest(id: string, payload: Buffer | string): Buffer {
  const p = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  const h = Buffer.alloc(8);
  h.write(id, 0, 'latin1');
  h.writeUInt32LE(p.length, 4);
  return Buffer.concat([h, p]);
}
