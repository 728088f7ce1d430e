/**
 * resources.arsc as aapt2 writes it with --enable-sparse-encoding (FLAG_SPARSE type chunks for
 * configurations that define few entries), compared value by value with `aapt2 dump resources`.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { OmieError } from '../../scripts/errors.ts';
import { parseArsc, type ResourceTable } from '../../scripts/formats/apk/arsc.ts';
import { ChunkType, readChunkHeader, ValueType } from '../../scripts/formats/apk/axml.ts';
import { FRAMEWORK_RES_APK } from '../../scripts/formats/apk/inspect.ts';
import { bufferSource, ZipArchive } from '../../scripts/formats/apk/zip.ts';
import { BinaryReader } from '../../scripts/formats/binary.ts';
import { runTool } from '../../scripts/host/tools.ts';
import { mutate, prng, workDir } from '../helpers.ts';

const dir = join(workDir('apk'), 'arsc-sparse');
let apk: string;
let table: ResourceTable;

beforeAll(async () => {
  for (const d of ['res/values', 'res/values-fr', 'res/values-v28'])
    mkdirSync(join(dir, d), { recursive: true });
  const strings = Array.from({ length: 40 }, (_, i) => `<string name="s${i}">default ${i}</string>`).join('');
  writeFileSync(
    join(dir, 'res/values/values.xml'),
    `<resources>${strings}<string name="app_name">Sparse App</string><string name="ref">@string/app_name</string>` +
      '<integer name="n">-42</integer><bool name="yes">true</bool><bool name="no">false</bool></resources>',
  );
  writeFileSync(
    join(dir, 'res/values-fr/values.xml'),
    '<resources><string name="s3">fr 3</string><string name="s37">fr 37</string></resources>',
  );
  writeFileSync(
    join(dir, 'res/values-v28/values.xml'),
    '<resources><integer name="n">28</integer></resources>',
  );
  writeFileSync(
    join(dir, 'AndroidManifest.xml'),
    '<manifest xmlns:android="http://schemas.android.com/apk/res/android" package="org.omie.sparse">' +
      '<uses-sdk android:minSdkVersion="26" android:targetSdkVersion="30"/><application android:label="@string/ref"/></manifest>',
  );
  const compiled = join(dir, 'compiled.zip');
  apk = join(dir, 'sparse.apk');
  await runTool('aapt2', ['compile', '--dir', join(dir, 'res'), '-o', compiled]);
  await runTool('aapt2', [
    'link',
    '--manifest',
    join(dir, 'AndroidManifest.xml'),
    '-I',
    FRAMEWORK_RES_APK,
    '--enable-sparse-encoding',
    '-o',
    apk,
    compiled,
  ]);
  const z = await ZipArchive.open(bufferSource(readFileSync(apk)));
  table = parseArsc(await z.read(z.entry('resources.arsc')!));
}, 60_000);

/** `aapt2 dump resources`: id → [config, printed value] pairs. */
function dumpResources(out: string): Map<number, Array<[string, string]>> {
  const m = new Map<number, Array<[string, string]>>();
  let cur: number | null = null;
  for (const line of out.split('\n')) {
    const res = /^\s+resource 0x([0-9a-f]{8}) /.exec(line);
    if (res) {
      cur = Number.parseInt(res[1]!, 16);
      m.set(cur, []);
      continue;
    }
    const val = /^\s+\(([^)]*)\) (.*)$/.exec(line);
    if (val && cur !== null) m.get(cur)!.push([val[1]!, val[2]!]);
  }
  return m;
}

describe('resources.arsc with sparse type chunks vs aapt2 dump resources', () => {
  it('the fr strings live in a FLAG_SPARSE type chunk (walked with the chunk headers)', async () => {
    const z = await ZipArchive.open(bufferSource(readFileSync(apk)));
    const buf = await z.read(z.entry('resources.arsc')!);
    const r = new BinaryReader(buf, 'arsc');
    const top = readChunkHeader(r, buf.length, 'table');
    const flags: number[] = [];
    const walk = (start: number, end: number) => {
      for (let pos = start; pos + 8 <= end; ) {
        r.seek(pos);
        const h = readChunkHeader(r, end, 'chunk');
        if (h.type === ChunkType.TABLE_PACKAGE) walk(h.start + h.headerSize, h.start + h.size);
        if (h.type === ChunkType.TABLE_TYPE) flags.push(buf[h.start + 9]!);
        pos = h.start + h.size;
      }
    };
    walk(top.start + top.headerSize, top.size);
    expect(flags.some((f) => f & 1)).toBe(true);
    const s3 = [...table.allEntries()].find((e) => e.name.endsWith('string/s3'))!;
    expect(table.entryInAllConfigs(s3.id).map((e) => e.value?.value)).toEqual(['default 3', 'fr 3']);
  });

  it('every value in every configuration equals the dump (strings, ints, bools, references)', async () => {
    const want = dumpResources((await runTool('aapt2', ['dump', 'resources', apk])).stdout);
    expect(want.size).toBeGreaterThan(40);
    let compared = 0;
    for (const [id, configs] of want) {
      const ours = table.entryInAllConfigs(id);
      expect(ours.length, `0x${id.toString(16)}`).toBe(configs.length);
      for (const [k, [, printed]] of configs.entries()) {
        const v = ours[k]!.value!;
        const text =
          v.type === ValueType.STRING
            ? `"${v.value}"`
            : v.type === ValueType.REFERENCE
              ? `@${table.entry(v.data)!.name.split(':')[1]}`
              : String(v.value);
        expect(text, `0x${id.toString(16)} config #${k}`).toBe(printed);
        compared++;
      }
    }
    expect(compared).toBeGreaterThan(45);
  });

  it('label: the reference chain resolves like aapt2 dump badging', async () => {
    const out = (await runTool('aapt2', ['dump', 'badging', apk])).stdout;
    const ref = [...table.allEntries()].find((e) => e.name.endsWith('string/ref'))!;
    expect(table.resolveString(ref.id)).toBe(/^application-label:'([^']*)'/m.exec(out)![1]);
  });

  it('fuzz: 1500 mutated sparse tables, every id in every config, only typed errors, quickly', async () => {
    const z = await ZipArchive.open(bufferSource(readFileSync(apk)));
    const buf = await z.read(z.entry('resources.arsc')!);
    const ids = [...table.allEntries()].map((e) => e.id);
    const rnd = prng(26);
    let typed = 0;
    for (let i = 0; i < 1500; i++) {
      const m = mutate(buf, rnd);
      const t0 = performance.now();
      try {
        const t = parseArsc(m);
        for (const id of ids) {
          t.entryInAllConfigs(id);
          t.resolve(id);
        }
      } catch (e) {
        if (!(e instanceof OmieError)) throw new Error(`case ${i}: ${(e as Error).stack}`);
        typed++;
      }
      expect(performance.now() - t0).toBeLessThan(1000);
    }
    expect(typed).toBeGreaterThan(0);
  }, 60_000);
});
