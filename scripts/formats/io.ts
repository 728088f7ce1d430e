import type { FileHandle } from 'node:fs/promises';

/**
 * Writes all of `buf` at `position`: a positional write may write fewer bytes than asked (large
 * buffers, signals), and every image writer must go on until the whole buffer is down.
 */
export async function writeAll(fh: FileHandle, buf: Uint8Array, position: number): Promise<void> {
  let done = 0;
  while (done < buf.length)
    done += (await fh.write(buf, done, buf.length - done, position + done)).bytesWritten;
}
