import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import yauzl from 'yauzl';
import yazl from 'yazl';
import { FormatError, InputError } from '../errors.ts';
import type { ProgressFn } from '../progress.ts';

/**
 * Factory images and fastboot zips. A fastboot ("update") zip holds android-info.txt and
 * partition images at its root (what `fastboot update x.zip` flashes). A Pixel-style factory
 * zip holds bootloader-*.img, radio-*.img, flash-all.sh and a nested image-*.zip (the fastboot
 * zip) in one folder. android-info.txt is parsed with the rules of fastboot.cpp
 * (ParseRequirementLine).
 */

const FORMAT = 'factory-zip';

export interface AndroidInfoRequirement {
  /** Variable checked with `getvar` ("board" is read as "product", as fastboot does). */
  name: string;
  /** Accepted values (`a|b|c`). */
  values: string[];
  /** `reject` line: the device must NOT match. */
  reject: boolean;
  /** `require-for-product:X`: only applies when the device's product is X. */
  forProduct?: string;
  line: number;
}

export interface AndroidInfo {
  requirements: AndroidInfoRequirement[];
  /** Accepted products/boards (`require board=` / `require product=`). */
  boards: string[];
  bootloaderVersions: string[];
  basebandVersions: string[];
}

/** Parses android-info.txt; a line fastboot would reject is a FormatError naming it. */
export function parseAndroidInfo(text: string, file?: string): AndroidInfo {
  const requirements: AndroidInfoRequirement[] = [];
  const lines = text.split('\n');
  lines.forEach((raw, i) => {
    const line = raw.trim();
    if (!line) return;
    let m = /^(require\s+|reject\s+)?\s*(\S+)\s*=\s*(.*)$/.exec(line);
    let forProduct: string | undefined;
    let reject = false;
    if (m) reject = (m[1] ?? '').trim() === 'reject';
    else {
      m = /^require-for-product:\s*(\S+)\s+(\S+)\s*=\s*(.*)$/.exec(line);
      if (!m)
        throw new FormatError({
          format: FORMAT,
          reason: `android-info.txt syntax error on line ${i + 1}`,
          field: 'android-info.txt',
          found: line,
          file,
        });
      forProduct = m[1];
      m = [m[0], '', m[2], m[3]] as unknown as RegExpExecArray;
    }
    const name = m[2] === 'board' ? 'product' : m[2];
    requirements.push({
      name,
      values: m[3].split('|').map((v) => v.trim()),
      reject,
      forProduct,
      line: i + 1,
    });
  });
  const valuesOf = (n: string) =>
    requirements.filter((r) => r.name === n && !r.reject && !r.forProduct).flatMap((r) => r.values);
  return {
    requirements,
    boards: valuesOf('product'),
    bootloaderVersions: valuesOf('version-bootloader'),
    basebandVersions: valuesOf('version-baseband'),
  };
}

/** Writes android-info.txt text: `require board=` then the given requirements. */
export function formatAndroidInfo(spec: {
  board: string | string[];
  bootloaderVersion?: string | string[];
  basebandVersion?: string | string[];
  extra?: Array<{ name: string; values: string[]; forProduct?: string; reject?: boolean }>;
}): string {
  const j = (v: string | string[]) => (Array.isArray(v) ? v.join('|') : v);
  const out = [`require board=${j(spec.board)}`];
  if (spec.bootloaderVersion) out.push(`require version-bootloader=${j(spec.bootloaderVersion)}`);
  if (spec.basebandVersion) out.push(`require version-baseband=${j(spec.basebandVersion)}`);
  for (const r of spec.extra ?? []) {
    const head = r.forProduct ? `require-for-product:${r.forProduct}` : r.reject ? 'reject' : 'require';
    out.push(`${head} ${r.name}=${r.values.join('|')}`);
  }
  return `${out.join('\n')}\n`;
}

export interface FactoryImage {
  /** Partition it flashes (file name without `.img`; `bootloader`/`radio` for those). */
  partition: string;
  /** Entry path; for images inside a nested zip: `outer/image-x.zip!inner.img`. */
  entry: string;
  /** Nested zip entry holding it, if any. */
  nested?: string;
  size: number;
  compressedSize: number;
}

