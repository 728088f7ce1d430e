/** The zip layer against Python's zipfile (an independent reader) on archives yazl writes, incl. ZIP64. */
import { randomBytes } from 'node:crypto';
import { createWriteStream, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import yazl from 'yazl';
import { FormatError } from '../../scripts/errors.ts';
import { bufferSource, ZipArchive } from '../../scripts/formats/apk/zip.ts';
import { workDir } from '../helpers.ts';

async function writeZip(file: string, zip64: boolean): Promise<Map<string, Buffer>> {
  const z = new yazl.ZipFile();
  const content = new Map<string, Buffer>();
  // A large compressible entry (streamed by our reader in chunks), a random stored one, small ones.
  const big = Buffer.alloc(12 * 1024 * 1024);
  for (let i = 0; i < big.length; i += 4) big.writeUInt32LE((i * 2654435761) >>> 8, i);
  content.set('assets/big.bin', big);
  content.set('stored.bin', randomBytes(70_000));
  content.set('a/b/c.txt', Buffer.from('hello zip\n'.repeat(100)));
  content.set('empty.txt', Buffer.alloc(0));
  for (const [name, data] of content)
    z.addBuffer(data, name, {
      compress: name !== 'stored.bin',
      forceZip64Format: zip64,
      mtime: new Date(2020, 0, 1),
    });
  z.end({ comment: 'omie zip test', forceZip64Format: zip64 });
  await new Promise<void>((res, rej) => {
    const out = createWriteStream(file);
    z.outputStream
      .pipe(out)
      .on('close', () => res())
      .on('error', rej);
  });
  return content;
}

const PY = `
import json, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
print(json.dumps({"start_dir": z.start_dir, "comment": z.comment.decode(),
  "entries": [[i.filename, i.file_size, i.compress_size, i.header_offset, i.compress_type, i.CRC] for i in z.infolist()]}))
`;

describe('zip', () => {
  for (const zip64 of [false, true]) {
    it(`${zip64 ? 'ZIP64' : 'classic'}: entries, offsets and data equal python zipfile; stream == read`, async () => {
      const file = join(workDir('apk'), `test-${zip64 ? 'zip64' : 'zip'}.zip`);
      const content = await writeZip(file, zip64);
      const py = JSON.parse((await execa('python3', ['-c', PY, file])).stdout);
      const z = await ZipArchive.openFile(file);
      try {
        expect(z.layout.zip64).toBe(zip64);
        expect(z.layout.centralDirectoryOffset).toBe(py.start_dir);
        expect(z.layout.comment).toBe(py.comment);
        expect(
          z.entries.map((e) => [
            e.name,
            e.uncompressedSize,
            e.compressedSize,
            e.localHeaderOffset,
            e.method,
            e.crc32,
          ]),
        ).toEqual(py.entries);
        for (const e of z.entries) {
          const data = await z.read(e);
          expect(data.equals(content.get(e.name)!), e.name).toBe(true);
          const chunks: Buffer[] = [];
          for await (const c of z.stream(e, 256 * 1024)) chunks.push(c);
          expect(Buffer.concat(chunks).equals(data), `${e.name} streamed`).toBe(true);
        }
        await expect(z.read(z.entry('assets/big.bin')!, 1024)).rejects.toThrow(FormatError);
      } finally {
        await z.close();
      }
    }, 60_000);
  }

  it('rejects a wrong CRC, a truncated archive and a missing EOCD with FormatErrors', async () => {
    const file = join(workDir('apk'), 'test-zip.zip');
    const buf = readFileSync(file);
    const z = await ZipArchive.open(bufferSource(buf));
    const e = z.entry('a/b/c.txt')!;
    const bad = Buffer.from(buf);
    bad.writeUInt32LE((e.crc32 ^ 1) >>> 0, e.cdRecordOffset + 16);
    const z2 = await ZipArchive.open(bufferSource(bad));
    await expect(z2.read(z2.entry('a/b/c.txt')!)).rejects.toThrow(/CRC-32 mismatch/);
    await expect(ZipArchive.open(bufferSource(buf.subarray(0, buf.length - 30)))).rejects.toThrow(
      FormatError,
    );
    await expect(ZipArchive.open(bufferSource(Buffer.alloc(100)))).rejects.toThrow(
      /End of Central Directory/,
    );
  });

  it('rejects names Android refuses (duplicate, "..", absolute) and a local/central name mismatch', async () => {
    const dir = workDir('apk');
    const make = async (file: string, names: string[]) => {
      await execa('python3', [
        '-c',
        'import sys,zipfile,warnings;warnings.simplefilter("ignore");z=zipfile.ZipFile(sys.argv[1],"w")\n' +
          'for n in sys.argv[2:]: z.writestr(n, b"x")\nz.close()',
        file,
        ...names,
      ]);
      return readFileSync(file);
    };
    for (const [names, why] of [
      [['a.txt', 'a.txt'], /duplicate entry name/],
      [['lib/../../evil.so'], /escapes the archive root/],
      [['/etc/passwd'], /escapes the archive root/],
    ] as const) {
      const buf = await make(join(dir, 'bad-names.zip'), [...names]);
      await expect(ZipArchive.open(bufferSource(buf))).rejects.toThrow(why);
    }
    // Same-length rename in the local header only: python's zipfile refuses to read it too.
    const file = join(dir, 'name-mismatch.zip');
    const buf = await make(file, ['good.txt']);
    buf.write('evil', 30, 'latin1');
    const { writeFileSync } = await import('node:fs');
    writeFileSync(file, buf);
    const py = await execa(
      'python3',
      ['-c', 'import sys,zipfile;zipfile.ZipFile(sys.argv[1]).read("good.txt")', file],
      {
        reject: false,
      },
    );
    expect(py.exitCode).not.toBe(0);
    const z = await ZipArchive.open(bufferSource(buf));
    await expect(z.read(z.entry('good.txt')!)).rejects.toThrow(/local file header name differs/);
  });
});
