import { FormatError } from '../../errors.ts';
import { BinaryReader, checkBound } from '../binary.ts';

/**
 * vbmeta image structures (libavb avb_vbmeta_image.h, avb_*_descriptor.h; avbtool
 * AvbVBMetaHeader / Avb*Descriptor). All integers are big-endian. Parsing accepts what avbtool
 * accepts (same num_bytes_following checks per descriptor) and additionally bounds every length
 * to the buffer, so malformed input is a FormatError. Encoding is byte-identical to avbtool.
 */

export const VBMETA_MAGIC = 'AVB0';
export const VBMETA_HEADER_SIZE = 256;
/** Upper bound for a vbmeta blob we read from disk (avbtool reserves 64 KiB; chained keys etc fit). */
export const MAX_VBMETA_BLOB = 16 * 1024 * 1024;

export const AVB_VERSION_MAJOR = 1;
export const AVB_VERSION_MINOR = 3;
export const AVB_VERSION_SUB = 0;
export const AVBTOOL_RELEASE_STRING = `avbtool ${AVB_VERSION_MAJOR}.${AVB_VERSION_MINOR}.${AVB_VERSION_SUB}`;

/** AvbVBMetaImageFlags. */
export const VBMETA_FLAG_HASHTREE_DISABLED = 1;
export const VBMETA_FLAG_VERIFICATION_DISABLED = 2;
/** AvbHashtreeDescriptorFlags. */
export const HASHTREE_FLAG_DO_NOT_USE_AB = 1;
export const HASHTREE_FLAG_CHECK_AT_MOST_ONCE = 2;
/** AvbHashDescriptorFlags / AvbChainPartitionDescriptorFlags. */
export const HASH_FLAG_DO_NOT_USE_AB = 1;
export const CHAIN_FLAG_DO_NOT_USE_AB = 1;
/** AvbKernelCmdlineFlags. */
export const CMDLINE_FLAG_USE_ONLY_IF_HASHTREE_NOT_DISABLED = 1;
export const CMDLINE_FLAG_USE_ONLY_IF_HASHTREE_DISABLED = 2;

export interface VbmetaHeader {
  requiredLibavbVersionMajor: number;
  requiredLibavbVersionMinor: number;
  authenticationDataBlockSize: number;
  auxiliaryDataBlockSize: number;
  algorithmType: number;
  hashOffset: number;
  hashSize: number;
  signatureOffset: number;
  signatureSize: number;
  publicKeyOffset: number;
  publicKeySize: number;
  publicKeyMetadataOffset: number;
  publicKeyMetadataSize: number;
  descriptorsOffset: number;
  descriptorsSize: number;
  /** u64: kept as bigint so any on-disk value round-trips. */
  rollbackIndex: bigint;
  flags: number;
  rollbackIndexLocation: number;
  releaseString: string;
}

export interface PropertyDescriptor {
  kind: 'property';
  key: string;
  value: Buffer;
}
export interface HashtreeDescriptor {
  kind: 'hashtree';
  dmVerityVersion: number;
  imageSize: number;
  treeOffset: number;
  treeSize: number;
  dataBlockSize: number;
  hashBlockSize: number;
  fecNumRoots: number;
  fecOffset: number;
  fecSize: number;
  hashAlgorithm: string;
  partitionName: string;
  salt: Buffer;
  rootDigest: Buffer;
  flags: number;
}
export interface HashDescriptor {
  kind: 'hash';
  imageSize: number;
  hashAlgorithm: string;
  partitionName: string;
  salt: Buffer;
  digest: Buffer;
  flags: number;
}
export interface KernelCmdlineDescriptor {
  kind: 'kernel_cmdline';
  flags: number;
  kernelCmdline: string;
}
export interface ChainPartitionDescriptor {
  kind: 'chain_partition';
  rollbackIndexLocation: number;
  partitionName: string;
  /** AVB public key blob the chained partition's vbmeta must be signed with. */
  publicKey: Buffer;
  flags: number;
}
export interface UnknownDescriptor {
  kind: 'unknown';
  tag: bigint;
  data: Buffer;
}
export type AvbDescriptor =
  | PropertyDescriptor
  | HashtreeDescriptor
  | HashDescriptor
  | KernelCmdlineDescriptor
  | ChainPartitionDescriptor
  | UnknownDescriptor;

