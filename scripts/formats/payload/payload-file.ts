import { createHash, createSign } from 'node:crypto';
import { type FileHandle, open, rm } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import { InputError } from '../../errors.ts';
import type { ProgressFn } from '../../progress.ts';
import type { Extent } from './extents.ts';
import { payloadProtos } from './proto.ts';
import {
  FULL_PAYLOAD_MINOR_VERSION,
  PAYLOAD_HEADER_SIZE,
  PAYLOAD_MAGIC,
  PAYLOAD_MAJOR_VERSION,
} from './reader.ts';
import { type PayloadSigningKey, payloadSignaturesMessage } from './signature.ts';

/**
 * A payload.bin put together and signed as delta_generator's payload_file.cc and payload_signer.cc
 * do: operations are generated with their data in a scratch blob file (in whatever order the
 * generators finish), then the manifest gives every blob its offset in operation order, the
 * metadata (header + manifest) is signed, and the payload signature covers the metadata and the
 * blobs (not the metadata signature). Two passes over the blobs, both streamed: the first takes
 * the payload signature, the payload's SHA-256 (payload_properties.txt FILE_HASH) and its CRC-32
 * (for the zip entry's header), so the second can write the payload straight into an OTA zip.
 */

export type OperationType =
  | 'REPLACE'
  | 'REPLACE_BZ'
  | 'REPLACE_XZ'
  | 'REPLACE_ZSTD'
  | 'ZERO'
  | 'DISCARD'
  | 'SOURCE_COPY'
  | 'SOURCE_BSDIFF'
  | 'BROTLI_BSDIFF';

/** Where an operation's data is in the blob file. */
export interface BlobRef {
  at: number;
  length: number;
  sha256: Buffer;
}

export interface GeneratedOperation {
  type: OperationType;
  dstExtents: Extent[];
  srcExtents?: Extent[];
  /** SHA-256 of the source blocks (minor version 3 and up). */
  srcSha256?: Buffer;
  blob?: BlobRef;
}

/** dm-verity data the device computes itself once the operations are written (minor version 6+). */
export interface PartitionVerity {
  hashTreeDataExtent: Extent;
  hashTreeExtent: Extent;
  hashTreeAlgorithm: string;
  hashTreeSalt: Buffer;
  fecDataExtent?: Extent;
  fecExtent?: Extent;
  fecRoots?: number;
}

export interface GeneratedPartition {
  name: string;
  newInfo: { size: number; sha256: Buffer };
  /** Delta payloads: the partition the operations read. */
  oldInfo?: { size: number; sha256: Buffer };
  operations: GeneratedOperation[];
  /** The partition's build timestamp (anti-rollback per partition). */
  version?: string;
  verity?: PartitionVerity;
  /** Virtual A/B: room the snapshot's copy-on-write device needs. */
  estimateCowSize?: number;
}

export interface DynamicPartitionMetadata {
  groups: { name: string; size?: number; partitionNames: string[] }[];
  snapshotEnabled?: boolean;
  vabcEnabled?: boolean;
  vabcCompressionParam?: string;
  cowVersion?: number;
}

export interface PayloadSpec {
  blockSize: number;
  /** 0 for a full payload. */
  minorVersion: number;
  partitions: GeneratedPartition[];
  maxTimestamp?: number;
  securityPatchLevel?: string;
  dynamicPartitionMetadata?: DynamicPartitionMetadata;
}

