import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { brotliDecompressSync } from 'node:zlib';
import { execa } from 'execa';
import Bunzip from 'seek-bzip';
import { FormatError } from '../../errors.ts';
import { requireTool } from '../../host/tools.ts';
import { brotli } from './compress.ts';

/**
 * bsdiff patches as update_engine applies them (AOSP external/bsdiff: patch_reader.cc, bspatch.cc).
 *
 *   0      8  magic: "BSDIFF40" (all three streams bzip2), or "BSDF2" + one compressor byte per
 *             stream (1 bzip2, 2 brotli) for control, diff and extra
 *   8      8  control stream length     (offtin: 64-bit little-endian sign-magnitude)
 *   16     8  diff stream length
 *   24     8  new file size
 *   32        control, diff, extra streams
 *
 * The control stream is triples (x, y, z): add x bytes of the old file (at the old position) to x
 * bytes of the diff stream, copy y bytes of the extra stream, move the old position by z. Old
 * bytes outside the old file count as zeros, as bspatch.cc treats them.
 *
 * SOURCE_BSDIFF operations carry BSDIFF40 or BSDF2; BROTLI_BSDIFF ones BSDF2 (delta_generator
 * writes it with brotli at quality 11 for all three streams). Patches are made by the host's
 * bsdiff (Debian's, Colin Percival's 4.3: BSDIFF40), re-encoded to BSDF2 for BROTLI_BSDIFF.
 */

export type BsdiffFormat = 'BSDIFF40' | 'BSDF2';

const LEGACY = Buffer.from('BSDIFF40', 'latin1');
const BSDF2 = Buffer.from('BSDF2', 'latin1');
const BZ2 = 1;
const BROTLI = 2;

/** bsdiff's offtin: sign-magnitude, little-endian. */
function offtin(b: Buffer, at: number): number {
  const hi = b.readUInt32LE(at + 4);
  const mag = (hi & 0x7fffffff) * 2 ** 32 + b.readUInt32LE(at);
  if (mag > Number.MAX_SAFE_INTEGER) return Number.NaN;
  return hi & 0x80000000 ? -mag : mag;
}

function offtout(v: number): Buffer {
  const b = Buffer.alloc(8);
  const mag = Math.abs(v);
  b.writeUInt32LE(mag % 2 ** 32, 0);
  b.writeUInt32LE(Math.floor(mag / 2 ** 32) | (v < 0 ? 0x80000000 : 0), 4);
  return b;
}

export interface PatchHeader {
  format: BsdiffFormat;
  compressors: [number, number, number];
  ctrlLength: number;
  diffLength: number;
  newSize: number;
}

function patchError(reason: string, d: { offset?: number; expected?: unknown; found?: unknown } = {}) {
  return new FormatError({ format: 'bsdiff', reason, ...d });
}

export function parsePatchHeader(patch: Buffer): PatchHeader {
  if (patch.length < 32) throw patchError('too small to be a bsdiff patch', { found: patch.length });
  let format: BsdiffFormat;
  let compressors: [number, number, number];
  if (patch.subarray(0, 8).equals(LEGACY)) {
    format = 'BSDIFF40';
    compressors = [BZ2, BZ2, BZ2];
  } else if (patch.subarray(0, 5).equals(BSDF2)) {
    format = 'BSDF2';
    compressors = [patch[5], patch[6], patch[7]];
    for (const [i, c] of compressors.entries())
      if (c !== BZ2 && c !== BROTLI)
        throw patchError('unsupported stream compressor', { offset: 5 + i, expected: '1 or 2', found: c });
  } else
    throw patchError('not a bsdiff patch', {
      offset: 0,
      expected: 'BSDIFF40 or BSDF2',
      found: patch.subarray(0, 8).toString('latin1'),
    });
  const ctrlLength = offtin(patch, 8);
  const diffLength = offtin(patch, 16);
  const newSize = offtin(patch, 24);
  if (
    !(ctrlLength >= 0 && diffLength >= 0 && newSize >= 0) ||
    patch.length - 32 < ctrlLength ||
    patch.length - 32 - ctrlLength < diffLength
  )
    throw patchError('corrupt header lengths', {
      offset: 8,
      found: { ctrlLength, diffLength, newSize, patchSize: patch.length },
    });
  return { format, compressors, ctrlLength, diffLength, newSize };
}

