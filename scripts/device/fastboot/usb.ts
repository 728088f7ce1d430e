/**
 * Fastboot over USB: the device exposes an interface of class 0xff, subclass 0x42, protocol 0x03
 * with one bulk IN and one bulk OUT endpoint (system/core/fastboot/README.md "Basic Requirements";
 * fastboot/usb_linux.cpp). A command is one OUT transfer, each response one IN transfer of at most
 * 256 bytes; download data goes out in transfers of at most {@link USB_MAX_TRANSFER} bytes.
 *
 * Devices are reached through libusb, as the `usb` npm package 2.x wraps it (its libusb-style API:
 * getDeviceList, Device, Interface, Endpoint, Transfer). It is loaded lazily, so hosts where it
 * cannot load still run everything else, and fastboot over TCP never needs it.
 */
import { readFileSync } from 'node:fs';
import type { Device, InEndpoint, Interface, LibUSBException, OutEndpoint, Transfer } from 'usb';
import { EnvironmentError } from '../../errors.ts';
import { type FastbootTransport, TransportError } from './protocol.ts';

export const FASTBOOT_USB_CLASS = 0xff;
export const FASTBOOT_USB_SUBCLASS = 0x42;
export const FASTBOOT_USB_PROTOCOL = 0x03;
/** Largest single bulk OUT transfer, as the host tool's libusb backend (1 MiB). */
export const USB_MAX_TRANSFER = 1 << 20;
/** Selects a USB device by its bus and port path ("usb:1-1.4"), as `fastboot -s usb:…` does. */
export const USB_PORT_PREFIX = 'usb:';

/** The two bulk pipes of an opened fastboot interface. */
export interface BulkPipes {
  out(data: Buffer): Promise<void>;
  in(maxLen: number): Promise<Buffer>;
  close(): Promise<void>;
}

export class UsbTransport implements FastbootTransport {
  /**
   * @param maxPacketSize the bulk OUT endpoint's wMaxPacketSize (64 full speed, 512 high speed,
   *   1024 super speed). A command whose length is a multiple of it is followed by a zero-length
   *   packet, as the Windows/macOS host tools do: the device reads commands into a larger buffer
   *   and only a short (or empty) packet tells it the command is complete.
   */
  constructor(
    private readonly pipes: BulkPipes,
    readonly serial = '',
    readonly maxPacketSize = 512,
  ) {}

  async write(data: Buffer): Promise<void> {
    if (data.length === 0) return;
    for (let o = 0; o < data.length; o += USB_MAX_TRANSFER)
      await this.pipes.out(data.subarray(o, Math.min(data.length, o + USB_MAX_TRANSFER)));
    if (this.maxPacketSize > 0 && data.length % this.maxPacketSize === 0)
      await this.pipes.out(Buffer.alloc(0));
  }

  /**
   * Download data arrives as several buffers: coalesce into transfers of up to USB_MAX_TRANSFER.
   * No zero-length packet here: the device knows the exact size from DATA%08x and reads just that.
   */
  async writeFrame(parts: Buffer[]): Promise<void> {
    let pending: Buffer[] = [];
    let len = 0;
    for (const p of parts) {
      let o = 0;
      while (o < p.length) {
        const k = Math.min(USB_MAX_TRANSFER - len, p.length - o);
        pending.push(p.subarray(o, o + k));
        len += k;
        o += k;
        if (len === USB_MAX_TRANSFER) {
          await this.pipes.out(pending.length === 1 ? pending[0] : Buffer.concat(pending, len));
          pending = [];
          len = 0;
        }
      }
    }
    if (len) await this.pipes.out(pending.length === 1 ? pending[0] : Buffer.concat(pending, len));
  }

  async read(maxLen: number): Promise<Buffer> {
    return this.pipes.in(Math.min(maxLen, USB_MAX_TRANSFER));
  }

  async close(): Promise<void> {
    await this.pipes.close();
  }
}

