/**
 * DEX class listing (dalvik/docs/dex-format.html): reads the 0x70-byte header, then only
 * class_defs → type_ids → string_ids → string data for the defined classes' descriptors. Code,
 * methods and fields are never decoded.
 */

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
}

export interface DexClasses {
  header: DexHeader;
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

export function parseDexHeader(buf: Buffer, file?: string): DexHeader {
  const r = new BinaryReader(buf, FORMAT, 0, file);
  const magic = r.bytes(8, 'magic');
  if (
    magic.toString('latin1', 0, 4) !== 'dex\n' ||
    magic[7] !== 0 ||
    !/^\d{3}$/.test(magic.toString('latin1', 4, 7))
  )
    r.fail('bad magic', { field: 'magic', at: 0, expected: 'dex\\n0NN\\0', found: magic.toString('hex') });
  const version = magic.toString('latin1', 4, 7);
  r.seek(0x20);
  const fileSize = r.u32le('file_size');
  const headerSize = r.u32le('header_size');
  const endian = r.u32le('endian_tag');
  if (endian === REVERSE_ENDIAN_CONSTANT)
    r.fail('big-endian DEX files are not supported', { field: 'endian_tag', at: 0x28 });
  if (endian !== ENDIAN_CONSTANT)
    r.fail('bad endian tag', { field: 'endian_tag', at: 0x28, expected: ENDIAN_CONSTANT, found: endian });
  if (headerSize < HEADER_SIZE)
    r.fail('header too small', {
      field: 'header_size',
      at: 0x24,
      expected: `>= ${HEADER_SIZE}`,
      found: headerSize,
    });
  // Container DEX (v41) may declare a file_size of its own section; never trust it past the buffer.
  if (fileSize > buf.length || fileSize < HEADER_SIZE)
    r.fail('file_size out of range', {
      field: 'file_size',
      at: 0x20,
      expected: `${HEADER_SIZE}..${buf.length}`,
      found: fileSize,
    });
  r.seek(0x38);
  const stringIdsSize = r.u32le('string_ids_size');
  r.u32le('string_ids_off');
  const typeIdsSize = r.u32le('type_ids_size');
  r.seek(0x60);
  const classDefsSize = r.u32le('class_defs_size');
  return { version, fileSize, stringIdsSize, typeIdsSize, classDefsSize };
}

/** Lists the classes a DEX file defines. */
export function parseDexClasses(buf: Buffer, file?: string): DexClasses {
  const header = parseDexHeader(buf, file);
  const r = new BinaryReader(buf.subarray(0, header.fileSize), FORMAT, 0, file);
  r.seek(0x38);
  const stringIdsSize = r.u32le('string_ids_size');
  const stringIdsOff = r.u32le('string_ids_off');
  const typeIdsSize = r.u32le('type_ids_size');
  const typeIdsOff = r.u32le('type_ids_off');
  r.seek(0x60);
  const classDefsSize = r.u32le('class_defs_size');
  const classDefsOff = r.u32le('class_defs_off');
  const size = header.fileSize;
  checkBound(FORMAT, 'string_ids_size', stringIdsSize, Math.floor(size / 4), 0x38, file);
  checkBound(FORMAT, 'type_ids_size', typeIdsSize, Math.min(65536, Math.floor(size / 4)), 0x40, file);
  checkBound(FORMAT, 'class_defs_size', classDefsSize, Math.floor(size / 32), 0x60, file);
  const inFile = (off: number, len: number, field: string, at: number) => {
    if (off + len > size)
      r.fail('section out of range', { field, at, expected: `end <= ${size}`, found: off + len });
  };
  inFile(stringIdsOff, stringIdsSize * 4, 'string_ids_off', 0x3c);
  inFile(typeIdsOff, typeIdsSize * 4, 'type_ids_off', 0x44);
  inFile(classDefsOff, classDefsSize * 32, 'class_defs_off', 0x64);
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
    // uleb128 utf16_size (ignored), then MUTF-8 bytes up to NUL.
    for (let k = 0; k < 5; k++) if ((r.u8('utf16_size') & 0x80) === 0) break;
    const start = r.pos;
    const end = buf.indexOf(0, start);
    if (end < 0 || end >= size) r.fail('unterminated string', { field: `string ${descIdx}`, at: start });
    classes[i] = descriptorToClassName(decodeMutf8(buf, start, end));
  }
  return { header, classes };
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
