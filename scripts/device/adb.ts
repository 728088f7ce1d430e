/**
 * adb for the kit: a client of the adb server (Debian's `adb`, started on demand) through
 * `@devicefarmer/adbkit`, plus the two services adbkit lacks:
 *
 * - `shell,v2,raw:<cmd>` (shell protocol v2, AOSP shell_protocol.h) so that a command's exit status
 *   and stderr come back separately; devices without the shell_v2 feature fall back to v1 with an
 *   echoed `<<omie-exit:$?>>` marker;
 * - `reboot:<target>` (bootloader, fastboot, recovery, sideload), since adbkit's reboot() has none;
 * - `sideload-host:<size>:<block>` (`adb sideload`), which adbkit lacks.
 */

import { type EventEmitter, once } from 'node:events';
import { type FileHandle, open } from 'node:fs/promises';
import type { Readable, Writable } from 'node:stream';
import adbkit, {
  type Adb as AdbClass,
  type Client,
  type Device,
  type DeviceClient,
} from '@devicefarmer/adbkit';
import { EnvironmentError, InputError, OmieError } from '../errors.ts';
import { requireTool } from '../host/tools.ts';
import { normalizeAdbState, type PmPackage, parseGetprop, parsePmList } from './adb-output.ts';

export { normalizeAdbState, type PmPackage, parseGetprop, parsePmList } from './adb-output.ts';

/** adbkit is CommonJS: under ESM its default import is the exports object, which carries `Adb`. */
const Adb: typeof AdbClass =
  (adbkit as unknown as { Adb?: typeof AdbClass }).Adb ?? (adbkit as unknown as typeof AdbClass);

/** The part of adbkit's Connection (not exported by its index) that raw services use. */
interface AdbkitConnection {
  write(data: Buffer): unknown;
  end(): unknown;
  parser: {
    raw(): unknown;
    readAscii(n: number): unknown;
    readBytes(n: number): unknown;
    readAll(): unknown;
    readError(): unknown;
  };
}

export type AdbDeviceState =
  | 'device'
  | 'unauthorized'
  | 'offline'
  | 'recovery'
  | 'sideload'
  | 'rescue'
  | 'bootloader'
  | 'authorizing'
  | 'connecting'
  | 'no permissions'
  | 'host'
  | string;

export interface AdbDevice {
  serial: string;
  state: AdbDeviceState;
}

export interface ShellResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

/** adb reboot targets (adbd passes them to `sys.powerctl` as `reboot,<target>`). */
export type RebootTarget =
  | 'system'
  | 'bootloader'
  | 'fastboot'
  | 'recovery'
  | 'sideload'
  | 'sideload-auto-reboot'
  | 'rescue';

export interface AdbOptions {
  /** adb server port (default: $ANDROID_ADB_SERVER_PORT or 5037). */
  port?: number;
  host?: string;
  /** Per-request timeout in ms (default 30 s). */
  timeoutMs?: number;
  /** "v1" forces the legacy shell (status via an echoed marker, stderr merged into stdout). */
  shellProtocol?: 'auto' | 'v1';
}

/** adb's SIDELOAD_HOST_BLOCK_SIZE: the block size `adb sideload` offers. */
export const SIDELOAD_BLOCK = 65536;

export class AdbError extends EnvironmentError {
  constructor(
    message: string,
    opts: { serial?: string; cause?: unknown; hint?: string; code?: string } = {},
  ) {
    super(message, {
      code: opts.code ?? 'ADB',
      context: { serial: opts.serial },
      hint: opts.hint,
      cause: opts.cause,
    });
  }
}

/** The adb layer: one adbkit client to one adb server. */
export class AdbHost {
  readonly client: Client;
  private readonly timeoutMs: number;
  private readonly shellProtocol: 'auto' | 'v1';
  private readonly features = new Map<string, Set<string>>();

  constructor(opts: AdbOptions = {}) {
    const envPort = Number(process.env.ANDROID_ADB_SERVER_PORT);
    this.client = Adb.createClient({
      host: opts.host ?? '127.0.0.1',
      port: opts.port ?? (Number.isInteger(envPort) && envPort > 0 ? envPort : 5037),
      bin: requireTool('adb'),
    });
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.shellProtocol = opts.shellProtocol ?? 'auto';
  }

