import { type FileHandle, open } from 'node:fs/promises';
import type { Type } from 'protobufjs';
import yauzl from 'yauzl';
import { FormatError, InputError } from '../../errors.ts';
import type { ByteSource, ZipArchive } from '../apk/zip.ts';
import { checkBound } from '../binary.ts';
import { payloadProtos } from './proto.ts';

/**
 * Reader for A/B OTA payloads (`payload.bin`, major version 2), alone or inside an OTA zip.
 * Layout and field meanings: AOSP system/update_engine/update_metadata.proto and
 * payload_consumer/payload_metadata.cc. Only metadata is read here (header, manifest, both
 * Signatures messages); operation data stays on disk and is read by extract.ts.
 */

export const PAYLOAD_MAGIC = 'CrAU';
/** Brillo/Android A/B payloads; major version 1 was Chrome OS's kernel+rootfs format. */
export const PAYLOAD_MAJOR_VERSION = 2;
/** magic(4) + major version(8) + manifest size(8) + metadata signature size(4). */
export const PAYLOAD_HEADER_SIZE = 24;
/** minor_version of a full payload (kFullPayloadMinorVersion); deltas use 2 and up. */
export const FULL_PAYLOAD_MINOR_VERSION = 0;
/** Extent.start_block value marking a sparse hole. Kept as -1 in our plain extents. */
export const SPARSE_HOLE = -1;

/** Real manifests are well under a few MiB; these stop allocations from a forged length. */
const MAX_MANIFEST_SIZE = 256 * 1024 * 1024;
const MAX_SIGNATURES_SIZE = 16 * 1024 * 1024;
const MAX_PROPERTIES_SIZE = 64 * 1024;
/** metadata.pb carries per-partition states and property-file offsets: still small. */
const MAX_METADATA_PB_SIZE = 1024 * 1024;

/** Operations whose output depends on an old partition: only a device or delta tool can apply them. */
export const DELTA_OPERATION_TYPES: ReadonlySet<string> = new Set([
  'MOVE',
  'BSDIFF',
  'SOURCE_COPY',
  'SOURCE_BSDIFF',
  'PUFFDIFF',
  'BROTLI_BSDIFF',
  'ZUCCHINI',
  'LZ4DIFF_BSDIFF',
  'LZ4DIFF_PUFFDIFF',
]);
/** Operations a full payload is made of; extract.ts applies exactly these. */
export const FULL_OPERATION_TYPES: ReadonlySet<string> = new Set([
  'REPLACE',
  'REPLACE_BZ',
  'REPLACE_XZ',
  'REPLACE_ZSTD',
  'ZERO',
  'DISCARD',
]);

/** Where the payload bytes are: a bare payload.bin, or a STORED entry of an OTA zip. */
export interface PayloadLocation {
  file: string;
  /** Offset of "CrAU" in `file`. */
  offset: number;
  /** Length of the payload in bytes. */
  size: number;
  container: 'payload' | 'ota-zip';
  /** payload_properties.txt of the OTA zip (FILE_HASH, FILE_SIZE, METADATA_HASH, METADATA_SIZE …). */
  properties?: Record<string, string>;
  /** META-INF/com/android/metadata of the OTA zip (ota-type, pre-device, post-build, post-timestamp …). */
  otaMetadata?: Record<string, string>;
  /** META-INF/com/android/metadata.pb (Android 11+): the same, typed (ota_metadata.proto). */
  otaMetadataPb?: OtaMetadata;
  /**
   * Set when the metadata's ota-property-files / ota-streaming-property-files place payload.bin
   * elsewhere than the zip does (update_engine streams from those offsets): what they say.
   */
  propertyFilesMismatch?: string;
}

/** DeviceState of ota_metadata.proto: what the device runs before (precondition) or after. */
export interface OtaDeviceState {
  device: string[];
  build: string[];
  buildIncremental?: string;
  /** Seconds since the epoch (ro.build.date.utc). */
  timestamp?: number;
  sdkLevel?: string;
  securityPatchLevel?: string;
  partitionState: { partitionName: string; device: string[]; build: string[]; version?: string }[];
}

/** OtaMetadata of ota_metadata.proto. */
export interface OtaMetadata {
  /** "AB", "BLOCK", "BRICK" or "UNKNOWN". */
  type: string;
  wipe: boolean;
  downgrade: boolean;
  splDowngrade: boolean;
  retrofitDynamicPartitions: boolean;
  requiredCache?: number;
  /** ota-property-files etc.: "name:offset:size,…" strings signapk computed. */
  propertyFiles: Record<string, string>;
  precondition?: OtaDeviceState;
  postcondition?: OtaDeviceState;
}

export interface PayloadExtent {
  /** First block, or SPARSE_HOLE. */
  startBlock: number;
  numBlocks: number;
}

