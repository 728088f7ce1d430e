/**
 * The virtual device's adbd: the adb transport protocol over TCP (AOSP packages/modules/adb
 * protocol.txt, SERVICES.TXT, SYNC.TXT), so that `adb connect 127.0.0.1:PORT` with the real adb
 * server reaches it.
 *
 * Connection: the host sends CNXN(version, maxdata, "host::features=…"). When the state requires
 * adb authorisation, the device answers AUTH(TOKEN) with 20 random bytes; the host signs it with
 * each of its keys (AUTH SIGNATURE: PKCS#1 v1.5 over the token taken as a SHA-1 digest) and, once
 * out of keys, sends AUTH(RSAPUBLICKEY, "<base64 key> user@host\0"). A valid signature by a key in
 * STATE/adb_keys whose fingerprint is in `adbAuthorized` — or a public key that is already listed
 * or that the device is set to accept (`adbAuthRequired: false`) — gets the device's
 * CNXN(version, maxdata, "device::ro.product.name=…;…;features=…"). Otherwise the device stays
 * silent, as a phone waiting on its "Allow USB debugging?" dialog, and the host shows "unauthorized".
 *
 * Streams: OPEN(local, 0, "service\0") → OKAY(ours, local) or CLSE(0, local); WRTE carries data,
 * and each WRTE must be acknowledged with OKAY before the sender writes again on that stream.
 * Services: shell: / shell,v2: / exec:, sync: (v1 and stat_v2/ls_v2), reboot:[target],
 * sideload-host:SIZE:BLOCK, `exec:cmd package install -S SIZE` (adb install), root:/unroot:/remount:
 * (refused as on a user build).
 *
 * Listening is always on; connections are refused (closed at once) unless the state's mode is
 * adb, recovery or sideload. A reboot closes every connection, as the real device disappears.
 */
import { constants as cryptoConstants, publicDecrypt, randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { appendFile, mkdir, open, readdir, readFile, rename, rm, stat, utimes } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { EnvironmentError } from '../errors.ts';
import {
  A_AUTH,
  A_CLSE,
  A_CNXN,
  A_OKAY,
  A_OPEN,
  A_STLS,
  A_VERSION,
  A_VERSION_SKIP_CHECKSUM,
  A_WRTE,
  ADB_AUTH_RSAPUBLICKEY,
  ADB_AUTH_SIGNATURE,
  ADB_AUTH_TOKEN,
  type AdbPacket,
  AdbPacketReader,
  type AdbPublicKey,
  encodePacket,
  MAX_PAYLOAD,
  parseAdbPublicKey,
  SHA1_DIGEST_INFO,
  TOKEN_SIZE,
} from './adb-packet.ts';
import { runShell, type ShellContext } from './adb-shell.ts';
import { HostBlocks } from './host-blocks.ts';
import { installSideloaded, type SideloadOutcome } from './recovery.ts';
import { usbDebuggingOn } from './settings.ts';
import { type DeviceJson, type DeviceMode, SimState } from './state.ts';
import { DeviceView, readApkPackage, type ViewState } from './view.ts';

/** What the adb server needs from SimState. */
export interface AdbSimState extends ViewState {
  update(mut: (d: DeviceJson) => void): Promise<void>;
  reload?(): Promise<DeviceJson>;
}

export interface AdbServerOptions {
  state: AdbSimState;
  /**
   * Starts Android after `adb reboot` (the bootloader's verified boot, scripts/sim/boot.ts): the
   * device is "off" until it resolves. Absent: the device is back in Android at once.
   */
  boot?: () => Promise<unknown>;
  port?: number;
  host?: string;
  /** Called for protocol errors and other per-connection events (the server itself never throws). */
  log?: (line: string) => void;
  /**
   * Installs a package sideloaded in sideload mode (recovery.ts), read block by block from the
   * host. Absent: the state's own recovery when it is a SimState, else every package is refused.
   */
  sideload?: (pkg: HostBlocks) => Promise<SideloadOutcome>;
}

export interface AdbServerHandle {
  port: number;
  /** Drops every open connection (the device "rebooted") without stopping the listener. */
  dropConnections(): void;
  close(): Promise<void>;
}

/** Features this adbd advertises: the host then uses shell v2 and stat/list v2 sync requests. */
export const DEVICE_FEATURES = [
  'shell_v2',
  'cmd',
  'stat_v2',
  'ls_v2',
  'fixed_push_mkdir',
  'fixed_push_symlink_timestamp',
];

const ADB_MODES: DeviceMode[] = ['adb', 'recovery', 'sideload'];

export async function startAdbServer(opts: AdbServerOptions): Promise<AdbServerHandle> {
  const view = new DeviceView(opts.state);
  const log = opts.log ?? (() => {});
  const state = opts.state;
  const sideload =
    opts.sideload ??
    (state instanceof SimState ? (pkg: HostBlocks) => installSideloaded(state, pkg, { log }) : undefined);
  const sockets = new Set<Socket>();
  const server: Server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    socket.setNoDelay(true);
    void (async () => {
      try {
        if (opts.state.reload) await opts.state.reload();
      } catch {
        /* keep the last known state */
      }
      if (!ADB_MODES.includes(opts.state.info.mode)) {
        socket.destroy();
        return;
      }
      // In Android, adbd runs only while USB debugging is on (a wiped user build has it off).
      if (opts.state.info.mode === 'adb' && !(await usbDebuggingOn(opts.state.dir))) {
        socket.destroy();
        return;
      }
      new AdbConnection(socket, opts.state, view, log, reboot, dropAll, sideload);
    })();
  });
  // A rebooting device: pending packets go out (FIN after flush), then the link is gone.
  const dropAll = () => {
    for (const s of sockets) {
      s.end();
      setTimeout(() => s.destroy(), 200).unref();
    }
  };
  /** Boots that outlive the connection that asked for them: close() waits for them. */
  const pending = new Set<Promise<unknown>>();
  /** Moves the device to its next mode and drops every connection shortly after (the device reboots). */
  const reboot = async (target: string): Promise<void> => {
    const modes: Record<string, DeviceMode> = {
      '': 'adb',
      bootloader: 'bootloader',
      fastboot: 'fastbootd',
      recovery: 'recovery',
      sideload: 'sideload',
      'sideload-auto-reboot': 'sideload',
    };
    const next = modes[target] ?? 'adb';
    const boot = next === 'adb' ? opts.boot : undefined;
    await opts.state.update((d) => {
      d.mode = boot ? 'off' : next;
      // recovery --sideload_auto_reboot: back to Android once the package is installed (or refused).
      if (next === 'sideload') d.sideloadAutoReboot = target === 'sideload-auto-reboot';
    });
    // The service's CLSE goes out first (dropAll ends sockets after flushing), as adbd acknowledges
    // the request before the kernel reboots.
    setImmediate(() => dropAll());
    if (boot) {
      const work = new Promise((r) => setTimeout(r, 200)).then(boot).catch((e: Error) => {
        log(`boot failed: ${e.message}`);
      });
      pending.add(work);
      void work.finally(() => pending.delete(work));
    }
  };
  await new Promise<void>((res, rej) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      rej(
        new EnvironmentError(
          `cannot listen for adb on ${opts.host ?? '127.0.0.1'}:${opts.port ?? 0}: ${e.message}`,
          {
            code: e.code === 'EADDRINUSE' ? 'PORT_IN_USE' : 'LISTEN_FAILED',
            context: { port: opts.port, host: opts.host },
            hint: e.code === 'EADDRINUSE' ? 'pick another --adb-port (0 chooses a free one)' : undefined,
            cause: e,
          },
        ),
      ),
    );
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => res());
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : 0;
  return {
    port,
    dropConnections: dropAll,
    close: async () => {
      await new Promise<void>((res) => {
        for (const s of sockets) s.destroy();
        server.close(() => res());
      });
      while (pending.size) await Promise.allSettled([...pending]);
    },
  };
}