/** The scratch file operation data goes to as it is generated; appends are serialized. */
export class BlobFile {
  private size = 0;
  private tail: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
  ) {}

  static async create(path: string): Promise<BlobFile> {
    return new BlobFile(path, await open(path, 'w+'));
  }

  /** Bytes stored so far. */
  get length(): number {
    return this.size;
  }

  append(data: Buffer): Promise<BlobRef> {
    const at = this.size;
    this.size += data.length;
    const sha256 = createHash('sha256').update(data).digest();
    const done = this.tail.then(async () => {
      for (let off = 0; off < data.length; )
        off += (await this.fh.write(data, off, data.length - off, at + off)).bytesWritten;
      return { at, length: data.length, sha256 };
    });
    this.tail = done.catch(() => {});
    return done;
  }

  /** Bytes [from, from + len) of a blob. */
  async read(ref: BlobRef, from = 0, len = ref.length - from): Promise<Buffer> {
    const buf = Buffer.allocUnsafe(len);
    for (let got = 0; got < len; ) {
      const { bytesRead } = await this.fh.read(buf, got, len - got, ref.at + from + got);
      if (bytesRead === 0)
        throw new InputError(`${this.path} is shorter than its blobs`, { code: 'SHORT_READ' });
      got += bytesRead;
    }
    return buf;
  }

  async dispose(): Promise<void> {
    await this.tail;
    await this.fh.close().catch(() => {});
    await rm(this.path, { force: true });
  }
}

const extent = (e: Extent) => ({ startBlock: e.startBlock, numBlocks: e.numBlocks });

/** The DeltaArchiveManifest, blobs placed in operation order from offset 0. */
function manifestObject(spec: PayloadSpec, signaturesSize: number): Record<string, unknown> {
  let offset = 0;
  const partitions = spec.partitions.map((p) => {
    const operations = p.operations.map((op, i) => {
      if (!op.dstExtents.length)
        throw new InputError(`partition ${p.name} operation ${i} writes nothing`, {
          code: 'PAYLOAD_EMPTY_OPERATION',
        });
      const o: Record<string, unknown> = { type: op.type, dstExtents: op.dstExtents.map(extent) };
      if (op.srcExtents?.length) o.srcExtents = op.srcExtents.map(extent);
      if (op.srcSha256) o.srcSha256Hash = op.srcSha256;
      if (op.blob) {
        o.dataOffset = offset;
        o.dataLength = op.blob.length;
        o.dataSha256Hash = op.blob.sha256;
        offset += op.blob.length;
      }
      return o;
    });
    const v = p.verity;
    return {
      partitionName: p.name,
      ...(p.oldInfo ? { oldPartitionInfo: { size: p.oldInfo.size, hash: p.oldInfo.sha256 } } : {}),
      newPartitionInfo: { size: p.newInfo.size, hash: p.newInfo.sha256 },
      operations,
      ...(p.version ? { version: p.version } : {}),
      ...(v
        ? {
            hashTreeDataExtent: extent(v.hashTreeDataExtent),
            hashTreeExtent: extent(v.hashTreeExtent),
            hashTreeAlgorithm: v.hashTreeAlgorithm,
            hashTreeSalt: v.hashTreeSalt,
            ...(v.fecExtent && v.fecDataExtent
              ? {
                  fecDataExtent: extent(v.fecDataExtent),
                  fecExtent: extent(v.fecExtent),
                  fecRoots: v.fecRoots,
                }
              : {}),
          }
        : {}),
      ...(p.estimateCowSize !== undefined ? { estimateCowSize: p.estimateCowSize } : {}),
    };
  });
  const m: Record<string, unknown> = {
    blockSize: spec.blockSize,
    signaturesOffset: offset,
    signaturesSize,
    // Written even when 0: paycheck (and update_engine) read a missing minor version as an error.
    minorVersion: spec.minorVersion,
    partitions,
  };
  if (spec.maxTimestamp !== undefined) m.maxTimestamp = spec.maxTimestamp;
  if (spec.dynamicPartitionMetadata) m.dynamicPartitionMetadata = spec.dynamicPartitionMetadata;
  if (spec.securityPatchLevel) m.securityPatchLevel = spec.securityPatchLevel;
  return m;
}

export interface FinalPayload {
  /** Total bytes of payload.bin. */
  size: number;
  /** Header + manifest: what the metadata signature and METADATA_HASH cover. */
  metadataSize: number;
  metadataSignatureSize: number;
  /** Header + manifest + metadata signature (payload_metadata.bin of the property files). */
  metadataWithSignatureSize: number;
  sha256: Buffer;
  metadataSha256: Buffer;
  crc32: number;
  operations: number;
  /** payload_properties.txt as ota_from_target_files writes it. */
  properties: string;
  /** Writes the payload's bytes in order (the blob file must still exist). */
  writeTo(write: (chunk: Buffer) => Promise<void>): Promise<void>;
}

