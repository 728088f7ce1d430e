/**
 * An APEX opened down to its payload filesystem: the container (scripts/formats/apex), the
 * payload extracted to a scratch file and checked as apexd checks it, and the payload's ext4 or
 * erofs tree through the kit's readers, to list and copy out the APKs and jars inside.
 */
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { asOmieError } from '../errors.ts';
import {
  ApexArchive,
  type ApexInfo,
  type ApexPayloadInfo,
  inspectApexPayload,
} from '../formats/apex/index.ts';
import { detectFilesystem, openFilesystem } from './index.ts';
import type { FsReader } from './types.ts';

export interface OpenedApex {
  info: ApexInfo;
  /** null when the payload could not be extracted or read (see payloadError). */
  payload: ApexPayloadInfo | null;
  payloadError?: string;
  /** The payload's filesystem (null when it is not ext4/erofs or unreadable). */
  fs: FsReader | null;
  /** Paths inside the payload ("/priv-app/X/X.apk"). */
  apks: string[];
  jars: string[];
  close(): Promise<void>;
}

/**
 * Opens `apexPath` with `work` as its scratch folder (created; removed by close()). Container
 * errors throw (it is not an APEX); payload errors are reported in `payloadError`.
 */
export async function openApex(apexPath: string, work: string): Promise<OpenedApex> {
  await mkdir(work, { recursive: true });
  const archive = await ApexArchive.open(apexPath);
  const img = join(work, 'apex_payload.img');
  let payload: ApexPayloadInfo | null = null;
  let payloadError: string | undefined;
  let fs: FsReader | null = null;
  let files: string[] = [];
  try {
    await archive.extractPayload(img);
    payload = await inspectApexPayload(img, archive.info);
    if ((await detectFilesystem(img)) !== null) {
      fs = await openFilesystem(img);
      files = (await fs.list()).filter((e) => e.type === 'file').map((e) => e.path);
    }
  } catch (e) {
    payloadError = asOmieError(e).message;
  } finally {
    await archive.close();
  }
  return {
    info: archive.info,
    payload,
    ...(payloadError ? { payloadError } : {}),
    fs,
    apks: files.filter((p) => p.endsWith('.apk')),
    jars: files.filter((p) => p.endsWith('.jar')),
    async close() {
      await fs?.close().catch(() => {});
      await rm(work, { recursive: true, force: true });
    },
  };
}
