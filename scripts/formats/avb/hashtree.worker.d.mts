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
  onBytes?: (n: number) => void;
  /** Reads image bytes at a position (e.g. through a sparse reader) instead of opening `path`. */
  read?: (buf: Buffer, position: number) => Promise<number>;
  /** Also checksum the image bytes of these blocks (`crc32`). */
  crc32?: boolean;
  /**
   * Also find the runs of whole blocks whose 32-bit words are all equal (`uniform`: flat
   * `start, count, value` triples in block order).
   */
  uniform?: boolean;
}): Promise<{ crc32?: number; uniform?: number[] }>;

/** Reads `want` bytes at `pos` scattered over `views` in order, resuming after partial readv calls. */
export function readvFully(
  fh: { readv(buffers: Uint8Array[], position: number): Promise<{ bytesRead: number }> },
  views: Uint8Array[],
  want: number,
  pos: number,
): Promise<number>;
