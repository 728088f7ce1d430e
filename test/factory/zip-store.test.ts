import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { InputError } from '../../scripts/errors.ts';
import {
  extractFactoryImage,
  formatAndroidInfo,
  readFactoryZip,
  writeFastbootZip,
} from '../../scripts/formats/factory-zip.ts';
import { writeStoredZip } from '../../scripts/formats/zip-store.ts';
import { prng, workDir } from '../helpers.ts';

/**
 * The stored-zip writer behind `writeFastbootZip(..., { compress: false })`, read back by
 * independent readers: Info-ZIP `unzip -t` and Python's zipfile (CRC, sizes, modes, times), in
 * its plain and zip64 forms, and by our own factory-zip reader.
 */

const dir = workDir('zip-store');
mkdirSync(dir, { recursive: true });

function bytes(n: number, seed: number): Buffer {
  const r = prng(seed);
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = Math.floor(r() * 256);
  return b;
}

const PY = `
import json, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
bad = z.testzip()
print(json.dumps({"bad": bad, "entries": [
  {"name": i.filename, "size": i.file_size, "csize": i.compress_size, "method": i.compress_type,
   "mode": i.external_attr >> 16, "time": list(i.date_time), "crc": i.CRC} for i in z.infolist()]}))
`;

async function pyList(zip: string) {
  const r = await execa('python3', ['-c', PY, zip]);
  return JSON.parse(String(r.stdout)) as {
    bad: string | null;
    entries: Array<{
      name: string;
      size: number;
      csize: number;
      method: number;
      mode: number;
      time: number[];
    }>;
  };
}

