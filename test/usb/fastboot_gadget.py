#!/usr/bin/python3
"""The virtual device as a USB device, emulated with umockdev.

A umockdev testbed holds a root hub and, while the virtual device (the sim, scripts/sim/) is in the
bootloader or fastbootd, a USB device with a fastboot interface (class ff/42/03, bulk endpoints
0x81/0x01): its sysfs entries and /dev/bus/usb/BBB/DDD node exist for every process started with
the testbed's environment (LD_PRELOAD=libumockdev-preload.so.0, UMOCKDEV_DIR), and a
UMockdev.IoctlBase answers the usbdevfs ioctls on that node as the kernel would (URB submission and
reaping, synchronous bulk and control transfers, disconnection).

Bulk OUT transfers go to the sim's fastboot engine, bulk IN transfers come from it: the gadget holds
one connection to the sim's fastboot TCP port per enumeration and maps one USB transfer to one TCP
frame (system/core/fastboot/README.md). So one sim state is served over USB and TCP at once.

The device follows the sim's mode, read from STATE/device.json (the sim's on-disk contract):
rebooting closes the link and sets the mode to "off", and the gadget then disconnects the device;
when the sim is back in the bootloader or fastbootd, a new device with the same serial enumerates
at the next address, with the descriptors of that mode. In Android or recovery it shows an adb
interface (ff/42/01) instead, which no fastboot client may pick.

Usage:  LD_PRELOAD=libumockdev-preload.so.0 /usr/bin/python3 fastboot_gadget.py \
            --device STATE_DIR=HOST:PORT [--device ...] [-v]
Each --device is one sim behind its own root hub port (1-1, 1-2, ...). The gadget itself must run
under the preload library: libudev builds the uevents it sends from the emulated sysfs, and a
long-running libusb (its udev backend) sees devices come and go only through those uevents.

Talks JSON lines: events on stdout ({"event": "ready", "umockdevDir": ...}, "attached",
"detached"), commands on stdin ({"cmd": "vanish", "port": "1-1", "afterBytes": N, "replugMs": M}:
the device disconnects mid-transfer after N more bytes from the host, and comes back after M ms).
Exits when stdin closes.
"""
import argparse
import json
import os
import select
import shutil
import socket
import struct
import sys
import threading
import time
from collections import deque

import gi

gi.require_version('UMockdev', '1.0')
from gi.repository import GLib, UMockdev  # noqa: E402

VERBOSE = False


def log(*a):
    if VERBOSE:
        print('[gadget]', *a, file=sys.stderr, flush=True)


def emit(event, **kw):
    print(json.dumps({'event': event, **kw}), flush=True)


# ---------------------------------------------------------------- descriptors (USB 2.0 ch. 9)

EP_IN, EP_OUT, MAX_PACKET = 0x81, 0x01, 512
FASTBOOT_IFACE = (0xFF, 0x42, 0x03)
ADB_IFACE = (0xFF, 0x42, 0x01)
GOOGLE = 0x18D1


class Personality:
    """What the host sees in one mode: ids, strings and the interface."""

    def __init__(self, mode, product_id, bcd, iface, manufacturer, product, serial, iface_name):
        self.mode = mode
        self.vendor_id = GOOGLE
        self.product_id = product_id
        self.bcd = bcd
        self.iface = iface
        self.strings = {1: manufacturer, 2: product, 3: serial, 4: iface_name}

    @property
    def serial(self):
        return self.strings[3]

    @property
    def fastboot(self):
        return self.iface == FASTBOOT_IFACE

    def device_descriptor(self):
        return struct.pack('<BBHBBBBHHHBBBB', 18, 1, 0x0200, 0, 0, 0, 64,
                           self.vendor_id, self.product_id, self.bcd, 1, 2, 3, 1)

    def config_descriptor(self):
        iface = struct.pack('<BBBBBBBBB', 9, 4, 0, 0, 2, *self.iface, 4)
        eps = (struct.pack('<BBBBHB', 7, 5, EP_IN, 2, MAX_PACKET, 0) +
               struct.pack('<BBBBHB', 7, 5, EP_OUT, 2, MAX_PACKET, 0))
        body = iface + eps
        return struct.pack('<BBHBBBBB', 9, 2, 9 + len(body), 1, 1, 0, 0x80, 250) + body

    def string_descriptor(self, idx):
        if idx == 0:
            return bytes([4, 3, 0x09, 0x04])  # LANGID en-US
        s = self.strings.get(idx)
        if s is None:
            return None
        b = s.encode('utf-16-le')
        return bytes([2 + len(b), 3]) + b