export interface PayloadOperation {
  /** Index in the partition's operation list (what error messages name). */
  index: number;
  /** AOSP InstallOperation.Type name, or `UNKNOWN_<n>` for a value this schema does not know. */
  type: string;
  /** Offset of the data from the start of the blobs (PayloadInfo.dataOffset). */
  dataOffset: number;
  dataLength: number;
  srcExtents: PayloadExtent[];
  dstExtents: PayloadExtent[];
  /** SHA-256 of the stored data blob, hex; undefined when the manifest has none. */
  dataSha256?: string;
  srcSha256?: string;
  /** Legacy SOURCE_BSDIFF (minor version 3 and lower): bytes of the source and result it patches. */
  srcLength?: number;
  dstLength?: number;
}

export interface PayloadPartition {
  name: string;
  /** new_partition_info: size and SHA-256 (hex) after all operations. */
  size: number;
  sha256?: string;
  /** old_partition_info, present only in delta payloads. */
  oldSize?: number;
  oldSha256?: string;
  operations: PayloadOperation[];
  version?: string;
  filesystemType?: string;
  runPostinstall: boolean;
  postinstallPath?: string;
  /**
   * dm-verity data the device computes after writing the partition (minor version 6+): full
   * payloads leave the hash tree and FEC blocks out of their operations.
   */
  hashTreeAlgorithm?: string;
  hashTreeSalt?: string;
  hashTreeDataExtent?: PayloadExtent;
  hashTreeExtent?: PayloadExtent;
  fecDataExtent?: PayloadExtent;
  fecExtent?: PayloadExtent;
  fecRoots?: number;
  /** Virtual A/B hints for libsnapshot (not needed to extract). */
  estimateCowSize?: number;
  estimateOpCountMax?: number;
  mergeOperations: number;
}

export interface DynamicPartitionGroup {
  name: string;
  size?: number;
  partitionNames: string[];
}

export interface PayloadSignature {
  data: Buffer;
  unpaddedSize?: number;
  version?: number;
}

export interface PayloadManifest {
  blockSize: number;
  minorVersion: number;
  maxTimestamp?: number;
  partialUpdate: boolean;
  securityPatchLevel?: string;
  partitions: PayloadPartition[];
  dynamicPartitions?: {
    groups: DynamicPartitionGroup[];
    snapshotEnabled: boolean;
    vabcEnabled: boolean;
    vabcCompressionParam?: string;
    cowVersion?: number;
    vabcFeatureSet?: { threaded: boolean; batchWrites: boolean };
    compressionFactor?: number;
  };
  apex: { packageName: string; version?: number; isCompressed: boolean; decompressedSize?: number }[];
  /** Payload signature blob, relative to the start of the blobs. */
  signaturesOffset?: number;
  signaturesSize?: number;
}

export interface Payload {
  location: PayloadLocation;
  majorVersion: number;
  manifestSize: number;
  metadataSignatureSize: number;
  /** Absolute offset in `location.file` where operation data (blobs) start. */
  blobsOffset: number;
  /** Bytes available for blobs (payload size minus metadata). */
  blobsSize: number;
  manifest: PayloadManifest;
  metadataSignatures: PayloadSignature[];
  payloadSignatures: PayloadSignature[];
}

function fail(
  loc: PayloadLocation,
  reason: string,
  d: Partial<ConstructorParameters<typeof FormatError>[0]> = {},
) {
  return new FormatError({ format: 'payload', reason, file: loc.file, ...d });
}

