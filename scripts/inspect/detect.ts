import { open } from 'node:fs/promises';
import { InputError } from '../errors.ts';

/** Bytes read from the start and end of a file for content sniffing. */
export interface Sniff {
  path: string;
  size: number;
  head: Buffer;
  /** Last up to 64 KiB (AVB footers, zip EOCD). */
  tail: Buffer;
}

/**
 * One artifact kind `omie inspect` recognises by content (never by file name).
 * Detectors are tried in order; put more specific ones (e.g. "apk") before generic ones ("zip").
 */
export interface Detector<T = unknown> {
  kind: string;
  detect(s: Sniff): boolean | Promise<boolean>;
  inspect(path: string): Promise<T>;
  human(result: T): string;
}

const HEAD = 64 * 1024;
const TAIL = 64 * 1024;

export async function sniff(path: string): Promise<Sniff> {
  const fh = await open(path, 'r').catch((e: NodeJS.ErrnoException) => {
    throw new InputError(`cannot open ${path}: ${e.code ?? e.message}`, {
      code: e.code ?? 'OPEN_FAILED',
      context: { file: path },
    });
  });
  try {
    const st = await fh.stat();
    if (!st.isFile())
      throw new InputError(`${path} is not a regular file`, { code: 'NOT_A_FILE', context: { file: path } });
    const head = Buffer.alloc(Math.min(HEAD, st.size));
    await fh.read(head, 0, head.length, 0);
    const tlen = Math.min(TAIL, st.size);
    const tail = Buffer.alloc(tlen);
    await fh.read(tail, 0, tlen, st.size - tlen);
    return { path, size: st.size, head, tail };
  } finally {
    await fh.close();
  }
}

export async function detect(path: string, detectors: readonly Detector[]): Promise<Detector | undefined> {
  const s = await sniff(path);
  for (const d of detectors) if (await d.detect(s)) return d;
  return undefined;
}
