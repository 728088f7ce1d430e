/**
 * Fastboot answers as real devices give them (recorded from the AOSP sources and bootloader
 * behaviours, generated here): variable formats, `getvar all` in bootloader and fastbootd style,
 * zero-length USB packets, INFO anywhere before the final status, and the client reading each the
 * way the AOSP host tool does.
 */
import { describe, expect, it } from 'vitest';
import { FastbootClient } from '../../scripts/device/fastboot/client.ts';
import { FastbootProtocol, type FastbootTransport } from '../../scripts/device/fastboot/protocol.ts';
import { type BulkPipes, UsbTransport } from '../../scripts/device/fastboot/usb.ts';
import {
  parseGetvarAll,
  parseHexSizeVar,
  parseSlotVar,
  parseUintVar,
  parseYesNoVar,
} from '../../scripts/device/fastboot/vars.ts';
import { prng } from '../helpers.ts';
import { makeSim } from './fixtures.ts';

/** A device that answers each command from a table (FAIL for anything unknown). */
class TableDevice implements FastbootTransport {
  commands: string[] = [];
  private replies: Buffer[] = [];
  constructor(private readonly table: Record<string, string[]>) {}
  async write(data: Buffer) {
    const cmd = data.toString('latin1');
    this.commands.push(cmd);
    for (const r of this.table[cmd] ?? ['FAILunknown variable']) this.replies.push(Buffer.from(r, 'latin1'));
  }
  async read(): Promise<Buffer> {
    const r = this.replies.shift();
    if (!r) throw new Error('no reply queued');
    return r;
  }
  async close() {}
}

describe('fastboot variable values', () => {
  it('max-download-size: ParseUint (0x hex or decimal), trimmed; nonsense is unknown', () => {
    expect(parseUintVar('0x10000000')).toBe(0x10000000); // fastbootd
    expect(parseUintVar('0X8000000')).toBe(0x8000000);
    expect(parseUintVar('268435456')).toBe(268435456); // decimal bootloaders
    expect(parseUintVar(' 0x20000000 ')).toBe(0x20000000); // angler's spurious whitespace
    expect(parseUintVar('536870912\n')).toBe(536870912);
    expect(parseUintVar('no')).toBeUndefined(); // seen in the wild: "couldn't parse max-download-size 'no'"
    expect(parseUintVar('')).toBeUndefined();
    expect(parseUintVar('-1')).toBeUndefined();
    expect(parseUintVar('0x')).toBeUndefined();
    expect(parseUintVar('0xFFFFFFFFFFFFFFFFFF')).toBeUndefined(); // beyond a safe integer
    expect(parseUintVar(undefined)).toBeUndefined();
  });

  it('partition-size: implicit hex as fb_fix_numeric_var', () => {
    expect(parseHexSizeVar('0x0000000004000000')).toBe(0x4000000); // Pixel bootloader
    expect(parseHexSizeVar('0x4000000')).toBe(0x4000000); // fastbootd
    expect(parseHexSizeVar('4000000')).toBe(0x4000000); // LK (hammerhead): no prefix, still hex
    expect(parseHexSizeVar(' 100000')).toBe(0x100000);
    expect(parseHexSizeVar('12ab')).toBe(0x12ab);
    expect(parseHexSizeVar('big')).toBeUndefined();
  });

  it('current-slot "a" or "_a"; yes/no', () => {
    expect(parseSlotVar('a')).toBe('a');
    expect(parseSlotVar('_b')).toBe('b');
    expect(parseSlotVar(' _a\n')).toBe('a');
    expect(parseSlotVar('')).toBeUndefined();
    expect(parseSlotVar('__a')).toBeUndefined();
    expect(parseSlotVar('ab')).toBeUndefined();
    expect(parseYesNoVar('yes')).toBe(true);
    expect(parseYesNoVar('no')).toBe(false);
    expect(parseYesNoVar('true')).toBe(true);
    expect(parseYesNoVar('maybe')).toBeUndefined();
  });

  it('getvar all: bootloader "name: value" lines and fastbootd "name:arg:value" lines', () => {
    const abl = [
      'version-bootloader: slider-1.2-9152140',
      'version-baseband: g5123b-116954-230511-B-10112789',
      'product: oriole',
      'serialno: 1A2B3C4D5E6F',
      'current-slot: a',
      'slot-count: 2',
      'max-download-size: 261095424',
      'partition-size:boot_a: 0x0000000004000000',
      'partition-type:boot_a: raw',
      'has-slot:boot: yes',
      'has-slot:modem: yes',
      'slot-successful:a: yes',
      'snapshot-update-status: none',
      'hw-revision: MP1.0',
      'version-baseband: ',
      'all:',
    ];
    const m = parseGetvarAll(abl);
    expect(m.product).toBe('oriole');
    expect(m['partition-size:boot_a']).toBe('0x0000000004000000');
    expect(m['has-slot:boot']).toBe('yes');
    expect(m['slot-successful:a']).toBe('yes');
    expect(m['version-bootloader']).toBe('slider-1.2-9152140');
    expect(m['version-baseband']).toBe('');
    expect(parseUintVar(m['max-download-size'])).toBe(261095424);
    expect(m.all).toBeUndefined();
    const fbd = parseGetvarAll([
      'max-download-size:0x10000000',
      'partition-size:system_a:0xC0000000',
      'is-logical:system_a:yes',
      'super-partition-name:super',
      'current-slot:a',
    ]);
    expect(fbd['partition-size:system_a']).toBe('0xC0000000');
    expect(fbd['is-logical:system_a']).toBe('yes');
    expect(fbd['super-partition-name']).toBe('super');
  });

  it('fuzz: random strings never throw and give a number in range or undefined', () => {
    const rnd = prng(0x5a5);
    const alphabet = '0123456789abcdefxX _:\n-yesno';
    for (let i = 0; i < 5000; i++) {
      const len = Math.floor(rnd() * 24);
      let s = '';
      for (let k = 0; k < len; k++) s += alphabet[Math.floor(rnd() * alphabet.length)];
      for (const f of [parseUintVar, parseHexSizeVar]) {
        const v = f(s);
        if (v !== undefined) expect(Number.isSafeInteger(v) && v >= 0).toBe(true);
      }
      const sl = parseSlotVar(s);
      if (sl !== undefined) expect(sl).toMatch(/^[a-z]$/);
      expect(typeof parseGetvarAll(s.split('\n'))).toBe('object');
    }
  });
});