/** One host connection: handshake, authentication, stream multiplexing. */
class AdbConnection {
  private readonly reader = new AdbPacketReader();
  private version = 0x01000000;
  maxPayload = 4096;
  private online = false;
  private token: Buffer | null = null;
  private readonly streams = new Map<number, AdbStream>();
  private nextId = 1;

  constructor(
    private readonly socket: Socket,
    readonly state: AdbSimState,
    readonly view: DeviceView,
    private readonly log: (line: string) => void,
    /** Reboots the device (adb reboot, the shell's reboot). */
    readonly reboot: (target: string) => Promise<void>,
    /** Drops every connection (the device left this mode). */
    readonly dropAll: () => void,
    /** Installs a sideloaded package (recovery). */
    readonly sideload?: (pkg: HostBlocks) => Promise<SideloadOutcome>,
  ) {
    socket.on('data', (chunk: Buffer) => {
      let packets: AdbPacket[];
      try {
        packets = this.reader.push(chunk);
      } catch (e) {
        this.log(`adb: closing connection: ${(e as Error).message}`);
        this.socket.destroy();
        return;
      }
      for (const p of packets) {
        try {
          this.handle(p);
        } catch (e) {
          this.log(`adb: closing connection: ${(e as Error).message}`);
          this.socket.destroy();
          return;
        }
      }
    });
    socket.on('close', () => {
      for (const s of this.streams.values()) s.remoteClosed();
      this.streams.clear();
    });
  }

  get closed(): boolean {
    return this.socket.destroyed;
  }

  send(command: number, arg0: number, arg1: number, data: Buffer = Buffer.alloc(0)): void {
    if (!this.socket.destroyed) this.socket.write(encodePacket({ command, arg0, arg1, data }));
  }