/** Reads exactly `length` bytes at `position` or throws a truncation error. */
async function readExact(
  fh: FileHandle,
  length: number,
  position: number,
  loc: PayloadLocation,
  field: string,
): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  let got = 0;
  while (got < length) {
    const { bytesRead } = await fh.read(buf, got, length - got, position + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  if (got !== length)
    throw fail(loc, 'truncated', { field, offset: position, expected: `${length} bytes`, found: got });
  return buf;
}

async function openFile(path: string): Promise<FileHandle> {
  return open(path, 'r').catch((e: NodeJS.ErrnoException) => {
    throw new InputError(`cannot open ${path}: ${e.code ?? e.message}`, {
      code: e.code ?? 'OPEN_FAILED',
      context: { file: path },
    });
  });
}

/**
 * Finds the payload in `path`: the file itself when it starts with "CrAU", or the `payload.bin`
 * entry of an OTA zip (which AOSP's ota_from_target_files stores uncompressed so update_engine
 * can stream it by offset; we read it in place the same way).
 */
export async function locatePayload(path: string): Promise<PayloadLocation> {
  const fh = await openFile(path);
  let head: Buffer;
  let size: number;
  try {
    size = (await fh.stat()).size;
    head = Buffer.alloc(Math.min(4, size));
    await fh.read(head, 0, head.length, 0);
  } finally {
    await fh.close();
  }
  if (head.toString('latin1') === PAYLOAD_MAGIC) return { file: path, offset: 0, size, container: 'payload' };
  if (head.length === 4 && head.readUInt32LE(0) === 0x04034b50) return locateInZip(path);
  throw new FormatError({
    format: 'payload',
    reason: 'neither a payload.bin ("CrAU") nor an OTA zip',
    field: 'magic',
    offset: 0,
    file: path,
    expected: PAYLOAD_MAGIC,
    found: head.toString('latin1'),
  });
}

function zipError(path: string, e: unknown): FormatError {
  return new FormatError(
    { format: 'ota-zip', reason: e instanceof Error ? e.message : String(e), file: path },
    { cause: e },
  );
}

/** Lists an OTA zip's payload.bin (data offset and size) and payload_properties.txt. */
export async function locateInZip(path: string): Promise<PayloadLocation> {
  const zip = await new Promise<yauzl.ZipFile>((res, rej) =>
    yauzl.open(path, { lazyEntries: true, autoClose: false, strictFileNames: false }, (err, z) =>
      err ? rej(zipError(path, err)) : res(z!),
    ),
  );
  try {
    let found: yauzl.Entry | undefined;
    let props: yauzl.Entry | undefined;
    let meta: yauzl.Entry | undefined;
    let metaPb: yauzl.Entry | undefined;
    await new Promise<void>((res, rej) => {
      zip.on('entry', (e: yauzl.Entry) => {
        if (e.fileName === 'payload.bin') found = e;
        else if (e.fileName === 'payload_properties.txt') props = e;
        else if (e.fileName === 'META-INF/com/android/metadata') meta = e;
        else if (e.fileName === 'META-INF/com/android/metadata.pb') metaPb = e;
        zip.readEntry();
      });
      zip.on('end', () => res());
      zip.on('error', (err) => rej(zipError(path, err)));
      zip.readEntry();
    });
    const payload = storedPayload(found, (e) => e.compressionMethod, path);
    // The data starts after the local header, whose name/extra lengths may differ from the
    // central directory's, so read them from the local header itself.
    const fh = await openFile(path);
    let dataOffset: number;
    try {
      const loc: PayloadLocation = { file: path, offset: 0, size: 0, container: 'ota-zip' };
      const lh = await readExact(
        fh,
        30,
        payload.relativeOffsetOfLocalHeader,
        loc,
        'payload.bin local header',
      );
      if (lh.readUInt32LE(0) !== 0x04034b50)
        throw new FormatError({
          format: 'ota-zip',
          reason: 'bad local header signature for payload.bin',
          offset: payload.relativeOffsetOfLocalHeader,
          file: path,
        });
      dataOffset = payload.relativeOffsetOfLocalHeader + 30 + lh.readUInt16LE(26) + lh.readUInt16LE(28);
      const fileSize = (await fh.stat()).size;
      if (dataOffset + payload.compressedSize > fileSize)
        throw new FormatError({
          format: 'ota-zip',
          reason: 'payload.bin extends past the end of the zip',
          offset: dataOffset,
          file: path,
          expected: `<= ${fileSize}`,
          found: dataOffset + payload.compressedSize,
        });
    } finally {
      await fh.close();
    }
    const properties = props ? await readProperties(zip, props, path) : undefined;
    const otaMetadata = meta ? await readProperties(zip, meta, path) : undefined;
    const otaMetadataPb = metaPb
      ? parseOtaMetadata(await readEntry(zip, metaPb, path, MAX_METADATA_PB_SIZE), path)
      : undefined;
    return {
      file: path,
      offset: dataOffset,
      size: payload.compressedSize,
      container: 'ota-zip',
      properties,
      otaMetadata,
      otaMetadataPb,
      propertyFilesMismatch: checkPropertyFiles(
        { ...otaMetadata, ...otaMetadataPb?.propertyFiles },
        dataOffset,
        payload.compressedSize,
      ),
    };
  } finally {
    zip.close();
  }
}

/**
 * Compares payload.bin's place in the zip with the "name:offset:size,…" lists ota_from_target_files
 * writes into the metadata (space-padded to a reserved length); undefined when they agree or say
 * nothing about payload.bin.
 */
function checkPropertyFiles(meta: Record<string, string>, offset: number, size: number): string | undefined {
  for (const key of ['ota-property-files', 'ota-streaming-property-files']) {
    for (const item of (meta[key] ?? '').trim().split(',')) {
      const [name, off, len] = item.trim().split(':');
      if (name === 'payload.bin' && (Number(off) !== offset || Number(len) !== size))
        return `${key} says payload.bin:${off}:${len}, the zip has payload.bin:${offset}:${size}`;
    }
  }
  return undefined;
}

/** Reads a small zip entry whole, refusing one larger than `max` (declared or actual). */
async function readEntry(zip: yauzl.ZipFile, e: yauzl.Entry, path: string, max: number): Promise<Buffer> {
  checkBound('ota-zip', `${e.fileName} size`, e.uncompressedSize, max, undefined, path);
  return new Promise<Buffer>((res, rej) =>
    zip.openReadStream(e, (err, s) => {
      if (err || !s) return rej(zipError(path, err));
      const parts: Buffer[] = [];
      let n = 0;
      s.on('data', (c: Buffer) => {
        n += c.length;
        if (n <= max) parts.push(c);
      });
      s.on('end', () => res(Buffer.concat(parts)));
      s.on('error', (er) => rej(zipError(path, er)));
    }),
  );
}

async function readProperties(
  zip: yauzl.ZipFile,
  e: yauzl.Entry,
  path: string,
): Promise<Record<string, string>> {
  return parseKeyValues((await readEntry(zip, e, path, MAX_PROPERTIES_SIZE)).toString('utf8'));
}

/** An OTA zip's payload.bin entry, which must be stored: update_engine streams it by offset. */
function storedPayload<T>(entry: T | undefined, methodOf: (e: T) => number, path: string): T {
  if (entry === undefined)
    throw new FormatError({
      format: 'ota-zip',
      reason: 'no payload.bin entry (not an A/B OTA zip)',
      file: path,
    });
  const method = methodOf(entry);
  if (method !== 0)
    throw new FormatError({
      format: 'ota-zip',
      reason: 'payload.bin is compressed; A/B OTA zips store it uncompressed',
      field: 'payload.bin compression method',
      file: path,
      expected: 0,
      found: method,
    });
  return entry;
}

/** `key=value` lines (payload_properties.txt, META-INF/com/android/metadata). */
export function parseKeyValues(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) out[line.slice(0, i).trim()] = line.slice(i + 1).trim();
  }
  return out;
}

