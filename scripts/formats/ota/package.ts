import { createHash, type KeyObject, type X509Certificate } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import { crc32, deflateRawSync } from 'node:zlib';
import { InputError } from '../../errors.ts';
import type { ProgressFn } from '../../progress.ts';
import type { FinalPayload } from '../payload/payload-file.ts';
import {
  type EntrySpan,
  encodeOtaMetadata,
  legacyOtaMetadata,
  type OtaPackageMetadata,
  propertyFiles,
} from './metadata.ts';
import { wholeFileSigner } from './whole-file.ts';

/**
 * An A/B OTA package (the zip `ota_from_target_files` makes, signed by `signapk -w`), written in
 * one sequential pass with its whole-file signature taken as it goes:
 *
 *   META-INF/com/android/metadata     stored  legacy key=value metadata
 *   META-INF/com/android/metadata.pb  stored  OtaMetadata
 *   care_map.pb                       stored  (when the build has verified partitions)
 *   payload.bin                       stored  update_engine streams it by offset
 *   payload_properties.txt            stored
 *   META-INF/com/android/otacert      deflated the signing certificate (SignApk addOtacert)
 *   archive comment                            the whole-file signature
 *
 * Stored entries come first in name order and the certificate last, as signapk orders them, so
 * every entry's offset is known before anything is written: the metadata's property files give
 * the exact offsets with no second signing pass (ota_utils.py needs one because signapk may move
 * entries). Entries carry 2009-01-01 00:00:00 like signapk's. zip64 records are written when the
 * payload passes 4 GiB.
 */

const METADATA = 'META-INF/com/android/metadata';
const METADATA_PB = 'META-INF/com/android/metadata.pb';
const OTACERT = 'META-INF/com/android/otacert';
const LOCAL = 30;
const CENTRAL = 46;
const MAX32 = 0xffffffff;
/** signapk's fixed entry time, 2009-01-01 00:00:00, in DOS format. */
const DOS_DATE = ((2009 - 1980) << 9) | (1 << 5) | 1;
const DOS_TIME = 0;

export interface OtaPackageInput {
  payload: FinalPayload;
  metadata: OtaPackageMetadata;
  careMap?: Buffer;
  /** More stored entries (name → bytes), placed in name order among the others. */
  extraEntries?: Record<string, Buffer>;
  /** Signs the package (signapk -w) and is stored as META-INF/com/android/otacert. */
  key: KeyObject;
  certificate: X509Certificate;
  /** The certificate file's bytes as the partner keeps it (PEM): otacert holds them as they are. */
  certificateFile: Buffer;
  onProgress?: ProgressFn;
}

export interface WrittenOtaPackage {
  path: string;
  size: number;
  sha256: string;
  propertyFiles: Record<string, string>;
  entries: { name: string; offset: number; size: number }[];
}

interface Entry {
  name: Buffer;
  method: 0 | 8;
  size: number;
  compressedSize: number;
  crc: number;
  data?: Buffer;
  zip64: boolean;
  offset: number;
}

function entry(name: string, data: Buffer, deflate = false): Entry {
  const stored = deflate ? deflateRawSync(data) : data;
  return {
    name: Buffer.from(name, 'utf8'),
    method: deflate ? 8 : 0,
    size: data.length,
    compressedSize: stored.length,
    crc: crc32(data) >>> 0,
    data: stored,
    zip64: false,
    offset: 0,
  };
}

const extraLength = (e: Entry) => (e.zip64 ? 20 : 0);

/** Places the entries one after the other; returns each entry's data span. */
function layout(entries: Entry[]): Record<string, EntrySpan> {
  let at = 0;
  const spans: Record<string, EntrySpan> = {};
  for (const e of entries) {
    e.offset = at;
    const data = at + LOCAL + e.name.length + extraLength(e);
    spans[e.name.toString('utf8')] = { offset: data, size: e.compressedSize };
    at = data + e.compressedSize;
  }
  return spans;
}