const PIECE = 4 << 20;

/** Signs the payload described by `spec` (blobs in `blobs`) and returns how to write it. */
export async function finalizePayload(
  spec: PayloadSpec,
  blobs: BlobFile,
  key: PayloadSigningKey,
  onProgress?: ProgressFn,
): Promise<FinalPayload> {
  if (spec.minorVersion === FULL_PAYLOAD_MINOR_VERSION && spec.partitions.some((p) => p.oldInfo))
    throw new InputError('a full payload (minor version 0) cannot carry old_partition_info', {
      code: 'PAYLOAD_FULL_WITH_SOURCE',
    });
  const { ManifestMessage } = payloadProtos();
  // The payload signature's size goes into the manifest before anything is signed.
  const signaturesSize = payloadSignaturesMessage(Buffer.alloc(0), key.signatureSize).length;
  const manifest = Buffer.from(
    ManifestMessage.encode(ManifestMessage.fromObject(manifestObject(spec, signaturesSize))).finish(),
  );
  const header = Buffer.alloc(PAYLOAD_HEADER_SIZE);
  header.write(PAYLOAD_MAGIC, 0, 'latin1');
  header.writeBigUInt64BE(BigInt(PAYLOAD_MAJOR_VERSION), 4);
  header.writeBigUInt64BE(BigInt(manifest.length), 12);
  const metadataSignatureSize = signaturesSize;
  header.writeUInt32BE(metadataSignatureSize, 20);
  const metadata = Buffer.concat([header, manifest]);
  const metadataSignature = payloadSignaturesMessage(signWith(key, [metadata]), key.signatureSize);
  const prefix = Buffer.concat([metadata, metadataSignature]);

  const ops = spec.partitions.flatMap((p) => p.operations.filter((o) => o.blob));
  const blobBytes = ops.reduce((a, o) => a + o.blob!.length, 0);
  const eachBlobPiece = async (fn: (piece: Buffer) => Promise<void> | void) => {
    for (const op of ops)
      for (let from = 0; from < op.blob!.length; from += PIECE)
        await fn(await blobs.read(op.blob!, from, Math.min(PIECE, op.blob!.length - from)));
  };

  // Pass 1: the payload signature (metadata + blobs), the file's digest and CRC-32.
  const signer = createSign('sha256');
  const file = createHash('sha256').update(prefix);
  let crc = crc32(prefix);
  signer.update(metadata);
  let hashed = 0;
  await eachBlobPiece((piece) => {
    signer.update(piece);
    file.update(piece);
    crc = crc32(piece, crc);
    hashed += piece.length;
    onProgress?.({ stage: 'sign payload', done: hashed, total: blobBytes, unit: 'bytes' });
  });
  const payloadSignature = payloadSignaturesMessage(signer.sign(key.key), key.signatureSize);
  file.update(payloadSignature);
  crc = crc32(payloadSignature, crc) >>> 0;
  const sha256 = file.digest();
  const size = prefix.length + blobBytes + payloadSignature.length;
  const metadataSha256 = createHash('sha256').update(metadata).digest();
  return {
    size,
    metadataSize: metadata.length,
    metadataSignatureSize,
    metadataWithSignatureSize: prefix.length,
    sha256,
    metadataSha256,
    crc32: crc,
    operations: spec.partitions.reduce((a, p) => a + p.operations.length, 0),
    properties: [
      `FILE_HASH=${sha256.toString('base64')}`,
      `FILE_SIZE=${size}`,
      `METADATA_HASH=${metadataSha256.toString('base64')}`,
      `METADATA_SIZE=${metadata.length}`,
      '',
    ].join('\n'),
    async writeTo(write) {
      await write(prefix);
      await eachBlobPiece(write);
      await write(payloadSignature);
    },
  };
}

/** payload_signer signs with SHA-256: RSA PKCS#1 v1.5, or DER ECDSA. */
function signWith(key: PayloadSigningKey, parts: Buffer[]): Buffer {
  const s = createSign('sha256');
  for (const p of parts) s.update(p);
  return s.sign(key.key);
}