/**
 * locateInZip for an archive read through the kit's own zip reader, whatever its ByteSource:
 * what a device does with a package it reads block by block (sideload). Offsets are those of the
 * source.
 */
export async function locateInArchive(zip: ZipArchive): Promise<PayloadLocation> {
  const path = zip.name;
  const payload = storedPayload(zip.entry('payload.bin'), (e) => e.method, path);
  const offset = await zip.dataOffset(payload);
  const text = async (name: string, max: number) => {
    const e = zip.entry(name);
    return e ? (await zip.read(e, max, { verifyCrc: true })).toString('utf8') : undefined;
  };
  const props = await text('payload_properties.txt', MAX_PROPERTIES_SIZE);
  const meta = await text('META-INF/com/android/metadata', MAX_PROPERTIES_SIZE);
  const metaPbEntry = zip.entry('META-INF/com/android/metadata.pb');
  const otaMetadata = meta === undefined ? undefined : parseKeyValues(meta);
  const otaMetadataPb = metaPbEntry
    ? parseOtaMetadata(await zip.read(metaPbEntry, MAX_METADATA_PB_SIZE, { verifyCrc: true }), path)
    : undefined;
  return {
    file: path,
    offset,
    size: payload.compressedSize,
    container: 'ota-zip',
    properties: props === undefined ? undefined : parseKeyValues(props),
    otaMetadata,
    otaMetadataPb,
    propertyFilesMismatch: checkPropertyFiles(
      { ...otaMetadata, ...otaMetadataPb?.propertyFiles },
      offset,
      payload.compressedSize,
    ),
  };
}

/** Decodes META-INF/com/android/metadata.pb (OtaMetadata) into plain values. */
export function parseOtaMetadata(buf: Buffer, file?: string): OtaMetadata {
  const { OtaMetadataMessage } = payloadProtos();
  let o: Obj;
  try {
    o = OtaMetadataMessage.toObject(OtaMetadataMessage.decode(buf), {
      longs: String,
      enums: String,
      defaults: false,
      arrays: true,
      objects: true,
    }) as Obj;
  } catch (e) {
    throw new FormatError({
      format: 'ota-zip',
      reason: `cannot decode metadata.pb protobuf: ${e instanceof Error ? e.message : String(e)}`,
      field: 'META-INF/com/android/metadata.pb',
      file,
    });
  }
  const int = (v: unknown, field: string): number | undefined => {
    if (v === undefined || v === null) return undefined;
    const n = Number(v);
    if (!Number.isSafeInteger(n))
      throw new FormatError({
        format: 'ota-zip',
        reason: 'value out of range',
        field,
        found: String(v),
        file,
      });
    return n;
  };
  const strs = (v: unknown) => ((v as unknown[]) ?? []).map(String);
  const state = (d: Obj | undefined, name: string): OtaDeviceState | undefined =>
    d
      ? {
          device: strs(d.device),
          build: strs(d.build),
          buildIncremental: (d.buildIncremental as string) || undefined,
          timestamp: int(d.timestamp, `${name}.timestamp`),
          sdkLevel: (d.sdkLevel as string) || undefined,
          securityPatchLevel: (d.securityPatchLevel as string) || undefined,
          partitionState: ((d.partitionState as Obj[]) ?? []).map((p) => ({
            partitionName: String(p.partitionName ?? ''),
            device: strs(p.device),
            build: strs(p.build),
            version: (p.version as string) || undefined,
          })),
        }
      : undefined;
  return {
    type: typeof o.type === 'string' ? o.type : o.type === undefined ? 'UNKNOWN' : `UNKNOWN_${o.type}`,
    wipe: Boolean(o.wipe),
    downgrade: Boolean(o.downgrade),
    splDowngrade: Boolean(o.splDowngrade),
    retrofitDynamicPartitions: Boolean(o.retrofitDynamicPartitions),
    requiredCache: int(o.requiredCache, 'required_cache'),
    propertyFiles: Object.fromEntries(
      Object.entries((o.propertyFiles as Record<string, string>) ?? {}).map(([k, v]) => [k, String(v)]),
    ),
    precondition: state(o.precondition as Obj | undefined, 'precondition'),
    postcondition: state(o.postcondition as Obj | undefined, 'postcondition'),
  };
}