function localHeader(e: Entry): Buffer {
  const h = Buffer.alloc(LOCAL + e.name.length + extraLength(e));
  h.writeUInt32LE(0x04034b50, 0);
  h.writeUInt16LE(e.zip64 ? 45 : 20, 4);
  h.writeUInt16LE(0, 6);
  h.writeUInt16LE(e.method, 8);
  h.writeUInt16LE(DOS_TIME, 10);
  h.writeUInt16LE(DOS_DATE, 12);
  h.writeUInt32LE(e.crc, 14);
  h.writeUInt32LE(e.zip64 ? MAX32 : e.compressedSize, 18);
  h.writeUInt32LE(e.zip64 ? MAX32 : e.size, 22);
  h.writeUInt16LE(e.name.length, 26);
  h.writeUInt16LE(extraLength(e), 28);
  e.name.copy(h, LOCAL);
  if (e.zip64) {
    const x = LOCAL + e.name.length;
    h.writeUInt16LE(0x0001, x);
    h.writeUInt16LE(16, x + 2);
    h.writeBigUInt64LE(BigInt(e.size), x + 4);
    h.writeBigUInt64LE(BigInt(e.compressedSize), x + 12);
  }
  return h;
}

function centralDirectory(entries: Entry[], cdOffset: number): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    const fields: bigint[] = [];
    if (e.zip64) fields.push(BigInt(e.size), BigInt(e.compressedSize));
    if (e.offset >= MAX32) fields.push(BigInt(e.offset));
    const extra = Buffer.alloc(fields.length ? 4 + 8 * fields.length : 0);
    if (fields.length) {
      extra.writeUInt16LE(0x0001, 0);
      extra.writeUInt16LE(8 * fields.length, 2);
      fields.forEach((f, i) => {
        extra.writeBigUInt64LE(f, 4 + 8 * i);
      });
    }
    const h = Buffer.alloc(CENTRAL);
    h.writeUInt32LE(0x02014b50, 0);
    h.writeUInt16LE((3 << 8) | 45, 4);
    h.writeUInt16LE(fields.length ? 45 : 20, 6);
    h.writeUInt16LE(0, 8);
    h.writeUInt16LE(e.method, 10);
    h.writeUInt16LE(DOS_TIME, 12);
    h.writeUInt16LE(DOS_DATE, 14);
    h.writeUInt32LE(e.crc, 16);
    h.writeUInt32LE(e.zip64 ? MAX32 : e.compressedSize, 20);
    h.writeUInt32LE(e.zip64 ? MAX32 : e.size, 24);
    h.writeUInt16LE(e.name.length, 28);
    h.writeUInt16LE(extra.length, 30);
    h.writeUInt32LE((0o100644 << 16) >>> 0, 38);
    h.writeUInt32LE(Math.min(e.offset, MAX32), 42);
    parts.push(h, e.name, extra);
  }
  const cd = Buffer.concat(parts);
  const tail: Buffer[] = [];
  const zip64 = entries.some((e) => e.zip64 || e.offset >= MAX32) || cdOffset >= MAX32;
  if (zip64) {
    const r = Buffer.alloc(56);
    r.writeUInt32LE(0x06064b50, 0);
    r.writeBigUInt64LE(44n, 4);
    r.writeUInt16LE((3 << 8) | 45, 12);
    r.writeUInt16LE(45, 14);
    r.writeBigUInt64LE(BigInt(entries.length), 24);
    r.writeBigUInt64LE(BigInt(entries.length), 32);
    r.writeBigUInt64LE(BigInt(cd.length), 40);
    r.writeBigUInt64LE(BigInt(cdOffset), 48);
    const l = Buffer.alloc(20);
    l.writeUInt32LE(0x07064b50, 0);
    l.writeBigUInt64LE(BigInt(cdOffset + cd.length), 8);
    l.writeUInt32LE(1, 16);
    tail.push(r, l);
  }
  // The end record without its comment-length field: that and the comment follow the signature.
  const eocd = Buffer.alloc(20);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(entries.length, 8);
  eocd.writeUInt16LE(entries.length, 10);
  eocd.writeUInt32LE(Math.min(cd.length, MAX32), 12);
  eocd.writeUInt32LE(Math.min(cdOffset, MAX32), 16);
  return Buffer.concat([cd, ...tail, eocd]);
}