export interface FactoryZipInfo {
  path: string;
  /** 'fastboot': images at the root; 'factory': Pixel-style with a nested image-*.zip. */
  kind: 'fastboot' | 'factory';
  androidInfo?: AndroidInfo;
  /** Where android-info.txt was found. */
  androidInfoEntry?: string;
  images: FactoryImage[];
  nestedZips: string[];
  /** Other entries (flash-all.sh, etc.). */
  others: string[];
}

function zipErr(path: string, e: unknown): FormatError {
  return new FormatError(
    { format: FORMAT, reason: e instanceof Error ? e.message : String(e), file: path },
    { cause: e },
  );
}

interface OpenZip {
  zip: yauzl.ZipFile;
  entries: yauzl.Entry[];
}

async function listZip(zip: yauzl.ZipFile, path: string): Promise<yauzl.Entry[]> {
  const entries: yauzl.Entry[] = [];
  await new Promise<void>((res, rej) => {
    zip.on('entry', (e: yauzl.Entry) => {
      if (entries.length > 100_000) return rej(zipErr(path, new Error('too many entries')));
      entries.push(e);
      zip.readEntry();
    });
    zip.on('end', () => res());
    zip.on('error', (err) => rej(zipErr(path, err)));
    zip.readEntry();
  });
  return entries;
}

const zipOpts: yauzl.Options = {
  lazyEntries: true,
  autoClose: false,
  strictFileNames: false,
  validateEntrySizes: true,
};

async function openZip(path: string): Promise<OpenZip> {
  const zip = await new Promise<yauzl.ZipFile>((res, rej) =>
    yauzl.open(path, zipOpts, (err, z) => (err ? rej(zipErr(path, err)) : res(z!))),
  );
  try {
    return { zip, entries: await listZip(zip, path) };
  } catch (e) {
    zip.close();
    throw e;
  }
}

/** Offset of an entry's data in the zip file (after its local header). */
async function dataOffset(path: string, e: yauzl.Entry): Promise<number> {
  const fh = await open(path, 'r');
  try {
    const lh = Buffer.alloc(30);
    const { bytesRead } = await fh.read(lh, 0, 30, e.relativeOffsetOfLocalHeader);
    if (bytesRead < 30 || lh.readUInt32LE(0) !== 0x04034b50)
      throw new FormatError({
        format: FORMAT,
        reason: `bad local header for ${e.fileName}`,
        offset: e.relativeOffsetOfLocalHeader,
        file: path,
      });
    const off = e.relativeOffsetOfLocalHeader + 30 + lh.readUInt16LE(26) + lh.readUInt16LE(28);
    const size = (await fh.stat()).size;
    if (off + e.compressedSize > size)
      throw new FormatError({
        format: FORMAT,
        reason: `${e.fileName} runs past the end of the zip`,
        offset: off,
        file: path,
      });
    return off;
  } finally {
    await fh.close();
  }
}

/** A nested zip stored (not deflated) inside the outer one is opened in place, without copying. */
class SliceReader extends yauzl.RandomAccessReader {
  constructor(
    private readonly path: string,
    private readonly base: number,
  ) {
    super();
  }
  override _readStreamForRange(start: number, end: number): Readable {
    return createReadStream(this.path, { start: this.base + start, end: this.base + end - 1 });
  }
}

/** Opens a nested zip: in place if stored, else inflated to a temporary file (returned for cleanup). */
async function openNested(path: string, outer: OpenZip, e: yauzl.Entry): Promise<OpenZip & { tmp?: string }> {
  const label = `${path}!${e.fileName}`;
  if (e.compressionMethod === 0) {
    const base = await dataOffset(path, e);
    const zip = await new Promise<yauzl.ZipFile>((res, rej) =>
      yauzl.fromRandomAccessReader(new SliceReader(path, base), e.uncompressedSize, zipOpts, (err, z) =>
        err ? rej(zipErr(label, err)) : res(z!),
      ),
    );
    try {
      return { zip, entries: await listZip(zip, label) };
    } catch (err) {
      zip.close();
      throw err;
    }
  }
  const tmp = await mkdtemp(join(tmpdir(), 'omie-factory-'));
  const file = join(tmp, basename(e.fileName));
  try {
    await pipeline(await entryStream(outer.zip, e, path), createWriteStream(file));
    const z = await openZip(file);
    return { ...z, tmp };
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err instanceof FormatError ? err : zipErr(label, err);
  }
}

