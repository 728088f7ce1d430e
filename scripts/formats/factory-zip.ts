import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { Readable, pipeline as streamPipeline } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { crc32, createInflateRaw } from 'node:zlib';
import yauzl from 'yauzl';
import yazl from 'yazl';
import { FormatError, InputError } from '../errors.ts';
import type { ProgressFn } from '../progress.ts';
import { isAllZero, writeAll } from './io.ts';
import { writeStoredZip } from './zip-store.ts';

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
  /** Accepted values (`a|b|c`); a value ending in `*` matches by prefix. */
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
  /** `require partition-exists=X`: partitions the device must have (not a getvar check). */
  partitionsRequired: string[];
  /** Lines fastboot cannot parse: it prints "android-info.txt syntax error" and skips them. */
  syntaxErrors: Array<{ line: number; text: string }>;
}

// fastboot.cpp ParseRequirementLine, verbatim. std::regex (ECMAScript) and JS regexes agree:
// `.` stops at \r and \n, so a CRLF line is a syntax error for fastboot too, and lines are not
// trimmed (an indented line does not parse).
const REQUIRE_REJECT = /^(require\s+|reject\s+)?\s*(\S+)\s*=\s*(.*)$/;
const REQUIRE_FOR_PRODUCT = /^require-for-product:\s*(\S+)\s+(\S+)\s*=\s*(.*)$/;

/**
 * Parses android-info.txt line by line exactly as fastboot.cpp CheckRequirements does: lines
 * are split on \n, empty ones ignored, unparseable ones skipped (listed in `syntaxErrors`).
 * `strict` turns a syntax error into a FormatError naming the line (for files we write).
 */
