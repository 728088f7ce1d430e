import { isOtaZip } from '../formats/payload/reader.ts';
import type { Detector } from './detect.ts';
import { humanPayload, inspectPayload, type PayloadSummary } from './payload.ts';

/**
 * An A/B OTA zip: a zip whose central directory has payload.bin. Must come before the generic
 * zip / factory-zip detectors. metadata.pb (Android 11+) is preferred over the text metadata.
 */
export const otaZipDetector: Detector<PayloadSummary> = {
  kind: 'ota-zip',
  async detect(s) {
    const zipMagic = s.head.length >= 4 && s.head.readUInt32LE(0) === 0x04034b50;
    return zipMagic && (await isOtaZip(s.path));
  },
  inspect: inspectPayload,
  human(r) {
    const m = r.otaMetadata ?? {};
    const pb = r.otaMetadataPb;
    const pre = pb?.precondition;
    const post = pb?.postcondition;
    const first = (a: string[] | undefined) => (a?.length ? a.join(', ') : undefined);
    const fields: [string, string | undefined][] = [
      ['OTA type', pb?.type ?? m['ota-type']],
      ['Device', first(pre?.device) ?? m['pre-device']],
      ['From build', first(pre?.build) ?? m['pre-build']],
      ['Build', first(post?.build) ?? m['post-build']],
      [
        'Build time',
        post?.timestamp
          ? `${post.timestamp} (${new Date(post.timestamp * 1000).toISOString()})`
          : m['post-timestamp'],
      ],
      ['Security patch', post?.securityPatchLevel ?? m['post-security-patch-level']],
      ['SDK level', post?.sdkLevel ?? m['post-sdk-level']],
      ['Wipe', pb?.wipe || m['ota-wipe'] === 'yes' ? 'yes' : undefined],
      ['Downgrade', pb?.downgrade || m['ota-downgrade'] === 'yes' ? 'yes' : undefined],
    ];
    const lines = fields.filter(([, v]) => v).map(([k, v]) => `${`${k}:`.padEnd(16)}${v}`);
    if (r.propertyFilesMismatch) lines.push(`WARNING: ${r.propertyFilesMismatch}`);
    return [...lines, humanPayload(r)].join('\n');
  },
};