function entryStream(zip: yauzl.ZipFile, e: yauzl.Entry, path: string): Promise<Readable> {
  return new Promise((res, rej) =>
    zip.openReadStream(e, (err, s) => (err ? rej(zipErr(path, err)) : res(s!))),
  );
}

async function readText(zip: yauzl.ZipFile, e: yauzl.Entry, path: string): Promise<string> {
  if (e.uncompressedSize > 1024 * 1024)
    throw new FormatError({
      format: FORMAT,
      reason: `${e.fileName} too large`,
      field: e.fileName,
      expected: '<= 1 MiB',
      found: e.uncompressedSize,
      file: path,
    });
  const chunks: Buffer[] = [];
  try {
    for await (const c of await entryStream(zip, e, path)) chunks.push(c as Buffer);
  } catch (err) {
    throw err instanceof FormatError ? err : zipErr(`${path}!${e.fileName}`, err);
  }
  return Buffer.concat(chunks).toString('utf8');
}

const isImage = (n: string) => /\.img$/i.test(n) && !n.endsWith('/');
const isNestedZip = (n: string) => /(^|\/)image-[^/]*\.zip$/i.test(n);
const leaf = (n: string) => n.slice(n.lastIndexOf('/') + 1);

/**
 * Names a factory zip gives its firmware images (bootloader-<device>-<version>.img,
 * radio-<device>-<version>.img): flashed and verified by the bootloader itself, outside AVB.
 */
export const FIRMWARE_IMAGES: readonly string[] = ['bootloader', 'radio'];

function partitionOf(name: string): string {
  const l = leaf(name).replace(/\.img$/i, '');
  if (/^bootloader[-_.]/i.test(l) || l === 'bootloader') return 'bootloader';
  if (/^radio[-_.]/i.test(l) || l === 'radio') return 'radio';
  return l;
}

/**
 * Lists a factory or fastboot zip: android-info.txt requirements, every *.img (also those in a
 * nested image-*.zip, read in place when stored), sizes. Reads no image data.
 */
export async function readFactoryZip(path: string): Promise<FactoryZipInfo> {
  const outer = await openZip(path);
  try {
    const info: FactoryZipInfo = { path, kind: 'fastboot', images: [], nestedZips: [], others: [] };
    for (const e of outer.entries) {
      if (e.fileName.endsWith('/')) continue;
      if (leaf(e.fileName) === 'android-info.txt' && !info.androidInfo) {
        info.androidInfo = parseAndroidInfo(await readText(outer.zip, e, path), `${path}!${e.fileName}`);
        info.androidInfoEntry = e.fileName;
      } else if (isImage(e.fileName)) {
        info.images.push({
          partition: partitionOf(e.fileName),
          entry: e.fileName,
          size: e.uncompressedSize,
          compressedSize: e.compressedSize,
        });
      } else if (isNestedZip(e.fileName)) {
        info.nestedZips.push(e.fileName);
      } else info.others.push(e.fileName);
    }
    for (const nz of info.nestedZips) {
      info.kind = 'factory';
      const e = outer.entries.find((x) => x.fileName === nz)!;
      const inner = await openNested(path, outer, e);
      try {
        for (const ie of inner.entries) {
          if (leaf(ie.fileName) === 'android-info.txt' && !info.androidInfo) {
            info.androidInfo = parseAndroidInfo(
              await readText(inner.zip, ie, path),
              `${path}!${nz}!${ie.fileName}`,
            );
            info.androidInfoEntry = `${nz}!${ie.fileName}`;
          } else if (isImage(ie.fileName))
            info.images.push({
              partition: partitionOf(ie.fileName),
              entry: `${nz}!${ie.fileName}`,
              nested: nz,
              size: ie.uncompressedSize,
              compressedSize: ie.compressedSize,
            });
        }
      } finally {
        inner.zip.close();
        if (inner.tmp) await rm(inner.tmp, { recursive: true, force: true });
      }
    }
    return info;
  } finally {
    outer.zip.close();
  }
}

