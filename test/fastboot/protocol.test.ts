/**
 * Protocol state machine, USB framing (fake bulk pipes: no hardware here), sparse import/split
 * against libsparse's tools, and fuzzing of everything that parses device or file input.
 */
import { open, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FastbootClient } from '../../scripts/device/fastboot/client.ts';
import {
  FastbootFailError,
  FastbootProtocol,
  type FastbootTransport,
  TransportError,
} from '../../scripts/device/fastboot/protocol.ts';
import {
  expandSparse,
  importLayout,
  sparseLength,
  splitLayout,
  writeSparse,
} from '../../scripts/device/fastboot/sparse.ts';
import { type BulkPipes, USB_MAX_TRANSFER, UsbTransport } from '../../scripts/device/fastboot/usb.ts';
import { OmieError } from '../../scripts/errors.ts';
import { mutate, prng, workDir } from '../helpers.ts';
import { IMG2SIMG, makeSim, mixedImage, type Sim, writeFileIn } from './fixtures.ts';

const dir = join(workDir('fastboot'), 'protocol');
const withImg2simg = it.skipIf(!IMG2SIMG.present);

/** A scripted device: answers each packet the host writes with the queued responses. */
class FakeTransport implements FastbootTransport {
  written: Buffer[] = [];
  private replies: Buffer[] = [];
  closed = false;
  constructor(private readonly script: (cmd: string) => string[]) {}
  async write(data: Buffer) {
    this.written.push(Buffer.from(data));
    const s = data.toString('latin1');
    if (/^[a-z]/.test(s) && data.length < 4096)
      for (const r of this.script(s)) this.replies.push(Buffer.from(r, 'latin1'));
  }
  async read(): Promise<Buffer> {
    const r = this.replies.shift();
    if (r) return r;
    return new Promise(() => {}); // a silent device
  }
  async close() {
    this.closed = true;
  }
}

describe('fastboot protocol state machine', () => {
  it('streams INFO and TEXT to callbacks, returns the OKAY payload', async () => {
    const t = new FakeTransport(() => ['INFOline one', 'TEXTraw', 'INFOline two', 'OKAYdone']);
    const infos: string[] = [];
    const texts: string[] = [];
    const r = await new FastbootProtocol(t).command('oem x', {
      onInfo: (l) => infos.push(l),
      onText: (x) => texts.push(x),
    });
    expect(r).toEqual({ value: 'done', info: ['line one', 'line two'] });
    expect(texts).toEqual(['raw']);
  });

  it('turns FAIL into FastbootFailError with the device message', async () => {
    const t = new FakeTransport(() => ['FAILFlashing is not allowed in Lock State']);
    const e = await new FastbootProtocol(t).command('flash:boot_a').catch((x) => x);
    expect(e).toBeInstanceOf(FastbootFailError);
    expect(e.deviceMessage).toBe('Flashing is not allowed in Lock State');
  });

  it('times out on a silent device and closes the transport', async () => {
    const t = new FakeTransport(() => []);
    const e = await new FastbootProtocol(t).command('getvar:product', { timeoutMs: 50 }).catch((x) => x);
    expect(e).toBeInstanceOf(TransportError);
    expect(t.closed).toBe(true);
  });

  it('rejects malformed responses as transport errors, never crashes', async () => {
    for (const bad of ['OK', 'WHAT', 'DATAzz', 'DATA0000000g']) {
      const t = new FakeTransport(() => [bad]);
      const e = await new FastbootProtocol(t).command('download:00000010').catch((x) => x);
      expect(e, bad).toBeInstanceOf(TransportError);
    }
  });

  it('download sends exactly the announced bytes after DATA', async () => {
    const t = new FakeTransport((c) => (c.startsWith('download:') ? ['DATA00000010'] : []));
    const p = new FastbootProtocol(t);
    const data = Buffer.alloc(16, 1);
    const done = p.download(16, async (send) => {
      await send([data.subarray(0, 10)]);
      await send([data.subarray(10)]);
      // The device answers OKAY after the data phase.
      (t as unknown as { replies: Buffer[] }).replies.push(Buffer.from('OKAY'));
    });
    await done;
    expect(t.written[0].toString()).toBe('download:00000010');
    expect(Buffer.concat(t.written.slice(1)).equals(data)).toBe(true);
  });
});

describe('USB transport framing (fake bulk endpoints)', () => {
  it('splits OUT transfers at 1 MiB and reads one IN transfer per response', async () => {
    const outs: number[] = [];
    const ins: Buffer[] = [Buffer.from('DATA00300000'), Buffer.from('INFOwriting'), Buffer.from('OKAY')];
    const pipes: BulkPipes = {
      out: async (d) => {
        outs.push(d.length);
      },
      in: async (max) => {
        const r = ins.shift() ?? Buffer.alloc(0);
        expect(r.length).toBeLessThanOrEqual(max);
        return r;
      },
      close: async () => {},
    };
    const t = new UsbTransport(pipes, 'SER');
    const p = new FastbootProtocol(t);
    const size = 3 * 1024 * 1024;
    await p.download(size, async (send) => {
      // Many small pieces are coalesced into full-size transfers.
      for (let o = 0; o < size; o += 65536) await send([Buffer.alloc(65536), Buffer.alloc(0)]);
    });
    expect(outs[0]).toBe('download:00300000'.length);
    const data = outs.slice(1);
    expect(data.reduce((a, b) => a + b, 0)).toBe(size);
    expect(Math.max(...data)).toBeLessThanOrEqual(USB_MAX_TRANSFER);
    await t.write(Buffer.alloc(USB_MAX_TRANSFER * 2 + 5));
    expect(outs.slice(-3)).toEqual([USB_MAX_TRANSFER, USB_MAX_TRANSFER, 5]);
  });
});

