/**
 * A fastboot client over any {@link FastbootTransport} (TCP or USB), doing what the AOSP `fastboot`
 * host tool does for each operation:
 *
 * - `flash`: resolve the slot suffix (has-slot / current-slot) unless one is given; for logical
 *   partitions in fastbootd, `resize-logical-partition` to the image's size first; images larger
 *   than max-download-size (or sparse images larger than it) are re-sparsed into pieces exactly as
 *   libsparse's sparse_file_resparse, each piece sent with download + flash.
 * - downloads stream from the file (never loaded whole) with progress.
 */
import { open } from 'node:fs/promises';
import { InputError } from '../../errors.ts';
import { SPARSE_HEADER_SIZE } from '../../formats/sparse.ts';
import type { ProgressFn } from '../../progress.ts';
import {
  type CommandOptions,
  FastbootFailError,
  FastbootProtocol,
  type FastbootTransport,
  TransportError,
} from './protocol.ts';
import { importLayout, parseSparseHeader, sparseLength, splitLayout, writeSparse } from './sparse.ts';
import { TcpTransport } from './tcp.ts';
import { parseGetvarAll, parseHexSizeVar, parseSlotVar, parseUintVar, parseYesNoVar } from './vars.ts';

export interface FastbootClientOptions {
  /** Per-command timeout (ms) between device packets. Default 30 s; flash/erase get 5 min. */
  timeoutMs?: number;
  /** INFO lines from the device ("(bootloader) …"). */
  onInfo?: (line: string) => void;
}

export interface FlashOptions {
  onProgress?: ProgressFn;
  /** Send the partition name as is (no slot suffix resolution). */
  exactName?: boolean;
  /** Upper bound for one download; default: the device's max-download-size. */
  sparseLimit?: number;
}

export type RebootTarget = 'system' | 'bootloader' | 'fastboot' | 'recovery';

/** Bytes per download frame: big enough to amortise per-frame costs, small enough to keep memory low. */
const SEND_CHUNK = 4 << 20;

export class FastbootClient {
  readonly protocol: FastbootProtocol;
  private maxDownload?: number;

  constructor(
    readonly transport: FastbootTransport,
    private readonly opts: FastbootClientOptions = {},
  ) {
    this.protocol = new FastbootProtocol(transport);
  }

  /** Connects to "tcp:host:port" (or "host:port"). */
  static async connectTcp(address: string, opts: FastbootClientOptions & { connectTimeoutMs?: number } = {}) {
    return new FastbootClient(
      await TcpTransport.connect(address, { timeoutMs: opts.connectTimeoutMs }),
      opts,
    );
  }

  /**
   * Opens "tcp:host:port" over TCP; "usb:<port>" or anything else (a serial number) over USB
   * (USB needs the `usb` package).
   */
  static async open(target: string, opts: FastbootClientOptions & { connectTimeoutMs?: number } = {}) {
    if (target.startsWith('tcp:')) return FastbootClient.connectTcp(target, opts);
    const { findUsbFastbootDevice } = await import('./usb.ts');
    return new FastbootClient(await (await findUsbFastbootDevice(target)).open(), opts);
  }

  async close(): Promise<void> {
    await this.transport.close();
  }

  private cmdOpts(timeoutMs?: number): CommandOptions {
    return { timeoutMs: timeoutMs ?? this.opts.timeoutMs, onInfo: this.opts.onInfo };
  }

  /** Raw command; resolves with the OKAY payload. */
  async command(cmd: string, timeoutMs?: number): Promise<string> {
    return (await this.protocol.command(cmd, this.cmdOpts(timeoutMs))).value;
  }

  async getvar(name: string): Promise<string> {
    return this.command(`getvar:${name}`);
  }

  /** getvar but undefined instead of FAIL (unknown variable). */
  async tryGetvar(name: string): Promise<string | undefined> {
    try {
      return await this.getvar(name);
    } catch (e) {
      if (e instanceof FastbootFailError) return undefined;
      throw e;
    }
  }

  /**
   * `getvar all`: the INFO lines as a map keyed by "name" / "name:arg" (bootloader "name: value"
   * and fastbootd "name:arg:value" lines alike, see {@link parseGetvarAll}).
   */
  async getvarAll(): Promise<Record<string, string>> {
    const r = await this.protocol.command('getvar:all', this.cmdOpts());
    return parseGetvarAll(r.info);
  }

  /**
   * max-download-size as the real client reads it (decimal, or hex with "0x"). Unknown or
   * unparsable means "no limit" there; we keep a sane cap so a download stays bounded.
   */
  async maxDownloadSize(): Promise<number> {
    if (this.maxDownload === undefined) {
      const n = parseUintVar(await this.tryGetvar('max-download-size')) ?? 0;
      this.maxDownload = n > 0 ? Math.min(n, 0xffffffff) : 512 << 20;
    }
    return this.maxDownload;
  }