/** True when `path` is a zip whose central directory lists payload.bin (cheap: no data read). */
export async function isOtaZip(path: string): Promise<boolean> {
  try {
    await locateInZip(path);
    return true;
  } catch {
    return false;
  }
}

/** Reads header, manifest and signatures of a payload.bin or OTA zip. */
export async function readPayload(path: string): Promise<Payload> {
  return readPayloadAt(await locatePayload(path));
}

/** readPayloadAt over any ByteSource whose offsets `loc` gives (a package read block by block). */
export async function readPayloadFrom(src: ByteSource, loc: PayloadLocation): Promise<Payload> {
  const read = async (len: number, pos: number, field: string) => {
    if (pos + len > loc.size || loc.offset + pos + len > src.size)
      throw fail(loc, 'truncated', {
        field,
        offset: loc.offset + pos,
        expected: `${len} bytes`,
        found: Math.max(0, Math.min(loc.size, src.size - loc.offset) - pos),
      });
    return src.read(loc.offset + pos, len);
  };
  return parsePayloadMetadata(await read(PAYLOAD_HEADER_SIZE, 0, 'header'), loc, read);
}

export async function readPayloadAt(loc: PayloadLocation): Promise<Payload> {
  const fh = await openFile(loc.file);
  try {
    if (loc.size < PAYLOAD_HEADER_SIZE)
      throw fail(loc, 'truncated', {
        field: 'header',
        offset: loc.offset,
        expected: `>= ${PAYLOAD_HEADER_SIZE} bytes`,
        found: loc.size,
      });
    const header = await readExact(fh, PAYLOAD_HEADER_SIZE, loc.offset, loc, 'header');
    return await parsePayloadMetadata(header, loc, (len, pos, field) =>
      readExact(fh, len, loc.offset + pos, loc, field),
    );
  } finally {
    await fh.close();
  }
}

/** Parses payload metadata from an in-memory payload (tests, fuzzing, small payloads). */
export async function parsePayloadBuffer(buf: Buffer, file = '<buffer>'): Promise<Payload> {
  const loc: PayloadLocation = { file, offset: 0, size: buf.length, container: 'payload' };
  if (buf.length < PAYLOAD_HEADER_SIZE)
    throw fail(loc, 'truncated', {
      field: 'header',
      offset: 0,
      expected: `>= ${PAYLOAD_HEADER_SIZE} bytes`,
      found: buf.length,
    });
  return parsePayloadMetadata(buf.subarray(0, PAYLOAD_HEADER_SIZE), loc, async (len, pos, field) => {
    if (pos + len > buf.length)
      throw fail(loc, 'truncated', {
        field,
        offset: pos,
        expected: `${len} bytes`,
        found: Math.max(0, buf.length - pos),
      });
    return buf.subarray(pos, pos + len);
  });
}

type ReadAt = (length: number, payloadPos: number, field: string) => Promise<Buffer>;

/**
 * Parses the metadata given the 24-byte header and a reader of payload-relative ranges. Every
 * length is bounded by the payload size before anything is allocated.
 */