def personality(mode, device, props):
    serial = device.get('serial', '')
    model = props.get('ro.product.model') or device.get('product', 'Android')
    maker = props.get('ro.product.manufacturer') or 'Omie'
    if mode == 'bootloader':
        # A bootloader's own USB stack: fixed strings, as Pixel/ABL bootloaders report.
        return Personality(mode, 0x4EE0, 0x0100, FASTBOOT_IFACE, 'Google', 'Android', serial, 'fastboot')
    if mode == 'fastbootd':
        # Recovery's configfs gadget (init.recovery.usb.rc): strings from the system properties.
        return Personality(mode, 0x4EE0, 0x0223, FASTBOOT_IFACE, maker, model, serial, 'fastboot')
    if mode == 'adb':
        return Personality(mode, 0x4EE7, 0x0223, ADB_IFACE, maker, model, serial, 'ADB Interface')
    if mode in ('recovery', 'sideload'):
        return Personality(mode, 0xD001, 0x0223, ADB_IFACE, maker, model, serial, 'ADB Interface')
    return None


ROOT_HUB = """P: /devices/pci0000:00/0000:00:14.0/usb1
N: bus/usb/001/001
E: SUBSYSTEM=usb
E: DEVTYPE=usb_device
E: DEVNAME=/dev/bus/usb/001/001
E: BUSNUM=001
E: DEVNUM=001
E: MAJOR=189
E: MINOR=0
A: busnum=1\\n
A: devnum=1\\n
A: idVendor=1d6b
A: idProduct=0002
A: speed=480
A: bDeviceClass=09
A: bConfigurationValue=1
A: bNumConfigurations=1
A: bNumInterfaces= 1
A: devpath=0
A: dev=189:0
H: descriptors=12010002090001406B1D020006060302010109021900010100E0000904000001090000000705810304000C
"""

HUB_SYSPATH = '/sys/devices/pci0000:00/0000:00:14.0/usb1'


def device_record(p, port, devnum):
    desc = (p.device_descriptor() + p.config_descriptor()).hex().upper()
    c, s, pr = p.iface
    m, prod, serial = p.strings[1], p.strings[2], p.strings[3]
    return f"""P: /devices/pci0000:00/0000:00:14.0/usb1/{port}
N: bus/usb/001/{devnum:03d}={desc}
E: SUBSYSTEM=usb
E: DEVTYPE=usb_device
E: DEVNAME=/dev/bus/usb/001/{devnum:03d}
E: DRIVER=usb
E: PRODUCT={p.vendor_id:x}/{p.product_id:x}/{p.bcd:x}
E: TYPE=0/0/0
E: BUSNUM=001
E: DEVNUM={devnum:03d}
E: MAJOR=189
E: MINOR={devnum - 1}
E: ID_VENDOR_ID={p.vendor_id:04x}
E: ID_MODEL_ID={p.product_id:04x}
E: ID_SERIAL_SHORT={serial}
A: authorized=1
A: bConfigurationValue=1
A: bDeviceClass=00
A: bDeviceProtocol=00
A: bDeviceSubClass=00
A: bMaxPacketSize0=64
A: bMaxPower=500mA
A: bNumConfigurations=1
A: bNumInterfaces= 1
A: bcdDevice={p.bcd:04x}
A: bmAttributes=80
A: busnum=1\\n
A: devnum={devnum}\\n
A: devpath={port.split('-', 1)[1]}
A: dev=189:{devnum - 1}
A: idProduct={p.product_id:04x}
A: idVendor={p.vendor_id:04x}
A: manufacturer={m}\\n
A: product={prod}\\n
A: serial={serial}\\n
A: speed=480
A: version= 2.00
H: descriptors={desc}

P: /devices/pci0000:00/0000:00:14.0/usb1/{port}/{port}:1.0
E: SUBSYSTEM=usb
E: DEVTYPE=usb_interface
E: INTERFACE={c}/{s}/{pr}
A: bAlternateSetting= 0
A: bInterfaceClass={c:02x}
A: bInterfaceNumber=00
A: bInterfaceProtocol={pr:02x}
A: bInterfaceSubClass={s:02x}
A: bNumEndpoints=02
A: interface={p.strings[4]}\\n
"""


