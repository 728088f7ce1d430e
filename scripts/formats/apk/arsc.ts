/**
 * resources.arsc (ResTable) reader: packages, type specs and typed entries, from AOSP
 * ResourceTypes.h. Only indexes chunk positions up front; entries are decoded on lookup, so even
 * framework-res.apk (tens of thousands of resources) opens quickly. `resolve` answers for the
 * default configuration (the one a device without a matching qualifier falls back to), which is
 * what `aapt dump badging` prints as `application-label:`.
 */
import { BinaryReader } from '../binary.ts';
import {
  type ChunkHeader,
  ChunkType,
  decodeValue,
  readChunkHeader,
  StringPool,
  type TypedValue,
  ValueType,
} from './axml.ts';

const FORMAT = 'arsc';
const NO_ENTRY = 0xffffffff;
const FLAG_COMPLEX = 0x0001;
const FLAG_COMPACT = 0x0008;
const TYPE_FLAG_SPARSE = 0x01;
const TYPE_FLAG_OFFSET16 = 0x02;

interface TypeChunk {
  start: number;
  headerSize: number;
  size: number;
  flags: number;
  entryCount: number;
  entriesStart: number;
  /** Bytes of ResTable_config after its size field; all-zero means the default configuration. */
  configScore: number;
}

interface ResPackageIndex {
  id: number;
  name: string;
  typeStrings: StringPool | null;
  keyStrings: StringPool | null;
  typeIdOffset: number;
  types: Map<number, TypeChunk[]>;
}

export interface ResourceEntry {
  id: number;
  /** "package:type/name", e.g. "android:string/ok". */
  name: string;
  /** Null for complex (bag) entries such as styles and plurals. */
  value: TypedValue | null;
  complex: boolean;
}

const MAX_REF_DEPTH = 16;

export class ResourceTable {
  readonly packages: ReadonlyArray<{ id: number; name: string }>;
  private readonly r: BinaryReader;

  private constructor(
    buf: Buffer,
    file: string | undefined,
    readonly strings: StringPool | null,
    private readonly pkgs: Map<number, ResPackageIndex>,
  ) {
    this.r = new BinaryReader(buf, FORMAT, 0, file);
    this.packages = [...pkgs.values()].map((p) => ({ id: p.id, name: p.name }));
  }

  static parse(buf: Buffer, file?: string): ResourceTable {
    const r = new BinaryReader(buf, FORMAT, 0, file);
    const top = readChunkHeader(r, buf.length, 'table chunk');
    if (top.type !== ChunkType.TABLE)
      r.fail('not a resource table', {
        field: 'chunk type',
        at: 0,
        expected: ChunkType.TABLE,
        found: top.type,
      });
    r.u32le('package count');
    let strings: StringPool | null = null;
    const pkgs = new Map<number, ResPackageIndex>();
    const end = top.start + top.size;
    let pos = top.start + top.headerSize;
    while (pos + 8 <= end) {
      r.seek(pos);
      const h = readChunkHeader(r, end, 'table child');
      if (h.type === ChunkType.STRING_POOL && !strings) strings = new StringPool(r, h);
      else if (h.type === ChunkType.TABLE_PACKAGE) {
        const p = parsePackage(r, h);
        if (!pkgs.has(p.id)) pkgs.set(p.id, p);
      }
      pos = h.start + h.size;
    }
    return new ResourceTable(buf, file, strings, pkgs);
  }

  /** The entry for `id` in the default configuration (or the closest one present). */
  entry(id: number): ResourceEntry | null {
    const pkg = this.pkgs.get((id >>> 24) & 0xff);
    if (!pkg) return null;
    const typeId = (id >>> 16) & 0xff;
    const entryIdx = id & 0xffff;
    const chunks = pkg.types.get(typeId);
    if (!chunks) return null;
    for (const t of chunks) {
      const off = this.entryOffset(t, entryIdx);
      if (off === null) continue;
      return this.readEntry(pkg, typeId, id, t.start + t.entriesStart + off, t.start + t.size);
    }
    return null;
  }

  /** The entry for `id` in every configuration that defines it, the default configuration first. */
  entryInAllConfigs(id: number): ResourceEntry[] {
    const pkg = this.pkgs.get((id >>> 24) & 0xff);
    const typeId = (id >>> 16) & 0xff;
    const out: ResourceEntry[] = [];
    for (const t of pkg?.types.get(typeId) ?? []) {
      const off = this.entryOffset(t, id & 0xffff);
      if (off !== null)
        out.push(this.readEntry(pkg!, typeId, id, t.start + t.entriesStart + off, t.start + t.size));
    }
    return out;
  }

  /** Follows references until a non-reference value; null when missing, complex or a cycle. */
  resolve(id: number): TypedValue | null {
    let cur = id;
    for (let depth = 0; depth < MAX_REF_DEPTH; depth++) {
      const e = this.entry(cur);
      if (!e?.value) return null;
      if (e.value.type !== ValueType.REFERENCE && e.value.type !== ValueType.DYNAMIC_REFERENCE)
        return e.value;
      cur = e.value.data;
    }
    return null;
  }

  /** Convenience: the resolved value as text ("Gen" for @string/app_name). */
  resolveString(id: number): string | null {
    const v = this.resolve(id);
    if (!v || v.value === null) return null;
    return String(v.value);
  }

  /** Every simple entry in the default-first configuration, for dumps and tests. */
  *allEntries(): Generator<ResourceEntry> {
    for (const pkg of this.pkgs.values())
      for (const [typeId, chunks] of pkg.types) {
        const count = Math.max(...chunks.map((c) => c.entryCount));
        for (let i = 0; i < count; i++) {
          const e = this.entry(((pkg.id << 24) | (typeId << 16) | i) >>> 0);
          if (e) yield e;
        }
      }
  }