  private handle(p: AdbPacket): void {
    switch (p.command) {
      case A_CNXN:
        this.onConnect(p);
        return;
      case A_AUTH:
        this.onAuth(p).catch((e) => {
          this.log(`adb: auth failed: ${(e as Error).message}`);
          this.socket.destroy();
        });
        return;
      case A_STLS:
        // TLS is only for wireless-debugging pairing; this device never asks for it.
        return;
    }
    if (!this.online) return; // adbd ignores stream traffic before the connection is up.
    switch (p.command) {
      case A_OPEN:
        this.onOpen(p);
        return;
      case A_OKAY: {
        const s = this.streams.get(p.arg1);
        if (s && s.remoteId === 0) s.remoteId = p.arg0;
        s?.onOkay();
        return;
      }
      case A_WRTE: {
        const s = this.streams.get(p.arg1);
        if (!s) {
          this.send(A_CLSE, 0, p.arg0);
          return;
        }
        s.onWrite(p.data);
        return;
      }
      case A_CLSE: {
        const s = this.streams.get(p.arg1);
        if (s) {
          this.streams.delete(p.arg1);
          s.remoteClosed();
        }
        return;
      }
    }
  }

  private onConnect(p: AdbPacket): void {
    this.version = Math.min(p.arg0 >>> 0, A_VERSION);
    this.maxPayload = Math.max(1024, Math.min(p.arg1 >>> 0, MAX_PAYLOAD));
    this.reader.verifyChecksum = this.version < A_VERSION_SKIP_CHECKSUM;
    // A new CNXN restarts the connection (adbd resets its streams).
    for (const s of this.streams.values()) s.remoteClosed();
    this.streams.clear();
    this.online = false;
    if (this.state.info.adbAuthRequired) this.sendToken();
    else this.goOnline();
  }

  private sendToken(): void {
    this.token = randomBytes(TOKEN_SIZE);
    this.send(A_AUTH, ADB_AUTH_TOKEN, 0, this.token);
  }

  private goOnline(): void {
    this.online = true;
    this.send(A_CNXN, this.version, this.maxPayload, Buffer.from(this.banner()));
  }

  banner(): string {
    const info = this.state.info;
    const kind = info.mode === 'recovery' ? 'recovery' : info.mode === 'sideload' ? 'sideload' : 'device';
    const model = info.variant ? `${info.product}_${info.variant}` : info.product;
    return `${kind}::ro.product.name=${info.product};ro.product.model=${model};ro.product.device=${info.product};features=${DEVICE_FEATURES.join(',')}`;
  }

  private async authorizedKeys(): Promise<AdbPublicKey[]> {
    const allowed = new Set(this.state.info.adbAuthorized ?? []);
    const keys: AdbPublicKey[] = [];
    let text = '';
    try {
      text = await readFile(join(this.state.dir, 'adb_keys'), 'utf8');
    } catch {
      return keys;
    }
    for (const line of text.split('\n')) {
      if (!line.trim()) continue;
      try {
        const k = parseAdbPublicKey(line);
        if (allowed.has(k.fingerprint)) keys.push(k);
      } catch {
        /* a bad line in adb_keys is skipped, as adbd does */
      }
    }
    return keys;
  }

  private async onAuth(p: AdbPacket): Promise<void> {
    if (this.online) return;
    if (p.arg0 === ADB_AUTH_SIGNATURE) {
      const token = this.token;
      if (!token) return;
      for (const k of await this.authorizedKeys()) {
        if (verifyTokenSignature(k, token, p.data)) {
          this.goOnline();
          return;
        }
      }
      this.sendToken();
      return;
    }
    if (p.arg0 === ADB_AUTH_RSAPUBLICKEY) {
      let key: AdbPublicKey;
      try {
        key = parseAdbPublicKey(p.data.toString('latin1'));
      } catch (e) {
        this.log(`adb: rejected public key: ${(e as Error).message}`);
        return;
      }
      const info = this.state.info;
      const listed = (info.adbAuthorized ?? []).includes(key.fingerprint);
      // An owner who turns USB debugging on is there to answer "Allow USB debugging?" too.
      if (!listed && info.adbAuthRequired && !info.ownerEnablesAdb) {
        this.log(`adb: key ${key.fingerprint} (${key.comment}) not authorized: device stays unauthorized`);
        return;
      }
      await this.rememberKey(key);
      this.goOnline();
    }
  }

  /** The user "ticked always allow": the key goes to adb_keys and its fingerprint to adbAuthorized. */
  private async rememberKey(key: AdbPublicKey): Promise<void> {
    const file = join(this.state.dir, 'adb_keys');
    const existing = await readFile(file, 'utf8').catch(() => '');
    if (!existing.split('\n').some((l) => l.split(' ')[0] === key.line.split(' ')[0]))
      await appendFile(file, `${key.line}\n`);
    if (!this.state.info.adbAuthorized.includes(key.fingerprint))
      await this.state.update((d) => {
        d.adbAuthorized = [...new Set([...(d.adbAuthorized ?? []), key.fingerprint])];
      });
  }

  private onOpen(p: AdbPacket): void {
    const remoteId = p.arg0;
    if (remoteId === 0) return;
    const service = p.data.toString('utf8').replace(/\0+$/, '');
    const handler = this.serviceFor(service);
    if (!handler) {
      this.log(`adb: unknown service ${JSON.stringify(service)}`);
      this.send(A_CLSE, 0, remoteId);
      return;
    }
    const id = this.nextId++;
    const s = new AdbStream(this, id, remoteId);
    this.streams.set(id, s);
    this.send(A_OKAY, id, remoteId);
    handler(s)
      .catch((e) => this.log(`adb: service ${service} failed: ${(e as Error).message}`))
      .finally(() => s.close());
  }