  /** Forgets cached device limits (after a reboot: bootloader and fastbootd differ). */
  resetLimits(): void {
    this.maxDownload = undefined;
  }

  /** The active slot letter ("a"), whether the device says "a" or "_a"; undefined when not A/B. */
  async currentSlot(): Promise<string | undefined> {
    return parseSlotVar(await this.tryGetvar('current-slot'));
  }

  /** slot-count as a number (0 when absent or unparsable: the real client then treats it as non-A/B). */
  async slotCount(): Promise<number> {
    return parseUintVar(await this.tryGetvar('slot-count')) ?? 0;
  }

  async isUserspace(): Promise<boolean> {
    return parseYesNoVar(await this.tryGetvar('is-userspace')) === true;
  }

  async isLogical(partition: string): Promise<boolean> {
    return parseYesNoVar(await this.tryGetvar(`is-logical:${partition}`)) === true;
  }

  /** partition-size in bytes (implicit hex, as fastboot's fb_fix_numeric_var); undefined if unknown. */
  async partitionSize(partition: string): Promise<number | undefined> {
    return parseHexSizeVar(await this.tryGetvar(`partition-size:${partition}`));
  }

  /**
   * "boot" → "boot_a" as fastboot's do_for_partition: only when has-slot:<p> is "yes" (a FAIL
   * means "no"), with the requested slot or the current one. "vendor_boot:default" gets the suffix
   * on its first token. "boot_a" stays as it is because no device has a "boot_a_a".
   */
  async resolveSlot(partition: string, slot?: string): Promise<string> {
    const [base, ...rest] = partition.split(':');
    if (parseYesNoVar(await this.tryGetvar(`has-slot:${base}`)) !== true) return partition;
    const s = slot ? parseSlotVar(slot) : await this.currentSlot();
    if (!s)
      throw new TransportError(`cannot identify the current slot for ${partition}`, {
        context: { partition, currentSlot: await this.tryGetvar('current-slot') },
      });
    return [`${base}_${s}`, ...rest].join(':');
  }

  /** Downloads `size` bytes of `path` starting at `offset`. */
  async downloadFile(
    path: string,
    opts: { onBytes?: (n: number) => void; offset?: number; size?: number } = {},
  ) {
    const fh = await open(path, 'r');
    try {
      const size = opts.size ?? (await fh.stat()).size - (opts.offset ?? 0);
      const max = await this.maxDownloadSize();
      if (size > max)
        throw new InputError(
          `${path} (${size} bytes) is larger than the device's max-download-size (${max})`,
          {
            code: 'FASTBOOT_TOO_LARGE',
          },
        );
      await this.protocol.download(
        size,
        async (send) => {
          const base = opts.offset ?? 0;
          // Double-buffered: the next chunk is read from disk while the current one is on the wire.
          const readChunk = async (at: number) => {
            const n = Math.min(SEND_CHUNK, size - at);
            const b = Buffer.allocUnsafe(n);
            const { bytesRead } = await fh.read(b, 0, n, base + at);
            if (bytesRead !== n)
              throw new InputError(`${path} shrank while sending`, { code: 'FASTBOOT_SOURCE' });
            return b;
          };
          let done = 0;
          let next = readChunk(0);
          while (done < size) {
            const b = await next;
            done += b.length;
            if (done < size) next = readChunk(done);
            await send([b]);
          }
        },
        { ...this.cmdOpts(), onBytes: opts.onBytes },
      );
    } finally {
      await fh.close();
    }
  }

  /** Downloads an in-memory buffer (small things: metadata images, test data). */
  async downloadBuffer(data: Buffer): Promise<void> {
    await this.protocol.download(data.length, (send) => send([data]), this.cmdOpts());
  }