export interface UsbFastbootDevice {
  /** iSerialNumber; empty when the device has none (or it could not be read). */
  serial: string;
  vendorId: number;
  productId: number;
  /** Bus and port path as the kernel names it ("1-1.4"): stable while the device stays plugged there. */
  port: string;
  /** The usbfs device node, /dev/bus/usb/BBB/DDD (Linux). */
  devnode: string;
  open(): Promise<UsbTransport>;
}

type UsbModule = typeof import('usb');
let usbModule: Promise<UsbModule> | undefined;

async function loadUsb(): Promise<UsbModule> {
  usbModule ??= import('usb').then(
    (mod) => {
      // libusb_init failed (e.g. no udev monitor in a container): the module loads without devices.
      if (mod.usb.INIT_ERROR)
        throw new EnvironmentError(
          `libusb could not start (${libusbName(mod, mod.usb.INIT_ERROR, false)}): USB devices cannot be reached`,
          {
            code: 'USB_UNAVAILABLE',
            context: { libusb: mod.usb.INIT_ERROR },
            hint: 'fastboot over TCP works without it',
          },
        );
      return mod;
    },
    (e: unknown) => {
      throw new EnvironmentError(`USB support could not be loaded: ${(e as Error).message}`, {
        code: 'USB_UNAVAILABLE',
        hint: 'run `bash scripts/setup.sh` (it installs the `usb` npm package and checks that its libusb binding loads); fastboot over TCP works without it',
        cause: e,
      });
    },
  );
  return usbModule;
}

/** Lists USB devices currently in fastboot (bootloader or fastbootd). */
export async function listUsbFastbootDevices(): Promise<UsbFastbootDevice[]> {
  const usb = await loadUsb();
  const out: UsbFastbootDevice[] = [];
  for (const dev of usb.getDeviceList()) {
    let cfg: Device['configDescriptor'];
    try {
      cfg = dev.configDescriptor;
    } catch {
      continue; // a device that cannot even describe itself is no fastboot device we can use
    }
    const alt = cfg?.interfaces
      .flat()
      .find(
        (a) =>
          a.bInterfaceClass === FASTBOOT_USB_CLASS &&
          a.bInterfaceSubClass === FASTBOOT_USB_SUBCLASS &&
          a.bInterfaceProtocol === FASTBOOT_USB_PROTOCOL,
      );
    if (!alt) continue;
    const port = `${dev.busNumber}-${(dev.portNumbers ?? []).join('.')}`; // root hubs have none
    const devnode = `/dev/bus/usb/${pad3(dev.busNumber)}/${pad3(dev.deviceAddress)}`;
    const serial = await readSerial(dev, port);
    const ident = serial || `${USB_PORT_PREFIX}${port}`;
    out.push({
      serial,
      vendorId: dev.deviceDescriptor.idVendor,
      productId: dev.deviceDescriptor.idProduct,
      port,
      devnode,
      open: () => openFastbootInterface(usb, dev, alt.bInterfaceNumber, ident, devnode),
    });
  }
  return out;
}

/**
 * How to address each device: its serial number, or `usb:<port>` when the serial is missing or
 * shared with another device (cheap boards often share one), so that each address is one device.
 */
export function usbAddresses(devices: UsbFastbootDevice[]): string[] {
  const serials = devices.map((d) => d.serial);
  return devices.map((d) =>
    d.serial && serials.indexOf(d.serial) === serials.lastIndexOf(d.serial)
      ? d.serial
      : `${USB_PORT_PREFIX}${d.port}`,
  );
}

/**
 * Finds the one fastboot device `target` names: `usb:<port>` selects by port, anything else is a
 * serial number. Two devices with the same serial (cheap boards often share one) are refused
 * rather than guessed between.
 */
