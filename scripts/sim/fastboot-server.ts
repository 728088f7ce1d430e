/**
 * The virtual device's fastboot server: fastboot over TCP ("FB01" handshake, 8-byte big-endian
 * frames; system/core/fastboot/README.md) acting as the bootloader or as fastbootd depending on the
 * device's `mode` in its {@link SimState}. It enforces what real devices enforce:
 *
 * - no download/flash/erase/set_active on a locked device (messages as fastbootd / Pixel bootloaders);
 * - logical partitions (inside super) only from fastbootd; the bootloader does not manage them;
 * - `download` larger than max-download-size is refused; sparse images are expanded on flash;
 * - nothing is written before a download is complete; raw images replace the partition atomically
 *   (the download file is renamed over it); sparse images are fully validated, then applied in place.
 *
 * Accepts connections only while the device is in "bootloader" or "fastbootd" mode; reboot commands
 * answer OKAY, close the connection, and switch the mode after a short "boot" delay.
 *
 * Fault injection (tests): `faults` in device.json or in the options (options win): drop (FIN) or
 * reset (RST) after N received bytes, throttle received bytes, FAIL selected commands.
 *
 * Extension beyond the AOSP README: `fetch:<partition>[:offset[:size]]` (as fastbootd's debug-build
 * fetch) works here on every partition, so clients can read back what they wrote.
 */
import { type FileHandle, open, rm, stat } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { expandSparse, parseSparseHeader } from '../device/fastboot/sparse.ts';
import { frameHeader, SocketReader, socketWrite } from '../device/fastboot/tcp.ts';
import { OmieError } from '../errors.ts';
import { readSuper } from '../formats/super/index.ts';
import { bootAndroid } from './boot.ts';
import {
  AVB_CUSTOM_KEY,
  type BootloaderStyle,
  type DeviceJson,
  type DeviceMode,
  MAX_RETRIES,
  type PartitionInfo,
  type SimFaults,
  type SimState,
  type Slot,
  type SuperInfo,
} from './state.ts';
import { superLayoutProblem } from './super-layout.ts';
import { customKeyFrom } from './verified-boot.ts';

export interface FastbootServerOptions {
  state: SimState;
  port?: number;
  host?: string;
  /** Overrides device.json's `faults`. */
  faults?: SimFaults;
  /** How long a reboot takes before the new mode accepts connections (ms). Default 200. */
  rebootDelayMs?: number;
  /** Called on every command (tests, logging). */
  onCommand?: (cmd: string, mode: DeviceMode) => void;
}

export interface FastbootServer {
  port: number;
  close(): Promise<void>;
  /** Replaces the option-level faults (undefined: use device.json's). */
  setFaults(f: SimFaults | undefined): void;
  /** Replaces the command listener (tests record what clients send). */
  onCommand(fn: ((cmd: string, mode: DeviceMode) => void) | undefined): void;
}

const FASTBOOT_MODES: DeviceMode[] = ['bootloader', 'fastbootd'];

