/**
 * DEX layouts the smali/baksmali here cannot produce: the v41 container (several dex headers
 * sharing one data area, offsets from the container start, as ART's DexFile reads them) and
 * MUTF-8 descriptors. Built by a minimal writer (header, string_ids, type_ids, class_defs, string data).
 */
import { describe, expect, it } from 'vitest';
import { OmieError } from '../../scripts/errors.ts';
import { parseDexClasses } from '../../scripts/formats/apk/dex.ts';
import { mutate, prng } from '../helpers.ts';

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}

/** Modified UTF-8: UTF-16 units, each as 1–3 bytes, NUL as C0 80 (so surrogates are encoded separately). */
function mutf8(s: string): number[] {
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c !== 0 && c < 0x80) out.push(c);
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 0x3f));
    else out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f));
  }
  return out;
}

/**
 * One dex (version < 41) or a v41 container of several: each part is header + string_ids +
 * type_ids + class_defs; all string data (shared) is at the end, inside the last part.
 */
function buildDex(parts: string[][], version: string): Buffer {
  const container = parts.length > 1 || version === '041';
  const headerSize = container ? 0x78 : 0x70;
  const partSize = (n: number) => headerSize + n * 4 + n * 4 + n * 32;
  const partAt: number[] = [];
  let pos = 0;
  for (const p of parts) {
    partAt.push(pos);
    pos += partSize(p.length);
  }
  const dataAt = pos;
  const data: number[] = [];
  const stringOff: number[][] = parts.map((p) =>
    p.map((cls) => {
      const off = dataAt + data.length;
      const d = `L${cls.replace(/\./g, '/')};`;
      data.push(...uleb(d.length), ...mutf8(d), 0);
      return off;
    }),
  );
  const total = dataAt + data.length;
  const b = Buffer.alloc(total);
  Buffer.from(data).copy(b, dataAt);
  parts.forEach((p, k) => {
    const at = partAt[k]!;
    const n = p.length;
    b.write(`dex\n${version}\0`, at, 'latin1');
    // Each dex spans to the next header (ART walks header_offset += file_size); the last one
    // holds the string data every dex of the container refers to.
    const size = container ? (partAt[k + 1] ?? total) - at : total;
    b.writeUInt32LE(size, at + 0x20);
    b.writeUInt32LE(headerSize, at + 0x24);
    b.writeUInt32LE(0x12345678, at + 0x28);
    const ids = at + headerSize;
    b.writeUInt32LE(n, at + 0x38);
    b.writeUInt32LE(ids, at + 0x3c);
    b.writeUInt32LE(n, at + 0x40);
    b.writeUInt32LE(ids + n * 4, at + 0x44);
    b.writeUInt32LE(n, at + 0x60);
    b.writeUInt32LE(ids + n * 8, at + 0x64);
    if (container) {
      b.writeUInt32LE(total, at + 0x70);
      b.writeUInt32LE(at, at + 0x74);
    }
    for (let i = 0; i < n; i++) {
      b.writeUInt32LE(stringOff[k]![i]!, ids + i * 4);
      b.writeUInt32LE(i, ids + n * 4 + i * 4);
      b.writeUInt32LE(i, ids + n * 8 + i * 32);
    }
  });
  return b;
}

describe('DEX layouts', () => {
  it('v41 container: the classes of every dex in it, offsets from the container start', () => {
    const parts = [
      ['com.example.App', 'com.example.Main'],
      ['com.google.firebase.analytics.FirebaseAnalytics'],
      ['io.sentry.Sentry', 'a.b', 'c'],
    ];
    const d = parseDexClasses(buildDex(parts, '041'));
    expect(d.header.version).toBe('041');
    expect(d.dexCount).toBe(3);
    expect(d.classes).toEqual(parts.flat());
  });

  it('v41 with a single dex reads like any other dex; v035 without container fields too', () => {
    expect(parseDexClasses(buildDex([['x.Y']], '041')).classes).toEqual(['x.Y']);
    expect(parseDexClasses(buildDex([['x.Y', 'x.Z']], '035'))).toMatchObject({
      dexCount: 1,
      classes: ['x.Y', 'x.Z'],
    });
  });

  it('MUTF-8 descriptors: 2- and 3-byte forms, surrogate pairs encoded one unit at a time', () => {
    const names = ['café.Grüße', 'emoji.𝄞Clef', 'cjk.中文'];
    expect(parseDexClasses(buildDex([names], '038')).classes).toEqual(names);
  });

  it('a container whose header_offset or container_size lies is a typed error', () => {
    const good = buildDex([['a.A'], ['b.B']], '041');
    const badOffset = Buffer.from(good);
    badOffset.writeUInt32LE(4, 0x74);
    expect(() => parseDexClasses(badOffset)).toThrow(/header_offset/);
    const badSize = Buffer.from(good);
    badSize.writeUInt32LE(good.length + 1, 0x70);
    expect(() => parseDexClasses(badSize)).toThrow(/container_size/);
  });

  it('fuzz: 3000 mutated containers give classes or a typed error, quickly', () => {
    const base = buildDex([['com.example.App', 'com.example.Main'], ['io.sentry.Sentry']], '041');
    const rnd = prng(41);
    let typed = 0;
    for (let i = 0; i < 3000; i++) {
      const m = mutate(base, rnd);
      const t0 = performance.now();
      try {
        parseDexClasses(m);
      } catch (e) {
        if (!(e instanceof OmieError)) throw new Error(`case ${i}: ${(e as Error).stack}`);
        typed++;
      }
      expect(performance.now() - t0).toBeLessThan(500);
    }
    expect(typed).toBeGreaterThan(0);
  });
});
