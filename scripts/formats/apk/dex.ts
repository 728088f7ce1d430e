/**
 * DEX class listing (dalvik/docs/dex-format.html): reads the 0x70-byte header, then only
 * class_defs → type_ids → string_ids → string data for the defined classes' descriptors. Code,
 * methods and fields are never decoded.
 */

import { FormatError } from '../../errors.ts';
import { BinaryReader, checkBound } from '../binary.ts';

const FORMAT = 'dex';
const HEADER_SIZE = 0x70;
const ENDIAN_CONSTANT = 0x12345678;
const REVERSE_ENDIAN_CONSTANT = 0x78563412;

export interface DexHeader {
  /** "035", "037", "038", "039", "040", "041". */
  version: string;
  fileSize: number;
  stringIdsSize: number;
  typeIdsSize: number;
  classDefsSize: number;
  /** v41 container: total size of all dex files in the container, and this header's offset. */
  containerSize?: number;
  headerOffset?: number;
}

export interface DexClasses {
  /** The first (or only) dex header. */
  header: DexHeader;
  /** Number of dex files: 1, or the dex count of a v41 container. */
  dexCount: number;
  /** Java names of the classes this file defines, e.g. "com.google.firebase.analytics.FirebaseAnalytics". */
  classes: string[];
}

/** Modified UTF-8 (DEX/JNI): like CESU-8 with NUL as C0 80. Fast path for ASCII. */
function decodeMutf8(b: Buffer, start: number, end: number): string {
  let ascii = true;
  for (let i = start; i < end; i++)
    if (b[i]! >= 0x80) {
      ascii = false;
      break;
    }
  if (ascii) return b.toString('latin1', start, end);
  let out = '';
  for (let i = start; i < end; ) {
    const c = b[i]!;
    if (c < 0x80) {
      out += String.fromCharCode(c);
      i++;
    } else if ((c & 0xe0) === 0xc0 && i + 1 < end) {
      out += String.fromCharCode(((c & 0x1f) << 6) | (b[i + 1]! & 0x3f));
      i += 2;
    } else if ((c & 0xf0) === 0xe0 && i + 2 < end) {
      out += String.fromCharCode(((c & 0x0f) << 12) | ((b[i + 1]! & 0x3f) << 6) | (b[i + 2]! & 0x3f));
      i += 3;
    } else {
      out += '\ufffd';
      i++;
    }
  }
  return out;
}