# ---------------------------------------------------------------- usbdevfs (linux/usbdevice_fs.h, x86_64)

USBDEVFS_CONTROL = 0xc0185500
USBDEVFS_BULK = 0xc0185502
USBDEVFS_RESETEP = 0x80045503
USBDEVFS_SETINTERFACE = 0x80085504
USBDEVFS_SETCONFIGURATION = 0x80045505
USBDEVFS_GETDRIVER = 0x41045508
USBDEVFS_SUBMITURB = 0x8038550a
USBDEVFS_DISCARDURB = 0x0000550b
USBDEVFS_REAPURB = 0x4008550c
USBDEVFS_REAPURBNDELAY = 0x4008550d
USBDEVFS_CLAIMINTERFACE = 0x8004550f
USBDEVFS_RELEASEINTERFACE = 0x80045510
USBDEVFS_CONNECTINFO = 0x40085511
USBDEVFS_IOCTL = 0xc0105512
USBDEVFS_RESET = 0x00005514
USBDEVFS_CLEAR_HALT = 0x80045515
USBDEVFS_DISCONNECT = 0x00005516
USBDEVFS_CONNECT = 0x00005517
USBDEVFS_GET_CAPABILITIES = 0x8004551a
USBDEVFS_DISCONNECT_CLAIM = 0x8108551b
USBDEVFS_GET_SPEED = 0x0000551f
NAMES = {v: k for k, v in dict(globals()).items() if k.startswith('USBDEVFS_')}
ALWAYS_OK = {USBDEVFS_CLAIMINTERFACE, USBDEVFS_RELEASEINTERFACE, USBDEVFS_SETINTERFACE,
             USBDEVFS_SETCONFIGURATION, USBDEVFS_CLEAR_HALT, USBDEVFS_RESET, USBDEVFS_RESETEP,
             USBDEVFS_DISCONNECT_CLAIM, USBDEVFS_CONNECT, USBDEVFS_DISCONNECT}

# What an xHCI host controller reports: ZERO_PACKET | BULK_CONTINUATION | NO_PACKET_SIZE_LIM |
# BULK_SCATTER_GATHER | REAP_AFTER_DISCONNECT. With scatter-gather, libusb submits a bulk
# transfer as one URB, as it does on real hardware.
CAPABILITIES = 0x1F

# struct usbdevfs_urb: type@0 endpoint@1 status@4 flags@8 buffer@16 buffer_length@24
# actual_length@28 ... (56 bytes); struct usbdevfs_bulktransfer: ep@0 len@4 timeout@8 data@16.
URB_SIZE = 56
URB_TYPE_CONTROL = 2
EIO, EAGAIN, ENODEV, EINVAL, ENOTTY, EPIPE = 5, 11, 19, 22, 25, 32
ENODATA, ETIMEDOUT, ECONNRESET, ESHUTDOWN = 61, 110, 104, 108
USB_SPEED_HIGH = 3
# An idle client's libusb event loop polls REAPURBNDELAY without pause (the emulated node is a
# file, always "ready"): when nothing is reapable, answer EAGAIN after this long, or sooner when
# the device sends data.
IDLE_REAP_MS = 1