export async function parsePayloadMetadata(
  header: Buffer,
  loc: PayloadLocation,
  readAt: ReadAt,
): Promise<Payload> {
  const magic = header.subarray(0, 4).toString('latin1');
  if (magic !== PAYLOAD_MAGIC)
    throw fail(loc, 'bad magic', {
      field: 'magic',
      offset: loc.offset,
      expected: PAYLOAD_MAGIC,
      found: magic,
    });
  const major = header.readBigUInt64BE(4);
  if (major !== BigInt(PAYLOAD_MAJOR_VERSION)) {
    throw fail(
      loc,
      major === 1n
        ? 'major version 1 (Chrome OS delta format) is not supported: only A/B payloads (major version 2) are'
        : 'unsupported major version',
      { field: 'file_format_version', offset: loc.offset + 4, expected: PAYLOAD_MAJOR_VERSION, found: major },
    );
  }
  const manifestSize = header.readBigUInt64BE(12);
  const room = loc.size - PAYLOAD_HEADER_SIZE;
  checkBound(
    'payload',
    'manifest_size',
    manifestSize,
    Math.min(room, MAX_MANIFEST_SIZE),
    loc.offset + 12,
    loc.file,
  );
  const mSize = Number(manifestSize);
  const metadataSignatureSize = header.readUInt32BE(20);
  checkBound(
    'payload',
    'metadata_signature_size',
    metadataSignatureSize,
    Math.min(room - mSize, MAX_SIGNATURES_SIZE),
    loc.offset + 20,
    loc.file,
  );
  const manifestBuf = await readAt(mSize, PAYLOAD_HEADER_SIZE, 'manifest');
  const metaSigBuf =
    metadataSignatureSize > 0
      ? await readAt(metadataSignatureSize, PAYLOAD_HEADER_SIZE + mSize, 'metadata signature')
      : undefined;
  const blobsStart = PAYLOAD_HEADER_SIZE + mSize + metadataSignatureSize;
  const blobsSize = loc.size - blobsStart;
  const { ManifestMessage, SignaturesMessage } = payloadProtos();
  const manifest = normalizeManifest(
    decode(ManifestMessage, manifestBuf, loc, 'manifest', loc.offset + PAYLOAD_HEADER_SIZE),
    loc,
    blobsSize,
  );
  const metadataSignatures = metaSigBuf
    ? signaturesOf(
        decode(
          SignaturesMessage,
          metaSigBuf,
          loc,
          'metadata signature',
          loc.offset + PAYLOAD_HEADER_SIZE + mSize,
        ),
      )
    : [];
  let payloadSignatures: PayloadSignature[] = [];
  if (manifest.signaturesSize) {
    const off = manifest.signaturesOffset ?? 0;
    checkBound(
      'payload',
      'signatures_size',
      manifest.signaturesSize,
      MAX_SIGNATURES_SIZE,
      undefined,
      loc.file,
    );
    if (off + manifest.signaturesSize > blobsSize)
      throw fail(loc, 'payload signatures extend past the end of the payload', {
        field: 'signatures_offset',
        expected: `<= ${blobsSize}`,
        found: off + manifest.signaturesSize,
      });
    const buf = await readAt(manifest.signaturesSize, blobsStart + off, 'payload signatures');
    payloadSignatures = signaturesOf(
      decode(SignaturesMessage, buf, loc, 'payload signatures', loc.offset + blobsStart + off),
    );
  }
  return {
    location: loc,
    majorVersion: PAYLOAD_MAJOR_VERSION,
    manifestSize: mSize,
    metadataSignatureSize,
    blobsOffset: loc.offset + blobsStart,
    blobsSize,
    manifest,
    metadataSignatures,
    payloadSignatures,
  };
}

type Obj = Record<string, unknown>;

function decode(type: Type, buf: Buffer, loc: PayloadLocation, what: string, offset: number): Obj {
  try {
    const msg = type.decode(buf);
    return type.toObject(msg, { longs: String, enums: String, defaults: false, arrays: true }) as Obj;
  } catch (e) {
    throw fail(loc, `cannot decode ${what} protobuf: ${e instanceof Error ? e.message : String(e)}`, {
      field: what,
      offset,
    });
  }
}

function signaturesOf(o: Obj): PayloadSignature[] {
  return ((o.signatures as Obj[]) ?? []).map((s) => ({
    data: Buffer.from((s.data as Uint8Array) ?? []),
    unpaddedSize: s.unpaddedSignatureSize as number | undefined,
    version: s.version as number | undefined,
  }));
}

