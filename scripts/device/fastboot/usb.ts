/**
 * Fastboot over USB: the device exposes an interface of class 0xff, subclass 0x42, protocol 0x03
 * with one bulk IN and one bulk OUT endpoint (system/core/fastboot/README.md "Basic Requirements";
 * fastboot/usb_linux.cpp). A command is one OUT transfer, each response one IN transfer of at most
 * 256 bytes; download data goes out in transfers of at most {@link USB_MAX_TRANSFER} bytes.
 *
 * The `usb` npm package (libusb) is loaded lazily, so hosts without libusb still run everything else.
 */
import { EnvironmentError } from '../../errors.ts';
import { type FastbootTransport, TransportError } from './protocol.ts';

export const FASTBOOT_USB_CLASS = 0xff;
export const FASTBOOT_USB_SUBCLASS = 0x42;
export const FASTBOOT_USB_PROTOCOL = 0x03;
/** Largest single bulk OUT transfer, as the host tool's libusb backend (1 MiB). */
export const USB_MAX_TRANSFER = 1 << 20;

/** The two bulk pipes; the real implementation wraps libusb endpoints, tests use a fake. */
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
  serial: string;
  vendorId: number;
  productId: number;
  open(): Promise<UsbTransport>;
}

// biome-ignore lint/suspicious/noExplicitAny: the usb module is optional and loaded at run time
type UsbModule = any;

async function loadUsb(): Promise<UsbModule> {
  try {
    const name = 'usb';
    return await import(name);
  } catch (e) {
    throw new EnvironmentError('USB support needs the `usb` npm package and libusb', {
      code: 'USB_UNAVAILABLE',
      hint: 'run `npm install` (installs usb) and make sure libusb-1.0 is present; TCP devices work without it',
      cause: e,
    });
  }
}

/** Lists USB devices currently in fastboot (bootloader or fastbootd). */
export async function listUsbFastbootDevices(): Promise<UsbFastbootDevice[]> {
  const mod = await loadUsb();
  const usb = mod.usb ?? mod.default?.usb ?? mod;
  const out: UsbFastbootDevice[] = [];
  for (const dev of usb.getDeviceList() as UsbModule[]) {
    const cfg = dev.configDescriptor;
    if (!cfg) continue;
    for (const iface of cfg.interfaces ?? []) {
      const alt = iface[0];
      if (
        alt?.bInterfaceClass !== FASTBOOT_USB_CLASS ||
        alt.bInterfaceSubClass !== FASTBOOT_USB_SUBCLASS ||
        alt.bInterfaceProtocol !== FASTBOOT_USB_PROTOCOL
      )
        continue;
      const serial = await readSerial(dev).catch(() => '');
      out.push({
        serial,
        vendorId: dev.deviceDescriptor.idVendor,
        productId: dev.deviceDescriptor.idProduct,
        open: () => openInterface(dev, alt.bInterfaceNumber, serial),
      });
    }
  }
  return out;
}

function readSerial(dev: UsbModule): Promise<string> {
  return new Promise((res, rej) => {
    const idx = dev.deviceDescriptor.iSerialNumber;
    if (!idx) return res('');
    try {
      dev.open();
    } catch (e) {
      return rej(e);
    }
    dev.getStringDescriptor(idx, (err: unknown, s?: string) => {
      try {
        dev.close();
      } catch {}
      if (err) rej(err);
      else res(s ?? '');
    });
  });
}

async function openInterface(dev: UsbModule, ifaceNo: number, serial: string): Promise<UsbTransport> {
  try {
    dev.open();
  } catch (e) {
    throw new EnvironmentError(`cannot open USB device ${serial}: ${(e as Error).message}`, {
      code: 'USB_OPEN',
      hint: 'on Linux, add a udev rule granting your user access to the device (see `omie doctor`)',
      cause: e,
    });
  }
  const iface = dev.interface(ifaceNo);
  try {
    if (iface.isKernelDriverActive?.()) iface.detachKernelDriver();
  } catch {}
  iface.claim();
  const eps = iface.endpoints as UsbModule[];
  const epIn = eps.find((e) => e.direction === 'in' && e.transferType === 2);
  const epOut = eps.find((e) => e.direction === 'out' && e.transferType === 2);
  if (!epIn || !epOut)
    throw new EnvironmentError(`USB device ${serial} has no bulk endpoints`, { code: 'USB_ENDPOINTS' });
  epIn.timeout = 0;
  epOut.timeout = 0;
  const pipes: BulkPipes = {
    out: (data) =>
      new Promise((res, rej) =>
        epOut.transfer(data, (err: unknown) =>
          err ? rej(new TransportError(`USB write failed: ${err}`, { cause: err })) : res(),
        ),
      ),
    in: (maxLen) =>
      new Promise((res, rej) =>
        epIn.transfer(maxLen, (err: unknown, data?: Buffer) =>
          err
            ? rej(new TransportError(`USB read failed: ${err}`, { cause: err }))
            : res(data ?? Buffer.alloc(0)),
        ),
      ),
    close: async () => {
      await new Promise<void>((res) => iface.release(true, () => res()));
      dev.close();
    },
  };
  return new UsbTransport(pipes, serial, Number(epOut.descriptor?.wMaxPacketSize) || 512);
}
