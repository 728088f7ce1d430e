/**
 * Android binary XML (AXML, "ResXMLTree") as written by aapt/aapt2 into AndroidManifest.xml and
 * res/*.xml. Layout from AOSP frameworks/base/libs/androidfw/include/androidfw/ResourceTypes.h:
 * every structure is a chunk {u16 type, u16 headerSize, u32 size}; the document is a RES_XML_TYPE
 * chunk holding a string pool, an optional resource map (attribute name index → resource id) and
 * namespace/element/CDATA nodes. Also home of the string pool and typed values shared with arsc.
 */
import { FormatError } from '../../errors.ts';
import { BinaryReader, checkBound } from '../binary.ts';

export const ChunkType = {
  NULL: 0x0000,
  STRING_POOL: 0x0001,
  TABLE: 0x0002,
  XML: 0x0003,
  XML_START_NAMESPACE: 0x0100,
  XML_END_NAMESPACE: 0x0101,
  XML_START_ELEMENT: 0x0102,
  XML_END_ELEMENT: 0x0103,
  XML_CDATA: 0x0104,
  XML_RESOURCE_MAP: 0x0180,
  TABLE_PACKAGE: 0x0200,
  TABLE_TYPE: 0x0201,
  TABLE_TYPE_SPEC: 0x0202,
  TABLE_LIBRARY: 0x0203,
  TABLE_OVERLAYABLE: 0x0204,
  TABLE_OVERLAYABLE_POLICY: 0x0205,
  TABLE_STAGED_ALIAS: 0x0206,
} as const;

/** Res_value data types (ResourceTypes.h). */
export const ValueType = {
  NULL: 0x00,
  REFERENCE: 0x01,
  ATTRIBUTE: 0x02,
  STRING: 0x03,
  FLOAT: 0x04,
  DIMENSION: 0x05,
  FRACTION: 0x06,
  DYNAMIC_REFERENCE: 0x07,
  DYNAMIC_ATTRIBUTE: 0x08,
  INT_DEC: 0x10,
  INT_HEX: 0x11,
  INT_BOOLEAN: 0x12,
  INT_COLOR_ARGB8: 0x1c,
  INT_COLOR_RGB8: 0x1d,
  INT_COLOR_ARGB4: 0x1e,
  INT_COLOR_RGB4: 0x1f,
} as const;

const NO_ENTRY = 0xffffffff;

export interface ChunkHeader {
  type: number;
  headerSize: number;
  size: number;
  /** Offset of the chunk within the buffer being parsed. */
  start: number;
}

/** Reads a chunk header at r.pos and checks it fits inside `limit`; leaves r.pos after the 8 bytes. */
export function readChunkHeader(r: BinaryReader, limit: number, what: string): ChunkHeader {
  const start = r.pos;
  const type = r.u16le(`${what} type`);
  const headerSize = r.u16le(`${what} header size`);
  const size = r.u32le(`${what} size`);
  if (headerSize < 8 || headerSize > size || start + size > limit)
    r.fail('chunk out of range', {
      field: `${what} (type 0x${type.toString(16)})`,
      at: start,
      expected: `8 <= headerSize <= size, end <= ${limit}`,
      found: `headerSize ${headerSize}, size ${size}`,
    });
  return { type, headerSize, size, start };
}

/**
 * ResStringPool: UTF-8 or UTF-16 strings, decoded lazily (framework-res has ~100k strings and
 * most callers need a handful).
 */
export class StringPool {
  readonly count: number;
  readonly utf8: boolean;
  private readonly offsets: number[];
  private readonly stringsStart: number;
  private readonly cache = new Map<number, string>();

  /** Own reader over the same bytes, so lazy decoding never moves the caller's position. */
  private readonly r: BinaryReader;

  constructor(outer: BinaryReader, h: ChunkHeader) {
    const r = new BinaryReader(outer.buf, outer.format, outer.baseOffset, outer.file);
    this.r = r;
    const format = r.format;
    r.seek(h.start + 8);
    const count = r.u32le('string count');
    const styleCount = r.u32le('style count');
    const flags = r.u32le('string pool flags');
    const stringsStart = r.u32le('strings start');
    r.u32le('styles start');
    checkBound(
      format,
      'string count',
      count,
      Math.floor((h.size - h.headerSize) / 4),
      r.baseOffset + h.start + 8,
      r.file,
    );
    checkBound(
      format,
      'style count',
      styleCount,
      Math.floor((h.size - h.headerSize) / 4),
      r.baseOffset + h.start + 12,
      r.file,
    );
    this.count = count;
    this.utf8 = (flags & 0x100) !== 0;
    r.seek(h.start + h.headerSize);
    this.offsets = new Array(count);
    for (let i = 0; i < count; i++) this.offsets[i] = r.u32le('string offset');
    if (count > 0 && (stringsStart < h.headerSize || stringsStart > h.size))
      r.fail('strings start out of range', {
        field: 'strings start',
        at: h.start + 20,
        expected: `<= ${h.size}`,
        found: stringsStart,
      });
    this.stringsStart = h.start + stringsStart;
    this.end = h.start + h.size;
  }