export function parseAndroidInfo(text: string, file?: string, opts: { strict?: boolean } = {}): AndroidInfo {
  const requirements: AndroidInfoRequirement[] = [];
  const syntaxErrors: AndroidInfo['syntaxErrors'] = [];
  text.split('\n').forEach((line, i) => {
    if (line === '') return;
    let name: string;
    let rawValues: string;
    let reject = false;
    let forProduct: string | undefined;
    const m = REQUIRE_REJECT.exec(line);
    const p = m ? undefined : REQUIRE_FOR_PRODUCT.exec(line);
    if (m) {
      reject = (m[1] ?? '').trim() === 'reject';
      name = m[2];
      rawValues = m[3];
    } else if (p) {
      forProduct = p[1];
      name = p[2];
      rawValues = p[3];
    } else {
      if (opts.strict)
        throw new FormatError({
          format: FORMAT,
          reason: `android-info.txt syntax error on line ${i + 1}`,
          field: 'android-info.txt',
          found: line,
          file,
        });
      syntaxErrors.push({ line: i + 1, text: line });
      return;
    }
    requirements.push({
      // fastboot: "Work around an unfortunate name mismatch."
      name: name === 'board' ? 'product' : name,
      values: rawValues.split('|').map((v) => v.trim()),
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
    // fastboot only looks at the first option of a partition-exists line.
    partitionsRequired: requirements
      .filter((r) => r.name === 'partition-exists')
      .map((r) => r.values[0])
      .filter((v) => v !== ''),
    syntaxErrors,
  };
}

/** One requirement fastboot would refuse to flash with (see checkAndroidInfo). */
export interface AndroidInfoFailure {
  requirement: AndroidInfoRequirement;
  /** The device's value (undefined when getvar failed). */
  device?: string;
}

/**
 * Evaluates android-info.txt against a device the way fastboot.cpp CheckRequirement does:
 * require-for-product lines apply only when the device's product matches; a value ending in
 * `*` matches by prefix; a failed getvar fails the requirement; `reject` inverts the match.
 * `partition-exists` lines are not getvar checks (fastboot asks `has-slot:<name>` instead) and
 * are left to the caller via `partitionsRequired`. Returns the requirements not met.
 */
export async function checkAndroidInfo(
  info: AndroidInfo,
  getvar: (name: string) => Promise<string | undefined> | string | undefined,
): Promise<AndroidInfoFailure[]> {
  const product = await getvar('product');
  const failures: AndroidInfoFailure[] = [];
  for (const r of info.requirements) {
    if (r.name === 'partition-exists') continue;
    if (r.forProduct !== undefined && r.forProduct !== product) continue;
    const have = await getvar(r.name);
    if (have === undefined) {
      failures.push({ requirement: r });
      continue;
    }
    const match = r.values.some((v) => v === have || (v.endsWith('*') && have.startsWith(v.slice(0, -1))));
    if (match === r.reject) failures.push({ requirement: r, device: have });
  }
  return failures;
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
  /** The file holding the zip's bytes, and where the zip starts in it (a stored nested zip). */
  file: string;
  base: number;
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
    return { zip, entries: await listZip(zip, path), file: path, base: 0 };
  } catch (e) {
    zip.close();
    throw e;
  }
}

/** Offset of an entry's data in the file holding the zip (after its local header). */
async function dataOffset(path: string, e: yauzl.Entry, base = 0): Promise<number> {
  const fh = await open(path, 'r');
  try {
    const lh = Buffer.alloc(30);
    const at = base + e.relativeOffsetOfLocalHeader;
    const { bytesRead } = await fh.read(lh, 0, 30, at);
    if (bytesRead < 30 || lh.readUInt32LE(0) !== 0x04034b50)
      throw new FormatError({
        format: FORMAT,
        reason: `bad local header for ${e.fileName}`,
        offset: at,
        file: path,
      });
    const off = at + 30 + lh.readUInt16LE(26) + lh.readUInt16LE(28);
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
    return createReadStream(this.path, {
      start: this.base + start,
      end: this.base + end - 1,
      highWaterMark: CHUNK,
    });
  }
}

/** Opens a nested zip: in place if stored, else inflated to a temporary file (returned for cleanup). */
async function openNested(
  path: string,
  outer: OpenZip,
  e: yauzl.Entry,
  tmpRoot: string,
): Promise<OpenZip & { tmp?: string }> {
  const label = `${path}!${e.fileName}`;
  if (e.compressionMethod === 0) {
    const base = await dataOffset(path, e);
    const zip = await new Promise<yauzl.ZipFile>((res, rej) =>
      yauzl.fromRandomAccessReader(new SliceReader(path, base), e.uncompressedSize, zipOpts, (err, z) =>
        err ? rej(zipErr(label, err)) : res(z!),
      ),
    );
    try {
      return { zip, entries: await listZip(zip, label), file: path, base };
    } catch (err) {
      zip.close();
      throw err;
    }
  }
  const tmp = await mkdtemp(join(tmpRoot, 'omie-factory-'));
  const file = join(tmp, basename(e.fileName));
  try {
    await pipeline(entryData(outer, e, path), createWriteStream(file, { highWaterMark: CHUNK }));
    const z = await openZip(file);
    return { ...z, tmp };
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err instanceof FormatError ? err : zipErr(label, err);
  }
}

/**
 * Read and inflate size: yauzl's and zlib's 16-64 KiB defaults make extraction 4x slower, and
 * chunks of 1 MiB or more are fresh mmap'd memory each time (streams allocate a buffer per chunk;
 * the launcher sets glibc's mmap threshold to 1 MiB), whose page faults cost more than the
 * inflating: 512 KiB chunks come from reused heap memory (1.25 GB system.img: 2.3-3.0 s with
 * 4 MiB chunks, 1.8-2.0 s with 512 KiB, 1.9-2.9 s with 256 KiB).
 */
const CHUNK = 512 << 10;

/**
 * An entry's bytes, inflated, with its size and CRC-32 checked against the central directory
 * (yauzl checks neither the CRC nor, for stored data, more than the length).
 */
async function* entryData(z: OpenZip, e: yauzl.Entry, label: string): AsyncGenerator<Buffer> {
  if (e.compressionMethod !== 0 && e.compressionMethod !== 8)
    throw new FormatError({
      format: FORMAT,
      reason: `${e.fileName}: unsupported compression method`,
      field: 'compressionMethod',
      expected: '0 (stored) or 8 (deflated)',
      found: e.compressionMethod,
      file: label,
    });
  if (e.isEncrypted())
    throw new FormatError({ format: FORMAT, reason: `${e.fileName} is encrypted`, file: label });
  const start = await dataOffset(z.file, e, z.base);
  const raw =
    e.compressedSize === 0
      ? Readable.from([])
      : createReadStream(z.file, { start, end: start + e.compressedSize - 1, highWaterMark: CHUNK });
  const src =
    e.compressionMethod === 8 ? streamPipeline(raw, createInflateRaw({ chunkSize: CHUNK }), () => {}) : raw;
  let size = 0;
  let crc = 0;
  try {
    for await (const c of src as AsyncIterable<Buffer>) {
      size += c.length;
      if (size > e.uncompressedSize) break;
      crc = crc32(c, crc);
      yield c;
    }
  } catch (err) {
    throw zipErr(label, err);
  } finally {
    raw.destroy();
    if (src !== raw) src.destroy();
  }
  if (size !== e.uncompressedSize)
    throw new FormatError({
      format: FORMAT,
      reason: `${e.fileName}: data size does not match the central directory`,
      field: 'uncompressedSize',
      expected: e.uncompressedSize,
      found: size > e.uncompressedSize ? `more than ${e.uncompressedSize}` : size,
      file: label,
    });
  if (crc >>> 0 !== e.crc32 >>> 0)
    throw new FormatError({
      format: FORMAT,
      reason: `${e.fileName}: CRC-32 mismatch (corrupt zip)`,
      field: 'crc32',
      expected: e.crc32.toString(16).padStart(8, '0'),
      found: (crc >>> 0).toString(16).padStart(8, '0'),
      file: label,
    });
}

async function readText(z: OpenZip, e: yauzl.Entry, path: string): Promise<string> {
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
    for await (const c of entryData(z, e, path)) chunks.push(c);
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

/** Partition an image file flashes: its name without `.img`; `bootloader-*`/`radio-*` → bootloader/radio. */
export function partitionOf(name: string): string {
  const l = leaf(name).replace(/\.img$/i, '');
  if (/^bootloader[-_.]/i.test(l) || l === 'bootloader') return 'bootloader';
  if (/^radio[-_.]/i.test(l) || l === 'radio') return 'radio';
  return l;
}

/** An open factory/fastboot zip: list once, extract many images, close. */
export interface FactoryZip {
  info: FactoryZipInfo;
  /**
   * Streams one image (`entry` as listed in `info.images`, e.g. `system.img` or
   * `dir/image-x.zip!system.img`) to `outPath`.
   */
  extract(entry: string, outPath: string, opts?: { onProgress?: ProgressFn }): Promise<{ size: number }>;
  close(): Promise<void>;
}

/**
 * Opens a factory or fastboot zip and lists it: android-info.txt requirements, every *.img
 * (also those in a nested image-*.zip), sizes. A stored nested zip is read in place; a deflated
 * one is inflated once to a temporary file that lives until close(), so extracting every image
 * of a Pixel factory zip inflates its 2-3 GiB image zip once, not once per image (into
 * `tmpDir`, default the OS temp folder, which may be a small tmpfs). Reads no image data until
 * extract().
 */
export async function openFactoryZip(path: string, opts: { tmpDir?: string } = {}): Promise<FactoryZip> {
  const outer = await openZip(path);
  const nested = new Map<string, OpenZip & { tmp?: string }>();
  const close = async () => {
    for (const n of nested.values()) {
      n.zip.close();
      if (n.tmp) await rm(n.tmp, { recursive: true, force: true });
    }
    nested.clear();
    outer.zip.close();
  };
  const nestedZip = async (name: string) => {
    let n = nested.get(name);
    if (!n) {
      const e = outer.entries.find((x) => x.fileName === name);
      if (!e)
        throw new InputError(`no entry ${name} in ${path}`, {
          code: 'ZIP_NO_ENTRY',
          context: { file: path, entry: name },
        });
      n = await openNested(path, outer, e, opts.tmpDir ?? tmpdir());
      nested.set(name, n);
    }
    return n;
  };
  try {
    const info: FactoryZipInfo = { path, kind: 'fastboot', images: [], nestedZips: [], others: [] };
    for (const e of outer.entries) {
      if (e.fileName.endsWith('/')) continue;
      if (leaf(e.fileName) === 'android-info.txt' && !info.androidInfo) {
        info.androidInfo = parseAndroidInfo(await readText(outer, e, path), `${path}!${e.fileName}`);
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
      const inner = await nestedZip(nz);
      for (const ie of inner.entries) {
        if (leaf(ie.fileName) === 'android-info.txt' && !info.androidInfo) {
          info.androidInfo = parseAndroidInfo(
            await readText(inner, ie, path),
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
    }
    const extract: FactoryZip['extract'] = async (entry, outPath, opts = {}) => {
      const bang = entry.indexOf('!');
      const outerName = bang < 0 ? entry : entry.slice(0, bang);
      const innerName = bang < 0 ? undefined : entry.slice(bang + 1);
      let zip: OpenZip = outer;
      let target = outer.entries.find((x) => x.fileName === outerName);
      if (target && innerName !== undefined) {
        const inner = await nestedZip(outerName);
        zip = inner;
        target = inner.entries.find((x) => x.fileName === innerName);
      }
      if (!target)
        throw new InputError(`no entry ${entry} in ${path}`, {
          code: 'ZIP_NO_ENTRY',
          context: { file: path, entry },
        });
      const total = target.uncompressedSize;
      const label = innerName === undefined ? path : `${path}!${outerName}`;
      let done = 0;
      const out = await open(outPath, 'w');
      try {
        for await (const c of entryData(zip, target, label)) {
          if (!isAllZero(c)) await writeAll(out, c, done);
          done += c.length;
          opts.onProgress?.({ stage: `extract ${leaf(entry)}`, done, total, unit: 'bytes' });
        }
        await out.truncate(done);
      } catch (err) {
        throw err instanceof FormatError ? err : zipErr(path, err);
      } finally {
        await out.close();
      }
      return { size: total };
    };
    return { info, extract, close };
  } catch (e) {
    await close();
    throw e;
  }
}

/** Lists a factory or fastboot zip (see openFactoryZip). */
export async function readFactoryZip(path: string): Promise<FactoryZipInfo> {
  const z = await openFactoryZip(path);
  await z.close();
  return z.info;
}

/**
 * Streams one image out of a factory/fastboot zip to `outPath`. To extract several, use
 * openFactoryZip (a deflated nested zip is then inflated once).
 */
export async function extractFactoryImage(
  zipPath: string,
  entry: string,
  outPath: string,
  opts: { onProgress?: ProgressFn } = {},
): Promise<{ size: number }> {
  const z = await openFactoryZip(zipPath);
  try {
    return await z.extract(entry, outPath, opts);
  } finally {
    await z.close();
  }
}

/** Fixed entry time so the same inputs give the same zip bytes (DOS time is local-time based). */
const FIXED_MTIME = new Date(2009, 0, 1, 0, 0, 0);

/**
 * Writes a fastboot-flashable zip (`fastboot update out.zip`): android-info.txt first, then the
 * images in the given order, fixed timestamps and modes, so it is byte-for-byte reproducible.
 * `androidInfo` is the file's text (see formatAndroidInfo). Images are deflated unless
 * `compress: false`, which stores them (much faster to write, and fastboot reads stored
 * entries in place); stored zips can also take each image's CRC-32 when the caller has it and
 * return the archive's SHA-256 taken while writing (`sha256`) and bypass the page cache
 * (`direct`), see writeStoredZip.
 */
export async function writeFastbootZip(
  outPath: string,
  spec: { androidInfo: string; images: Array<{ name: string; path: string; crc32?: number }> },
  opts: { compress?: boolean; sha256?: boolean; direct?: boolean; verifyGivenCrc32?: boolean } = {},
): Promise<{ path: string; entries: string[]; sha256?: string }> {
  parseAndroidInfo(spec.androidInfo, 'android-info.txt', { strict: true }); // what we write must parse
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
  const entryOpts = { mtime: FIXED_MTIME, mode: 0o100644 };
  if (opts.compress === false) {
    // Stored: one native-CRC copy per image (yazl pipes every byte through a JS CRC-32).
    const written = await writeStoredZip(
      outPath,
      [
        { name: 'android-info.txt', data: Buffer.from(spec.androidInfo, 'utf8') },
        ...spec.images.map((img) => ({
          name: img.name.endsWith('.img') ? img.name : `${img.name}.img`,
          path: img.path,
          crc32: img.crc32,
        })),
      ],
      { ...entryOpts, sha256: opts.sha256, direct: opts.direct, verifyGivenCrc32: opts.verifyGivenCrc32 },
    ).catch((err: NodeJS.ErrnoException) => {
      if (err instanceof InputError) throw err;
      throw new InputError(`cannot write ${outPath}: ${err.message}`, {
        code: err.code ?? 'ZIP_WRITE',
        context: { file: outPath, path: err.path },
      });
    });
    return { path: outPath, entries: ['android-info.txt', ...names], sha256: written.sha256 };
  }
  const z = new yazl.ZipFile();
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