export interface ParsedVbmeta {
  header: VbmetaHeader;
  descriptors: AvbDescriptor[];
  /** The whole vbmeta blob: header + authentication + auxiliary blocks. */
  blob: Buffer;
  /** Slices of `blob`. */
  headerBlock: Buffer;
  authBlock: Buffer;
  auxBlock: Buffer;
  hash: Buffer;
  signature: Buffer;
  publicKey: Buffer;
  publicKeyMetadata: Buffer;
}

const TAGS = ['property', 'hashtree', 'hash', 'kernel_cmdline', 'chain_partition'] as const;

export function roundUp(n: number, m: number): number {
  const r = n % m;
  return r === 0 ? n : n + m - r;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function decodeUtf8(r: BinaryReader, b: Buffer, field: string, at: number): string {
  try {
    return utf8.decode(b);
  } catch {
    return r.fail('not valid UTF-8', { field, at });
  }
}

/** Digest sizes of hash algorithms avbtool accepts in descriptors (hashlib names). */
export function hashDigestSize(alg: string): number | undefined {
  return (
    { sha1: 20, sha224: 28, sha256: 32, sha384: 48, sha512: 64, md5: 16, 'blake2b-256': 32 } as Record<
      string,
      number
    >
  )[alg.toLowerCase()];
}

/** Parses the 256-byte vbmeta header (does not check the blocks exist). */
export function parseVbmetaHeader(
  buf: Buffer,
  opts: { file?: string; baseOffset?: number } = {},
): VbmetaHeader {
  const r = new BinaryReader(buf, 'vbmeta', opts.baseOffset ?? 0, opts.file);
  r.magic(VBMETA_MAGIC);
  const h: VbmetaHeader = {
    requiredLibavbVersionMajor: r.u32be('required_libavb_version_major'),
    requiredLibavbVersionMinor: r.u32be('required_libavb_version_minor'),
    authenticationDataBlockSize: r.u64beNum('authentication_data_block_size'),
    auxiliaryDataBlockSize: r.u64beNum('auxiliary_data_block_size'),
    algorithmType: r.u32be('algorithm_type'),
    hashOffset: r.u64beNum('hash_offset'),
    hashSize: r.u64beNum('hash_size'),
    signatureOffset: r.u64beNum('signature_offset'),
    signatureSize: r.u64beNum('signature_size'),
    publicKeyOffset: r.u64beNum('public_key_offset'),
    publicKeySize: r.u64beNum('public_key_size'),
    publicKeyMetadataOffset: r.u64beNum('public_key_metadata_offset'),
    publicKeyMetadataSize: r.u64beNum('public_key_metadata_size'),
    descriptorsOffset: r.u64beNum('descriptors_offset'),
    descriptorsSize: r.u64beNum('descriptors_size'),
    rollbackIndex: r.u64be('rollback_index'),
    flags: r.u32be('flags'),
    rollbackIndexLocation: r.u32be('rollback_index_location'),
    releaseString: '',
  };
  const rs = r.bytes(48, 'release_string');
  const end = rs.indexOf(0);
  h.releaseString = decodeUtf8(r, rs.subarray(0, end < 0 ? 47 : end), 'release_string', r.pos - 48);
  r.skip(80, 'reserved');
  return h;
}

/** Total blob size the header describes (header + both blocks), bounds-checked. */
export function vbmetaBlobSize(h: VbmetaHeader, file?: string, offset?: number): number {
  checkBound(
    'vbmeta',
    'authentication_data_block_size',
    h.authenticationDataBlockSize,
    MAX_VBMETA_BLOB,
    offset,
    file,
  );
  checkBound('vbmeta', 'auxiliary_data_block_size', h.auxiliaryDataBlockSize, MAX_VBMETA_BLOB, offset, file);
  return VBMETA_HEADER_SIZE + h.authenticationDataBlockSize + h.auxiliaryDataBlockSize;
}

/**
 * Parses a complete vbmeta blob (at least header + blocks; trailing bytes, e.g. padding, are
 * ignored). Checks every offset/size pair lies inside its block, like avb_vbmeta_image_verify.
 */
export function parseVbmeta(buf: Buffer, opts: { file?: string; baseOffset?: number } = {}): ParsedVbmeta {
  const base = opts.baseOffset ?? 0;
  if (buf.length < VBMETA_HEADER_SIZE)
    throw new FormatError({
      format: 'vbmeta',
      reason: 'truncated',
      field: 'header',
      offset: base,
      expected: `${VBMETA_HEADER_SIZE} bytes`,
      found: buf.length,
      file: opts.file,
    });
  const header = parseVbmetaHeader(buf.subarray(0, VBMETA_HEADER_SIZE), opts);
  const total = vbmetaBlobSize(header, opts.file, base);
  const fail = (reason: string, field: string, expected?: unknown, found?: unknown): never => {
    throw new FormatError({
      format: 'vbmeta',
      reason,
      field,
      offset: base,
      expected,
      found,
      file: opts.file,
    });
  };
  if (buf.length < total) fail('truncated', 'blocks', `${total} bytes`, buf.length);
  const authBlock = buf.subarray(VBMETA_HEADER_SIZE, VBMETA_HEADER_SIZE + header.authenticationDataBlockSize);
  const auxBlock = buf.subarray(VBMETA_HEADER_SIZE + header.authenticationDataBlockSize, total);
  const within = (name: string, off: number, size: number, block: Buffer, blockName: string): Buffer => {
    if (off + size > block.length)
      fail(`${name} lies outside the ${blockName} block`, name, `<= ${block.length}`, off + size);
    return block.subarray(off, off + size);
  };
  const hash = within('hash', header.hashOffset, header.hashSize, authBlock, 'authentication');
  const signature = within(
    'signature',
    header.signatureOffset,
    header.signatureSize,
    authBlock,
    'authentication',
  );
  const publicKey = within('public_key', header.publicKeyOffset, header.publicKeySize, auxBlock, 'auxiliary');
  const publicKeyMetadata = within(
    'public_key_metadata',
    header.publicKeyMetadataOffset,
    header.publicKeyMetadataSize,
    auxBlock,
    'auxiliary',
  );
  const descData = within(
    'descriptors',
    header.descriptorsOffset,
    header.descriptorsSize,
    auxBlock,
    'auxiliary',
  );
  const descriptors = parseDescriptors(descData, {
    file: opts.file,
    baseOffset: base + VBMETA_HEADER_SIZE + header.authenticationDataBlockSize + header.descriptorsOffset,
  });
  return {
    header,
    descriptors,
    blob: buf.subarray(0, total),
    headerBlock: buf.subarray(0, VBMETA_HEADER_SIZE),
    authBlock,
    auxBlock,
    hash,
    signature,
    publicKey,
    publicKeyMetadata,
  };
}

/** Parses a run of descriptors (avbtool parse_descriptors). */
export function parseDescriptors(
  data: Buffer,
  opts: { file?: string; baseOffset?: number } = {},
): AvbDescriptor[] {
  const out: AvbDescriptor[] = [];
  const r = new BinaryReader(data, 'vbmeta-descriptor', opts.baseOffset ?? 0, opts.file);
  while (r.pos < data.length) {
    const start = r.pos;
    const tag = r.u64be('tag');
    const nbf = r.u64be('num_bytes_following');
    if (nbf > BigInt(r.remaining))
      r.fail('descriptor extends past the descriptor area', {
        field: 'num_bytes_following',
        at: start + 8,
        expected: `<= ${r.remaining}`,
        found: nbf.toString(),
      });
    const body = r.bytes(Number(nbf), 'descriptor');
    const whole = data.subarray(start, start + 16 + Number(nbf));
    const sub = new BinaryReader(whole, 'vbmeta-descriptor', (opts.baseOffset ?? 0) + start, opts.file);
    const kind = tag < BigInt(TAGS.length) ? TAGS[Number(tag)] : undefined;
    out.push(kind ? parseOne(kind, sub, Number(nbf)) : { kind: 'unknown', tag, data: Buffer.from(body) });
  }
  return out;
}

function parseOne(kind: (typeof TAGS)[number], r: BinaryReader, nbf: number): AvbDescriptor {
  r.skip(16, 'descriptor header');
  const checkSize = (fixed: number, varLen: number) => {
    const expected = roundUp(fixed - 16 + varLen, 8);
    if (nbf !== expected)
      r.fail(`does not look like a ${kind} descriptor`, {
        field: 'num_bytes_following',
        at: 8,
        expected,
        found: nbf,
      });
  };
  switch (kind) {
    case 'property': {
      const keySize = r.u64beNum('key_num_bytes');
      const valueSize = r.u64beNum('value_num_bytes');
      checkSize(32, keySize + 1 + valueSize + 1);
      const keyAt = r.pos;
      const key = decodeUtf8(r, r.bytes(keySize, 'key'), 'key', keyAt);
      r.skip(1, 'key NUL');
      const value = Buffer.from(r.bytes(valueSize, 'value'));
      return { kind, key, value };
    }
    case 'hashtree': {
      const d = {
        kind,
        dmVerityVersion: r.u32be('dm_verity_version'),
        imageSize: r.u64beNum('image_size'),
        treeOffset: r.u64beNum('tree_offset'),
        treeSize: r.u64beNum('tree_size'),
        dataBlockSize: r.u32be('data_block_size'),
        hashBlockSize: r.u32be('hash_block_size'),
        fecNumRoots: r.u32be('fec_num_roots'),
        fecOffset: r.u64beNum('fec_offset'),
        fecSize: r.u64beNum('fec_size'),
        hashAlgorithm: '',
        partitionName: '',
        salt: Buffer.alloc(0),
        rootDigest: Buffer.alloc(0),
        flags: 0,
      } satisfies HashtreeDescriptor;
      d.hashAlgorithm = cstr(r.bytes(32, 'hash_algorithm'));
      const nameLen = r.u32be('partition_name_len');
      const saltLen = r.u32be('salt_len');
      const rootLen = r.u32be('root_digest_len');
      d.flags = r.u32be('flags');
      r.skip(60, 'reserved');
      checkSize(180, nameLen + saltLen + rootLen);
      const at = r.pos;
      d.partitionName = decodeUtf8(r, r.bytes(nameLen, 'partition_name'), 'partition_name', at);
      d.salt = Buffer.from(r.bytes(saltLen, 'salt'));
      d.rootDigest = Buffer.from(r.bytes(rootLen, 'root_digest'));
      const ds = hashDigestSize(d.hashAlgorithm);
      if (ds !== undefined && rootLen !== 0 && rootLen !== ds)
        r.fail("root_digest_len doesn't match hash algorithm", {
          field: 'root_digest_len',
          expected: ds,
          found: rootLen,
        });
      return d;
    }
    case 'hash': {
      const imageSize = r.u64beNum('image_size');
      const hashAlgorithm = cstr(r.bytes(32, 'hash_algorithm'));
      const nameLen = r.u32be('partition_name_len');
      const saltLen = r.u32be('salt_len');
      const digestLen = r.u32be('digest_len');
      const flags = r.u32be('flags');
      r.skip(60, 'reserved');
      checkSize(132, nameLen + saltLen + digestLen);
      const at = r.pos;
      const partitionName = decodeUtf8(r, r.bytes(nameLen, 'partition_name'), 'partition_name', at);
      const salt = Buffer.from(r.bytes(saltLen, 'salt'));
      const digest = Buffer.from(r.bytes(digestLen, 'digest'));
      const ds = hashDigestSize(hashAlgorithm);
      if (ds !== undefined && digestLen !== 0 && digestLen !== ds)
        r.fail("digest_len doesn't match hash algorithm", {
          field: 'digest_len',
          expected: ds,
          found: digestLen,
        });
      return { kind, imageSize, hashAlgorithm, partitionName, salt, digest, flags };
    }
    case 'kernel_cmdline': {
      const flags = r.u32be('flags');
      const len = r.u32be('kernel_cmdline_length');
      checkSize(24, len);
      const at = r.pos;
      return {
        kind,
        flags,
        kernelCmdline: decodeUtf8(r, r.bytes(len, 'kernel_cmdline'), 'kernel_cmdline', at),
      };
    }
    case 'chain_partition': {
      const rollbackIndexLocation = r.u32be('rollback_index_location');
      const nameLen = r.u32be('partition_name_len');
      const keyLen = r.u32be('public_key_len');
      const flags = r.u32be('flags');
      r.skip(60, 'reserved');
      checkSize(92, nameLen + keyLen);
      const at = r.pos;
      const partitionName = decodeUtf8(r, r.bytes(nameLen, 'partition_name'), 'partition_name', at);
      const publicKey = Buffer.from(r.bytes(keyLen, 'public_key'));
      return { kind, rollbackIndexLocation, partitionName, publicKey, flags };
    }
  }
}

function cstr(b: Buffer): string {
  // avbtool: rstrip(b'\0').decode('ascii')
  let end = b.length;
  while (end > 0 && b[end - 1] === 0) end--;
  return b.subarray(0, end).toString('latin1');
}

// ---------------------------------------------------------------- encoding

function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0);
  return b;
}
function u64(v: number | bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(v));
  return b;
}
function fixed(s: string, n: number, enc: BufferEncoding = 'latin1'): Buffer {
  const b = Buffer.alloc(n);
  Buffer.from(s, enc).copy(b, 0, 0, n);
  return b;
}