function decompress(kind: number, data: Buffer, max: number, what: string): Buffer {
  try {
    if (kind === BROTLI) return brotliDecompressSync(data, { maxOutputLength: Math.max(1, max) });
    const out = Bunzip.decode(data, undefined, true) as Buffer;
    if (out.length > max) throw new Error(`more than ${max} bytes`);
    return out;
  } catch (e) {
    throw patchError(`the ${what} stream does not decompress: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** Applies `patch` to `old`; returns the new data (newSize bytes). */
export function bspatch(old: Buffer, patch: Buffer, maxNewSize = 1 << 30): Buffer {
  const h = parsePatchHeader(patch);
  if (h.newSize > maxNewSize)
    throw patchError('the new file is larger than the destination', {
      offset: 24,
      expected: `<= ${maxNewSize}`,
      found: h.newSize,
    });
  const c0 = 32;
  const d0 = c0 + h.ctrlLength;
  const e0 = d0 + h.diffLength;
  const ctrl = decompress(h.compressors[0], patch.subarray(c0, d0), 24 * (h.newSize + 1), 'control');
  const diff = decompress(h.compressors[1], patch.subarray(d0, e0), h.newSize, 'diff');
  const extra = decompress(h.compressors[2], patch.subarray(e0), h.newSize, 'extra');
  const out = Buffer.alloc(h.newSize);
  let newpos = 0;
  let oldpos = 0;
  let cp = 0;
  let dp = 0;
  let ep = 0;
  while (newpos < h.newSize) {
    if (cp + 24 > ctrl.length) throw patchError('the control stream ends early', { found: ctrl.length });
    const x = offtin(ctrl, cp);
    const y = offtin(ctrl, cp + 8);
    const z = offtin(ctrl, cp + 16);
    cp += 24;
    if (!(x >= 0 && y >= 0) || Number.isNaN(z))
      throw patchError('negative or huge lengths in the control stream', { found: { x, y, z } });
    if (newpos + x > h.newSize || dp + x > diff.length)
      throw patchError('a control entry runs past the new file or the diff stream', { found: { x, newpos } });
    for (let i = 0; i < x; i++) {
      const o = oldpos + i;
      out[newpos + i] = (diff[dp + i] + (o >= 0 && o < old.length ? old[o] : 0)) & 0xff;
    }
    newpos += x;
    oldpos += x;
    dp += x;
    if (newpos + y > h.newSize || ep + y > extra.length)
      throw patchError('a control entry runs past the new file or the extra stream', {
        found: { y, newpos },
      });
    extra.copy(out, newpos, ep, ep + y);
    newpos += y;
    ep += y;
    oldpos += z;
  }
  return out;
}

/**
 * A patch from `old` to `new` made by the host's bsdiff, as BSDIFF40 or re-encoded as BSDF2 with
 * brotli streams (what BROTLI_BSDIFF carries).
 */
export async function bsdiff(old: Buffer, next: Buffer, format: BsdiffFormat): Promise<Buffer> {
  const dir = await mkdtemp(join(tmpdir(), 'omie-bsdiff-'));
  try {
    const [o, n, p] = ['old', 'new', 'patch'].map((f) => join(dir, f));
    await Promise.all([writeFile(o, old), writeFile(n, next)]);
    await execa(requireTool('bsdiff'), [o, n, p]);
    const legacy = await readFile(p);
    if (format === 'BSDIFF40') return legacy;
    const h = parsePatchHeader(legacy);
    const streams = [
      legacy.subarray(32, 32 + h.ctrlLength),
      legacy.subarray(32 + h.ctrlLength, 32 + h.ctrlLength + h.diffLength),
      legacy.subarray(32 + h.ctrlLength + h.diffLength),
    ];
    const raw = await Promise.all(
      streams.map(async (s) => {
        const r = await execa(requireTool('bzip2'), ['-d', '-c'], {
          input: s,
          encoding: 'buffer',
          stripFinalNewline: false,
        });
        return Buffer.from(r.stdout as Uint8Array);
      }),
    );
    const [ctrl, diff, extra] = raw.map((r) => brotli(r));
    return Buffer.concat([
      BSDF2,
      Buffer.from([BROTLI, BROTLI, BROTLI]),
      offtout(ctrl.length),
      offtout(diff.length),
      offtout(h.newSize),
      ctrl,
      diff,
      extra,
    ]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