  private device(serial: string): DeviceClient {
    return this.client.getDevice(serial);
  }

  /** Awaits an adbkit (Bluebird) promise with a timeout, turning failures into AdbError. */
  private async wrap<T>(
    what: string,
    serial: string | undefined,
    p: unknown,
    timeoutMs = this.timeoutMs,
  ): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        Promise.resolve(p as T),
        new Promise<never>((_, rej) => {
          timer = setTimeout(
            () =>
              rej(
                new AdbError(`adb ${what} timed out after ${timeoutMs} ms`, {
                  serial,
                  code: 'ADB_TIMEOUT',
                }),
              ),
            timeoutMs,
          );
        }),
      ]);
    } catch (e) {
      if (e instanceof OmieError) throw e;
      const msg = (e as Error).message ?? String(e);
      throw new AdbError(`adb ${what} failed${serial ? ` on ${serial}` : ''}: ${msg}`, {
        serial,
        cause: e,
        code: /unauthorized/i.test(msg)
          ? 'ADB_UNAUTHORIZED'
          : /not found/i.test(msg)
            ? 'ADB_NO_DEVICE'
            : 'ADB',
        hint: /unauthorized/i.test(msg)
          ? 'accept the "Allow USB debugging?" prompt on the device (this computer\'s key is ~/.android/adbkey.pub)'
          : undefined,
      });
    } finally {
      clearTimeout(timer);
    }
  }

  /** `adb connect host:port` for TCP devices (the virtual device, network adb). */
  async connect(host: string, port = 5555): Promise<string> {
    return this.wrap<string>('connect', `${host}:${port}`, this.client.connect(host, port));
  }

  async disconnect(host: string, port = 5555): Promise<void> {
    await this.wrap<unknown>('disconnect', `${host}:${port}`, this.client.disconnect(host, port));
  }

  /** Every device the adb server knows, in every state (device, unauthorized, recovery, sideload, …). */
  async devices(): Promise<AdbDevice[]> {
    const list = await this.wrap<Device[]>('devices', undefined, this.client.listDevices());
    return list.map((d) => ({ serial: d.id, state: normalizeAdbState(String(d.type)) }));
  }

  /** Calls `onChange` with the full device list on every change until the returned stop() is called. */
  async track(onChange: (devices: AdbDevice[]) => void): Promise<() => void> {
    const tracker = await this.wrap<EventEmitter & { end(): void }>(
      'track-devices',
      undefined,
      this.client.trackDevices(),
    );
    tracker.on('changeSet', () => {
      Promise.resolve(this.client.listDevices() as unknown as Promise<Device[]>)
        .then((l) => onChange(l.map((d) => ({ serial: d.id, state: normalizeAdbState(String(d.type)) }))))
        .catch(() => {});
    });
    tracker.on('error', () => {});
    return () => tracker.end();
  }

  async state(serial: string): Promise<AdbDeviceState | null> {
    return (await this.devices()).find((d) => d.serial === serial)?.state ?? null;
  }

  /** Waits until `serial` is listed in `state` (polling the adb server). */
  async waitForDevice(serial: string, state: AdbDeviceState = 'device', timeoutMs = 60_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    let last: AdbDeviceState | null = null;
    while (Date.now() < end) {
      last = await this.state(serial).catch(() => null);
      if (last === state) return;
      await new Promise((res) => setTimeout(res, 250));
    }
    throw new AdbError(
      `${serial} did not reach adb state "${state}" within ${timeoutMs} ms (last: ${last ?? 'absent'})`,
      {
        serial,
        code: 'ADB_WAIT_TIMEOUT',
      },
    );
  }

  /**
   * Waits until `serial` is listed in one of `states` and returns it. A network device ("host:port")
   * drops off the adb server while it reboots: the server keeps its old connection as "offline"
   * or forgets it, so it is disconnected and connected again until it answers.
   */
  async waitForStates(serial: string, states: AdbDeviceState[], timeoutMs = 60_000): Promise<AdbDeviceState> {
    const end = Date.now() + timeoutMs;
    const tcp = /^(.+):(\d+)$/.exec(serial);
    let last: AdbDeviceState | null = null;
    for (;;) {
      last = await this.state(serial).catch(() => null);
      if (last && states.includes(last)) return last;
      if (Date.now() > end) break;
      if (tcp) {
        if (last === 'offline') await this.disconnect(tcp[1], Number(tcp[2])).catch(() => {});
        if (last === null || last === 'offline') await this.connect(tcp[1], Number(tcp[2])).catch(() => {});
      }
      await new Promise((res) => setTimeout(res, 250));
    }
    throw new AdbError(
      `${serial} did not reach adb state ${states.map((x) => `"${x}"`).join(' or ')} within ${timeoutMs} ms (last: ${last ?? 'absent'})`,
      { serial, code: 'ADB_WAIT_TIMEOUT' },
    );
  }

  /** The device's adb features (from its CNXN banner, via the server). */
  async deviceFeatures(serial: string): Promise<Set<string>> {
    const cached = this.features.get(serial);
    if (cached) return cached;
    const out = await this.hostRequest(`host-serial:${serial}:features`, serial);
    const set = new Set(out.split(',').filter(Boolean));
    this.features.set(serial, set);
    return set;
  }

  /** A host service that answers OKAY + hex4 length + payload. */
  private async hostRequest(service: string, serial?: string): Promise<string> {
    const conn = await this.wrap<AdbkitConnection>('connection', serial, this.client.connection());
    try {
      conn.write(encodeRequest(service));
      const reply = await this.wrap<string>(service, serial, conn.parser.readAscii(4));
      if (reply !== 'OKAY') await this.wrap(service, serial, conn.parser.readError());
      const len = Number.parseInt(await this.wrap<string>(service, serial, conn.parser.readAscii(4)), 16);
      return (await this.wrap<Buffer>(service, serial, conn.parser.readBytes(len))).toString('utf8');
    } finally {
      conn.end();
    }
  }

  /** Opens a device service (after host:transport) and returns everything it writes until it closes. */
  private async deviceService(serial: string, service: string): Promise<Buffer> {
    const conn = await this.wrap<AdbkitConnection>('transport', serial, this.device(serial).transport());
    try {
      conn.write(encodeRequest(service));
      const reply = await this.wrap<string>(service, serial, conn.parser.readAscii(4));
      if (reply !== 'OKAY') await this.wrap(service, serial, conn.parser.readError());
      return await this.wrap<Buffer>(service, serial, conn.parser.readAll());
    } finally {
      conn.end();
    }
  }

  /** Runs a shell command; exit status via shell v2 (or an echoed marker on v1-only devices). */
  async shell(serial: string, command: string): Promise<ShellResult> {
    const features = await this.deviceFeatures(serial).catch(() => new Set<string>());
    if (features.has('shell_v2') && this.shellProtocol !== 'v1')
      return decodeShellV2(await this.deviceService(serial, `shell,v2,raw:${command}`));
    // v1 has no status and merges stderr into stdout: run the command in a child shell (so that
    // its `exit` does not skip the marker) and echo the status after it.
    const raw = (
      await this.deviceService(serial, `shell:sh -c ${shellQuote(command)}; echo "<<omie-exit:$?>>"`)
    ).toString('utf8');
    // The last marker is ours (stderr may still trail it on a v1 stream).
    const at = raw.lastIndexOf('<<omie-exit:');
    const m = at >= 0 ? /^<<omie-exit:(\d+)>>\r?\n?/.exec(raw.slice(at)) : null;
    if (!m) return { stdout: raw, stderr: '', exitCode: -1 };
    return { stdout: raw.slice(0, at) + raw.slice(at + m[0].length), stderr: '', exitCode: Number(m[1]) };
  }

  /** All system properties (`getprop`), parsed from its `[key]: [value]` lines. */
  async getprops(serial: string): Promise<Record<string, string>> {
    const r = await this.shell(serial, 'getprop');
    if (r.exitCode !== 0) throw new AdbError(`getprop failed on ${serial}: ${r.stderr.trim()}`, { serial });
    return parseGetprop(r.stdout);
  }

  async getprop(serial: string, name: string): Promise<string> {
    return (await this.shell(serial, `getprop ${shellQuote(name)}`)).stdout.trim();
  }

  /** Installed packages with their APK paths and uids (`pm list packages -f -U`). */
  async listPackages(
    serial: string,
    opts: { system?: boolean; thirdParty?: boolean } = {},
  ): Promise<PmPackage[]> {
    const flags = ['-f', '-U', opts.system ? '-s' : '', opts.thirdParty ? '-3' : '']
      .filter(Boolean)
      .join(' ');
    const r = await this.shell(serial, `pm list packages ${flags}`);
    if (r.exitCode !== 0)
      throw new AdbError(`pm list packages failed on ${serial}: ${r.stderr.trim()}`, { serial });
    return parsePmList(r.stdout);
  }

  /**
   * Copies a device file to `localPath` with the sync protocol's RECV (SYNC.TXT), parsing the
   * DATA/DONE/FAIL stream straight off the socket: adbkit's PullTransfer is about half as fast.
   */
  async pull(serial: string, remotePath: string, localPath: string): Promise<void> {
    const conn = await this.wrap<AdbkitConnection>('transport', serial, this.device(serial).transport());
    const out = await open(localPath, 'w');
    try {
      conn.write(encodeRequest('sync:'));
      const reply = await this.wrap<string>('sync', serial, conn.parser.readAscii(4));
      if (reply !== 'OKAY') await this.wrap('sync', serial, conn.parser.readError());
      const path = Buffer.from(remotePath, 'utf8');
      if (path.length > 1024) throw new InputError(`device path too long for adb sync: ${remotePath}`);
      const req = Buffer.alloc(8);
      req.write('RECV', 0, 'latin1');
      req.writeUInt32LE(path.length, 4);
      conn.write(Buffer.concat([req, path]));
      await this.wrap<void>('pull', serial, receiveFile(conn.parser.raw() as Readable, out, remotePath));
      const quit = Buffer.alloc(8);
      quit.write('QUIT', 0, 'latin1');
      conn.write(quit);
    } finally {
      await out.close().catch(() => {});
      conn.end();
    }
  }

  /** Copies `localPath` to the device (mode 0644 unless given). */
  async push(serial: string, localPath: string, remotePath: string, mode = 0o644): Promise<void> {
    // SYNC.TXT SEND: "path,mode", DATA chunks of at most 64 KiB, DONE with the mtime, then OKAY|FAIL.
    const spec = Buffer.from(`${remotePath},${(mode & 0o7777) | 0o100000}`, 'utf8');
    if (spec.length > 1024) throw new InputError(`device path too long for adb sync: ${remotePath}`);
    const conn = await this.wrap<AdbkitConnection>('transport', serial, this.device(serial).transport());
    try {
      conn.write(encodeRequest('sync:'));
      const reply = await this.wrap<string>('sync', serial, conn.parser.readAscii(4));
      if (reply !== 'OKAY') await this.wrap('sync', serial, conn.parser.readError());
      const sock = conn.parser.raw() as Writable;
      const write = async (b: Buffer) => {
        if (!sock.write(b)) await once(sock, 'drain');
      };
      await write(Buffer.concat([syncHeader('SEND', spec.length), spec]));
      const fh = await open(localPath, 'r');
      try {
        const st = await fh.stat();
        // 16 DATA messages per batch: one readv fills the payload slots of one buffer, leaving the
        // 8-byte header gaps, and the next batch is read while this one is on the socket.
        const chunk = 64 * 1024;
        const pieces = 16;
        const readBatch = async () => {
          const batch = Buffer.allocUnsafe(pieces * (chunk + 8));
          const slots = Array.from({ length: pieces }, (_, i) =>
            batch.subarray(i * (chunk + 8) + 8, (i + 1) * (chunk + 8)),
          );
          const { bytesRead } = await fh.readv(slots);
          let used = 0;
          for (let left = bytesRead, i = 0; left > 0; i++) {
            const n = Math.min(left, chunk);
            syncHeader('DATA', n).copy(batch, i * (chunk + 8));
            used = i * (chunk + 8) + 8 + n;
            left -= n;
          }
          return { data: batch.subarray(0, used), eof: bytesRead < pieces * chunk };
        };
        let next = readBatch();
        for (;;) {
          const { data, eof } = await next;
          if (!eof) next = readBatch();
          if (data.length) await write(data);
          if (eof) break;
        }
        await write(syncHeader('DONE', Math.floor(st.mtimeMs / 1000)));
      } finally {
        await fh.close();
      }
      const answer = await this.wrap<Buffer>('push', serial, conn.parser.readBytes(8));
      const id = answer.toString('latin1', 0, 4);
      if (id === 'OKAY') return;
      const n = answer.readUInt32LE(4);
      const msg =
        id === 'FAIL' && n <= 64 * 1024
          ? (await this.wrap<Buffer>('push', serial, conn.parser.readBytes(n))).toString('utf8')
          : id;
      throw new AdbError(`adb push ${remotePath}: ${msg}`, { serial, code: 'ADB_PUSH_FAILED' });
    } finally {
      conn.end();
    }
  }

  /** Reboots into Android, the bootloader, fastbootd, recovery or sideload (`reboot:<target>`). */
  async rebootTo(serial: string, target: RebootTarget): Promise<void> {
    const allowed: RebootTarget[] = [
      'system',
      'bootloader',
      'fastboot',
      'recovery',
      'sideload',
      'sideload-auto-reboot',
      'rescue',
    ];
    if (!allowed.includes(target))
      throw new InputError(`unknown reboot target ${JSON.stringify(target)}`, { context: { allowed } });
    try {
      await this.deviceService(serial, `reboot:${target === 'system' ? '' : target}`);
    } catch (e) {
      // The device may drop the link before the stream closes cleanly: that is the reboot happening.
      if (!(e instanceof AdbError) || /unauthorized|not found/i.test(e.message)) throw e;
    }
    this.features.delete(serial);
  }

  /**
   * `adb sideload`: serves `file` to a device in sideload mode over `sideload-host:<size>:<block>`
   * (adb's adb_sideload_install, minadbd's side in scripts/sim/host-blocks.ts): the device asks for
   * blocks by writing their number as 8 ASCII digits, each is answered with that block (the last
   * one short), until it writes DONEDONE (installed) or FAILFAIL (refused). It reads the package
   * about twice (signature, then install): `onServed` gets the bytes served so far. A device may
   * think for a while between requests (it applies what it read): `idleTimeoutMs` (default 10
   * min) is how long a silence may last.
   */
  async sideload(
    serial: string,
    file: string,
    opts: { onServed?: (bytes: number, size: number) => void; idleTimeoutMs?: number } = {},
  ): Promise<{ installed: boolean; served: number; size: number }> {
    const fh = await open(file, 'r').catch((e: NodeJS.ErrnoException) => {
      throw new InputError(`cannot open ${file}: ${e.code ?? e.message}`, {
        code: e.code ?? 'OPEN_FAILED',
        context: { file },
      });
    });
    const conn = await this.wrap<AdbkitConnection>('transport', serial, this.device(serial).transport());
    const idle = opts.idleTimeoutMs ?? 600_000;
    try {
      const size = (await fh.stat()).size;
      const service = `sideload-host:${size}:${SIDELOAD_BLOCK}`;
      conn.write(encodeRequest(service));
      const reply = await this.wrap<string>(service, serial, conn.parser.readAscii(4));
      if (reply !== 'OKAY') await this.wrap(service, serial, conn.parser.readError());
      const buf = Buffer.allocUnsafe(SIDELOAD_BLOCK);
      let served = 0;
      for (;;) {
        const ask = (await this.wrap<Buffer>('sideload', serial, conn.parser.readBytes(8), idle)).toString(
          'latin1',
        );
        if (ask === 'DONEDONE' || ask === 'FAILFAIL') return { installed: ask === 'DONEDONE', served, size };
        const block = /^\d{8}$/.test(ask) ? Number(ask) : Number.NaN;
        const offset = block * SIDELOAD_BLOCK;
        if (!(offset >= 0 && offset < size))
          throw new AdbError(`adb sideload: the device asked for ${JSON.stringify(ask)}, past the package`, {
            serial,
            code: 'SIDELOAD_PROTOCOL',
          });
        const len = Math.min(SIDELOAD_BLOCK, size - offset);
        const { bytesRead } = await fh.read(buf, 0, len, offset);
        if (bytesRead !== len)
          throw new InputError(`${file} changed size while it was being sideloaded`, {
            code: 'SIDELOAD_FILE_CHANGED',
            context: { file, offset },
          });
        conn.write(Buffer.from(buf.subarray(0, len)));
        served += len;
        opts.onServed?.(served, size);
      }
    } finally {
      conn.end();
      await fh.close();
    }
  }

  /** Stops the adb server this client talks to. */
  async killServer(): Promise<void> {
    await this.client.kill().catch(() => {});
  }
}