  forget(id: number): void {
    this.streams.delete(id);
  }

  private serviceFor(service: string): ((s: AdbStream) => Promise<void>) | null {
    const mode = this.state.info.mode;
    if (mode === 'sideload') {
      const m = /^sideload-host:(\d+):(\d+)/.exec(service);
      return m ? (s) => sideloadService(s, Number(m[1]), Number(m[2])) : null;
    }
    const shell = /^shell((?:,[^:]*)?):(.*)$/s.exec(service);
    if (shell) {
      const args = shell[1].split(',').filter(Boolean);
      // No command: an interactive shell (a prompt only with a pty, as mksh prints none otherwise).
      const pty = args.includes('pty') || (!args.includes('raw') && !args.includes('v2'));
      return (s) => shellService(s, args.includes('v2'), shell[2], this.shellContext(), pty);
    }
    // `adb install` on devices with the "cmd" feature streams the APK into `cmd package install -S SIZE`.
    const install = /^exec:cmd package '?install'?\b.*?-S '?(\d+)'?/.exec(service);
    if (install) return (s) => installService(s, this.view, Number(install[1]));
    if (service.startsWith('exec:'))
      return (s) => shellService(s, false, service.slice(5), this.shellContext());
    if (service === 'sync:') return (s) => syncService(s, this.view);
    // A user build: adbd stays unprivileged, as on a locked-down production device.
    if (service === 'root:')
      return (s) => s.write(Buffer.from('adbd cannot run as root in production builds\n'));
    if (service === 'unroot:') return (s) => s.write(Buffer.from('adbd not running as root\n'));
    if (service.startsWith('remount:'))
      return (s) => s.write(Buffer.from('remount is only supported on userdebug and eng builds\n'));
    const reboot = /^reboot:(.*)$/.exec(service);
    if (reboot) return (s) => this.rebootService(s, reboot[1]);
    return null;
  }

  private shellContext(): ShellContext {
    return { view: this.view, reboot: (target) => this.reboot(target) };
  }

  private async rebootService(s: AdbStream, target: string): Promise<void> {
    await this.reboot(target);
    s.close();
  }
}

/** Checks an AUTH SIGNATURE: RSA PKCS#1 v1.5 of (SHA-1 DigestInfo || token). */
export function verifyTokenSignature(key: AdbPublicKey, token: Buffer, signature: Buffer): boolean {
  try {
    const plain = publicDecrypt({ key: key.key, padding: cryptoConstants.RSA_PKCS1_PADDING }, signature);
    return plain.equals(Buffer.concat([SHA1_DIGEST_INFO, token]));
  } catch {
    return false;
  }
}

/** High-water mark of unread incoming bytes before we stop acknowledging WRTEs. */
const INBOX_HIGH = 1024 * 1024;

/** One adb stream (a socket pair in adbd terms), with OKAY-based flow control both ways. */
export class AdbStream {
  remoteId: number;
  private inbox: Buffer[] = [];
  private inboxBytes = 0;
  private ackOwed = false;
  private waiter: (() => void) | null = null;
  private outbox: Array<{ data: Buffer; done: () => void }> = [];
  /** The WRTE sent and not yet acknowledged (one at a time per stream). */
  private inFlight: { done: () => void } | null = null;
  private isClosed = false;

  constructor(
    readonly conn: AdbConnection,
    readonly localId: number,
    remoteId: number,
  ) {
    this.remoteId = remoteId;
  }

  get closed(): boolean {
    return this.isClosed || this.conn.closed;
  }

  onWrite(data: Buffer): void {
    if (this.isClosed) return;
    this.inbox.push(data);
    this.inboxBytes += data.length;
    if (this.inboxBytes < INBOX_HIGH) this.conn.send(A_OKAY, this.localId, this.remoteId);
    else this.ackOwed = true;
    this.wake();
  }

  onOkay(): void {
    const f = this.inFlight;
    this.inFlight = null;
    f?.done();
    this.pump();
  }