function finish(fixedPart: Buffer[], tag: number, varParts: Buffer[]): Buffer {
  const body = Buffer.concat([...fixedPart, ...varParts]);
  const nbf = roundUp(body.length, 8);
  return Buffer.concat([u64(tag), u64(nbf), body, Buffer.alloc(nbf - body.length)]);
}

/** Serializes one descriptor exactly like avbtool's encode(). */
export function encodeDescriptor(d: AvbDescriptor): Buffer {
  switch (d.kind) {
    case 'property': {
      const key = Buffer.from(d.key, 'utf8');
      return finish([u64(key.length), u64(d.value.length)], 0, [
        key,
        Buffer.from([0]),
        d.value,
        Buffer.from([0]),
      ]);
    }
    case 'hashtree': {
      const name = Buffer.from(d.partitionName, 'utf8');
      return finish(
        [
          u32(d.dmVerityVersion),
          u64(d.imageSize),
          u64(d.treeOffset),
          u64(d.treeSize),
          u32(d.dataBlockSize),
          u32(d.hashBlockSize),
          u32(d.fecNumRoots),
          u64(d.fecOffset),
          u64(d.fecSize),
          fixed(d.hashAlgorithm, 32),
          u32(name.length),
          u32(d.salt.length),
          u32(d.rootDigest.length),
          u32(d.flags),
          Buffer.alloc(60),
        ],
        1,
        [name, d.salt, d.rootDigest],
      );
    }
    case 'hash': {
      const name = Buffer.from(d.partitionName, 'utf8');
      return finish(
        [
          u64(d.imageSize),
          fixed(d.hashAlgorithm, 32),
          u32(name.length),
          u32(d.salt.length),
          u32(d.digest.length),
          u32(d.flags),
          Buffer.alloc(60),
        ],
        2,
        [name, d.salt, d.digest],
      );
    }
    case 'kernel_cmdline': {
      const c = Buffer.from(d.kernelCmdline, 'utf8');
      return finish([u32(d.flags), u32(c.length)], 3, [c]);
    }
    case 'chain_partition': {
      const name = Buffer.from(d.partitionName, 'utf8');
      return finish(
        [
          u32(d.rollbackIndexLocation),
          u32(name.length),
          u32(d.publicKey.length),
          u32(d.flags),
          Buffer.alloc(60),
        ],
        4,
        [name, d.publicKey],
      );
    }
    case 'unknown': {
      const nbf = roundUp(d.data.length, 8);
      return Buffer.concat([u64(d.tag), u64(nbf), d.data, Buffer.alloc(nbf - d.data.length)]);
    }
  }
}

/** Serializes the 256-byte header exactly like avbtool's AvbVBMetaHeader.encode(). */
export function encodeVbmetaHeader(h: VbmetaHeader): Buffer {
  return Buffer.concat([
    Buffer.from(VBMETA_MAGIC, 'latin1'),
    u32(h.requiredLibavbVersionMajor),
    u32(h.requiredLibavbVersionMinor),
    u64(h.authenticationDataBlockSize),
    u64(h.auxiliaryDataBlockSize),
    u32(h.algorithmType),
    u64(h.hashOffset),
    u64(h.hashSize),
    u64(h.signatureOffset),
    u64(h.signatureSize),
    u64(h.publicKeyOffset),
    u64(h.publicKeySize),
    u64(h.publicKeyMetadataOffset),
    u64(h.publicKeyMetadataSize),
    u64(h.descriptorsOffset),
    u64(h.descriptorsSize),
    u64(h.rollbackIndex),
    u32(h.flags),
    u32(h.rollbackIndexLocation),
    fixed(h.releaseString, 47, 'utf8'),
    Buffer.alloc(1),
    Buffer.alloc(80),
  ]);
}