export async function findUsbFastbootDevice(target: string): Promise<UsbFastbootDevice> {
  const all = await listUsbFastbootDevices();
  const byPort = target.startsWith(USB_PORT_PREFIX);
  const key = byPort ? target.slice(USB_PORT_PREFIX.length) : target;
  const hits = all.filter((d) => (byPort ? d.port === key : d.serial === key));
  if (hits.length === 0)
    throw new TransportError(`no fastboot device ${byPort ? 'at USB port' : 'with serial'} ${key}`, {
      code: 'USB_NOT_FOUND',
      context: { target, present: all.map((d) => d.serial || `${USB_PORT_PREFIX}${d.port}`) },
    });
  if (hits.length > 1)
    throw new EnvironmentError(`${hits.length} USB fastboot devices have serial ${key}`, {
      code: 'USB_AMBIGUOUS',
      context: { serial: key, ports: hits.map((d) => d.port) },
      hint: `select one by port: ${hits.map((d) => `${USB_PORT_PREFIX}${d.port}`).join(' or ')}`,
    });
  return hits[0];
}

const pad3 = (n: number) => String(n).padStart(3, '0');

/**
 * The serial number: on Linux from sysfs (as udev and fastboot read it; needs no access to the
 * device node), elsewhere from the string descriptor.
 */
async function readSerial(dev: Device, port: string): Promise<string> {
  if (process.platform === 'linux') {
    try {
      return readFileSync(`/sys/bus/usb/devices/${port}/serial`, 'utf8').trim();
    } catch {
      // no serial attribute (no iSerialNumber) or no sysfs: ask the device
    }
  }
  const idx = dev.deviceDescriptor.iSerialNumber;
  if (!idx) return '';
  try {
    dev.open(false);
  } catch {
    return ''; // listed without serial; opening it later reports why
  }
  try {
    return await new Promise<string>((res, rej) =>
      dev.getStringDescriptor(idx, (err, s) => (err ? rej(err) : res(s ?? ''))),
    ).catch(() => '');
  } finally {
    try {
      dev.close();
    } catch {}
  }
}

function libusbName(usb: UsbModule, errno: number, transfer: boolean): string {
  const prefix = transfer ? 'LIBUSB_TRANSFER_' : 'LIBUSB_ERROR_';
  const hit = Object.entries(usb.usb).find(([k, v]) => k.startsWith(prefix) && v === errno);
  return hit?.[0] ?? `libusb error ${errno}`;
}

async function openFastbootInterface(
  usb: UsbModule,
  dev: Device,
  ifaceNo: number,
  ident: string,
  devnode: string,
): Promise<UsbTransport> {
  const context = { device: ident, devnode };
  try {
    dev.open();
  } catch (e) {
    const errno = (e as LibUSBException).errno;
    if (errno === usb.usb.LIBUSB_ERROR_ACCESS)
      throw new EnvironmentError(`no permission to open USB device ${ident} (${devnode})`, {
        code: 'USB_ACCESS',
        context,
        hint: '`omie doctor` shows the udev rule that grants access and whether you are in group plugdev',
        cause: e,
      });
    if (errno === usb.usb.LIBUSB_ERROR_NO_DEVICE)
      throw new TransportError(`USB device ${ident} disconnected`, {
        code: 'USB_DISCONNECTED',
        context,
        cause: e,
      });
    throw new EnvironmentError(`cannot open USB device ${ident}: ${(e as Error).message}`, {
      code: 'USB_OPEN',
      context,
      cause: e,
    });
  }
  const iface = dev.interface(ifaceNo);
  try {
    if (iface.isKernelDriverActive()) iface.detachKernelDriver();
    iface.claim();
  } catch (e) {
    try {
      dev.close();
    } catch {}
    const errno = (e as LibUSBException).errno;
    if (errno === usb.usb.LIBUSB_ERROR_NO_DEVICE)
      throw new TransportError(`USB device ${ident} disconnected`, {
        code: 'USB_DISCONNECTED',
        context,
        cause: e,
      });
    throw new EnvironmentError(`cannot claim the fastboot interface of ${ident}: ${(e as Error).message}`, {
      code: errno === usb.usb.LIBUSB_ERROR_BUSY ? 'USB_BUSY' : 'USB_CLAIM',
      context,
      hint:
        errno === usb.usb.LIBUSB_ERROR_BUSY
          ? 'another program has it open (a fastboot or omie process): let it finish'
          : undefined,
      cause: e,
    });
  }
  const bulk = (dir: 'in' | 'out') =>
    iface.endpoints.find((e) => e.direction === dir && e.transferType === usb.usb.LIBUSB_TRANSFER_TYPE_BULK);
  const epIn = bulk('in') as InEndpoint | undefined;
  const epOut = bulk('out') as OutEndpoint | undefined;
  if (!epIn || !epOut) {
    await new LibusbPipes(usb, dev, iface, undefined, undefined, ident).close();
    throw new EnvironmentError(`USB device ${ident} has no bulk endpoints on its fastboot interface`, {
      code: 'USB_ENDPOINTS',
      context,
    });
  }
  return new UsbTransport(
    new LibusbPipes(usb, dev, iface, epIn, epOut, ident),
    ident,
    epOut.descriptor.wMaxPacketSize || 512,
  );
}