  remoteClosed(): void {
    this.isClosed = true;
    for (const o of this.outbox) o.done();
    this.outbox = [];
    this.inFlight?.done();
    this.inFlight = null;
    this.wake();
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  private takeBytes(n: number): Buffer {
    const out: Buffer[] = [];
    let need = n;
    while (need > 0 && this.inbox.length) {
      const head = this.inbox[0];
      if (head.length <= need) {
        out.push(head);
        this.inbox.shift();
        need -= head.length;
      } else {
        out.push(head.subarray(0, need));
        this.inbox[0] = head.subarray(need);
        need = 0;
      }
    }
    this.inboxBytes -= n - need;
    if (this.ackOwed && this.inboxBytes < INBOX_HIGH) {
      this.ackOwed = false;
      this.conn.send(A_OKAY, this.localId, this.remoteId);
    }
    return Buffer.concat(out);
  }

  private waitData(): Promise<void> {
    return new Promise((res) => {
      this.waiter = res;
    });
  }

  /** Next chunk of incoming data, or null once the stream is closed and drained. */
  async read(): Promise<Buffer | null> {
    while (this.inboxBytes === 0) {
      if (this.closed) return null;
      await this.waitData();
    }
    return this.takeBytes(this.inboxBytes);
  }

  /** Exactly n bytes, or null when the stream closes first. */
  async readExactly(n: number): Promise<Buffer | null> {
    while (this.inboxBytes < n) {
      if (this.closed) return null;
      await this.waitData();
    }
    return this.takeBytes(n);
  }

  /** Queues data as WRTE packets of at most maxPayload; resolves once the host acknowledged it all. */
  write(data: Buffer): Promise<void> {
    if (this.closed || data.length === 0) return Promise.resolve();
    const max = this.conn.maxPayload;
    const parts: Buffer[] = [];
    for (let off = 0; off < data.length; off += max) parts.push(data.subarray(off, off + max));
    return new Promise<void>((res) => {
      parts.forEach((d, i) => {
        this.outbox.push({ data: d, done: i === parts.length - 1 ? res : () => {} });
      });
      this.pump();
    });
  }

  private pump(): void {
    if (this.inFlight || this.closed) return;
    const next = this.outbox.shift();
    if (!next) return;
    this.inFlight = next;
    this.conn.send(A_WRTE, this.localId, this.remoteId, next.data);
  }

  close(): void {
    if (!this.isClosed) {
      this.isClosed = true;
      this.conn.send(A_CLSE, this.localId, this.remoteId);
    }
    this.conn.forget(this.localId);
    this.wake();
  }
}

// ---------------------------------------------------------------------------------------------
// shell: and shell,v2: (shell_protocol.h: packets of u8 id, u32 LE length, data)

const SHELL_STDIN = 0;
const SHELL_STDOUT = 1;
const SHELL_STDERR = 2;
const SHELL_EXIT = 3;
const SHELL_CLOSE_STDIN = 4;

function shellPacket(id: number, data: Buffer): Buffer {
  const h = Buffer.alloc(5);
  h[0] = id;
  h.writeUInt32LE(data.length, 1);
  return Buffer.concat([h, data]);
}

async function shellService(
  s: AdbStream,
  v2: boolean,
  command: string,
  ctx: ShellContext,
  pty = false,
): Promise<void> {
  if (command.trim()) {
    const r = await runShell(command, ctx, Buffer.alloc(0), 0, { mergeStderr: !v2 });
    if (v2) {
      if (r.stdout.length) await s.write(shellPacket(SHELL_STDOUT, r.stdout));
      if (r.stderr.length) await s.write(shellPacket(SHELL_STDERR, r.stderr));
      await s.write(shellPacket(SHELL_EXIT, Buffer.from([r.exitCode & 0xff])));
    } else {
      await s.write(Buffer.concat([r.stdout, r.stderr]));
    }
    return;
  }
  // Interactive: one line at a time from stdin, until "exit" or stdin closes.
  const prompt = Buffer.from(pty ? 'omie:/ $ ' : '');
  const out = (id: number, b: Buffer) =>
    b.length === 0 ? Promise.resolve() : v2 ? s.write(shellPacket(id, b)) : s.write(b);
  await out(SHELL_STDOUT, prompt);
  let pending = Buffer.alloc(0);
  let line = '';
  let status = 0;
  for (;;) {
    const chunk = await s.read();
    if (!chunk) return;
    let stdin: Buffer = chunk;
    let eof = false;
    if (v2) {
      pending = Buffer.concat([pending, chunk]);
      const parts: Buffer[] = [];
      while (pending.length >= 5) {
        const len = pending.readUInt32LE(1);
        if (pending.length < 5 + len) break;
        if (pending[0] === SHELL_STDIN) parts.push(pending.subarray(5, 5 + len));
        if (pending[0] === SHELL_CLOSE_STDIN) eof = true;
        pending = pending.subarray(5 + len);
      }
      stdin = Buffer.concat(parts);
    }
    line += stdin.toString('utf8').replace(/\r/g, '\n');
    let nl = line.indexOf('\n');
    while (nl >= 0) {
      const cmd = line.slice(0, nl);
      line = line.slice(nl + 1);
      const r = await runShell(cmd, ctx, Buffer.alloc(0), status);
      status = r.exitCode;
      if (r.stdout.length) await out(SHELL_STDOUT, r.stdout);
      if (r.stderr.length) await out(SHELL_STDERR, r.stderr);
      if (r.exited) {
        if (v2) await s.write(shellPacket(SHELL_EXIT, Buffer.from([status])));
        return;
      }
      await out(SHELL_STDOUT, prompt);
      nl = line.indexOf('\n');
    }
    if (eof) {
      if (v2) await s.write(shellPacket(SHELL_EXIT, Buffer.from([status])));
      return;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// sync: (SYNC.TXT, file_sync_protocol.h)

const SYNC_DATA_MAX = 64 * 1024;
const SYNC_PATH_MAX = 1024;

function id4(s: string): number {
  return Buffer.from(s, 'latin1').readUInt32LE(0);
}

const ID = {
  STAT: id4('STAT'),
  STA2: id4('STA2'),
  LST2: id4('LST2'),
  LIST: id4('LIST'),
  LIS2: id4('LIS2'),
  DENT: id4('DENT'),
  DNT2: id4('DNT2'),
  SEND: id4('SEND'),
  RECV: id4('RECV'),
  DONE: id4('DONE'),
  DATA: id4('DATA'),
  OKAY: id4('OKAY'),
  FAIL: id4('FAIL'),
  QUIT: id4('QUIT'),
};

interface StatLike {
  mode: number;
  size: number;
  mtimeS: number;
  atimeS: number;
  ctimeS: number;
  dev: number;
  ino: number;
  nlink: number;
}

const S_IFDIR = 0o040000;

async function syncStat(view: DeviceView, path: string): Promise<StatLike | null> {
  const r = await view.resolve(path);
  if (!r) return null;
  if (r.kind === 'virtual-dir')
    return { mode: S_IFDIR | 0o755, size: 4096, mtimeS: 0, atimeS: 0, ctimeS: 0, dev: 0, ino: 1, nlink: 2 };
  if (r.kind === 'virtual-file')
    return {
      mode: 0o100444,
      size: r.content.length,
      mtimeS: 0,
      atimeS: 0,
      ctimeS: 0,
      dev: 0,
      ino: 2,
      nlink: 1,
    };
  try {
    const st = await stat(r.hostPath);
    return {
      mode: st.mode,
      size: st.size,
      mtimeS: Math.floor(st.mtimeMs / 1000),
      atimeS: Math.floor(st.atimeMs / 1000),
      ctimeS: Math.floor(st.ctimeMs / 1000),
      dev: st.dev,
      ino: st.ino,
      nlink: st.nlink,
    };
  } catch {
    return null;
  }
}

function statV2(id: number, st: StatLike | null, error: number): Buffer {
  const b = Buffer.alloc(72);
  b.writeUInt32LE(id, 0);
  b.writeUInt32LE(st ? 0 : error, 4);
  if (st) {
    b.writeBigUInt64LE(BigInt(st.dev), 8);
    b.writeBigUInt64LE(BigInt(st.ino), 16);
    b.writeUInt32LE(st.mode >>> 0, 24);
    b.writeUInt32LE(st.nlink, 28);
    b.writeUInt32LE(2000, 32);
    b.writeUInt32LE(2000, 36);
    b.writeBigUInt64LE(BigInt(st.size), 40);
    b.writeBigInt64LE(BigInt(st.atimeS), 48);
    b.writeBigInt64LE(BigInt(st.mtimeS), 56);
    b.writeBigInt64LE(BigInt(st.ctimeS), 64);
  }
  return b;
}

function syncFail(message: string): Buffer {
  const m = Buffer.from(message);
  const h = Buffer.alloc(8);
  h.writeUInt32LE(ID.FAIL, 0);
  h.writeUInt32LE(m.length, 4);
  return Buffer.concat([h, m]);
}

function syncHeader(id: number, n: number): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt32LE(id, 0);
  h.writeUInt32LE(n >>> 0, 4);
  return h;
}

async function syncService(s: AdbStream, view: DeviceView): Promise<void> {
  for (;;) {
    const hdr = await s.readExactly(8);
    if (!hdr) return;
    const id = hdr.readUInt32LE(0);
    const len = hdr.readUInt32LE(4);
    if (id === ID.QUIT) return;
    if (len > SYNC_PATH_MAX) {
      await s.write(syncFail(`path too long: ${len}`));
      return;
    }
    const pathBuf = await s.readExactly(len);
    if (!pathBuf) return;
    const path = pathBuf.toString('utf8');
    if (id === ID.STAT) {
      const st = await syncStat(view, path);
      const b = Buffer.alloc(16);
      b.writeUInt32LE(ID.STAT, 0);
      if (st) {
        b.writeUInt32LE(st.mode >>> 0, 4);
        b.writeUInt32LE(Math.min(st.size, 0xffffffff), 8);
        b.writeUInt32LE(st.mtimeS >>> 0, 12);
      }
      await s.write(b);
    } else if (id === ID.STA2 || id === ID.LST2) {
      const st = await syncStat(view, path);
      await s.write(statV2(id, st, 2 /* ENOENT */));
    } else if (id === ID.LIST || id === ID.LIS2) {
      await syncList(s, view, path, id === ID.LIS2);
    } else if (id === ID.RECV) {
      await syncRecv(s, view, path);
    } else if (id === ID.SEND) {
      if (!(await syncSend(s, view, path))) return;
    } else {
      await s.write(syncFail(`unknown sync request 0x${id.toString(16)}`));
      return;
    }
  }
}

async function syncList(s: AdbStream, view: DeviceView, path: string, v2: boolean): Promise<void> {
  const r = await view.resolve(path);
  let names: string[] = [];
  if (r?.kind === 'virtual-dir') names = r.entries;
  else if (r?.kind === 'host') names = await readdir(r.hostPath).catch(() => []);
  const base = path.endsWith('/') ? path : `${path}/`;
  const chunks: Buffer[] = [];
  for (const name of ['.', '..', ...names]) {
    const st = await syncStat(view, name === '.' ? path : name === '..' ? `${base}..` : base + name);
    if (!st) continue;
    const n = Buffer.from(name);
    if (v2) {
      const b = statV2(ID.DNT2, st, 0);
      const tail = Buffer.alloc(4);
      tail.writeUInt32LE(n.length);
      chunks.push(b, tail, n);
    } else {
      const b = Buffer.alloc(20);
      b.writeUInt32LE(ID.DENT, 0);
      b.writeUInt32LE(st.mode >>> 0, 4);
      b.writeUInt32LE(Math.min(st.size, 0xffffffff), 8);
      b.writeUInt32LE(st.mtimeS >>> 0, 12);
      b.writeUInt32LE(n.length, 16);
      chunks.push(b, n);
    }
  }
  const done = Buffer.alloc(v2 ? 76 : 20);
  done.writeUInt32LE(ID.DONE, 0);
  chunks.push(done);
  await s.write(Buffer.concat(chunks));
}

async function syncRecv(s: AdbStream, view: DeviceView, path: string): Promise<void> {
  const r = await view.resolve(path);
  if (r?.kind === 'virtual-file') {
    await s.write(Buffer.concat([syncHeader(ID.DATA, r.content.length), r.content, syncHeader(ID.DONE, 0)]));
    return;
  }
  if (r?.kind !== 'host') {
    await s.write(syncFail(r ? 'Is a directory' : 'No such file or directory'));
    return;
  }
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(r.hostPath, 'r');
    if ((await fh.stat()).isDirectory()) {
      await fh.close();
      await s.write(syncFail('Is a directory'));
      return;
    }
  } catch {
    await s.write(syncFail('No such file or directory'));
    return;
  }
  try {
    // DATA messages are packed into WRTEs of up to maxdata (one OKAY round trip each), and the
    // next batch is read from disk while the previous one is on the wire. One readv per batch
    // fills the payload slots of the batch buffer directly, leaving 8-byte gaps for the headers:
    // no per-chunk read, no copy.
    const pieces = Math.max(
      1,
      Math.floor(Math.max(SYNC_DATA_MAX + 8, s.conn.maxPayload) / (SYNC_DATA_MAX + 8)),
    );
    let inFlight: Promise<void> = Promise.resolve();
    let eof = false;
    while (!eof) {
      const batch = Buffer.allocUnsafe(pieces * (SYNC_DATA_MAX + 8));
      const slots: Buffer[] = [];
      for (let i = 0; i < pieces; i++) {
        const at = i * (SYNC_DATA_MAX + 8);
        slots.push(batch.subarray(at + 8, at + 8 + SYNC_DATA_MAX));
      }
      const { bytesRead } = await fh.readv(slots);
      if (bytesRead < pieces * SYNC_DATA_MAX) eof = true;
      let used = 0;
      for (let left = bytesRead, i = 0; left > 0; i++) {
        const n = Math.min(left, SYNC_DATA_MAX);
        syncHeader(ID.DATA, n).copy(batch, i * (SYNC_DATA_MAX + 8));
        used = i * (SYNC_DATA_MAX + 8) + 8 + n;
        left -= n;
      }
      await inFlight;
      if (s.closed) return;
      if (used) inFlight = s.write(batch.subarray(0, used));
    }
    await inFlight;
    await s.write(syncHeader(ID.DONE, 0));
  } finally {
    await fh.close();
  }
}

/** SEND "path,mode", then DATA chunks and DONE(mtime); answers OKAY or FAIL. False: stream unusable. */
async function syncSend(s: AdbStream, view: DeviceView, spec: string): Promise<boolean> {
  const comma = spec.lastIndexOf(',');
  const path = comma >= 0 ? spec.slice(0, comma) : spec;
  const mode = comma >= 0 ? Number.parseInt(spec.slice(comma + 1), 10) : 0o644;
  const r = await view.resolve(path);
  const target = r && r.kind === 'host' && r.writable ? r.hostPath : null;
  let tmp: string | null = null;
  let out: ReturnType<typeof createWriteStream> | null = null;
  let error: string | null = target ? null : r ? 'Read-only file system' : 'No such file or directory';
  if (target) {
    try {
      await mkdir(dirname(target), { recursive: true });
      tmp = `${target}.omie-push-${process.pid}`;
      out = createWriteStream(tmp, { mode: (Number.isFinite(mode) ? mode : 0o644) & 0o777 });
      await new Promise<void>((res, rej) => {
        out!.once('open', () => res());
        out!.once('error', rej);
      });
    } catch (e) {
      error = (e as Error).message;
      out = null;
    }
  }
  for (;;) {
    const hdr = await s.readExactly(8);
    if (!hdr) {
      out?.destroy();
      return false;
    }
    const id = hdr.readUInt32LE(0);
    const n = hdr.readUInt32LE(4);
    if (id === ID.DATA) {
      if (n > SYNC_DATA_MAX) {
        out?.destroy();
        await s.write(syncFail('data chunk too large'));
        return false;
      }
      const data = await s.readExactly(n);
      if (!data) {
        out?.destroy();
        return false;
      }
      if (out && !error && !out.write(data))
        await new Promise<void>((res) => out!.once('drain', () => res()));
    } else if (id === ID.DONE) {
      if (out) await new Promise<void>((res, rej) => out!.end((e?: Error | null) => (e ? rej(e) : res())));
      if (error || !tmp || !target) {
        await s.write(syncFail(`couldn't create file: ${error}`));
        return true;
      }
      await rename(tmp, target);
      await utimes(target, n, n).catch(() => {});
      await s.write(syncHeader(ID.OKAY, 0));
      return true;
    } else {
      out?.destroy();
      await s.write(syncFail('invalid data message'));
      return false;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// exec:cmd package install -S SIZE: the APK arrives on the stream; it lands in /data/app like a
// user-installed app (listed by `pm list packages -3`).

const MAX_INSTALL = 4 * 1024 * 1024 * 1024;

async function installService(s: AdbStream, view: DeviceView, size: number): Promise<void> {
  if (!(size > 0) || size > MAX_INSTALL) {
    await s.write(Buffer.from(`Failure [INSTALL_FAILED_INVALID_APK: bad size ${size}]\n`));
    return;
  }
  const tmpDir = join(view.dataDir, 'app', `.install-${process.pid}-${randomBytes(4).toString('hex')}`);
  await mkdir(tmpDir, { recursive: true });
  const apk = join(tmpDir, 'base.apk');
  const fh = await open(apk, 'w');
  let got = 0;
  try {
    while (got < size) {
      const chunk = await s.read();
      if (!chunk) break;
      const part = chunk.subarray(0, size - got);
      await fh.write(part, 0, part.length, got);
      got += part.length;
    }
  } finally {
    await fh.close();
  }
  if (got < size) {
    await rm(tmpDir, { recursive: true, force: true });
    return;
  }
  const pkg = await readApkPackage(apk);
  if (!pkg) {
    await rm(tmpDir, { recursive: true, force: true });
    await s.write(Buffer.from('Failure [INSTALL_PARSE_FAILED_NOT_APK: not a readable APK]\n'));
    return;
  }
  // Replace an earlier install of the same package.
  const appDir = join(view.dataDir, 'app');
  for (const d of await readdir(appDir).catch(() => [] as string[])) {
    if (!d.startsWith('~~')) continue;
    for (const inner of await readdir(join(appDir, d)).catch(() => [] as string[]))
      if (inner.startsWith(`${pkg}-`)) await rm(join(appDir, d), { recursive: true, force: true });
  }
  // Android 11+ layout: /data/app/~~<random>/<package>-<random>/base.apk, both randoms URL-safe
  // base64 of 16 bytes *with* "==" padding (PackageManagerService), so the path holds '='.
  const b64 = () => randomBytes(16).toString('base64').replace(/\+/g, '-').replace(/\//g, '_');
  const outer = join(appDir, `~~${b64()}`);
  await mkdir(outer, { recursive: true });
  await rename(tmpDir, join(outer, `${pkg}-${b64()}`));
  await s.write(Buffer.from('Success\n'));
}

// ---------------------------------------------------------------------------------------------
// sideload-host:SIZE:BLOCK (minadbd): the device asks for blocks by writing their number as 8
// ASCII digits; the host answers each with that block; "DONEDONE" (installed) or "FAILFAIL"
// (refused) ends it. The package is never stored: recovery reads it from the host as it goes
// (host-blocks.ts), verifies and installs it (recovery.ts). Then minadbd exits: the device is back
// in recovery, or, after `adb reboot sideload-auto-reboot`, boots Android (whichever slot the
// bootloader picks).

/** Largest package minadbd takes (fuse_sideload's file size is a 64-bit offset; this is plenty). */
const MAX_SIDELOAD = 64 * 1024 * 1024 * 1024;

async function sideloadService(s: AdbStream, size: number, block: number): Promise<void> {
  const conn = s.conn;
  let ok = false;
  if (block > 0 && block <= MAX_PAYLOAD && size > 0 && size <= MAX_SIDELOAD && conn.sideload) {
    const pkg = new HostBlocks(
      async (b, length) => {
        await s.write(Buffer.from(String(b).padStart(8, '0'), 'latin1'));
        return s.readExactly(length);
      },
      size,
      block,
    );
    ok = (await conn.sideload(pkg)).ok;
  }
  await s.write(Buffer.from(ok ? 'DONEDONE' : 'FAILFAIL', 'latin1'));
  s.close();
  await conn.state.reload?.();
  if (conn.state.info.sideloadAutoReboot) await conn.reboot('');
  else {
    await conn.state.update((d) => {
      d.mode = 'recovery';
    });
    setImmediate(() => conn.dropAll());
  }
}