export async function startFastbootServer(opts: FastbootServerOptions): Promise<FastbootServer> {
  let optFaults = opts.faults;
  const sessionOpts: FastbootServerOptions = { ...opts };
  /** Connections a drop/reset fault has hit, to honour `faults.times`. */
  let faultHits = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => {});
    sock.setNoDelay(true);
    const faults = optFaults ?? opts.state.info.faults;
    const useFault = faults && (faults.times === undefined || faultHits < faults.times);
    track(
      new Session(
        sock,
        sessionOpts,
        useFault ? faults : undefined,
        () => {
          faultHits++;
        },
        track,
      )
        .run()
        .catch(() => {})
        .finally(() => sock.destroy()),
    );
  });
  /** Sessions and their delayed state writes: close() waits for them, so the state folder is quiet. */
  const pending = new Set<Promise<unknown>>();
  function track(work: Promise<unknown>): void {
    pending.add(work);
    void work.finally(() => pending.delete(work));
  }
  await new Promise<void>((res, rej) => {
    server.once('error', rej);
    server.listen(opts.port ?? 0, opts.host ?? '127.0.0.1', () => res());
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : (opts.port ?? 0);
  return {
    port,
    onCommand(fn) {
      sessionOpts.onCommand = fn;
    },
    setFaults(f) {
      optFaults = f;
      faultHits = 0;
    },
    close: async () => {
      await new Promise<void>((res) => {
        for (const s of sockets) s.destroy();
        server.close(() => res());
      });
      while (pending.size) await Promise.allSettled([...pending]);
    },
  };
}

class Fail extends Error {}

class Session {
  private reader: SocketReader;
  private download?: { path: string; size: number };
  private mode: DeviceMode = 'off';
  private closing = false;

  constructor(
    private readonly sock: Socket,
    private readonly opts: FastbootServerOptions,
    private readonly faults: SimFaults | undefined,
    private readonly onFaultHit: () => void,
    /** Registers work that outlives the connection (a reboot's delayed mode change), for close(). */
    private readonly track: (work: Promise<unknown>) => void,
  ) {
    this.reader = new SocketReader(sock, 8 << 20, faults ? this.interceptor(faults) : undefined);
  }

  private get st(): SimState {
    return this.opts.state;
  }

  private get d(): DeviceJson {
    return this.st.info;
  }

  /** Applies drop/reset/slow faults to received bytes. */
  private interceptor(f: SimFaults): (c: Buffer, push: (c: Buffer) => void) => void {
    let received = 0;
    let hit = false;
    let releaseAt = 0;
    const limit = f.dropAfterBytes ?? f.resetAfterBytes;
    return (c, push) => {
      if (hit) return;
      let chunk = c;
      if (limit !== undefined && received + chunk.length >= limit) {
        chunk = chunk.subarray(0, Math.max(0, limit - received));
        hit = true;
        this.onFaultHit();
      }
      received += chunk.length;
      const deliver = () => {
        if (chunk.length) push(chunk);
        if (hit) {
          this.closing = true;
          if (f.resetAfterBytes !== undefined && f.dropAfterBytes === undefined) this.sock.resetAndDestroy();
          else this.sock.destroy();
        }
      };
      if (f.slowBytesPerSecond && f.slowBytesPerSecond > 0) {
        const now = Date.now();
        releaseAt = Math.max(now, releaseAt) + (chunk.length / f.slowBytesPerSecond) * 1000;
        this.sock.pause();
        setTimeout(() => {
          deliver();
          if (!hit) this.sock.resume();
        }, releaseAt - now);
      } else deliver();
    };
  }

  async run(): Promise<void> {
    try {
      await this.st.reload();
      this.mode = this.d.mode;
      if (!FASTBOOT_MODES.includes(this.mode)) {
        // Not in fastboot: like a closed port, refuse at once (RST) so clients fail fast.
        this.sock.resetAndDestroy();
        return;
      }
      const hs = await this.reader.read(4);
      if (hs.subarray(0, 2).toString('latin1') !== 'FB' || !/^\d\d$/.test(hs.subarray(2).toString('latin1')))
        return;
      if (Number(hs.subarray(2).toString('latin1')) < 1) return;
      await socketWrite(this.sock, Buffer.from('FB01'));
      for (;;) {
        const len = await this.frameLength();
        if (len > 4096) return; // a command is at most 4096 bytes: the peer is not speaking fastboot
        const cmd = (await this.reader.read(len)).toString('utf8');
        await this.st.reload();
        this.mode = this.d.mode;
        this.opts.onCommand?.(cmd, this.mode);
        const refused = this.faults?.refuseCommands?.find((p) => cmd.startsWith(p));
        try {
          if (refused) throw new Fail(`command refused (fault injection: ${refused})`);
          await this.dispatch(cmd);
        } catch (e) {
          if (e instanceof Fail) await this.reply('FAIL', e.message);
          else if (e instanceof OmieError) await this.reply('FAIL', e.message.slice(0, 252));
          else throw e;
        }
        if (this.closing) return;
      }
    } finally {
      if (this.download) await rm(this.download.path, { force: true });
    }
  }

  private async frameLength(): Promise<number> {
    const h = await this.reader.read(8);
    const n = h.readBigUInt64BE(0);
    if (n > 0xffffffffn) throw new Error('frame too long');
    return Number(n);
  }

  private async reply(kind: 'OKAY' | 'FAIL' | 'INFO' | 'TEXT' | 'DATA', msg = ''): Promise<void> {
    const b = Buffer.from(kind + msg, 'utf8').subarray(0, 256);
    await this.sendFrame([b]);
  }

  private async sendFrame(parts: Buffer[]): Promise<void> {
    const len = parts.reduce((a, p) => a + p.length, 0);
    const slow = this.faults?.slowBytesPerSecond;
    if (slow) await new Promise((r) => setTimeout(r, ((len + 8) / slow) * 1000));
    await socketWrite(this.sock, [frameHeader(len), ...parts]);
  }

  private get userspace(): boolean {
    return this.mode === 'fastbootd';
  }

  private unknown(cmd: string): never {
    throw new Fail(this.userspace ? `Unrecognized command ${cmd.split(':')[0]}` : 'unknown command');
  }

  private requireUnlocked(what: 'flash' | 'erase' | 'download' | 'set_active' | 'command'): void {
    if (this.d.unlocked) return;
    if (this.userspace) {
      const m = {
        flash: 'Flashing is not allowed on locked devices',
        erase: 'Erase is not allowed on locked devices',
        download: 'Download is not allowed on locked devices',
        set_active: 'set_active command is not allowed on locked devices',
        command: 'Command not available on locked devices',
      };
      throw new Fail(m[what]);
    }
    const m = {
      flash: 'Flashing is not allowed in Lock State',
      erase: 'Erase is not allowed in Lock State',
      download: '',
      set_active: 'Slot Change is not allowed in Lock State',
      command: 'Command not allowed in Lock State',
    };
    if (m[what]) throw new Fail(m[what]);
  }

  private async dispatch(cmd: string): Promise<void> {
    const [name, ...args] = cmd.split(':');
    switch (name) {
      case 'getvar':
        return this.getvar(args);
      case 'download':
        return this.doDownload(args[0] ?? '');
      case 'flash':
        return this.flash(args[0] ?? '');
      case 'erase':
        return this.erase(args[0] ?? '');
      case 'set_active':
        return this.setActive(args[0] ?? '');
      case 'reboot':
        return this.reboot(args[0] ? args[0] : 'system');
      case 'continue':
        return this.reboot('system');
      case 'reboot-bootloader':
        return this.reboot('bootloader');
      case 'reboot-fastboot':
        return this.reboot('fastboot');
      case 'reboot-recovery':
        return this.reboot('recovery');
      case 'flashing unlock':
      case 'oem unlock':
        return this.setLock(false, name);
      case 'flashing unlock_critical':
        return this.setLock(false, name, true);
      case 'flashing lock':
      case 'oem lock':
        return this.setLock(true, name);
      case 'flashing get_unlock_ability':
        if (this.userspace) this.unknown(cmd);
        await this.reply('INFO', `get_unlock_ability: ${this.d.unlockAbility === false ? 0 : 1}`);
        return this.reply('OKAY');
      case 'snapshot-update':
        return this.snapshotUpdate(args[0] ?? '');
      case 'fetch':
        return this.fetch(args);
      case 'create-logical-partition':
      case 'delete-logical-partition':
      case 'resize-logical-partition':
      case 'update-super':
        if (!this.userspace)
          throw new Fail(`${name}: logical partitions are managed by fastbootd (fastboot reboot fastboot)`);
        this.requireUnlocked('command');
        if (name === 'update-super') return this.updateSuper(args);
        return this.logical(name, args);
      default:
        return this.unknown(cmd);
    }
  }

  // ---- getvar ---------------------------------------------------------------------------------

  private partitionNames(): string[] {
    const out: string[] = [];
    for (const [name, p] of Object.entries(this.d.partitions)) {
      if (p.logical && !this.userspace) continue;
      if (p.slotted) out.push(`${name}_a`, `${name}_b`);
      else out.push(name);
    }
    return out;
  }

  private variables(): Record<string, string | undefined> {
    const d = this.d;
    const yes = (b: boolean) => (b ? 'yes' : 'no');
    return {
      version: '0.4',
      'version-bootloader': d.versionBootloader,
      'version-baseband': d.versionBaseband ?? '',
      product: d.product,
      serialno: d.serial,
      variant: d.variant,
      secure: yes(d.secure),
      unlocked: yes(d.unlocked),
      'max-download-size':
        this.style.downloadSize === 'decimal'
          ? String(d.maxDownloadSize)
          : `0x${d.maxDownloadSize.toString(16).toUpperCase()}`,
      'max-fetch-size': `0x${d.maxDownloadSize.toString(16).toUpperCase()}`,
      'current-slot': d.currentSlot
        ? `${this.style.slot === 'underscore' ? '_' : ''}${d.currentSlot}`
        : undefined,
      'slot-count': d.slotCount ? String(d.slotCount) : undefined,
      'is-userspace': yes(this.userspace),
      'super-partition-name': d.superPartition && this.userspace ? d.superPartition.name : undefined,
      'dynamic-partition': d.superPartition && this.userspace ? 'true' : undefined,
      'snapshot-update-status': d.snapshotUpdateStatus,
    };
  }

  /** The bootloader's answer style (fastbootd always answers as AOSP's fastbootd). */
  private get style(): BootloaderStyle {
    return (!this.userspace && this.d.bootloaderStyle) || {};
  }

  private lookup(p: string): { name: string; slot: Slot | null } | undefined {
    const r = this.st.resolvePartition(p);
    if (!r) return undefined;
    if (this.d.partitions[r.name].logical && !this.userspace) return undefined;
    return r;
  }

  private partVar(v: string, p: string): string {
    const r = this.lookup(p);
    switch (v) {
      case 'partition-size': {
        if (!r) throw new Fail('Could not find partition');
        const hex = this.d.partitions[r.name].size.toString(16).toUpperCase();
        return this.style.partitionSize === 'bare-hex' ? hex.padStart(16, '0') : `0x${hex}`;
      }
      case 'partition-type':
        if (!r) throw new Fail('Could not find partition');
        return r.name === 'userdata' || r.name === 'metadata' ? 'ext4' : 'raw';
      case 'is-logical': {
        // The bootloader knows super's children only by name; fastbootd reads the metadata.
        const any = this.st.resolvePartition(p);
        if (!any) throw new Fail('Unknown partition');
        return this.d.partitions[any.name].logical ? 'yes' : 'no';
      }
      case 'has-slot': {
        // ABL-style bootloaders FAIL for partitions they do not have; fastbootd answers "no".
        if (this.style.slot === 'underscore' && !this.st.resolvePartition(p) && !this.d.partitions[`${p}_a`])
          throw new Fail('Unknown partition');
        if (!this.d.currentSlot) return 'no';
        const part = this.d.partitions[p];
        if (part?.slotted) return 'yes';
        return this.d.partitions[`${p}_a`]?.logical ? 'yes' : 'no';
      }
      case 'slot-successful':
      case 'slot-unbootable': {
        const s = p.replace(/^_/, '') as Slot;
        if ((s !== 'a' && s !== 'b') || !this.d.currentSlot) throw new Fail('Invalid slot');
        const m = v === 'slot-successful' ? this.d.slotSuccessful : this.d.slotUnbootable;
        return m?.[s] ? 'yes' : 'no';
      }
      case 'slot-retry-count': {
        const s = p.replace(/^_/, '') as Slot;
        if ((s !== 'a' && s !== 'b') || !this.d.currentSlot) throw new Fail('Invalid slot');
        return String(this.d.slotRetryCount?.[s] ?? 0);
      }
      default:
        throw new Fail('Unknown variable');
    }
  }

  private async getvar(args: string[]): Promise<void> {
    const v = args[0];
    if (!v) throw new Fail('Missing argument');
    if (v === 'all') {
      const sep = this.style.getvarAll === 'colon-space' ? ': ' : ':';
      const line = (k: string, val: string) => this.reply('INFO', `${k}${sep}${val}`);
      for (const [k, val] of Object.entries(this.variables())) if (val !== undefined) await line(k, val);
      const names = this.partitionNames();
      const bases = new Set(names.map((n) => n.replace(/_[ab]$/, '')));
      for (const b of bases) await line(`has-slot:${b}`, this.partVar('has-slot', b));
      for (const n of names) {
        await line(`partition-size:${n}`, this.partVar('partition-size', n));
        await line(`partition-type:${n}`, this.partVar('partition-type', n));
        await line(`is-logical:${n}`, this.partVar('is-logical', n));
      }
      if (this.d.currentSlot)
        for (const s of ['a', 'b']) {
          await line(`slot-successful:${s}`, this.partVar('slot-successful', s));
          await line(`slot-unbootable:${s}`, this.partVar('slot-unbootable', s));
          await line(`slot-retry-count:${s}`, this.partVar('slot-retry-count', s));
        }
      return this.reply('OKAY');
    }
    if (args.length >= 2) return this.reply('OKAY', this.partVar(v, args.slice(1).join(':')));
    const val = this.variables()[v];
    if (val === undefined) throw new Fail('Unknown variable');
    return this.reply('OKAY', val);
  }

  // ---- download / flash / erase -----------------------------------------------------------------

  private async doDownload(hex: string): Promise<void> {
    if (!/^[0-9a-fA-F]{1,8}$/.test(hex)) throw new Fail('Invalid size');
    this.requireUnlocked('download');
    const size = Number.parseInt(hex, 16);
    if (size === 0) throw new Fail('Invalid size (0)');
    if (size > this.d.maxDownloadSize)
      throw new Fail(
        `Requested download size is more than max allowed (0x${this.d.maxDownloadSize.toString(16)})`,
      );
    if (this.download) await rm(this.download.path, { force: true });
    this.download = undefined;
    const path = this.st.tempPath('download');
    const fh = await open(path, 'w');
    let got = 0;
    try {
      await this.reply('DATA', size.toString(16).padStart(8, '0'));
      let pending: Buffer[] = [];
      let pendingLen = 0;
      let pos = 0;
      const flush = async () => {
        if (!pendingLen) return;
        await fh.writev(pending, pos);
        pos += pendingLen;
        pending = [];
        pendingLen = 0;
      };
      while (got < size) {
        let left = await this.frameLength();
        if (got + left > size) throw new Error('download overran its announced size');
        while (left > 0) {
          const c = await this.reader.readSome(left);
          pending.push(c);
          pendingLen += c.length;
          left -= c.length;
          got += c.length;
          if (pendingLen >= 4 << 20) await flush();
        }
      }
      await flush();
    } catch (e) {
      await fh.close();
      await rm(path, { force: true });
      throw e;
    }
    await fh.close();
    this.download = { path, size };
    return this.reply('OKAY');
  }

  private async flash(arg: string): Promise<void> {
    if (!arg) throw new Fail('Invalid arguments');
    this.requireUnlocked('flash');
    const any = this.st.resolvePartition(arg);
    if (any && this.d.partitions[any.name].logical && !this.userspace)
      throw new Fail(`Partition ${arg} is logical: flash it from fastbootd (fastboot reboot fastboot)`);
    const r = this.lookup(arg);
    if (!r) throw new Fail(`Partition ${arg} not found`);
    const dl = this.download;
    if (!dl) throw new Fail('No data downloaded');
    if (this.d.snapshotUpdateStatus === 'merging' && ['userdata', 'metadata', 'misc'].includes(r.name))
      throw new Fail(`Cannot flash ${r.name} while a snapshot update is in progress`);
    if (r.name === AVB_CUSTOM_KEY) await this.checkCustomKey(dl.path, dl.size);
    const part = this.d.partitions[r.name];
    const dest = this.st.partitionPath(r.name, r.slot);
    const head = Buffer.alloc(28);
    const src = await open(dl.path, 'r');
    let tmp: string | undefined;
    try {
      await src.read(head, 0, 28, 0);
      let sparse: ReturnType<typeof parseSparseHeader>;
      try {
        sparse = parseSparseHeader(head.subarray(0, Math.min(28, dl.size)), arg);
      } catch (e) {
        throw new Fail(`Invalid sparse image: ${(e as Error).message}`);
      }
      if (sparse) {
        // Every chunk header is validated before the first byte is written (expandSparse), and the
        // data is already complete on the device, so a dropped link cannot leave a half-written piece.
        // Pieces of a split image are applied in place, as real devices do: copying the whole
        // partition per piece to rename it in would cost a full partition write for every piece.
        const out = await open(dest, 'r+');
        try {
          await expandSparse(src, dl.size, out, part.size, arg);
        } catch (e) {
          throw new Fail(
            /beyond/.test((e as Error).message)
              ? 'Partition is too small'
              : `Invalid sparse image: ${(e as Error).message}`,
          );
        } finally {
          await out.close();
        }
        await src.close();
      } else {
        if (dl.size > part.size) throw new Fail('Partition is too small');
        await src.close();
        // The downloaded file becomes the partition image: no copy.
        tmp = dl.path;
        this.download = undefined;
      }
      if (tmp) await this.st.commitPartition(r.name, r.slot, tmp);
      tmp = undefined;
    } finally {
      await src.close().catch(() => {});
      if (tmp && tmp !== this.download?.path) await rm(tmp, { force: true });
    }
    // A new filesystem on userdata (fastboot -w formats it so) is a wiped device.
    if (r.name === 'userdata') await this.st.wipeData();
    if (part.logical && this.d.snapshotUpdateStatus !== 'none' && this.d.snapshotUpdateStatus !== 'cancelled')
      await this.st.update((d) => {
        d.snapshotUpdateStatus = 'cancelled';
      });
    return this.reply('OKAY', this.userspace ? 'Flashing succeeded' : '');
  }

  /** The bootloader takes only an AVB public key blob (avbtool extract_public_key) as custom key. */
  private async checkCustomKey(path: string, size: number): Promise<void> {
    const limit = this.d.partitions[AVB_CUSTOM_KEY].size;
    if (size > limit) throw new Fail('Partition is too small');
    const fh = await open(path, 'r');
    const buf = Buffer.alloc(limit);
    try {
      await fh.read(buf, 0, size, 0);
    } finally {
      await fh.close();
    }
    if (!customKeyFrom(buf))
      throw new Fail('Invalid custom key: expected an AVB public key (avbtool extract_public_key)');
  }

  private async erase(arg: string): Promise<void> {
    if (!arg) throw new Fail('Invalid arguments');
    this.requireUnlocked('erase');
    const r = this.lookup(arg);
    if (!r) throw new Fail(this.userspace ? "Partition doesn't exist" : `Partition ${arg} not found`);
    if (this.d.snapshotUpdateStatus === 'merging' && ['userdata', 'metadata', 'misc'].includes(r.name))
      throw new Fail(`Cannot erase ${r.name} while a snapshot update is in progress`);
    if (r.name === 'userdata') await this.wipeUserdata();
    else await this.st.erasePartition(r.name, r.slot);
    return this.reply('OKAY', this.userspace ? 'Erasing succeeded' : '');
  }

  private async setActive(arg: string): Promise<void> {
    if (!arg) throw new Fail('Missing slot argument');
    this.requireUnlocked('set_active');
    const s = arg.replace(/^_/, '');
    if (!/^[a-z]$/.test(s)) throw new Fail('Bad slot suffix');
    if (!this.d.slotCount) throw new Fail('Cannot set slot: boot control HAL absent');
    if (s !== 'a' && s !== 'b') throw new Fail('Slot out of range');
    if (s === this.d.currentSlot) return this.reply('OKAY');
    if (this.d.snapshotUpdateStatus === 'merging')
      throw new Fail('Cannot change slots while a snapshot update is in progress');
    if (this.d.snapshotUpdateStatus === 'snapshotted')
      await this.reply('INFO', 'Changing the active slot with a snapshot applied may cancel the update.');
    // boot_control setActiveBootSlot: the slot gets the highest priority and a fresh set of tries.
    await this.st.update((d) => {
      d.currentSlot = s;
      if (d.slotUnbootable) d.slotUnbootable[s] = false;
      if (d.slotSuccessful) d.slotSuccessful[s] = false;
      d.slotRetryCount = { a: 0, b: 0, ...d.slotRetryCount, [s]: MAX_RETRIES };
    });
    return this.reply('OKAY');
  }

  private async fetch(args: string[]): Promise<void> {
    this.requireUnlocked('command');
    const r = args[0] ? this.lookup(args[0]) : undefined;
    if (!r) throw new Fail(args[0] ? `Cannot open ${args[0]}` : 'Missing partition arg');
    const path = this.st.partitionPath(r.name, r.slot);
    const size = (await stat(path)).size;
    const off = args[1] ? Number(args[1]) : 0;
    if (!Number.isSafeInteger(off) || off < 0 || off > size) throw new Fail('Invalid offset');
    const len = args[2] ? Number(args[2]) : size - off;
    if (!Number.isSafeInteger(len) || len < 0 || off + len > size) throw new Fail('Invalid size');
    if (len > this.d.maxDownloadSize) throw new Fail('Cannot fetch: exceeds maximum transport size');
    if (len === 0) return this.reply('OKAY', 'Read 0 bytes');
    await this.reply('DATA', len.toString(16).padStart(8, '0'));
    const fh: FileHandle = await open(path, 'r');
    try {
      let done = 0;
      while (done < len) {
        const n = Math.min(1 << 20, len - done);
        const b = Buffer.allocUnsafe(n);
        await fh.read(b, 0, n, off + done);
        await this.sendFrame([b]);
        done += n;
      }
    } finally {
      await fh.close();
    }
    return this.reply('OKAY');
  }

  // ---- modes, lock, snapshots ------------------------------------------------------------------

  private async reboot(target: string): Promise<void> {
    const map: Record<string, DeviceMode> = {
      system: 'adb',
      bootloader: 'bootloader',
      fastboot: this.d.superPartition ? 'fastbootd' : 'bootloader',
      recovery: 'recovery',
    };
    const next = map[target];
    if (!next) throw new Fail(`Unknown reboot target ${target}`);
    const msg = {
      system: 'Rebooting',
      bootloader: 'Rebooting bootloader',
      fastboot: 'Rebooting fastboot',
      recovery: 'Rebooting to recovery',
    }[target];
    await this.st.update((d) => {
      d.mode = 'off';
    });
    await this.reply('OKAY', this.userspace ? msg : '');
    this.closing = true;
    const delay = this.opts.rebootDelayMs ?? 200;
    this.track(
      new Promise((r) => setTimeout(r, delay))
        .then(() =>
          // Android starts only through the bootloader's verified boot (which may end in the bootloader).
          next === 'adb'
            ? bootAndroid(this.st).then(() => {})
            : this.st.update((d) => {
                d.mode = next;
              }),
        )
        .catch(() => {}),
    );
    this.sock.end();
  }

  /**
   * flashing lock / unlock (and unlock_critical, which also opens the bootloader's own partitions).
   * Locking succeeds whatever the slots hold, as on real devices: what does not verify with the OEM
   * or the enrolled custom key is then red at the next boot. Either way user data is wiped.
   */
  private async setLock(lock: boolean, name: string, critical = false): Promise<void> {
    if (this.userspace) this.unknown(name);
    if (!lock && this.d.unlockAbility === false) throw new Fail('Flashing Unlock is not allowed');
    const same = lock ? !this.d.unlocked : this.d.unlocked && (!critical || this.d.criticalUnlocked === true);
    if (same) return this.reply('OKAY');
    // Changing the lock state wipes user data on real devices.
    await this.reply(
      'INFO',
      lock ? 'Locking bootloader and erasing userdata' : 'Unlocking bootloader and erasing userdata',
    );
    await this.wipeUserdata();
    await this.st.update((d) => {
      d.unlocked = !lock;
      if (lock) delete d.criticalUnlocked;
      else if (critical) d.criticalUnlocked = true;
    });
    return this.reply('OKAY');
  }

  /** userdata (and what lives on it) is gone. */
  private async wipeUserdata(): Promise<void> {
    if (this.d.partitions.userdata) await this.st.erasePartition('userdata', null);
    await this.st.wipeData();
  }

  private async snapshotUpdate(arg: string): Promise<void> {
    const status = this.d.snapshotUpdateStatus;
    if (!arg) {
      await this.reply('INFO', status);
      return this.reply('OKAY');
    }
    if (arg === 'cancel') {
      if (status === 'snapshotted' || status === 'merging')
        await this.st.update((d) => {
          d.snapshotUpdateStatus = 'cancelled';
        });
    } else if (arg === 'merge') {
      if (status !== 'merging') throw new Fail('No snapshot merge is in progress');
      await this.st.update((d) => {
        d.snapshotUpdateStatus = 'none';
      });
    } else throw new Fail('Invalid parameter to snapshot-update');
    return this.reply('OKAY', 'Success');
  }

  // ---- logical partitions ----------------------------------------------------------------------

  private async logical(name: string, args: string[]): Promise<void> {
    const sp = this.d.superPartition;
    if (!sp) throw new Fail('Could not open super partition');
    const [pname, sizeArg] = args;
    if (!pname) throw new Fail('Invalid partition name and size');
    const existing = this.d.partitions[pname];
    if (existing && !existing.logical) throw new Fail('Partition already exists');
    if (name === 'delete-logical-partition') {
      if (existing) {
        await this.st.removePartitionFiles(pname);
        await this.st.update((d) => {
          delete d.partitions[pname];
          if (d.superPartition?.partitionGroups) delete d.superPartition.partitionGroups[pname];
        });
      }
      return this.reply('OKAY', 'Partition deleted');
    }
    if (!sizeArg || !/^\d+$/.test(sizeArg)) throw new Fail('Invalid partition size');
    const size = Number(sizeArg);
    if (!Number.isSafeInteger(size)) throw new Fail('Invalid partition size');
    const create = name === 'create-logical-partition';
    if (create && existing) throw new Fail('Partition already exists');
    if (!create && !existing) throw new Fail('Partition does not exist');
    // fastbootd's MetadataBuilder: a new partition goes to the "default" group; either way the
    // whole table must still fit super (groups, alignment, metadata size) or nothing changes.
    const next = { ...this.d.partitions, [pname]: { size, logical: true, slotted: false } };
    const problem = await superLayoutProblem(this.d, next, sp);
    if (problem)
      throw new Fail(
        `${create ? 'Not enough space for partition' : 'Not enough space to resize partition'}: ${problem}`,
      );
    // Logical partitions are extents in super: resizing is a metadata change; new space reads as zeros.
    await this.st.update((d) => {
      d.partitions[pname] = { size, logical: true, slotted: false };
    });
    await this.st.ensurePartitionFile(pname, null);
    return this.reply('OKAY', create ? 'Partition created' : 'Partition resized');
  }

  private async updateSuper(args: string[]): Promise<void> {
    const [superName, mode] = args;
    if (!superName) throw new Fail('Invalid arguments');
    if (!this.d.superPartition || superName !== this.d.superPartition.name)
      throw new Fail(`Could not find partition ${superName}`);
    const dl = this.download;
    if (!dl) throw new Fail('No data downloaded');
    const wipe = mode === 'wipe';
    if (!wipe && (this.d.snapshotUpdateStatus === 'snapshotted' || this.d.snapshotUpdateStatus === 'merging'))
      throw new Fail(
        'Cannot update super during an OTA: cancel the snapshot first (fastboot snapshot-update cancel)',
      );
    const head = Buffer.alloc(28);
    const fh = await open(dl.path, 'r');
    try {
      await fh.read(head, 0, 28, 0);
    } finally {
      await fh.close();
    }
    if (parseSparseHeader(head) !== undefined) throw new Fail('Super image must not be sparse');
    let info: Awaited<ReturnType<typeof readSuper>>;
    try {
      info = await readSuper(dl.path);
    } catch (e) {
      throw new Fail(`Invalid super image: ${(e as Error).message}`.slice(0, 250));
    }
    const old = this.d.superPartition;
    const superSize = info.blockDevices[0]?.size ?? 0;
    if (superSize > old.size)
      throw new Fail(
        `Super image block device is larger than the device's super (${superSize} > ${old.size})`,
      );
    const before = { ...this.d.partitions };
    // As fastbootd's UpdateSuper: with wipe the image's table replaces everything; otherwise the
    // image's table is taken and only the partitions of the *other* slot are imported from the old
    // one (those of the current slot, and the unsuffixed ones on virtual A/B, are dropped), with
    // their groups.
    const cur = this.d.currentSlot;
    const keep = (n: string) => !wipe && (!cur || !n.endsWith(`_${cur}`));
    const kept = Object.entries(before).filter(([n, p]) => p.logical && keep(n));
    const partitions: Record<string, PartitionInfo> = Object.fromEntries(
      Object.entries(before).filter(([, p]) => !p.logical),
    );
    const partitionGroups: Record<string, string> = {};
    const groups: Record<string, number> = {};
    for (const g of info.groups) if (g.name !== 'default') groups[g.name] = g.maximumSize;
    for (const p of info.partitions) {
      partitions[p.name] = { size: p.size, logical: true, slotted: false };
      partitionGroups[p.name] = p.group;
    }
    for (const [n, p] of kept) {
      partitions[n] = p;
      const g = old.partitionGroups?.[n] ?? 'default';
      partitionGroups[n] = g;
      if (g !== 'default' && groups[g] === undefined) groups[g] = old.groups?.[g] ?? 0;
    }
    const sp: SuperInfo = {
      name: old.name,
      size: old.size,
      metadataMaxSize: info.geometry.metadataMaxSize,
      metadataSlots: info.geometry.metadataSlotCount,
      alignment: info.blockDevices[0]?.alignment || old.alignment,
      groups,
      partitionGroups,
    };
    const problem = await superLayoutProblem(this.d, partitions, sp);
    if (problem) throw new Fail(`Unable to import partitions: ${problem}`.slice(0, 250));
    await this.st.update((d) => {
      d.partitions = partitions;
      d.superPartition = sp;
    });
    // Dropped partitions lose their extents: their data is gone.
    for (const [n, p] of Object.entries(before))
      if (p.logical && !keep(n) && this.d.partitions[n])
        await this.st.removePartitionFiles(n).catch(() => {});
    for (const n of Object.keys(before))
      if (before[n].logical && !this.d.partitions[n]) await this.st.removePartitionFiles(n).catch(() => {});
    for (const [n, p] of Object.entries(this.d.partitions))
      if (p.logical) await this.st.ensurePartitionFile(n, null);
    return this.reply('OKAY', 'Super partition updated');
  }
}
