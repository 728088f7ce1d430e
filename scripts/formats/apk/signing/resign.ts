/**
 * Re-signing a signed APK with another key in process, as `apksigner sign` does for an APK whose
 * minSdkVersion is 24 or more (no v1 signature): the old signatures are stripped as apksig's
 * DefaultApkSignerEngine drops them, the entries are realigned as apksig's ApkSigner does, and
 * the result is signed with v2 (and v3) by sign.ts. No JVM: a LineageOS-style base signed with
 * the public test keys has a hundred such APKs.
 */
import { readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { FormatError, InputError } from '../../../errors.ts';
import { parseManifest } from '../manifest.ts';
import { bufferSource, ZipArchive, type ZipEntry } from '../zip.ts';
import { findSigningBlock } from './block.ts';
import { type ApkSigningKey, defaultDataAlignment, signApkBuffer } from './sign.ts';
import { needsV1Digest } from './v1.ts';

/** Largest APK re-signed in process by default (larger ones: apksigner, which streams). */
export const MAX_IN_MEMORY_APK = 64 * 1024 * 1024;

/** Lowest minSdkVersion for which the platform needs no v1 (JAR) signature. */
export const MIN_SDK_WITHOUT_V1 = 24;

const LFH_SIG = 0x04034b50;
const DATA_DESCRIPTOR_SIG = 0x08074b50;
const LFH_SIZE = 30;
/** apksig ApkSigner: extra field that pads a stored entry's data to its alignment. */
const ALIGNMENT_EXTRA_ID = 0xd935;
const ALIGNMENT_EXTRA_MIN_SIZE = 6;

function bad(apk: string, reason: string, field: string, offset: number): never {
  throw new FormatError({ format: 'zip', reason, field, offset, file: apk });
}

/**
 * The records of a zip extra field (ID, data size, their bytes), as apksig walks them: up to
 * the first one whose size runs past the end, and never a tail shorter than a record header.
 */
function* extraRecords(extra: Buffer): Generator<{ id: number; size: number; at: number; bytes: Buffer }> {
  for (let o = 0; o + 4 <= extra.length; ) {
    const id = extra.readUInt16LE(o);
    const size = extra.readUInt16LE(o + 2);
    if (o + 4 + size > extra.length) return;
    yield { id, size, at: o, bytes: extra.subarray(o, o + 4 + size) };
    o += 4 + size;
  }
}

/**
 * apksig getInputJarEntryDataAlignmentMultiple: none for compressed data; else the alignment an
 * existing 0xd935 field asks for, else 4096 for native libraries and 4 for the rest.
 */
function dataAlignment(method: number, name: string, extra: Buffer): number {
  if (method !== 0) return 1;
  for (const r of extraRecords(extra)) {
    if (r.id !== ALIGNMENT_EXTRA_ID) continue;
    if (r.size < 2) break;
    return extra.readUInt16LE(r.at + 4);
  }
  return defaultDataAlignment(name);
}

/**
 * apksig createExtraFieldToAlignData: the extra field's records but alignment ones and empty
 * zero-ID ones (zipalign's padding), without a malformed tail, plus an alignment record padded
 * so that data starting after it (the extra starting at `extraStart`) is aligned.
 */
function aligningExtra(extra: Buffer, extraStart: number, alignment: number): Buffer {
  const kept = [...extraRecords(extra)]
    .filter((r) => !(r.id === ALIGNMENT_EXTRA_ID || (r.id === 0 && r.size === 0)))
    .map((r) => r.bytes);
  const head = Buffer.concat(kept);
  const padding =
    (alignment - ((extraStart + head.length + ALIGNMENT_EXTRA_MIN_SIZE) % alignment)) % alignment;
  const field = Buffer.alloc(ALIGNMENT_EXTRA_MIN_SIZE + padding);
  field.writeUInt16LE(ALIGNMENT_EXTRA_ID, 0);
  field.writeUInt16LE(2 + padding, 2);
  field.writeUInt16LE(alignment, 4);
  return Buffer.concat([head, field]);
}

/**
 * The APK with its signatures stripped, ready for signApkBuffer: the APK Signing Block goes,
 * and so does every entry apksig keeps out of a v1 manifest (MANIFEST.MF, the META-INF
 * signature files, directory entries), as `apksigner sign` drops them when it signs without v1.
 * Other entries keep their local records byte for byte (compressed data untouched), in file
 * order, with whatever bytes lay between or after them; a stored entry whose aligned data the
 * removals would misalign gets a 0xd935 padding field, exactly as apksig realigns it.
 */
export async function stripApkSignatures(apk: Buffer, name = '<apk>'): Promise<Buffer> {
  const zip = await ZipArchive.open(bufferSource(apk, name));
  if (zip.layout.zip64)
    throw new InputError(`${name}: a ZIP64 archive cannot carry APK signatures`, {
      code: 'APK_ZIP64',
      context: { file: name },
    });
  // apksig copies the local-file section, [0, signing block or central directory): records in
  // file order, dropped ones skipped, any bytes between or after records (an old signing block's
  // zero padding) verbatim, as "this signer is supposed to preserve as much of input as possible".
  const sectionEnd = (await findSigningBlock(zip))?.offset ?? zip.layout.centralDirectoryOffset;
  const byOffset = [...zip.entries].sort((a, b) => a.localHeaderOffset - b.localHeaderOffset);
  const parts: Buffer[] = [];
  const newCd = new Map<ZipEntry, Buffer>();
  let out = 0;
  let inOff = 0;
  const emit = (b: Buffer) => {
    parts.push(b);
    out += b.length;
  };
  for (const e of byOffset) {
    const at = e.localHeaderOffset;
    if (at > inOff) {
      emit(apk.subarray(inOff, at));
      inOff = at;
    }
    const dataStart = await zip.dataOffset(e); // checks the local header against the directory
    const lfh = apk.subarray(at, at + LFH_SIZE);
    if (lfh.readUInt32LE(0) !== LFH_SIG) bad(name, 'bad local file header signature', e.name, at);
    const nameLen = lfh.readUInt16LE(26);
    const extra = apk.subarray(at + LFH_SIZE + nameLen, dataStart);
    let end = dataStart + e.compressedSize;
    if (lfh.readUInt16LE(6) & 0x08) {
      // Data descriptor: CRC and sizes after the data, with or without its signature.
      end += end + 4 <= apk.length && apk.readUInt32LE(end) === DATA_DESCRIPTOR_SIG ? 16 : 12;
    }
    if (end > sectionEnd)
      bad(name, 'entry data runs into the signing block or central directory', e.name, dataStart);
    inOff += end - at;
    if (!needsV1Digest(e.name)) continue;
    newCd.set(e, centralRecord(zip, apk, e.cdRecordOffset, out, name, e.name));
    const alignment = dataAlignment(e.method, e.name, extra);
    // apksig outputInputJarEntryLfhRecordPreservingDataAlignment: a record is copied as it is
    // unless it moves and its data, aligned before, would no longer be; misaligned data stays so.
    if (at === out || alignment <= 1 || at % alignment === out % alignment || dataStart % alignment !== 0)
      emit(apk.subarray(at, end));
    else {
      const newExtra = aligningExtra(extra, out + LFH_SIZE + nameLen, alignment);
      if (newExtra.length > 0xffff)
        bad(name, 'extra field too long to realign', e.name, at + LFH_SIZE + nameLen);
      const header = Buffer.from(lfh);
      header.writeUInt16LE(newExtra.length, 28);
      emit(header);
      emit(apk.subarray(at + LFH_SIZE, at + LFH_SIZE + nameLen));
      emit(newExtra);
      emit(apk.subarray(dataStart, end));
    }
  }
  if (inOff < sectionEnd) emit(apk.subarray(inOff, sectionEnd));
  // The central directory keeps the input's order.
  const central = zip.entries.filter((e) => newCd.has(e)).map((e) => newCd.get(e)!);
  const cd = Buffer.concat(central);
  const eocd = Buffer.from(apk.subarray(zip.layout.eocdOffset, zip.layout.eocdOffset + zip.layout.eocdSize));
  eocd.writeUInt16LE(central.length, 8);
  eocd.writeUInt16LE(central.length, 10);
  eocd.writeUInt32LE(cd.length, 12);
  eocd.writeUInt32LE(out, 16);
  return Buffer.concat([...parts, cd, eocd]);
}

/** A copy of the central directory record at `at`, pointing at the local record now at `localOffset`. */
function centralRecord(
  zip: ZipArchive,
  apk: Buffer,
  at: number,
  localOffset: number,
  file: string,
  entry: string,
): Buffer {
  const end = zip.layout.centralDirectoryOffset + zip.layout.centralDirectorySize;
  if (at + 46 > end) bad(file, 'central directory record out of bounds', entry, at);
  const size = 46 + apk.readUInt16LE(at + 28) + apk.readUInt16LE(at + 30) + apk.readUInt16LE(at + 32);
  if (at + size > end) bad(file, 'central directory record out of bounds', entry, at);
  const rec = Buffer.from(apk.subarray(at, at + size));
  rec.writeUInt32LE(localOffset, 42);
  return rec;
}

/**
 * Re-signs the APK at `inPath` with `key` into `outPath` (v2, and v3 when asked), in process.
 * Refuses (typed) what apksigner would sign but this signer cannot, so that the caller can
 * use apksigner then: an APK whose minSdkVersion is below 24 (APK_RESIGN_NEEDS_V1: those
 * platforms need a v1 signature), stored entries that stay misaligned once the old signatures
 * are gone (APK_NOT_ALIGNED: apksigner leaves them so; this signer refuses them), or an APK
 * larger than `maxBytes` (APK_RESIGN_TOO_LARGE; default MAX_IN_MEMORY_APK).
 */
export async function resignApkFile(
  inPath: string,
  outPath: string,
  key: ApkSigningKey,
  opts: { v3?: boolean; maxBytes?: number } = {},
): Promise<void> {
  // The APK is held in memory about three times over (input, stripped, signed).
  const maxBytes = opts.maxBytes ?? MAX_IN_MEMORY_APK;
  const size = (await stat(inPath)).size;
  if (size > maxBytes)
    throw new InputError(`${inPath}: ${size} bytes is more than the in-process signer holds in memory`, {
      code: 'APK_RESIGN_TOO_LARGE',
      context: { file: inPath, size, max: maxBytes },
      hint: 'sign it with apksigner, which streams it',
    });
  const apk = await readFile(inPath);
  const zip = await ZipArchive.open(bufferSource(apk, inPath));
  const m = zip.entry('AndroidManifest.xml');
  if (!m)
    throw new InputError(`${inPath}: APK has no AndroidManifest.xml`, {
      code: 'APK_NO_MANIFEST',
      context: { file: inPath },
    });
  const minSdk = parseManifest(await zip.read(m), null, inPath).minSdkVersion;
  if (minSdk < MIN_SDK_WITHOUT_V1)
    throw new InputError(
      `${inPath}: minSdkVersion ${minSdk} needs a v1 signature, which the in-process signer does not write`,
      {
        code: 'APK_RESIGN_NEEDS_V1',
        context: { file: inPath, minSdk },
        hint: 'sign it with apksigner (v1 + v2)',
      },
    );
  const signed = await signApkBuffer(await stripApkSignatures(apk, inPath), key, { minSdk, v3: opts.v3 });
  const tmp = `${outPath}.omie-resign-${process.pid}`;
  try {
    await writeFile(tmp, signed);
    await rename(tmp, outPath);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}