class Client:
    """One open file descriptor of the device node."""

    def __init__(self, client):
        self.client = client
        self.pending_in = deque()   # (urb_addr, buflen) waiting for device data
        self.completed = deque()    # (urb_addr, status, in_data or None, actual_length or None)
        self.waiting = None         # a deferred REAPURB(NDELAY) or synchronous bulk IN
        self.busy = False           # an ioctl of this client awaits its answer

    def finish(self, res, err):
        """Answers the client's ioctl, once: the preload waits for exactly one answer."""
        if self.busy:
            self.busy = False
            self.client.complete(res, err)


class Enumeration:
    """One connection of the device to the bus: from plug-in to unplug (or reboot)."""

    def __init__(self, port, persona, devnum, link):
        self.port = port
        self.p = persona
        self.devnum = devnum
        self.devnode = '/dev/bus/usb/001/%03d' % devnum
        self.link = link
        self.gone = False
        self.in_packets = deque()   # device-to-host transfers, one per sim frame
        self.clients = {}
        self.ctx = None             # umockdev's worker context, where every ioctl is handled
        self.vanish_after = None
        self.closed_at = None       # when the sim ended the session
        self.base = UMockdev.IoctlBase()
        self.base.connect('handle-ioctl', self.on_ioctl)

    # --- called from other threads: hop into the worker context ---------------------------
    def call_soon(self, fn):
        ctx = self.ctx
        if ctx is None:
            return False
        src = GLib.idle_source_new()
        src.set_callback(lambda *_: (fn(), False)[1])
        src.attach(ctx)
        return True

    def on_link_packet(self, data):
        self.in_packets.append(data)
        self.call_soon(self.pump)

    def on_link_closed(self):
        self.call_soon(self.pump)

    def disconnect(self):
        """The device leaves the bus: URBs in flight fail, the node answers ENODEV from now on."""
        done = threading.Event()

        def run():
            self.gone = True
            for c in self.clients.values():
                while c.pending_in:
                    addr, _ = c.pending_in.popleft()
                    c.completed.append((addr, -ESHUTDOWN, b'', None))
            self.pump()
            done.set()
        if not self.call_soon(run):
            self.gone = True
            done.set()
        done.wait(2)

    # --- worker context ----------------------------------------------------------------------
    def pump(self):
        """Hands device data to waiting IN URBs and completes deferred ioctls."""
        for key, c in list(self.clients.items()):
            if not c.client.get_connected():  # closed: the kernel kills its URBs
                del self.clients[key]
                continue
            try:
                while c.pending_in and self.in_packets:
                    addr, buflen = c.pending_in.popleft()
                    c.completed.append((addr, 0, self.take_in(buflen), None))
                w = c.waiting
                if w is None:
                    continue
                if w[0] == 'reap' and (c.completed or self.gone):
                    self.finish_wait(c)
                    if not self.reap(c):
                        c.finish(-1, ENODEV)
                elif w[0] == 'bulk-in' and (self.in_packets or self.gone):
                    self.finish_wait(c)
                    self.bulk_in(c, w[1], w[2])
            except Exception as e:  # never leave a client waiting
                print('[gadget] error answering a deferred ioctl: %r' % (e,), file=sys.stderr, flush=True)
                if c.waiting is not None:
                    self.finish_wait(c)
                c.finish(-1, EIO)

    def take_in(self, maxlen):
        pkt = self.in_packets.popleft()
        if len(pkt) > maxlen:  # the rest goes with the next transfer, as further packets would
            self.in_packets.appendleft(pkt[maxlen:])
            pkt = pkt[:maxlen]
        return pkt

    def finish_wait(self, c):
        w, c.waiting = c.waiting, None
        if w[-1] is not None:
            w[-1].destroy()

    def wait(self, c, kind, *args, timeout_ms=None, on_timeout=None):
        src = None
        if timeout_ms:
            src = GLib.timeout_source_new(timeout_ms)

            def fire(*_):
                if c.waiting is not None and c.waiting[-1] is src:
                    c.waiting = None
                    c.finish(*on_timeout)
                return False
            src.set_callback(fire)
            src.attach(self.ctx)
        c.waiting = (kind, *args, src)

    def reap(self, c):
        if not c.completed:
            return False
        addr, status, in_data, actual = c.completed.popleft()
        # REAPURB's argument is a `struct usbdevfs_urb **`: point it at the URB, then follow it.
        holder = c.client.get_arg().resolve(0, 8)
        holder.update(0, struct.pack('<Q', addr))
        urb = holder.resolve(0, URB_SIZE)
        if in_data is not None:
            if in_data:
                urb.resolve(16, len(in_data)).update(0, in_data)
            actual = len(in_data)
        urb.update(4, struct.pack('<i', status))
        urb.update(28, struct.pack('<i', actual))
        holder.update(0, struct.pack('<Q', addr))
        c.finish(0, 0)
        return True

    def bulk_in(self, c, bt, length):
        if not self.in_packets:
            c.finish(-1, ENODEV if self.gone else ETIMEDOUT)
            return
        data = self.take_in(length)
        if data:
            bt.resolve(16, length).update(0, data)
        c.finish(len(data), 0)

    def host_out(self, data):
        """Bulk OUT payload: returns how many bytes the device took before vanishing (or all)."""
        if not data:
            return 0  # a zero-length packet only ends a transfer; fastboot has nothing to read
        if self.link is None:
            return len(data)  # an adb interface with no adbd behind it: taken, never answered
        if self.vanish_after is not None and len(data) >= self.vanish_after:
            part = data[:self.vanish_after]
            if part:
                self.link.send(part)
            self.gone = True
            self.port.vanished(self)
            return len(part)
        if self.vanish_after is not None:
            self.vanish_after -= len(data)
        if not self.link.send(data):
            self.gone = True
            return 0
        return len(data)

    def control(self, bm, req, value, index, length):
        if bm == 0x80 and req == 6:  # GET_DESCRIPTOR
            dtype, idx = value >> 8, value & 0xFF
            if dtype == 1:
                return self.p.device_descriptor()
            if dtype == 2:
                return self.p.config_descriptor()
            if dtype == 3:
                return self.p.string_descriptor(idx)
            return None
        if bm == 0x80 and req == 8:  # GET_CONFIGURATION
            return b'\x01'
        if bm == 0x80 and req == 0:  # GET_STATUS
            return b'\x00\x00'
        if bm & 0x80 == 0:  # SET_* requests: accepted
            return b''
        return None

    def on_ioctl(self, base, client):
        if self.ctx is None:
            # umockdev's worker thread runs its context as the thread default; every source of
            # this enumeration (timeouts, calls from the link's thread) goes there.
            self.ctx = GLib.MainContext.get_thread_default()
        key = id(client)
        c = self.clients.get(key)
        if c is None:
            c = self.clients[key] = Client(client)
        c.busy = True
        req = client.get_request()
        try:
            self.handle(c, req, client.get_arg())
        except Exception as e:  # never leave the client waiting
            print('[gadget] error in %s: %r' % (NAMES.get(req, hex(req)), e), file=sys.stderr, flush=True)
            if c.waiting is not None:
                self.finish_wait(c)
            c.finish(-1, EIO)
        return True

    def handle(self, c, req, arg):
        done = c.finish
        if req in (USBDEVFS_REAPURB, USBDEVFS_REAPURBNDELAY):
            self.pump()
            if self.reap(c):
                return
            if self.gone:
                done(-1, ENODEV)
            elif req == USBDEVFS_REAPURB:
                self.wait(c, 'reap')
            else:
                self.wait(c, 'reap', timeout_ms=IDLE_REAP_MS, on_timeout=(-1, EAGAIN))
            return
        if self.gone:
            done(-1, ENODEV)
            return
        if req == USBDEVFS_SUBMITURB:
            # Read the client's pointer before resolve() swaps it for a local one.
            addr = struct.unpack_from('<Q', bytes(arg.retrieve()), 0)[0]
            urb = arg.resolve(0, URB_SIZE)
            raw = bytes(urb.retrieve())
            utype, ep = raw[0], raw[1]
            buflen = struct.unpack_from('<i', raw, 24)[0]
            if utype == URB_TYPE_CONTROL:
                buf = urb.resolve(16, buflen)
                bm, rq, value, index, length = struct.unpack_from('<BBHHH', bytes(buf.retrieve()), 0)
                resp = self.control(bm, rq, value, index, length)
                if resp is None:
                    c.completed.append((addr, -EPIPE, None, 0))
                elif bm & 0x80:
                    resp = resp[:length]
                    if resp:
                        buf.update(8, resp)
                    c.completed.append((addr, 0, None, len(resp)))
                else:
                    c.completed.append((addr, 0, None, length))
            elif ep & 0x80:
                c.pending_in.append((addr, buflen))
            else:
                data = bytes(urb.resolve(16, buflen).retrieve()) if buflen > 0 else b''
                took = self.host_out(data)
                c.completed.append((addr, -ESHUTDOWN if self.gone else 0, None, took))
                if self.gone:
                    for a, _ in c.pending_in:
                        c.completed.append((a, -ESHUTDOWN, b'', None))
                    c.pending_in.clear()
            done(0, 0)
        elif req == USBDEVFS_DISCARDURB:
            addr = struct.unpack('<Q', bytes(arg.retrieve()))[0]
            hit = [x for x in c.pending_in if x[0] == addr]
            for x in hit:
                c.pending_in.remove(x)
                c.completed.append((addr, -ECONNRESET, b'', None))  # as usb_unlink_urb reports it
            done(0 if hit else -1, 0 if hit else EINVAL)
        elif req == USBDEVFS_BULK:
            bt = arg.resolve(0, 24)
            ep, length, timeout = struct.unpack_from('<III', bytes(bt.retrieve()), 0)
            if ep & 0x80:
                if self.in_packets:
                    self.bulk_in(c, bt, length)
                else:
                    self.wait(c, 'bulk-in', bt, length, timeout_ms=timeout or None,
                              on_timeout=(-1, ETIMEDOUT))
            else:
                data = bytes(bt.resolve(16, length).retrieve()) if length else b''
                took = self.host_out(data)
                if self.gone:
                    done(-1, ENODEV)
                else:
                    done(took, 0)
        elif req == USBDEVFS_CONTROL:
            ct = arg.resolve(0, 24)
            bm, rq, value, index, length, _timeout = struct.unpack_from('<BBHHHI', bytes(ct.retrieve()), 0)
            resp = self.control(bm, rq, value, index, length)
            if resp is None:
                done(-1, EPIPE)
            elif bm & 0x80:
                resp = resp[:length]
                if resp:
                    ct.resolve(16, length).update(0, resp)
                done(len(resp), 0)
            else:
                done(length, 0)
        elif req == USBDEVFS_GET_CAPABILITIES:
            arg.resolve(0, 4).update(0, struct.pack('<I', CAPABILITIES))
            done(0, 0)
        elif req == USBDEVFS_GET_SPEED:
            done(USB_SPEED_HIGH, 0)
        elif req == USBDEVFS_CONNECTINFO:
            arg.resolve(0, 8).update(0, struct.pack('<IB3x', self.devnum, 0))
            done(0, 0)
        elif req in (USBDEVFS_GETDRIVER, USBDEVFS_IOCTL):
            done(-1, ENODATA)  # no kernel driver is bound to the interface
        elif req in ALWAYS_OK:
            done(0, 0)
        else:
            log('unhandled ioctl', NAMES.get(req, hex(req)))
            done(-1, ENOTTY)