/**
 * Bulk pipes over libusb transfers. Transfers have no libusb timeout: the fastboot protocol times
 * out on its own and then closes the transport, which cancels what is still in flight.
 */
class LibusbPipes implements BulkPipes {
  private readonly inflight = new Map<Transfer, Promise<unknown>>();
  private closed = false;

  constructor(
    private readonly usb: UsbModule,
    private readonly dev: Device,
    private readonly iface: Interface,
    private readonly epIn: InEndpoint | undefined,
    private readonly epOut: OutEndpoint | undefined,
    private readonly ident: string,
  ) {}

  out(data: Buffer): Promise<void> {
    return this.submit(this.epOut, data, 'write').then(() => undefined);
  }

  async in(maxLen: number): Promise<Buffer> {
    return this.submit(this.epIn, Buffer.allocUnsafe(maxLen), 'read');
  }

  private submit(ep: InEndpoint | OutEndpoint | undefined, buf: Buffer, what: string): Promise<Buffer> {
    if (!ep || this.closed) return Promise.reject(new TransportError(`USB device ${this.ident} is closed`));
    let transfer: Transfer | undefined;
    const done = new Promise<Buffer>((res, rej) => {
      transfer = ep.makeTransfer(0, (err, b, actual) => {
        if (transfer) this.inflight.delete(transfer);
        if (err) rej(this.transferError(err, what, true));
        else res(b.subarray(0, actual));
      });
      try {
        transfer.submit(buf);
      } catch (e) {
        transfer = undefined;
        rej(this.transferError(e as LibUSBException, what, false));
      }
    });
    if (transfer)
      this.inflight.set(
        transfer,
        done.catch(() => {}),
      );
    return done;
  }

  private transferError(e: LibUSBException, what: string, transfer: boolean): TransportError {
    const u = this.usb.usb;
    const name = libusbName(this.usb, e.errno, transfer);
    const context = { device: this.ident, libusb: name };
    if (
      (transfer && e.errno === u.LIBUSB_TRANSFER_NO_DEVICE) ||
      (!transfer && e.errno === u.LIBUSB_ERROR_NO_DEVICE)
    )
      return new TransportError(`USB device ${this.ident} disconnected during ${what}`, {
        code: 'USB_DISCONNECTED',
        context,
        hint: 'reconnect the device (or let it finish rebooting) and run the command again: an interrupted flash is completed by a re-run',
        cause: e,
      });
    return new TransportError(`USB ${what} failed on ${this.ident}: ${name}`, { context, cause: e });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // A read still waiting (the protocol timed out) is cancelled before the interface goes.
    for (const t of this.inflight.keys()) {
      try {
        t.cancel();
      } catch {}
    }
    await Promise.race([Promise.all(this.inflight.values()), new Promise((r) => setTimeout(r, 1000))]);
    await new Promise<void>((res) => this.iface.release(true, () => res()));
    try {
      this.dev.close();
    } catch {
      // already gone (disconnected): nothing left to close
    }
  }
}
