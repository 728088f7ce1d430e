import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { splitSparse } from '../../scripts/formats/sparse.ts';
import { workDir } from '../helpers.ts';
import { mixedImage } from './fixtures.ts';

/**
 * The oracle for splitSparse is the real fastboot client: a minimal fastboot-over-TCP device
 * (handshake "FB01", 8-byte big-endian length-prefixed packets) reports a small
 * max-download-size and records every download; our pieces must equal them byte for byte.
 */

const dir = workDir('sparse');
let server: Server;
let port = 0;
let maxDownload = 0;
let downloads: Buffer[] = [];

beforeAll(async () => {
  server = createServer((sock) => {
    let buf = Buffer.alloc(0);
    let handshake = false;
    let want = 0;
    let parts: Buffer[] = [];
    let got = 0;
    const send = (s: string) => {
      const b = Buffer.from(s);
      const h = Buffer.alloc(8);
      h.writeBigUInt64BE(BigInt(b.length));
      sock.write(Buffer.concat([h, b]));
    };
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (!handshake) {
        if (buf.length < 4) return;
        buf = buf.subarray(4);
        sock.write('FB01');
        handshake = true;
      }
      while (buf.length >= 8) {
        const len = Number(buf.readBigUInt64BE(0));
        if (buf.length < 8 + len) return;
        const p = Buffer.from(buf.subarray(8, 8 + len));
        buf = buf.subarray(8 + len);
        if (want > 0) {
          parts.push(p);
          got += p.length;
          if (got >= want) {
            downloads.push(Buffer.concat(parts));
            want = 0;
            parts = [];
            got = 0;
            send('OKAY');
          }
          continue;
        }
        const cmd = p.toString();
        if (cmd === 'getvar:max-download-size') send(`OKAY0x${maxDownload.toString(16)}`);
        else if (cmd.startsWith('getvar:')) send('FAILunknown variable');
        else if (cmd.startsWith('download:')) {
          want = Number.parseInt(cmd.slice(9), 16);
          send(`DATA${cmd.slice(9)}`);
        } else send('OKAY');
      }
    });
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  port = (server.address() as { port: number }).port;
});

afterAll(() => new Promise<void>((res) => server.close(() => res())));

describe('splitSparse vs the real fastboot client', () => {
  for (const [label, max] of [
    ['sparse', 1 << 20],
    ['sparse', 1_500_001],
    ['raw', 1 << 20],
  ] as const) {
    it(`${label} input, max-download-size ${max}: identical pieces`, async () => {
      const raw = await mixedImage('sparse');
      // A raw input whose size is not a whole number of blocks makes libsparse drop the final
      // DONT_CARE chunk while still counting it (an invalid file); real partition images are
      // block multiples, so compare on a block-aligned copy.
      let src = join(dir, 'fb-split-aligned.raw');
      const buf = readFileSync(raw);
      writeFileSync(src, Buffer.concat([buf, Buffer.alloc((4096 - (buf.length % 4096)) % 4096)]));
      if (label === 'sparse') {
        src = join(dir, 'fb-split.simg');
        await execa('img2simg', [raw, src]);
      }
      maxDownload = max;
      downloads = [];
      await execa('fastboot', ['-s', `tcp:127.0.0.1:${port}`, 'flash', 'system', src], { timeout: 60_000 });
      const pieces = await splitSparse(src, max);
      expect(downloads.length).toBeGreaterThan(1);
      expect(pieces.length).toBe(downloads.length);
      for (const [i, p] of pieces.entries()) {
        const f = join(dir, `fb-piece-${i}`);
        await p.writeTo(f);
        expect(readFileSync(f).equals(downloads[i]), `piece ${i}`).toBe(true);
      }
    });
  }
});