# ---------------------------------------------------------------- the link to the sim (fastboot TCP)

class SimLink:
    """One fastboot TCP session: "FB01" handshake, then [8-byte big-endian length][payload] frames."""

    def __init__(self, host, port):
        self.sock = socket.create_connection((host, port), timeout=2)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(b'FB01')
        hs = self._exact(4)
        if hs is None or hs[:2] != b'FB':
            self.sock.close()
            raise ConnectionError('no fastboot handshake')
        self.sock.settimeout(None)
        self.closed = False
        self.on_packet = None
        self.on_closed = None

    def _exact(self, n):
        buf = bytearray()
        while len(buf) < n:
            b = self.sock.recv(n - len(buf))
            if not b:
                return None
            buf += b
        return bytes(buf)

    def start(self, on_packet, on_closed):
        self.on_packet, self.on_closed = on_packet, on_closed
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        try:
            while True:
                h = self._exact(8)
                if h is None:
                    break
                n = struct.unpack('>Q', h)[0]
                data = self._exact(n) if n else b''
                if data is None:
                    break
                self.on_packet(data)
        except OSError:
            pass
        self.closed = True
        self.on_closed()

    def send(self, data):
        if self.closed:
            return False
        try:
            self.sock.sendmsg([struct.pack('>Q', len(data)), data])
            return True
        except OSError:
            self.closed = True
            return False

    def close(self):
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