function syncHeader(id: string, n: number): Buffer {
  const h = Buffer.alloc(8);
  h.write(id, 0, 'latin1');
  h.writeUInt32LE(n >>> 0, 4);
  return h;
}

/**
 * Reads a RECV answer (DATA* then DONE, or FAIL) from `sock` into `out`. File data goes out as the
 * socket's own chunks in one writev per MiB (no concatenation), while the socket keeps reading.
 */
async function receiveFile(sock: Readable, out: FileHandle, remotePath: string): Promise<void> {
  let header: Buffer = Buffer.alloc(0);
  let dataLeft = 0;
  let failLeft = -1;
  let failMsg = Buffer.alloc(0);
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let position = 0;
  let writing: Promise<unknown> = Promise.resolve();
  const flush = async () => {
    if (!pendingBytes) return;
    const parts = pending;
    const at = position;
    position += pendingBytes;
    pending = [];
    pendingBytes = 0;
    // One write in flight while the next MiB arrives.
    await writing;
    writing = out.writev(parts, at);
  };
  for await (const raw of sock) {
    let chunk = raw as Buffer;
    while (chunk.length) {
      if (dataLeft > 0) {
        const part = chunk.subarray(0, dataLeft);
        dataLeft -= part.length;
        chunk = chunk.subarray(part.length);
        pending.push(part);
        pendingBytes += part.length;
        if (pendingBytes >= 1024 * 1024) await flush();
        continue;
      }
      if (failLeft > 0) {
        const part = chunk.subarray(0, failLeft);
        failLeft -= part.length;
        failMsg = Buffer.concat([failMsg, part]);
        chunk = chunk.subarray(part.length);
        if (failLeft === 0) break;
        continue;
      }
      const need = 8 - header.length;
      header = header.length ? Buffer.concat([header, chunk.subarray(0, need)]) : chunk.subarray(0, need);
      chunk = chunk.subarray(need);
      if (header.length < 8) continue;
      const id = header.toString('latin1', 0, 4);
      const n = header.readUInt32LE(4);
      header = Buffer.alloc(0);
      if (id === 'DATA') {
        if (n > 64 * 1024)
          throw new AdbError(`adb sync: DATA chunk of ${n} bytes (max 65536) for ${remotePath}`);
        dataLeft = n;
      } else if (id === 'DONE') {
        await flush();
        await writing;
        return;
      } else if (id === 'FAIL') {
        if (n > 64 * 1024) throw new AdbError(`adb sync: failed to pull ${remotePath}`);
        failLeft = n;
        if (n === 0) break;
      } else throw new AdbError(`adb sync: unexpected ${JSON.stringify(id)} while pulling ${remotePath}`);
    }
    if (failLeft === 0) break;
  }
  await writing.catch(() => {});
  if (failLeft >= 0)
    throw new AdbError(`adb pull ${remotePath}: ${failMsg.toString('utf8') || 'failed'}`, {
      code: 'ADB_PULL_FAILED',
    });
  throw new AdbError(`adb pull ${remotePath}: connection closed before DONE`, { code: 'ADB_PULL_FAILED' });
}

function encodeRequest(service: string): Buffer {
  const body = Buffer.from(service, 'utf8');
  return Buffer.concat([Buffer.from(body.length.toString(16).padStart(4, '0'), 'ascii'), body]);
}

/** Decodes a shell protocol v2 stream: [u8 id][u32 LE length][data]…; id 1 stdout, 2 stderr, 3 exit. */
export function decodeShellV2(buf: Buffer): ShellResult {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  let exitCode = -1;
  let off = 0;
  while (off + 5 <= buf.length) {
    const id = buf[off];
    const len = buf.readUInt32LE(off + 1);
    if (off + 5 + len > buf.length) break;
    const data = buf.subarray(off + 5, off + 5 + len);
    if (id === 1) out.push(data);
    else if (id === 2) err.push(data);
    else if (id === 3 && len >= 1) exitCode = data[0];
    off += 5 + len;
  }
  return {
    stdout: Buffer.concat(out).toString('utf8'),
    stderr: Buffer.concat(err).toString('utf8'),
    exitCode,
  };
}

export function shellQuote(s: string): string {
  return /^[A-Za-z0-9_./:=@%+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}