  private readonly end: number;

  /** The string at `index`; null for the "no string" index 0xffffffff. */
  get(index: number): string | null {
    if (index === NO_ENTRY || index === -1) return null;
    if (index < 0 || index >= this.count)
      this.r.fail('string index out of range', {
        field: 'string reference',
        expected: `< ${this.count}`,
        found: index,
      });
    const hit = this.cache.get(index);
    if (hit !== undefined) return hit;
    const s = this.decode(index);
    this.cache.set(index, s);
    return s;
  }

  private decode(index: number): string {
    const r = this.r;
    const at = this.stringsStart + this.offsets[index]!;
    if (at >= this.end)
      r.fail('string offset out of range', { field: `string ${index}`, at, expected: `< ${this.end}` });
    r.seek(at);
    if (this.utf8) {
      // u16 length (chars, ignored) then u8-encoded byte length; each 1 or 2 bytes.
      let n = r.u8('utf16 length');
      if (n & 0x80) r.u8('utf16 length');
      n = r.u8('utf8 length');
      if (n & 0x80) n = ((n & 0x7f) << 8) | r.u8('utf8 length');
      if (r.pos + n > this.end) r.fail('string past end of pool', { field: `string ${index}`, at });
      return r.bytes(n, `string ${index}`).toString('utf8');
    }
    let n = r.u16le('utf16 length');
    if (n & 0x8000) n = ((n & 0x7fff) << 16) | r.u16le('utf16 length');
    if (r.pos + 2 * n > this.end) r.fail('string past end of pool', { field: `string ${index}`, at });
    return r.bytes(2 * n, `string ${index}`).toString('utf16le');
  }
}

/** A typed attribute or resource value (Res_value), with its raw type and data kept for callers. */
export interface TypedValue {
  type: number;
  data: number;
  /** Decoded: string, number, boolean, or "@0x7f010000"-style reference text. */
  value: string | number | boolean | null;
}

const DIMENSION_UNITS = ['px', 'dp', 'sp', 'pt', 'in', 'mm'];
const RADIX_MULTS = [1 / (1 << 8), 1 / (1 << 15), 1 / (1 << 23), 1 / 2 ** 31];

function complexToFloat(data: number): number {
  return (data & 0xffffff00) * RADIX_MULTS[(data >> 4) & 3]!;
}

/** Decodes a Res_value the way `aapt dump xmltree` prints it, strings resolved through `pool`. */
export function decodeValue(
  type: number,
  data: number,
  pool: StringPool | null,
  raw: string | null = null,
): TypedValue {
  let value: TypedValue['value'];
  switch (type) {
    case ValueType.NULL:
      value = null;
      break;
    case ValueType.REFERENCE:
    case ValueType.DYNAMIC_REFERENCE:
      value = `@0x${(data >>> 0).toString(16).padStart(8, '0')}`;
      break;
    case ValueType.ATTRIBUTE:
    case ValueType.DYNAMIC_ATTRIBUTE:
      value = `?0x${(data >>> 0).toString(16).padStart(8, '0')}`;
      break;
    case ValueType.STRING:
      value = pool ? pool.get(data >>> 0) : raw;
      break;
    case ValueType.FLOAT: {
      const b = Buffer.alloc(4);
      b.writeUInt32LE(data >>> 0);
      value = b.readFloatLE(0);
      break;
    }
    case ValueType.DIMENSION:
      value = `${complexToFloat(data)}${DIMENSION_UNITS[data & 0xf] ?? ''}`;
      break;
    case ValueType.FRACTION:
      value = `${complexToFloat(data) * 100}%${(data & 0xf) === 1 ? 'p' : ''}`;
      break;
    case ValueType.INT_BOOLEAN:
      value = data !== 0;
      break;
    case ValueType.INT_DEC:
      value = data | 0;
      break;
    default:
      value = type >= 0x10 && type <= 0x1f ? data >>> 0 : (raw ?? null);
  }
  return { type, data: data >>> 0, value };
}

export interface XmlAttribute {
  namespace: string | null;
  name: string;
  /** Resource id of the attribute (from the resource map), e.g. 0x0101021b for android:versionCode. */
  resourceId: number | null;
  /** The raw string value aapt kept, if any. */
  raw: string | null;
  typed: TypedValue;
}

export interface XmlElement {
  namespace: string | null;
  name: string;
  line: number;
  attributes: XmlAttribute[];
  children: XmlElement[];
  /** Concatenated CDATA directly under this element. */
  text: string;
}

export interface XmlDocument {
  root: XmlElement;
  /** Namespace prefix → URI, as declared. */
  namespaces: Record<string, string>;
}

const MAX_DEPTH = 256;