# ---------------------------------------------------------------- the gadget: follows the sim's mode

class Port:
    """A root hub port with one virtual device behind it."""

    def __init__(self, gadget, name, state_dir, host, port):
        self.gadget = gadget
        self.name = name                # "1-1"
        self.syspath = HUB_SYSPATH + '/' + name
        self.state_dir = state_dir
        self.host, self.port = host, port
        self.cur = None
        self.hold_until = 0.0           # after a vanish: stay away until then
        self.replug_ms = 300

    def read_state(self):
        try:
            with open(os.path.join(self.state_dir, 'device.json')) as f:
                device = json.load(f)
        except (OSError, ValueError):  # being replaced: read it on the next tick
            return None, {}
        try:
            with open(os.path.join(self.state_dir, 'sim-props.json')) as f:
                props = json.load(f)
        except (OSError, ValueError):
            props = {}
        return device, props

    def vanished(self, e):
        """Called from the worker context when a fault cuts the device off mid-transfer."""
        e.link.close()
        self.hold_until = time.monotonic() + self.replug_ms / 1000

    def attach(self, persona):
        link = None
        if persona.fastboot:
            try:
                link = SimLink(self.host, self.port)
            except OSError as err:  # not booted far enough yet: try again on the next tick
                log('sim not reachable:', err)
                return
        g = self.gadget
        e = Enumeration(self, persona, g.next_devnum, link)
        g.next_devnum += 1
        if link:
            link.start(e.on_link_packet, e.on_link_closed)
        g.tb.attach_ioctl(e.devnode, e.base)
        # umockdev's preload connects to this socket even when the open() it wraps failed, and
        # exits if it cannot: let other users connect, so that they just get the open()'s EACCES.
        os.chmod(os.path.join(g.tb.get_root_dir(), 'ioctl', e.devnode.lstrip('/')), 0o666)
        g.tb.add_from_string(device_record(persona, self.name, e.devnum))
        g.tb.uevent(self.syspath, 'add')
        g.tb.uevent(self.syspath + '/' + self.name + ':1.0', 'add')
        self.cur = e
        emit('attached', port=self.name, mode=persona.mode, serial=persona.serial, busnum=1,
             devnum=e.devnum, devnode=e.devnode, vendorId=persona.vendor_id, productId=persona.product_id)

    def detach(self, reason):
        e, self.cur = self.cur, None
        e.disconnect()
        if e.link:
            e.link.close()
        tb = self.gadget.tb
        # umockdev < 0.18.4 removes devices without a "remove" uevent: send it (a second one from
        # newer versions finds nothing to remove).
        tb.uevent(self.syspath + '/' + self.name + ':1.0', 'remove')
        tb.uevent(self.syspath, 'remove')
        tb.remove_device(self.syspath)
        # umockdev leaves the bus links of a removed device behind; the next enumeration at the
        # same port needs them gone.
        for name in (self.name, self.name + ':1.0'):
            try:
                os.unlink(os.path.join(tb.get_sys_dir(), 'bus/usb/devices', name))
            except FileNotFoundError:
                pass
        emit('detached', port=self.name, reason=reason, devnum=e.devnum)

    def tick(self):
        device, props = self.read_state()
        if device is None:
            return
        mode = device.get('mode')
        e = self.cur
        if e is not None:
            if e.gone:
                self.detach('vanished')
            elif e.link is not None and e.link.closed:
                # The sim ended the session (a reboot): the device leaves once the host has read
                # the last answer, as a device does after sending OKAY to a reboot command.
                e.closed_at = e.closed_at or time.monotonic()
                if not e.in_packets or time.monotonic() - e.closed_at > 0.5:
                    self.detach('link-closed')
            elif mode != e.p.mode and (mode != 'off' or e.link is None):
                self.detach('mode')
        if self.cur is None and time.monotonic() >= self.hold_until:
            p = personality(mode, device, props)
            if p is not None:
                self.attach(p)