/**
 * Streams one image out of a factory/fastboot zip (`entry` as listed by readFactoryZip, e.g.
 * `system.img` or `dir/image-x.zip!system.img`) to `outPath`.
 */
export async function extractFactoryImage(
  zipPath: string,
  entry: string,
  outPath: string,
  opts: { onProgress?: ProgressFn } = {},
): Promise<{ size: number }> {
  const [outerName, innerName] = entry.split('!');
  const outer = await openZip(zipPath);
  try {
    const e = outer.entries.find((x) => x.fileName === outerName);
    if (!e)
      throw new InputError(`no entry ${outerName} in ${zipPath}`, {
        code: 'ZIP_NO_ENTRY',
        context: { file: zipPath, entry },
      });
    let zip = outer.zip;
    let target = e;
    let inner: (OpenZip & { tmp?: string }) | undefined;
    if (innerName !== undefined) {
      inner = await openNested(zipPath, outer, e);
      const ie = inner.entries.find((x) => x.fileName === innerName);
      if (!ie)
        throw new InputError(`no entry ${innerName} in ${zipPath}!${outerName}`, {
          code: 'ZIP_NO_ENTRY',
          context: { file: zipPath, entry },
        });
      zip = inner.zip;
      target = ie;
    }
    try {
      const s = await entryStream(zip, target, zipPath);
      let done = 0;
      s.on('data', (c: Buffer) => {
        done += c.length;
        opts.onProgress?.({
          stage: `extract ${leaf(entry)}`,
          done,
          total: target.uncompressedSize,
          unit: 'bytes',
        });
      });
      await pipeline(s, createWriteStream(outPath)).catch((err) => {
        throw zipErr(zipPath, err);
      });
      return { size: target.uncompressedSize };
    } finally {
      inner?.zip.close();
      if (inner?.tmp) await rm(inner.tmp, { recursive: true, force: true });
    }
  } finally {
    outer.zip.close();
  }
}

/** Fixed entry time so the same inputs give the same zip bytes (DOS time is local-time based). */
const FIXED_MTIME = new Date(2009, 0, 1, 0, 0, 0);

/**
 * Writes a fastboot-flashable zip (`fastboot update out.zip`): android-info.txt first, then the
 * images in the given order, fixed timestamps and modes, so it is byte-for-byte reproducible.
 * `androidInfo` is the file's text (see formatAndroidInfo). Images are deflated unless
 * `compress: false`.
 */
export async function writeFastbootZip(
  outPath: string,
  spec: { androidInfo: string; images: Array<{ name: string; path: string }> },
  opts: { compress?: boolean } = {},
): Promise<{ path: string; entries: string[] }> {
  parseAndroidInfo(spec.androidInfo, 'android-info.txt'); // refuse what fastboot would refuse
  const names = new Set<string>();
  for (const img of spec.images) {
    const n = img.name.endsWith('.img') ? img.name : `${img.name}.img`;
    if (names.has(n) || n.includes('/') || n === 'android-info.txt')
      throw new InputError(`invalid or duplicate image name ${img.name}`, {
        code: 'ZIP_ENTRY_NAME',
        context: { name: img.name },
      });
    names.add(n);
  }
  const z = new yazl.ZipFile();
  const entryOpts = { mtime: FIXED_MTIME, mode: 0o100644 };
  z.addBuffer(Buffer.from(spec.androidInfo, 'utf8'), 'android-info.txt', { ...entryOpts, compress: true });
  const entries = ['android-info.txt'];
  for (const img of spec.images) {
    const n = img.name.endsWith('.img') ? img.name : `${img.name}.img`;
    z.addFile(img.path, n, { ...entryOpts, compress: opts.compress ?? true });
    entries.push(n);
  }
  z.end();
  await pipeline(z.outputStream, createWriteStream(outPath)).catch((err: NodeJS.ErrnoException) => {
    throw new InputError(`cannot write ${outPath}: ${err.message}`, {
      code: err.code ?? 'ZIP_WRITE',
      context: { file: outPath, path: err.path },
    });
  });
  return { path: outPath, entries };
}