describe('the client reads real bootloader answers', () => {
  it('ABL style: decimal max-download-size, "_b" slot, FAIL has-slot, bare-hex partition-size', async () => {
    const dev = new TableDevice({
      'getvar:max-download-size': ['OKAY268435456'],
      'getvar:current-slot': ['OKAY_b'],
      'getvar:slot-count': ['OKAY2'],
      'getvar:has-slot:boot': ['INFOchecking', 'OKAYyes'],
      'getvar:partition-size:boot_b': ['OKAY0000000004000000'],
      'getvar:snapshot-update-status': ['OKAYmerging'],
    });
    const c = new FastbootClient(dev);
    expect(await c.maxDownloadSize()).toBe(268435456);
    expect(await c.currentSlot()).toBe('b');
    expect(await c.slotCount()).toBe(2);
    expect(await c.resolveSlot('boot')).toBe('boot_b');
    expect(await c.resolveSlot('vendor_boot:default')).toBe('vendor_boot:default'); // has-slot FAIL → no suffix
    expect(await c.resolveSlot('modem')).toBe('modem');
    expect(await c.partitionSize('boot_b')).toBe(0x4000000);
    expect(await c.snapshotUpdateStatus()).toBe('merging');
    expect(dev.commands).toContain('getvar:has-slot:vendor_boot');
  });

  it('has-slot with an explicit slot, and a device without current-slot is an error, not a guess', async () => {
    const dev = new TableDevice({
      'getvar:has-slot:vendor_boot': ['OKAYyes'],
      'getvar:has-slot:boot': ['OKAYyes'],
    });
    const c = new FastbootClient(dev);
    expect(await c.resolveSlot('vendor_boot:default', 'a')).toBe('vendor_boot_a:default');
    await expect(c.resolveSlot('boot')).rejects.toThrow(/current slot/);
  });

  it('getvar all from the device, both styles, as the same map as single getvars', async () => {
    for (const sep of [': ', ':']) {
      const dev = new TableDevice({
        'getvar:all': [
          `INFOproduct${sep}oriole`,
          `INFOpartition-size:boot_a${sep}0x4000000`,
          'TEXTignored text',
          `INFOcurrent-slot${sep}_a`,
          'OKAYDone!',
        ],
      });
      const all = await new FastbootClient(dev).getvarAll();
      expect(all).toEqual({ product: 'oriole', 'partition-size:boot_a': '0x4000000', 'current-slot': '_a' });
    }
  });
});