class Gadget:
    def __init__(self, devices):
        self.tb = UMockdev.Testbed.new()
        # Open to other users, as /sys and /dev are: they see the bus (and get EACCES on the device
        # nodes, which only root may write, as without udev rules). Writable with the sticky bit,
        # like /tmp, because their libudev monitors create their event sockets in it.
        os.chmod(self.tb.get_root_dir(), 0o1777)
        self.tb.add_from_string(ROOT_HUB)
        self.next_devnum = 2
        self.ports = [Port(self, '1-%d' % (i + 1), d, h, p) for i, (d, h, p) in enumerate(devices)]

    def command(self, msg):
        port = next((p for p in self.ports if p.name == msg.get('port', '1-1')), None)
        if msg.get('cmd') == 'vanish' and port is not None:
            port.replug_ms = int(msg.get('replugMs', 300))
            if port.cur is not None:
                port.cur.vanish_after = int(msg.get('afterBytes', 0))
            emit('armed', port=port.name, devnum=port.cur.devnum if port.cur else None)
        else:
            emit('error', message='unknown command %r' % (msg,))

    def run(self):
        emit('ready', umockdevDir=self.tb.get_root_dir(), preload='libumockdev-preload.so.0')
        buf = b''
        while True:
            for p in self.ports:
                p.tick()
            r, _, _ = select.select([sys.stdin], [], [], 0.02)
            if r:
                chunk = os.read(sys.stdin.fileno(), 4096)
                if not chunk:
                    break
                buf += chunk
                while b'\n' in buf:
                    line, buf = buf.split(b'\n', 1)
                    if line.strip():
                        self.command(json.loads(line))
        for p in self.ports:
            if p.cur is not None:
                p.detach('stopped')
        shutil.rmtree(self.tb.get_root_dir(), ignore_errors=True)


def main():
    global VERBOSE
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--device', action='append', required=True, metavar='STATE_DIR=HOST:PORT',
                    help="a sim's state directory and fastboot TCP address; repeat for more ports")
    ap.add_argument('-v', action='store_true', help='log to stderr')
    a = ap.parse_args()
    VERBOSE = a.v
    devices = []
    for d in a.device:
        state, _, addr = d.rpartition('=')
        host, _, port = addr.rpartition(':')
        devices.append((state, host or '127.0.0.1', int(port)))
    Gadget(devices).run()
    return 0


if __name__ == '__main__':
    sys.exit(main())