/** Turns the decoded message into plain, range-checked values. */
function normalizeManifest(m: Obj, loc: PayloadLocation, blobsSize: number): PayloadManifest {
  const num = (v: unknown, field: string): number | undefined => {
    if (v === undefined || v === null) return undefined;
    const b = BigInt(v as string | number);
    if (b > BigInt(Number.MAX_SAFE_INTEGER) || b < -BigInt(Number.MAX_SAFE_INTEGER))
      throw fail(loc, 'value too large', { field, expected: '<= 2^53', found: b.toString() });
    return Number(b);
  };
  const hex = (v: unknown) =>
    v && (v as Uint8Array).length ? Buffer.from(v as Uint8Array).toString('hex') : undefined;
  const { OPERATION_TYPE_NAMES } = payloadProtos();
  const blockSize = num(m.blockSize, 'block_size') ?? 4096;
  if (blockSize < 512 || blockSize > 1 << 20 || (blockSize & (blockSize - 1)) !== 0)
    throw fail(loc, 'block size must be a power of two in [512, 1 MiB]', {
      field: 'block_size',
      found: blockSize,
    });
  const extent = (e: Obj | undefined, field: string): PayloadExtent | undefined => {
    if (!e) return undefined;
    const start = e.startBlock === undefined ? 0n : BigInt(e.startBlock as string);
    const numBlocks = num(e.numBlocks, `${field}.num_blocks`) ?? 0;
    if (start === 0xffffffffffffffffn) return { startBlock: SPARSE_HOLE, numBlocks };
    const startBlock = num(start.toString(), `${field}.start_block`) ?? 0;
    if ((startBlock + numBlocks) * blockSize > Number.MAX_SAFE_INTEGER)
      throw fail(loc, 'extent out of range', { field, found: `${startBlock}+${numBlocks}` });
    return { startBlock, numBlocks };
  };
  const partitions = ((m.partitions as Obj[]) ?? []).map((p, pi): PayloadPartition => {
    const name = String(p.partitionName);
    const where = `partitions[${pi}](${name})`;
    const np = p.newPartitionInfo as Obj | undefined;
    const op = p.oldPartitionInfo as Obj | undefined;
    const operations = ((p.operations as Obj[]) ?? []).map((o, index): PayloadOperation => {
      const f = `${where}.operations[${index}]`;
      const type =
        typeof o.type === 'number' ? (OPERATION_TYPE_NAMES[o.type] ?? `UNKNOWN_${o.type}`) : String(o.type);
      const dataOffset = num(o.dataOffset, `${f}.data_offset`) ?? 0;
      const dataLength = num(o.dataLength, `${f}.data_length`) ?? 0;
      if (dataOffset + dataLength > blobsSize)
        throw fail(loc, 'operation data extends past the end of the payload', {
          field: `${f}.data_offset`,
          expected: `<= ${blobsSize}`,
          found: dataOffset + dataLength,
        });
      return {
        index,
        type,
        dataOffset,
        dataLength,
        srcExtents: ((o.srcExtents as Obj[]) ?? []).map((e, i) => extent(e, `${f}.src_extents[${i}]`)!),
        dstExtents: ((o.dstExtents as Obj[]) ?? []).map((e, i) => extent(e, `${f}.dst_extents[${i}]`)!),
        dataSha256: hex(o.dataSha256Hash),
        srcSha256: hex(o.srcSha256Hash),
        srcLength: num(o.srcLength, `${f}.src_length`),
        dstLength: num(o.dstLength, `${f}.dst_length`),
      };
    });
    return {
      name,
      size: num(np?.size, `${where}.new_partition_info.size`) ?? 0,
      sha256: hex(np?.hash),
      oldSize: op ? num(op.size, `${where}.old_partition_info.size`) : undefined,
      oldSha256: op ? hex(op.hash) : undefined,
      operations,
      version: (p.version as string) || undefined,
      filesystemType: (p.filesystemType as string) || undefined,
      runPostinstall: Boolean(p.runPostinstall),
      postinstallPath: (p.postinstallPath as string) || undefined,
      hashTreeAlgorithm: (p.hashTreeAlgorithm as string) || undefined,
      hashTreeSalt: hex(p.hashTreeSalt),
      hashTreeDataExtent: extent(p.hashTreeDataExtent as Obj | undefined, `${where}.hash_tree_data_extent`),
      hashTreeExtent: extent(p.hashTreeExtent as Obj | undefined, `${where}.hash_tree_extent`),
      fecDataExtent: extent(p.fecDataExtent as Obj | undefined, `${where}.fec_data_extent`),
      fecExtent: extent(p.fecExtent as Obj | undefined, `${where}.fec_extent`),
      fecRoots: p.fecRoots as number | undefined,
      estimateCowSize: num(p.estimateCowSize, `${where}.estimate_cow_size`),
      estimateOpCountMax: num(p.estimateOpCountMax, `${where}.estimate_op_count_max`),
      mergeOperations: ((p.mergeOperations as unknown[]) ?? []).length,
    };
  });
  const dpm = m.dynamicPartitionMetadata as Obj | undefined;
  return {
    blockSize,
    minorVersion: (m.minorVersion as number | undefined) ?? 0,
    maxTimestamp: num(m.maxTimestamp, 'max_timestamp'),
    partialUpdate: Boolean(m.partialUpdate),
    securityPatchLevel: (m.securityPatchLevel as string) || undefined,
    partitions,
    dynamicPartitions: dpm
      ? {
          groups: ((dpm.groups as Obj[]) ?? []).map((g, i) => ({
            name: String(g.name),
            size: num(g.size, `dynamic_partition_metadata.groups[${i}].size`),
            partitionNames: ((g.partitionNames as string[]) ?? []).map(String),
          })),
          snapshotEnabled: Boolean(dpm.snapshotEnabled),
          vabcEnabled: Boolean(dpm.vabcEnabled),
          vabcCompressionParam: (dpm.vabcCompressionParam as string) || undefined,
          cowVersion: dpm.cowVersion as number | undefined,
          vabcFeatureSet: dpm.vabcFeatureSet
            ? {
                threaded: Boolean((dpm.vabcFeatureSet as Obj).threaded),
                batchWrites: Boolean((dpm.vabcFeatureSet as Obj).batchWrites),
              }
            : undefined,
          compressionFactor: num(dpm.compressionFactor, 'dynamic_partition_metadata.compression_factor'),
        }
      : undefined,
    apex: ((m.apexInfo as Obj[]) ?? []).map((a, i) => ({
      packageName: String(a.packageName ?? ''),
      version: num(a.version, `apex_info[${i}].version`),
      isCompressed: Boolean(a.isCompressed),
      decompressedSize: num(a.decompressedSize, `apex_info[${i}].decompressed_size`),
    })),
    signaturesOffset: num(m.signaturesOffset, 'signatures_offset'),
    signaturesSize: num(m.signaturesSize, 'signatures_size'),
  };
}