describe('protocol details of real devices', () => {
  it('skips zero-length packets, keeps INFO before DATA, takes a long OKAY payload whole', async () => {
    const long = 'x'.repeat(250);
    const replies = [
      Buffer.alloc(0),
      Buffer.from('INFOpreparing'),
      Buffer.alloc(0),
      Buffer.from(`OKAY${long}`),
      Buffer.from('INFOerasing'),
      Buffer.from('DATA00000004'),
      Buffer.from('INFOwriting'),
      Buffer.from('OKAY'),
    ];
    const t: FastbootTransport = {
      write: async () => {},
      read: async () => replies.shift() ?? Buffer.from('FAILdone'),
      close: async () => {},
    };
    const p = new FastbootProtocol(t);
    const infos: string[] = [];
    const r = await p.command('oem x', { onInfo: (l) => infos.push(l) });
    expect(r.value).toBe(long);
    expect(infos).toEqual(['preparing']);
    await p.download(4, (send) => send([Buffer.from('abcd')]));
  });

  it('a device flooding zero-length packets is a transport error, not a hang', async () => {
    const t: FastbootTransport = {
      write: async () => {},
      read: async () => Buffer.alloc(0),
      close: async () => {},
    };
    await expect(new FastbootProtocol(t).command('getvar:product')).rejects.toThrow(
      /short fastboot response/,
    );
  });

  it('USB: a command that is a multiple of wMaxPacketSize is followed by a zero-length packet', async () => {
    const outs: number[] = [];
    const pipes: BulkPipes = {
      out: async (d) => {
        outs.push(d.length);
      },
      in: async () => Buffer.from('OKAY'),
      close: async () => {},
    };
    const t = new UsbTransport(pipes, 'SER', 64); // full speed
    await t.write(Buffer.alloc(64, 0x61));
    expect(outs).toEqual([64, 0]);
    outs.length = 0;
    await t.write(Buffer.alloc(100, 0x61));
    expect(outs).toEqual([100]);
    outs.length = 0;
    const hs = new UsbTransport(pipes, 'SER', 512);
    await hs.write(Buffer.alloc(512, 0x61));
    await hs.write(Buffer.alloc(64, 0x61));
    expect(outs).toEqual([512, 0, 64]);
    // Download data: the device knows the size, no ZLP.
    outs.length = 0;
    await hs.writeFrame([Buffer.alloc(1024)]);
    expect(outs).toEqual([1024]);
  });
});

describe('the sim in bootloader style', () => {
  it('answers like an ABL bootloader when asked to, and fastbootd keeps the AOSP style', async () => {
    const sim = await makeSim('abl-style');
    try {
      await sim.state.update((d) => {
        d.bootloaderStyle = {
          slot: 'underscore',
          downloadSize: 'decimal',
          partitionSize: 'bare-hex',
          getvarAll: 'colon-space',
        };
      });
      const c = await FastbootClient.connectTcp(sim.addr);
      try {
        expect(await c.getvar('current-slot')).toBe('_a');
        expect(await c.getvar('max-download-size')).toBe(String(8 * 1024 * 1024));
        expect(await c.maxDownloadSize()).toBe(8 * 1024 * 1024);
        expect(await c.getvar('partition-size:boot_a')).toMatch(/^[0-9A-F]{16}$/);
        expect(await c.partitionSize('boot_a')).toBe(sim.state.info.partitions.boot.size);
        expect(await c.tryGetvar('has-slot:nonesuch')).toBeUndefined();
        expect(await c.resolveSlot('boot')).toBe('boot_a');
        const all = await c.getvarAll();
        expect(all['current-slot']).toBe('_a');
        expect(all['has-slot:boot']).toBe('yes');
        expect(parseHexSizeVar(all['partition-size:boot_b'])).toBe(sim.state.info.partitions.boot.size);
      } finally {
        await c.close();
      }
    } finally {
      await sim.close();
    }
  });
});

describe('fuzz: random device answers', () => {
  it('the protocol turns any packet sequence into a result or an OmieError, never a crash or hang', async () => {
    const { OmieError } = await import('../../scripts/errors.ts');
    const rnd = prng(0xfb01);
    const kinds = ['OKAY', 'FAIL', 'INFO', 'TEXT', 'DATA', 'OKA', '', 'XXXX', 'DATAzz'];
    for (let i = 0; i < 2000; i++) {
      const n = 1 + Math.floor(rnd() * 6);
      const replies: Buffer[] = [];
      for (let k = 0; k < n; k++) {
        const kind = kinds[Math.floor(rnd() * kinds.length)];
        let tail = '';
        for (let j = Math.floor(rnd() * 12); j > 0; j--)
          tail += '0123456789abcdef :_x\0'[Math.floor(rnd() * 21)];
        replies.push(Buffer.from(kind + tail, 'latin1'));
      }
      const t: FastbootTransport = {
        write: async () => {},
        read: async () => replies.shift() ?? Buffer.from('FAILend'),
        close: async () => {},
      };
      const p = new FastbootProtocol(t);
      const r = await p.command('getvar:all', { timeoutMs: 1000 }).then(
        (x) => x,
        (e) => e,
      );
      if (r instanceof Error) expect(r).toBeInstanceOf(OmieError);
      else expect(typeof r.value).toBe('string');
    }
  });
});

describe('long responses over TCP', () => {
  it('an OKAY frame longer than 256 bytes is one response (not split into a bogus second status)', async () => {
    const { createServer } = await import('node:net');
    const { frameHeader, TcpTransport } = await import('../../scripts/device/fastboot/tcp.ts');
    const value = 'v'.repeat(3000);
    const server = createServer((sock) => {
      sock.once('data', () => {
        sock.write('FB01');
        sock.once('data', () => {
          const body = Buffer.from(`OKAY${value}`);
          sock.write(Buffer.concat([frameHeader(body.length), body]));
        });
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as { port: number }).port;
    try {
      const c = new FastbootClient(await TcpTransport.connect(`tcp:127.0.0.1:${port}`));
      expect(await c.getvar('version-long')).toBe(value);
      await c.close();
    } finally {
      server.close();
    }
  });
});