/** Parses a binary XML document; any structural problem is a FormatError with the offset. */
export function parseAxml(buf: Buffer, file?: string): XmlDocument {
  const r = new BinaryReader(buf, 'axml', 0, file);
  const top = readChunkHeader(r, buf.length, 'XML chunk');
  if (top.type !== ChunkType.XML)
    r.fail('not a binary XML document', {
      field: 'chunk type',
      at: 0,
      expected: ChunkType.XML,
      found: top.type,
    });
  let pool: StringPool | null = null;
  let resMap: number[] = [];
  const namespaces: Record<string, string> = {};
  const stack: XmlElement[] = [];
  let root: XmlElement | null = null;
  const end = top.start + top.size;
  let pos = top.start + top.headerSize;
  while (pos + 8 <= end) {
    r.seek(pos);
    const h = readChunkHeader(r, end, 'XML node');
    if (h.size < 8) r.fail('chunk size too small', { at: pos, found: h.size });
    switch (h.type) {
      case ChunkType.STRING_POOL:
        pool = new StringPool(r, h);
        break;
      case ChunkType.XML_RESOURCE_MAP: {
        r.seek(h.start + h.headerSize);
        const n = Math.floor((h.size - h.headerSize) / 4);
        resMap = new Array(n);
        for (let i = 0; i < n; i++) resMap[i] = r.u32le('resource id');
        break;
      }
      case ChunkType.XML_START_NAMESPACE:
      case ChunkType.XML_END_NAMESPACE: {
        const p = needPool(pool, r, h);
        r.seek(h.start + h.headerSize);
        const prefix = p.get(r.u32le('namespace prefix'));
        const uri = p.get(r.u32le('namespace uri'));
        if (h.type === ChunkType.XML_START_NAMESPACE && prefix !== null && uri !== null)
          namespaces[prefix] = uri;
        break;
      }
      case ChunkType.XML_START_ELEMENT: {
        const p = needPool(pool, r, h);
        r.seek(h.start + 8);
        const line = r.u32le('line number');
        r.seek(h.start + h.headerSize);
        const extAt = r.pos;
        const ns = p.get(r.u32le('element namespace'));
        const name = p.get(r.u32le('element name')) ?? '';
        const attrStart = r.u16le('attribute start');
        const attrSize = r.u16le('attribute size');
        const attrCount = r.u16le('attribute count');
        if (attrCount > 0 && attrSize < 20)
          r.fail('attribute size too small', { field: 'attribute size', expected: '>= 20', found: attrSize });
        if (extAt + attrStart + attrCount * attrSize > h.start + h.size)
          r.fail('attributes past end of element chunk', {
            field: 'attribute count',
            at: extAt,
            found: attrCount,
          });
        const attributes: XmlAttribute[] = [];
        for (let i = 0; i < attrCount; i++) {
          r.seek(extAt + attrStart + i * attrSize);
          const ans = p.get(r.u32le('attribute namespace'));
          const nameIdx = r.u32le('attribute name');
          const rawIdx = r.u32le('attribute raw value');
          r.u16le('value size');
          r.u8('value res0');
          const type = r.u8('value type');
          const data = r.u32le('value data');
          const raw = p.get(rawIdx);
          const resourceId = nameIdx < resMap.length ? resMap[nameIdx]! : null;
          attributes.push({
            namespace: ans,
            name: p.get(nameIdx) ?? '',
            resourceId,
            raw,
            typed: decodeValue(type, data, p, raw),
          });
        }
        const el: XmlElement = { namespace: ns, name, line, attributes, children: [], text: '' };
        if (stack.length >= MAX_DEPTH)
          r.fail('elements nested too deeply', { at: h.start, expected: `<= ${MAX_DEPTH}` });
        if (stack.length) stack[stack.length - 1]!.children.push(el);
        else if (!root) root = el;
        else r.fail('more than one root element', { at: h.start, field: name });
        stack.push(el);
        break;
      }
      case ChunkType.XML_END_ELEMENT: {
        if (!stack.length) r.fail('end element without start', { at: h.start });
        stack.pop();
        break;
      }
      case ChunkType.XML_CDATA: {
        const p = needPool(pool, r, h);
        r.seek(h.start + h.headerSize);
        const text = p.get(r.u32le('cdata')) ?? '';
        if (stack.length) stack[stack.length - 1]!.text += text;
        break;
      }
      default:
        // Unknown chunks are skipped, as the platform's ResXMLParser does.
        break;
    }
    pos = h.start + h.size;
  }
  if (!root) throw new FormatError({ format: 'axml', reason: 'no root element', file });
  return { root, namespaces };
}

function needPool(pool: StringPool | null, r: BinaryReader, h: ChunkHeader): StringPool {
  if (!pool) r.fail('node before string pool', { at: h.start, field: `chunk 0x${h.type.toString(16)}` });
  return pool;
}

export const ANDROID_NS = 'http://schemas.android.com/apk/res/android';