/**
 * Why this payload cannot be applied without an old partition, or undefined for a full payload.
 * Checks minor_version, old_partition_info, and every operation type.
 */
export function deltaReason(p: Payload): { reason: string; field: string; found: unknown } | undefined {
  const m = p.manifest;
  for (const part of m.partitions) {
    for (const op of part.operations)
      if (DELTA_OPERATION_TYPES.has(op.type))
        return {
          reason: `partition ${part.name} operation ${op.index} is ${op.type}, an incremental operation`,
          field: `partitions(${part.name}).operations[${op.index}].type`,
          found: op.type,
        };
    if (part.oldSize !== undefined || part.oldSha256 !== undefined)
      return {
        reason: `partition ${part.name} has old_partition_info (it patches an existing partition)`,
        field: `partitions(${part.name}).old_partition_info`,
        found: { size: part.oldSize, sha256: part.oldSha256 },
      };
  }
  if (m.minorVersion !== FULL_PAYLOAD_MINOR_VERSION)
    return {
      reason: `minor_version ${m.minorVersion} is a delta payload`,
      field: 'minor_version',
      found: m.minorVersion,
    };
  return undefined;
}

/** An incremental (delta) OTA was given where a full one is needed. */
export class DeltaPayloadError extends FormatError {
  constructor(file: string, d: { reason: string; field: string; found: unknown }, hint?: string) {
    super(
      {
        format: 'payload',
        reason: `incremental (delta) OTA: a full OTA is required (${d.reason})`,
        field: d.field,
        found: d.found,
        expected: 'full payload (REPLACE/REPLACE_BZ/REPLACE_XZ/REPLACE_ZSTD/ZERO/DISCARD only)',
        file,
      },
      { code: 'PAYLOAD_FULL_OTA_REQUIRED', hint },
    );
  }
}

/** Throws DeltaPayloadError unless every partition can be rebuilt from the payload alone. */
export function assertFullPayload(p: Payload, hint?: string): void {
  const d = deltaReason(p);
  if (d) throw new DeltaPayloadError(p.location.file, d, hint);
}

/** What `omie inspect` shows of a payload. */
export interface PayloadListing {
  container: PayloadLocation['container'];
  file: string;
  payloadOffset: number;
  payloadSize: number;
  majorVersion: number;
  minorVersion: number;
  full: boolean;
  deltaReason?: string;
  blockSize: number;
  maxTimestamp?: number;
  securityPatchLevel?: string;
  partialUpdate: boolean;
  partitions: {
    name: string;
    size: number;
    sha256?: string;
    operations: number;
    operationTypes: Record<string, number>;
    version?: string;
  }[];
  dynamicPartitions?: PayloadManifest['dynamicPartitions'];
  metadataSignatures: number;
  payloadSignatures: number;
  /** Where the payload signatures blob is (relative to the blobs) and how large it is. */
  signaturesOffset?: number;
  signaturesSize?: number;
  metadataSignatureSize: number;
  properties?: Record<string, string>;
  otaMetadata?: Record<string, string>;
  otaMetadataPb?: OtaMetadata;
  propertyFilesMismatch?: string;
}

export async function listPayload(path: string): Promise<PayloadListing> {
  return summarizePayload(await readPayload(path), path);
}

/** The PayloadListing of an already-read payload. */
export function summarizePayload(p: Payload, path = p.location.file): PayloadListing {
  const d = deltaReason(p);
  return {
    container: p.location.container,
    file: path,
    payloadOffset: p.location.offset,
    payloadSize: p.location.size,
    majorVersion: p.majorVersion,
    minorVersion: p.manifest.minorVersion,
    full: !d,
    deltaReason: d?.reason,
    blockSize: p.manifest.blockSize,
    maxTimestamp: p.manifest.maxTimestamp,
    securityPatchLevel: p.manifest.securityPatchLevel,
    partialUpdate: p.manifest.partialUpdate,
    partitions: p.manifest.partitions.map((part) => {
      const operationTypes: Record<string, number> = {};
      for (const op of part.operations) operationTypes[op.type] = (operationTypes[op.type] ?? 0) + 1;
      return {
        name: part.name,
        size: part.size,
        sha256: part.sha256,
        operations: part.operations.length,
        operationTypes,
        version: part.version,
      };
    }),
    dynamicPartitions: p.manifest.dynamicPartitions,
    metadataSignatures: p.metadataSignatures.length,
    payloadSignatures: p.payloadSignatures.length,
    signaturesOffset: p.manifest.signaturesOffset,
    signaturesSize: p.manifest.signaturesSize,
    metadataSignatureSize: p.metadataSignatureSize,
    properties: p.location.properties,
    otaMetadata: p.location.otaMetadata,
    otaMetadataPb: p.location.otaMetadataPb,
    propertyFilesMismatch: p.location.propertyFilesMismatch,
  };
}
