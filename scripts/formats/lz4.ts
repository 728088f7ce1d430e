import { FormatError } from '../errors.ts';

/**
 * LZ4 block format decoder (lz4/doc/lz4_Block_format.md): sequences of a token (literal length in
 * the high nibble, match length - 4 in the low nibble, 15 meaning "more length bytes follow, each
 * added, until one is not 255"), the literals, then a 2-byte little-endian match offset. The last
 * sequence carries literals only. No frame header: erofs stores raw blocks (lz4 and lz4hc share the
 * format; lz4hc only compresses harder).
 */
export interface Lz4DecodeOptions {
  /** Stop once this many bytes are produced (partial decoding, as LZ4_decompress_safe_partial). */
  maxOutput: number;
  /** Initial output buffer size, grown (doubling, up to maxOutput) as needed; default maxOutput. */
  sizeHint?: number;
  /**
   * Return what was decoded so far instead of throwing when the input turns out malformed after at
   * least one byte was produced. For erofs pclusters without lz4_0padding, whose compressed stream
   * is followed by padding of unknown length.
   */
  lenient?: boolean;
  /** For error messages: where `input` starts in its file. */
  baseOffset?: number;
  file?: string;
}

export function lz4DecompressBlock(input: Buffer, opts: Lz4DecodeOptions): Buffer {
  const max = Math.max(0, opts.maxOutput);
  let out = Buffer.allocUnsafe(Math.min(max, Math.max(opts.sizeHint ?? max, 64)));
  /** Makes room for `n` more bytes at `op` (never beyond max). */
  const room = (n: number) => {
    const want = Math.min(max, op + n);
    if (want <= out.length) return;
    const grown = Buffer.allocUnsafe(Math.min(max, Math.max(want, out.length * 2)));
    out.copy(grown, 0, 0, op);
    out = grown;
  };
  let ip = 0;
  let op = 0;
  const end = input.length;
  const fail = (reason: string, found?: unknown): Buffer => {
    if (opts.lenient && op > 0) return out.subarray(0, op);
    throw new FormatError({
      format: 'lz4',
      reason,
      offset: (opts.baseOffset ?? 0) + ip,
      found,
      file: opts.file,
    });
  };
  while (ip < end && op < max) {
    const token = input[ip++];
    let lit = token >> 4;
    if (lit === 15) {
      let b = 255;
      while (b === 255) {
        if (ip >= end) return fail('truncated literal length');
        b = input[ip++];
        lit += b;
      }
    }
    if (ip + lit > end) return fail('literals run past the end of the input', lit);
    const n = Math.min(lit, max - op);
    room(n);
    input.copy(out, op, ip, ip + n);
    op += n;
    ip += lit;
    if (ip >= end || op >= max) break; // the last sequence has literals only
    if (ip + 2 > end) return fail('truncated match offset');
    const offset = input[ip] | (input[ip + 1] << 8);
    ip += 2;
    if (offset === 0 || offset > op) return fail('match offset outside the decoded data', offset);
    let len = token & 15;
    if (len === 15) {
      let b = 255;
      while (b === 255) {
        if (ip >= end) return fail('truncated match length');
        b = input[ip++];
        len += b;
      }
    }
    len += 4;
    const stop = Math.min(op + len, max);
    room(stop - op);
    // Byte by byte: matches may overlap the bytes they produce (offset < length repeats a pattern).
    let from = op - offset;
    if (offset >= len) {
      out.copy(out, op, from, from + (stop - op));
      op = stop;
    } else while (op < stop) out[op++] = out[from++];
  }
  return out.subarray(0, op);
}