/** Writes the signed OTA package to `out` (through a temporary file: nothing half-written). */
export async function writeOtaPackage(out: string, input: OtaPackageInput): Promise<WrittenOtaPackage> {
  const { payload } = input;
  const payloadEntry: Entry = {
    name: Buffer.from('payload.bin'),
    method: 0,
    size: payload.size,
    compressedSize: payload.size,
    crc: payload.crc32,
    zip64: payload.size >= MAX32,
    offset: 0,
  };
  const build = (files: Record<string, string>) => {
    const stored = [
      entry(METADATA, legacyOtaMetadata(input.metadata, files)),
      entry(METADATA_PB, encodeOtaMetadata(input.metadata, files)),
      ...(input.careMap ? [entry('care_map.pb', input.careMap)] : []),
      ...Object.entries(input.extraEntries ?? {}).map(([n, d]) => entry(n, d)),
      payloadEntry,
      entry('payload_properties.txt', Buffer.from(payload.properties)),
    ].sort((a, b) => Buffer.compare(a.name, b.name));
    const es = [...stored, entry(OTACERT, input.certificateFile, true)];
    return { es, spans: layout(es) };
  };
  // Placeholders first (their length is what the metadata entries keep), then the real offsets:
  // the entries ahead of the metadata do not move, so one refinement settles it.
  let reserved = build({ 'ota-property-files': '', 'ota-streaming-property-files': '' });
  let placeholders = propertyFiles(reserved.spans, payload.metadataWithSignatureSize, { reserve: true });
  for (let i = 0; i < 4; i++) {
    reserved = build(placeholders);
    const next = propertyFiles(reserved.spans, payload.metadataWithSignatureSize, { reserve: true });
    if (Object.keys(next).every((k) => next[k].length === placeholders[k].length)) break;
    placeholders = next;
  }
  const reservedLength = Object.fromEntries(Object.entries(placeholders).map(([k, v]) => [k, v.length]));
  const files = propertyFiles(reserved.spans, payload.metadataWithSignatureSize, {
    reserve: false,
    reservedLength,
  });
  const { es, spans } = build(files);
  for (const name of Object.keys(spans))
    if (spans[name].offset !== reserved.spans[name].offset)
      throw new Error(`OTA package layout moved ${name} while the metadata was finalized`);

  const tmp = `${out}.tmp-${process.pid}`;
  const fh = await open(tmp, 'w');
  const signer = wholeFileSigner(input.key, input.certificate);
  const digest = createHash('sha256');
  let pos = 0;
  const write = async (b: Buffer, signed = true) => {
    if (signed) signer.update(b);
    digest.update(b);
    for (let off = 0; off < b.length; )
      off += (await fh.write(b, off, b.length - off, pos + off)).bytesWritten;
    pos += b.length;
  };
  try {
    for (const e of es) {
      await write(localHeader(e));
      if (e.data) await write(e.data);
      else {
        let done = 0;
        await payload.writeTo(async (chunk) => {
          await write(chunk);
          done += chunk.length;
          input.onProgress?.({ stage: 'write OTA package', done, total: payload.size, unit: 'bytes' });
        });
        if (done !== payload.size)
          throw new InputError(`payload.bin came out ${done} bytes long, not ${payload.size}`, {
            code: 'OTA_PAYLOAD_SIZE',
          });
      }
    }
    await write(centralDirectory(es, pos));
    const comment = signer.comment();
    const len = Buffer.alloc(2);
    len.writeUInt16LE(comment.length);
    await write(len, false);
    await write(comment, false);
    await fh.close();
    await rename(tmp, out);
  } catch (e) {
    await fh.close().catch(() => {});
    await rm(tmp, { force: true });
    throw e;
  }
  return {
    path: out,
    size: pos,
    sha256: digest.digest('hex'),
    propertyFiles: Object.fromEntries(Object.entries(files).map(([k, v]) => [k, v.trim()])),
    entries: es.map((e) => ({ name: e.name.toString('utf8'), ...spans[e.name.toString('utf8')] })),
  };
}