  private entryOffset(t: TypeChunk, idx: number): number | null {
    const r = this.r;
    const table = t.start + t.headerSize;
    if (t.flags & TYPE_FLAG_SPARSE) {
      // Sorted {u16 index, u16 offset/4} pairs: binary search.
      let lo = 0;
      let hi = t.entryCount - 1;
      while (lo <= hi) {
        const mid = (lo + hi) >> 1;
        r.seek(table + mid * 4);
        const k = r.u16le('sparse index');
        const o = r.u16le('sparse offset');
        if (k === idx) return o * 4;
        if (k < idx) lo = mid + 1;
        else hi = mid - 1;
      }
      return null;
    }
    if (idx >= t.entryCount) return null;
    if (t.flags & TYPE_FLAG_OFFSET16) {
      r.seek(table + idx * 2);
      const o = r.u16le('entry offset');
      return o === 0xffff ? null : o * 4;
    }
    r.seek(table + idx * 4);
    const o = r.u32le('entry offset');
    return o === NO_ENTRY ? null : o;
  }

  private readEntry(
    pkg: ResPackageIndex,
    typeId: number,
    id: number,
    at: number,
    limit: number,
  ): ResourceEntry {
    const r = this.r;
    if (at + 8 > limit) r.fail('entry past end of type chunk', { at, field: `entry 0x${id.toString(16)}` });
    r.seek(at);
    const size = r.u16le('entry size');
    const flags = r.u16le('entry flags');
    let key: number;
    let value: TypedValue | null = null;
    const complex = (flags & FLAG_COMPLEX) !== 0;
    if (flags & FLAG_COMPACT) {
      // Compact entry: the "size" field is the key index, flags' high byte the value type.
      key = size;
      const data = r.u32le('compact data');
      value = decodeValue(flags >>> 8, data, this.strings);
    } else {
      key = r.u32le('entry key');
      if (!complex) {
        if (size < 8 || at + size + 8 > limit)
          r.fail('entry size out of range', { at, field: 'entry size', found: size });
        r.seek(at + size);
        r.u16le('value size');
        r.u8('value res0');
        const type = r.u8('value type');
        const data = r.u32le('value data');
        value = decodeValue(type, data, this.strings);
      }
    }
    const typeName = pkg.typeStrings?.get(typeId - 1 - pkg.typeIdOffset) ?? `type${typeId}`;
    const keyName = pkg.keyStrings?.get(key) ?? `0x${key.toString(16)}`;
    return { id, name: `${pkg.name}:${typeName}/${keyName}`, value, complex };
  }
}

function parsePackage(r: BinaryReader, h: ChunkHeader): ResPackageIndex {
  r.seek(h.start + 8);
  const id = r.u32le('package id');
  const name = r
    .bytes(256, 'package name')
    .toString('utf16le')
    .replace(/\0[\s\S]*$/, '');
  const typeStringsOff = r.u32le('type strings offset');
  r.u32le('last public type');
  const keyStringsOff = r.u32le('key strings offset');
  r.u32le('last public key');
  const typeIdOffset = h.headerSize >= 288 ? r.u32le('type id offset') : 0;
  const end = h.start + h.size;
  let typeStrings: StringPool | null = null;
  let keyStrings: StringPool | null = null;
  const types = new Map<number, TypeChunk[]>();
  let pos = h.start + h.headerSize;
  while (pos + 8 <= end) {
    r.seek(pos);
    const c = readChunkHeader(r, end, 'package child');
    if (c.type === ChunkType.STRING_POOL) {
      const rel = c.start - h.start;
      if (rel === typeStringsOff || (!typeStrings && rel !== keyStringsOff))
        typeStrings = new StringPool(r, c);
      else keyStrings = new StringPool(r, c);
    } else if (c.type === ChunkType.TABLE_TYPE) {
      r.seek(c.start + 8);
      const typeId = r.u8('type id');
      const flags = r.u8('type flags');
      r.u16le('type reserved');
      const entryCount = r.u32le('entry count');
      const entriesStart = r.u32le('entries start');
      const cfgAt = r.pos;
      const cfgSize = r.u32le('config size');
      const cfgEnd = Math.min(cfgAt + Math.max(4, cfgSize), c.start + c.headerSize);
      let score = 0;
      for (let i = cfgAt + 4; i < cfgEnd; i++) if (r.buf[i] !== 0) score++;
      const entrySlot =
        flags & TYPE_FLAG_SPARSE || flags & TYPE_FLAG_OFFSET16 ? (flags & TYPE_FLAG_SPARSE ? 4 : 2) : 4;
      if (c.headerSize + entryCount * entrySlot > c.size || entriesStart > c.size)
        r.fail('type chunk entries out of range', {
          at: c.start,
          field: `type ${typeId} entry count`,
          found: entryCount,
        });
      const list = types.get(typeId) ?? [];
      list.push({
        start: c.start,
        headerSize: c.headerSize,
        size: c.size,
        flags,
        entryCount,
        entriesStart,
        configScore: score,
      });
      types.set(typeId, list);
    }
    pos = c.start + c.size;
  }
  for (const list of types.values()) list.sort((a, b) => a.configScore - b.configScore);
  return { id, name, typeStrings, keyStrings, typeIdOffset, types };
}

export function parseArsc(buf: Buffer, file?: string): ResourceTable {
  return ResourceTable.parse(buf, file);
}
