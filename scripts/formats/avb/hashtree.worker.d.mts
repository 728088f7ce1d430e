export function hashBlocks(job: {
  path: string;
  imageSize: number;
  blockSize: number;
  hashAlgorithm: string;
  salt: Uint8Array;
  startBlock: number;
  endBlock: number;
  slot: number;
  out: Uint8Array;
  outOffset: number;
  /**
   * Shared chunk counter (starting at 0) of every thread hashing this range: each takes the next
   * chunk from it. Without it, this call hashes the whole range.
   */
  claim?: Int32Array;
  onBytes?: (n: number) => void;
  /** Reads image bytes at a position (e.g. through a sparse reader) instead of opening `path`. */
  read?: (buf: Buffer, position: number) => Promise<number>;
  /** Also checksum the image bytes of each chunk (`crc32`). */
  crc32?: boolean;
  /**
   * Also find the runs of whole blocks whose 32-bit words are all equal (`uniform`: flat
   * `start, count, value` triples in block order).
   */
  uniform?: boolean;
}): Promise<{
  /** The chunks this call hashed, in the order it hashed them. */
  chunks: Array<{ firstBlock: number; blocks: number; crc32?: number; uniform?: number[] }>;
}>;

/** Reads `want` bytes at `pos` scattered over `views` in order, resuming after partial readv calls. */
export function readvFully(
  fh: { readv(buffers: Uint8Array[], position: number): Promise<{ bytesRead: number }> },
  views: Uint8Array[],
  want: number,
  pos: number,
): Promise<number>;
