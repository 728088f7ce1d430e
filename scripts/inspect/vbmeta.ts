import { VerificationError } from '../errors.ts';
import { readAvbImage } from '../formats/avb/image.ts';
import {
  type AvbInfo,
  avbInfoToJson,
  formatAvbInfo,
  infoImage,
  verifyVbmeta,
} from '../formats/avb/verify.ts';
import type { Detector } from './detect.ts';

/** Summary of a vbmeta blob: avbtool info_image fields (JSON-safe) plus a signature check. */
export interface VbmetaSummary {
  info: Record<string, unknown>;
  /** "valid", "unsigned" (algorithm NONE) or "invalid: <reason>". */
  signature: string;
  /** AOSP public test key name when signed with one (never acceptable for release). */
  publicTestKey?: string;
  text: string;
}

export async function summariseAvb(path: string): Promise<{ info: AvbInfo; summary: VbmetaSummary }> {
  const info = await infoImage(path);
  const img = await readAvbImage(path);
  let signature = 'valid';
  try {
    if (!verifyVbmeta(img.vbmeta, { file: path }).signed) signature = 'unsigned';
  } catch (e) {
    if (!(e instanceof VerificationError)) throw e;
    signature = `invalid: ${e.message}`;
  }
  return {
    info,
    summary: {
      info: avbInfoToJson(info),
      signature,
      publicTestKey: info.publicTestKey,
      text: formatAvbInfo(info),
    },
  };
}

export function humanAvb(s: VbmetaSummary): string {
  const warn = s.publicTestKey ? `\nWARNING: signed with the public AOSP test key ${s.publicTestKey}` : '';
  return `${s.text}Signature:                ${s.signature}${warn}`;
}

/** A standalone vbmeta image ("AVB0" at offset 0), e.g. vbmeta.img, vbmeta_system.img. */
export const vbmetaDetector: Detector<VbmetaSummary> = {
  kind: 'vbmeta',
  detect: (s) => s.head.length >= 256 && s.head.toString('latin1', 0, 4) === 'AVB0',
  inspect: async (path) => (await summariseAvb(path)).summary,
  human: humanAvb,
};