describe('sparse import/split/expand', () => {
  withImg2simg(`imports img2simg output and expands it like simg2img ${IMG2SIMG.reason}`, async () => {
    const raw = await writeFileIn(dir, 'a.raw', mixedImage(2 * 1024 * 1024 + 4096 * 3, 21));
    const sp = join(dir, 'a.simg');
    await execa('img2simg', [raw, sp]);
    const out = join(dir, 'a.out');
    await writeFileIn(dir, 'a.out', Buffer.alloc(0));
    const src = await open(sp, 'r');
    const dst = await open(out, 'r+');
    await expandSparse(src, (await src.stat()).size, dst, 1 << 30);
    await src.close();
    await dst.close();
    expect((await readFile(out)).equals(await readFile(raw))).toBe(true);
  });

  withImg2simg(`split pieces are valid sparse files simg2img reassembles ${IMG2SIMG.reason}`, async () => {
    const img = mixedImage(3 * 1024 * 1024, 22);
    const raw = await writeFileIn(dir, 'b.raw', img);
    const fh = await open(raw, 'r');
    const layout = await importLayout(fh, img.length);
    const pieces = splitLayout(layout, 512 * 1024);
    expect(pieces.length).toBeGreaterThan(3);
    const files: string[] = [];
    for (const [i, piece] of pieces.entries()) {
      const chunks: Buffer[] = [];
      await writeSparse(piece, fh, (b) => {
        chunks.push(Buffer.from(b));
      });
      const buf = Buffer.concat(chunks);
      expect(buf.length).toBe(sparseLength(piece));
      expect(buf.length).toBeLessThanOrEqual(512 * 1024);
      files.push(await writeFileIn(dir, `b.${i}.simg`, buf));
    }
    await fh.close();
    // Each piece covers its own blocks and is DONT_CARE elsewhere (simg2img writes zeros there), so
    // OR-ing the expanded pieces rebuilds the image iff the pieces cover it exactly once.
    const whole = Buffer.alloc(img.length);
    for (const [i, f] of files.entries()) {
      const out = join(dir, `b.${i}.out`);
      await execa('simg2img', [f, out]);
      const part = await readFile(out);
      expect(part.length).toBe(img.length);
      for (let k = 0; k < part.length; k++) whole[k] |= part[k];
    }
    expect(whole.equals(img)).toBe(true);
  });

  it('fuzz: mutated sparse images only ever throw OmieError', async () => {
    const base = await writeFileIn(dir, 'fuzz.raw', mixedImage(64 * 1024, 23));
    const fh = await open(base, 'r');
    const layout = await importLayout(fh, 64 * 1024);
    const chunks: Buffer[] = [];
    await writeSparse(layout, fh, (b) => {
      chunks.push(Buffer.from(b));
    });
    await fh.close();
    const seed = Buffer.concat(chunks);
    const rnd = prng(7);
    const p = join(dir, 'fuzz.simg');
    const outP = join(dir, 'fuzz.out');
    for (let i = 0; i < 1500; i++) {
      const m = mutate(seed, rnd);
      await writeFileIn(dir, 'fuzz.simg', m);
      await writeFileIn(dir, 'fuzz.out', Buffer.alloc(0));
      const src = await open(p, 'r');
      const dst = await open(outP, 'r+');
      try {
        await expandSparse(src, m.length, dst, 1 << 20);
      } catch (e) {
        if (!(e instanceof OmieError)) throw new Error(`case ${i}: ${(e as Error).stack}`);
      } finally {
        await src.close();
        await dst.close();
      }
    }
  }, 60_000);
});

describe('our client against the sim', () => {
  let sim: Sim;
  beforeAll(async () => {
    sim = await makeSim('client');
  });
  afterAll(async () => sim.close());

  it('refuses a download larger than max-download-size (device side)', async () => {
    const c = await FastbootClient.connectTcp(sim.addr);
    const e = await c.protocol.download(9 * 1024 * 1024, async () => {}).catch((x) => x);
    expect(e).toBeInstanceOf(FastbootFailError);
    expect(e.deviceMessage).toMatch(/max/);
    expect(await c.getvar('product')).toBe('omie_tablet'); // the session survives a FAIL
    await c.close();
  });

  it('fuzz: garbage commands get FAIL answers, the server survives', async () => {
    const rnd = prng(99);
    const c = await FastbootClient.connectTcp(sim.addr);
    const seeds = [
      'getvar:partition-size:boot_a',
      'flash:boot',
      'set_active:b',
      'resize-logical-partition:system_a:1',
      'fetch:boot_a:0:16',
    ];
    for (let i = 0; i < 300; i++) {
      const cmd = mutate(Buffer.from(seeds[i % seeds.length]), rnd)
        .toString('latin1')
        .replace(
          /^(set_active|flashing|reboot|erase|flash|download|update-super|oem|continue|fetch|snapshot).*/,
          'getvar:$1',
        );
      if (!cmd) continue;
      try {
        await c.command(cmd, 5000);
      } catch (e) {
        expect(e).toBeInstanceOf(FastbootFailError);
      }
    }
    expect(await c.getvar('product')).toBe('omie_tablet');
    await c.close();
  });

  it('snapshot-update status/cancel/merge follow fastbootd rules', async () => {
    await sim.state.update((d) => {
      d.snapshotUpdateStatus = 'snapshotted';
    });
    const c = await FastbootClient.connectTcp(sim.addr);
    expect(await c.snapshotUpdate()).toBe('snapshotted');
    await expect(c.snapshotUpdate('merge')).rejects.toThrow(/No snapshot merge/);
    await c.snapshotUpdate('cancel');
    expect(await c.getvar('snapshot-update-status')).toBe('cancelled');
    await c.close();
  });
});