  /**
   * Flashes `imagePath` to `partition` as the real client does; returns the device-side name used
   * (with slot suffix).
   */
  async flash(partition: string, imagePath: string, opts: FlashOptions = {}): Promise<string> {
    const name = opts.exactName ? partition : await this.resolveSlot(partition);
    const fh = await open(imagePath, 'r');
    try {
      const fileSize = (await fh.stat()).size;
      const head = Buffer.alloc(SPARSE_HEADER_SIZE);
      await fh.read(head, 0, SPARSE_HEADER_SIZE, 0);
      const sparseHdr = parseSparseHeader(
        head.subarray(0, Math.min(fileSize, SPARSE_HEADER_SIZE)),
        imagePath,
      );
      const imageSize = sparseHdr ? sparseHdr.totalBlocks * sparseHdr.blockSize : fileSize;
      if (await this.isLogical(name)) await this.command(`resize-logical-partition:${name}:${imageSize}`);
      const limit = Math.min(opts.sparseLimit ?? Number.POSITIVE_INFINITY, await this.maxDownloadSize());
      const stage = `flash ${name}`;
      const progress = opts.onProgress;
      if (fileSize <= limit) {
        progress?.({ stage, done: 0, total: fileSize, unit: 'bytes' });
        await this.downloadFile(imagePath, {
          onBytes: (n) => progress?.({ stage, done: n, total: fileSize, unit: 'bytes' }),
        });
        await this.command(`flash:${name}`, 300_000);
        return name;
      }
      // Too big for one download: re-sparse into pieces (libsparse's algorithm, as the real client).
      const layout = await importLayout(fh, fileSize, imagePath);
      const pieces = splitLayout(layout, limit);
      const total = pieces.reduce((a, p) => a + sparseLength(p), 0);
      let base = 0;
      progress?.({ stage, done: 0, total, unit: 'bytes' });
      for (const piece of pieces) {
        const len = sparseLength(piece);
        await this.protocol.download(
          len,
          async (send) => {
            let parts: Buffer[] = [];
            let partsLen = 0;
            await writeSparse(piece, fh, async (b) => {
              parts.push(b);
              partsLen += b.length;
              if (partsLen >= SEND_CHUNK) {
                const p = parts;
                parts = [];
                partsLen = 0;
                await send(p);
              }
            });
            if (partsLen) await send(parts);
          },
          { ...this.cmdOpts(), onBytes: (n) => progress?.({ stage, done: base + n, total, unit: 'bytes' }) },
        );
        await this.command(`flash:${name}`, 300_000);
        base += len;
      }
      return name;
    } finally {
      await fh.close();
    }
  }

  async erase(partition: string): Promise<void> {
    await this.command(`erase:${await this.resolveSlot(partition)}`, 300_000);
  }

  async setActive(slot: 'a' | 'b'): Promise<void> {
    await this.command(`set_active:${slot}`);
  }

  /**
   * Reboots; the device closes the connection afterwards, so this client is closed too.
   * "fastboot" → fastbootd, "system" → Android.
   */
  async reboot(target: RebootTarget = 'system'): Promise<void> {
    const cmd = {
      system: 'reboot',
      bootloader: 'reboot-bootloader',
      fastboot: 'reboot-fastboot',
      recovery: 'reboot-recovery',
    }[target];
    await this.command(cmd);
    await this.close();
  }

  async flashingLock(): Promise<void> {
    await this.command('flashing lock', 120_000);
  }

  async flashingUnlock(): Promise<void> {
    await this.command('flashing unlock', 120_000);
  }

  async createLogicalPartition(name: string, size: number): Promise<void> {
    await this.command(`create-logical-partition:${name}:${size}`);
  }

  async deleteLogicalPartition(name: string): Promise<void> {
    await this.command(`delete-logical-partition:${name}`);
  }

  async resizeLogicalPartition(name: string, size: number): Promise<void> {
    await this.command(`resize-logical-partition:${name}:${size}`);
  }

  /** Downloads an lpmake image (super_empty.img) and applies it: `update-super:<super>[:wipe]`. */
  async updateSuper(imagePath: string, opts: { superName?: string; wipe?: boolean } = {}): Promise<void> {
    const superName = opts.superName ?? (await this.tryGetvar('super-partition-name')) ?? 'super';
    await this.downloadFile(imagePath);
    await this.command(`update-super:${superName}${opts.wipe ? ':wipe' : ''}`, 120_000);
  }

  /**
   * Virtual A/B state from `getvar snapshot-update-status`: "none", "snapshotted", "merging" or
   * "cancelled" (fastboot's CancelSnapshotIfNeeded reads this); undefined when the device has none.
   */
  async snapshotUpdateStatus(): Promise<string | undefined> {
    const v = (await this.tryGetvar('snapshot-update-status'))?.trim();
    return v ? v : undefined;
  }

  /** snapshot-update status (no argument), cancel, or merge. */
  async snapshotUpdate(action?: 'cancel' | 'merge'): Promise<string> {
    const r = await this.protocol.command(
      action ? `snapshot-update:${action}` : 'snapshot-update',
      this.cmdOpts(),
    );
    return action ? r.value : (r.info[0] ?? r.value);
  }

  /** Reads back partition bytes with `fetch:` (fastbootd debug builds; the Omie sim). */
  async fetch(
    partition: string,
    offset: number,
    size: number,
    sink: (b: Buffer) => void | Promise<void>,
  ): Promise<number> {
    return this.protocol.readData(`fetch:${partition}:${offset}:${size}`, sink, this.cmdOpts(300_000));
  }
}
