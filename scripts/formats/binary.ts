import { FormatError } from '../errors.ts';

/**
 * Bounds-checked little/big-endian reader over a Buffer. Every read past the end, and every
 * length field above its limit, becomes a FormatError naming the format, field and offset, so
 * parsers never crash on truncated input or allocate from an attacker-controlled length.
 */
export class BinaryReader {
  pos: number;

  constructor(
    readonly buf: Buffer,
    readonly format: string,
    /** Offset of buf[0] in the original file, for error messages. */
    readonly baseOffset = 0,
    readonly file?: string,
  ) {
    this.pos = 0;
  }

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  fail(reason: string, d: { field?: string; expected?: unknown; found?: unknown; at?: number } = {}): never {
    throw new FormatError({
      format: this.format,
      reason,
      field: d.field,
      offset: this.baseOffset + (d.at ?? this.pos),
      expected: d.expected,
      found: d.found,
      file: this.file,
    });
  }

  need(n: number, field: string): void {
    if (n < 0 || this.pos + n > this.buf.length) {
      this.fail('truncated', { field, expected: `${n} more bytes`, found: `${Math.max(0, this.remaining)}` });
    }
  }

  seek(pos: number, field = 'offset'): this {
    if (pos < 0 || pos > this.buf.length)
      this.fail('offset out of range', { field, expected: `<= ${this.buf.length}`, found: pos });
    this.pos = pos;
    return this;
  }

  skip(n: number, field = 'padding'): this {
    this.need(n, field);
    this.pos += n;
    return this;
  }

  u8(field: string): number {
    this.need(1, field);
    return this.buf.readUInt8(this.pos++);
  }
  u16le(field: string): number {
    this.need(2, field);
    const v = this.buf.readUInt16LE(this.pos);
    this.pos += 2;
    return v;
  }
  u16be(field: string): number {
    this.need(2, field);
    const v = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }
  u32le(field: string): number {
    this.need(4, field);
    const v = this.buf.readUInt32LE(this.pos);
    this.pos += 4;
    return v;
  }
  u32be(field: string): number {
    this.need(4, field);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }
  i32le(field: string): number {
    this.need(4, field);
    const v = this.buf.readInt32LE(this.pos);
    this.pos += 4;
    return v;
  }
  u64le(field: string): bigint {
    this.need(8, field);
    const v = this.buf.readBigUInt64LE(this.pos);
    this.pos += 8;
    return v;
  }
  u64be(field: string): bigint {
    this.need(8, field);
    const v = this.buf.readBigUInt64BE(this.pos);
    this.pos += 8;
    return v;
  }
  /** u64 that must fit a JS number (offsets and sizes of real images do). */
  u64leNum(field: string): number {
    return this.safeNumber(this.u64le(field), field);
  }
  u64beNum(field: string): number {
    return this.safeNumber(this.u64be(field), field);
  }
  bytes(n: number, field: string): Buffer {
    this.need(n, field);
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }
  /** Fixed-size NUL-padded ASCII/UTF-8 string. */
  cstring(n: number, field: string): string {
    const b = this.bytes(n, field);
    const end = b.indexOf(0);
    return b.subarray(0, end < 0 ? b.length : end).toString('utf8');
  }
  magic(expected: Buffer | string, field = 'magic'): void {
    const exp = typeof expected === 'string' ? Buffer.from(expected, 'latin1') : expected;
    const at = this.pos;
    const got = this.bytes(exp.length, field);
    if (!got.equals(exp))
      this.fail('bad magic', { field, at, expected: exp.toString('latin1'), found: got.toString('latin1') });
  }

  safeNumber(v: bigint, field: string): number {
    if (v > BigInt(Number.MAX_SAFE_INTEGER))
      this.fail('value too large', { field, expected: '<= 2^53', found: v.toString() });
    return Number(v);
  }
}

/** Throws a FormatError when a length/count read from input exceeds a sane bound. */
export function checkBound(
  format: string,
  field: string,
  value: number | bigint,
  max: number | bigint,
  offset?: number,
  file?: string,
): void {
  if (value < 0 || value > max) {
    throw new FormatError({
      format,
      reason: 'length out of range',
      field,
      offset,
      expected: `<= ${max}`,
      found: value,
      file,
    });
  }
}