/** "Lcom/foo/Bar;" → "com.foo.Bar" (arrays/primitives are returned unchanged). */
export function descriptorToClassName(d: string): string {
  if (d.length >= 2 && d[0] === 'L' && d[d.length - 1] === ';') return d.slice(1, -1).replace(/\//g, '.');
  return d;
}

/** v41 header_item adds container_size and header_offset after data_off. */
const CONTAINER_HEADER_SIZE = 0x78;

export function parseDexHeader(buf: Buffer, file?: string, at = 0): DexHeader {
  const r = new BinaryReader(buf, FORMAT, 0, file);
  r.seek(at);
  const magic = r.bytes(8, 'magic');
  if (
    magic.toString('latin1', 0, 4) !== 'dex\n' ||
    magic[7] !== 0 ||
    !/^\d{3}$/.test(magic.toString('latin1', 4, 7))
  )
    r.fail('bad magic', { field: 'magic', at, expected: 'dex\\n0NN\\0', found: magic.toString('hex') });
  const version = magic.toString('latin1', 4, 7);
  r.seek(at + 0x20);
  const fileSize = r.u32le('file_size');
  const headerSize = r.u32le('header_size');
  const endian = r.u32le('endian_tag');
  if (endian === REVERSE_ENDIAN_CONSTANT)
    r.fail('big-endian DEX files are not supported', { field: 'endian_tag', at: at + 0x28 });
  if (endian !== ENDIAN_CONSTANT)
    r.fail('bad endian tag', {
      field: 'endian_tag',
      at: at + 0x28,
      expected: ENDIAN_CONSTANT,
      found: endian,
    });
  if (headerSize < HEADER_SIZE)
    r.fail('header too small', {
      field: 'header_size',
      at: at + 0x24,
      expected: `>= ${HEADER_SIZE}`,
      found: headerSize,
    });
  // In a v41 container, file_size is this dex's own part; it must still lie inside the buffer.
  if (fileSize > buf.length - at || fileSize < HEADER_SIZE)
    r.fail('file_size out of range', {
      field: 'file_size',
      at: at + 0x20,
      expected: `${HEADER_SIZE}..${buf.length - at}`,
      found: fileSize,
    });
  r.seek(at + 0x38);
  const stringIdsSize = r.u32le('string_ids_size');
  r.u32le('string_ids_off');
  const typeIdsSize = r.u32le('type_ids_size');
  r.seek(at + 0x60);
  const classDefsSize = r.u32le('class_defs_size');
  const header: DexHeader = { version, fileSize, stringIdsSize, typeIdsSize, classDefsSize };
  if (Number(version) >= 41 && headerSize >= CONTAINER_HEADER_SIZE) {
    r.seek(at + 0x70);
    header.containerSize = r.u32le('container_size');
    header.headerOffset = r.u32le('header_offset');
    if (header.headerOffset !== at)
      r.fail('header_offset does not match the header position', {
        field: 'header_offset',
        at: at + 0x74,
        expected: at,
        found: header.headerOffset,
      });
    if (header.containerSize > buf.length || header.containerSize < at + fileSize)
      r.fail('container_size out of range', {
        field: 'container_size',
        at: at + 0x70,
        expected: `${at + fileSize}..${buf.length}`,
        found: header.containerSize,
      });
  }
  return header;
}

/**
 * Lists the classes a DEX file defines. A v41 container (several dex headers back to back, one
 * shared data area) yields the classes of every dex in it; as in ART's DexFile, all offsets of a
 * standard dex are relative to the start of its data, which for a container is the container.
 */
export function parseDexClasses(buf: Buffer, file?: string): DexClasses {
  const header = parseDexHeader(buf, file);
  if (header.containerSize === undefined)
    return { header, classes: classesOf(buf, 0, header.fileSize, file), dexCount: 1 };
  const limit = header.containerSize;
  const classes: string[] = [];
  let dexCount = 0;
  for (let at = 0; at < limit; ) {
    const h = at === 0 ? header : parseDexHeader(buf, file, at);
    if (h.containerSize !== limit)
      throw new FormatError({
        format: FORMAT,
        reason: 'dex in a container has a different container_size',
        field: 'container_size',
        offset: at + 0x70,
        expected: limit,
        found: h.containerSize ?? 'no container fields',
        file,
      });
    for (const c of classesOf(buf, at, limit, file)) classes.push(c);
    dexCount++;
    at += h.fileSize;
  }
  return { header, classes, dexCount };
}

/** Classes of the dex whose header is at `at`; offsets are from the data start (0), within `size`. */
function classesOf(buf: Buffer, at: number, size: number, file?: string): string[] {
  const r = new BinaryReader(buf.subarray(0, size), FORMAT, 0, file);
  r.seek(at + 0x38);
  const stringIdsSize = r.u32le('string_ids_size');
  const stringIdsOff = r.u32le('string_ids_off');
  const typeIdsSize = r.u32le('type_ids_size');
  const typeIdsOff = r.u32le('type_ids_off');
  r.seek(at + 0x60);
  const classDefsSize = r.u32le('class_defs_size');
  const classDefsOff = r.u32le('class_defs_off');
  checkBound(FORMAT, 'string_ids_size', stringIdsSize, Math.floor(size / 4), at + 0x38, file);
  checkBound(FORMAT, 'type_ids_size', typeIdsSize, Math.min(65536, Math.floor(size / 4)), at + 0x40, file);
  checkBound(FORMAT, 'class_defs_size', classDefsSize, Math.floor(size / 32), at + 0x60, file);
  const inFile = (off: number, len: number, field: string, fieldAt: number) => {
    if (off + len > size)
      r.fail('section out of range', { field, at: fieldAt, expected: `end <= ${size}`, found: off + len });
  };
  inFile(stringIdsOff, stringIdsSize * 4, 'string_ids_off', at + 0x3c);
  inFile(typeIdsOff, typeIdsSize * 4, 'type_ids_off', at + 0x44);
  inFile(classDefsOff, classDefsSize * 32, 'class_defs_off', at + 0x64);
  const classes: string[] = new Array(classDefsSize);
  for (let i = 0; i < classDefsSize; i++) {
    r.seek(classDefsOff + i * 32);
    const classIdx = r.u32le('class_idx');
    if (classIdx >= typeIdsSize)
      r.fail('class_idx out of range', {
        field: `class_defs[${i}].class_idx`,
        expected: `< ${typeIdsSize}`,
        found: classIdx,
      });
    r.seek(typeIdsOff + classIdx * 4);
    const descIdx = r.u32le('descriptor_idx');
    if (descIdx >= stringIdsSize)
      r.fail('descriptor_idx out of range', {
        field: `type_ids[${classIdx}]`,
        expected: `< ${stringIdsSize}`,
        found: descIdx,
      });
    r.seek(stringIdsOff + descIdx * 4);
    const dataOff = r.u32le('string_data_off');
    r.seek(dataOff, `string_data_off of string ${descIdx}`);
    // uleb128 utf16_size (at most 5 bytes; ignored), then MUTF-8 bytes up to NUL.
    let k = 0;
    while (r.u8('utf16_size') & 0x80)
      if (++k >= 5)
        r.fail('uleb128 longer than 5 bytes', { field: `string ${descIdx} utf16_size`, at: dataOff });
    const start = r.pos;
    const end = buf.indexOf(0, start);
    if (end < 0 || end >= size) r.fail('unterminated string', { field: `string ${descIdx}`, at: start });
    classes[i] = descriptorToClassName(decodeMutf8(buf, start, end));
  }
  return classes;
}

/** classes.dex, classes2.dex, … in the platform's load order (stops at the first gap, like ART). */
export function dexEntryNames(names: Iterable<string>): string[] {
  const set = new Set(names);
  const out: string[] = [];
  if (set.has('classes.dex')) out.push('classes.dex');
  for (let i = 2; set.has(`classes${i}.dex`); i++) out.push(`classes${i}.dex`);
  return out;
}

export function isDex(head: Buffer): boolean {
  return head.length >= 8 && head.toString('latin1', 0, 4) === 'dex\n';
}