describe('stored zip writer', () => {
  const a = join(dir, 'a.bin');
  const b = join(dir, 'b.bin');
  // Sizes around the 1 MiB copy buffer, and an empty file.
  const files = [
    { name: 'a.img', path: a, data: bytes(3 * 1024 * 1024 + 17, 1) },
    { name: 'dir/b.img', path: b, data: bytes(1024 * 1024, 2) },
  ];
  writeFileSync(a, files[0].data);
  writeFileSync(b, files[1].data);
  writeFileSync(join(dir, 'empty.bin'), '');

  for (const forceZip64 of [false, true]) {
    it(`${forceZip64 ? 'zip64' : 'plain'}: unzip -t and Python zipfile read every entry back exactly`, async () => {
      const zip = join(dir, `out-${forceZip64}.zip`);
      await writeStoredZip(
        zip,
        [
          { name: 'android-info.txt', data: Buffer.from('require board=x\n') },
          { name: files[0].name, path: a },
          { name: files[1].name, path: b },
          { name: 'empty.img', path: join(dir, 'empty.bin') },
        ],
        { mtime: new Date(2009, 0, 1, 0, 0, 0), mode: 0o100644, forceZip64 },
      );
      const t = await execa('unzip', ['-t', zip]);
      expect(String(t.stdout)).toMatch(/No errors detected/);
      const l = await pyList(zip);
      expect(l.bad).toBeNull();
      expect(l.entries.map((e) => [e.name, e.size, e.csize, e.method, e.mode])).toEqual([
        ['android-info.txt', 16, 16, 0, 0o100644],
        ['a.img', files[0].data.length, files[0].data.length, 0, 0o100644],
        ['dir/b.img', files[1].data.length, files[1].data.length, 0, 0o100644],
        ['empty.img', 0, 0, 0, 0o100644],
      ]);
      expect(l.entries[1].time).toEqual([2009, 1, 1, 0, 0, 0]);
      const x = await execa('unzip', ['-p', zip, 'dir/b.img'], {
        encoding: 'buffer',
        stripFinalNewline: false,
      });
      expect(Buffer.from(x.stdout).equals(files[1].data)).toBe(true);
      if (forceZip64) {
        const raw = readFileSync(zip);
        expect(raw.includes(Buffer.from([0x50, 0x4b, 0x06, 0x06]))).toBe(true); // zip64 end record
      }
    });
  }

  it('all-zero stretches of an entry become holes, and read back as zeros', async () => {
    // 16 MiB of zeros between random data, and zeros at the very end of the last entry.
    const mib = 1024 * 1024;
    const data = Buffer.concat([
      bytes(5 * mib + 3, 3),
      Buffer.alloc(16 * mib),
      bytes(mib, 4),
      Buffer.alloc(9 * mib),
    ]);
    const src = join(dir, 'holes.bin');
    writeFileSync(src, data);
    const zip = join(dir, 'holes.zip');
    const r = await writeStoredZip(zip, [{ name: 'holes.img', path: src }], {
      mtime: new Date(2009, 0, 1),
      mode: 0o100644,
    });
    const st = statSync(zip);
    expect(st.size).toBe(r.size);
    // Four whole 4 MiB copy chunks are zeros (three in the middle, one near the end): not written.
    expect(st.blocks * 512).toBeLessThanOrEqual(st.size - 16 * mib + 64 * 1024); // + extent blocks
    expect(String((await execa('unzip', ['-t', zip])).stdout)).toMatch(/No errors detected/);
    const x = await execa('unzip', ['-p', zip, 'holes.img'], {
      encoding: 'buffer',
      stripFinalNewline: false,
      maxBuffer: 64 * mib,
    });
    expect(Buffer.from(x.stdout).equals(data)).toBe(true);
  });

  it('extracting an image leaves its all-zero 4 MiB chunks as holes (stored and deflated entries)', async () => {
    const mib = 1024 * 1024;
    const data = Buffer.concat([bytes(3 * mib, 7), Buffer.alloc(12 * mib), bytes(mib + 5, 8)]);
    const src = join(dir, 'x-holes.img');
    writeFileSync(src, data);
    for (const compress of [false, true]) {
      const zip = join(dir, `x-holes-${compress}.zip`);
      await writeFastbootZip(
        zip,
        { androidInfo: 'require board=x\n', images: [{ name: 'system', path: src }] },
        { compress },
      );
      const out = join(dir, `x-holes-${compress}.out`);
      await extractFactoryImage(zip, 'system.img', out);
      expect(readFileSync(out).equals(data)).toBe(true);
      const st = statSync(out);
      // At least two whole zero chunks of the 12 MiB run are not allocated.
      expect(st.blocks * 512).toBeLessThanOrEqual(data.length - 8 * mib + 64 * 1024);
    }
  });

  it('sha256: the digest of the bytes written, holes included; same bytes as without; given CRCs are checked', async () => {
    const mib = 1024 * 1024;
    const holes = join(dir, 'sha-holes.bin');
    const holesData = Buffer.concat([bytes(mib, 5), Buffer.alloc(8 * mib), bytes(3, 6)]);
    writeFileSync(holes, holesData);
    const entries = [
      { name: 'android-info.txt', data: Buffer.from('require board=x\n') },
      { name: files[0].name, path: a },
      { name: 'holes.img', path: holes, crc32: crc32(holesData) },
    ];
    const opts = { mtime: new Date(2009, 0, 1), mode: 0o100644 };
    const plain = join(dir, 'sha-plain.zip');
    const hashed = join(dir, 'sha-hashed.zip');
    // Without sha256 the CRCs are patched in after the data; with it, headers are final first.
    await writeStoredZip(plain, entries.slice(0, 2), opts);
    const r = await writeStoredZip(hashed, entries, { ...opts, sha256: true });
    const bytesOut = readFileSync(hashed);
    expect(r.sha256).toBe(createHash('sha256').update(bytesOut).digest('hex'));
    const l = await pyList(hashed);
    expect(l.bad).toBeNull();
    expect(String((await execa('unzip', ['-t', hashed])).stdout)).toMatch(/No errors detected/);
    const again = join(dir, 'sha-plain2.zip');
    await writeStoredZip(again, entries.slice(0, 2), { ...opts, sha256: true });
    expect(readFileSync(again).equals(readFileSync(plain))).toBe(true);
    // A CRC that does not match the data fails the write, naming the entry.
    const err = await writeStoredZip(join(dir, 'sha-bad.zip'), [{ name: 'x.img', path: a, crc32: 1234 }], {
      ...opts,
      sha256: true,
    }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InputError);
    expect(err).toMatchObject({ code: 'ZIP_CRC_MISMATCH', context: { entry: 'x.img', expected: 1234 } });
    // verifyGivenCrc32: false takes the given CRCs as they are (the same bytes when they are right).
    const trusted = join(dir, 'sha-trusted.zip');
    const t = await writeStoredZip(trusted, entries, { ...opts, sha256: true, verifyGivenCrc32: false });
    expect(t.sha256).toBe(r.sha256);
    expect(readFileSync(trusted).equals(bytesOut)).toBe(true);
  });

  it('writeFastbootZip stored: reproducible bytes, and our reader extracts the images', async () => {
    const androidInfo = formatAndroidInfo({ board: ['omie10'] });
    const spec = {
      androidInfo,
      images: [
        { name: 'system', path: a },
        { name: 'vbmeta.img', path: b },
      ],
    };
    const z1 = join(dir, 'fb1.zip');
    const z2 = join(dir, 'fb2.zip');
    const r = await writeFastbootZip(z1, spec, { compress: false });
    await writeFastbootZip(z2, spec, { compress: false });
    expect(r.entries).toEqual(['android-info.txt', 'system.img', 'vbmeta.img']);
    expect(readFileSync(z1).equals(readFileSync(z2))).toBe(true);
    const info = await readFactoryZip(z1);
    expect(info.androidInfo?.boards).toEqual(['omie10']);
    const out = join(dir, 'system.out');
    await extractFactoryImage(z1, 'system.img', out);
    expect(readFileSync(out).equals(files[0].data)).toBe(true);
  });

  it('a missing input or a bad name is a typed error', async () => {
    await expect(
      writeFastbootZip(
        join(dir, 'bad.zip'),
        { androidInfo: 'require board=x\n', images: [{ name: 'system', path: join(dir, 'nope') }] },
        { compress: false },
      ),
    ).rejects.toBeInstanceOf(InputError);
    await expect(
      writeStoredZip(join(dir, 'bad2.zip'), [{ name: '/abs', data: Buffer.alloc(1) }], {
        mtime: new Date(2009, 0, 1),
        mode: 0o100644,
      }),
    ).rejects.toBeInstanceOf(InputError);
  });
});
