import { X509Certificate } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { OTACERTS_PATH } from '../formats/ota/otacerts.ts';
import { writeStoredZip } from '../formats/zip-store.ts';
import type { ExtraFile } from './plan.ts';

/**
 * The certificates an image trusts for OTA packages. Android 11+ update_engine
 * (PayloadVerifier::CreateInstanceFromZipPath) and RecoverySystem.verifyPackage read every
 * *.x509.pem entry of /system/etc/security/otacerts.zip (AOSP builds it from
 * PRODUCT_DEFAULT_DEV_CERTIFICATE, the release key); older update_engines read the payload key as
 * a PEM public key from /system/etc/update_engine/update-payload-key.pub.pem. The build replaces
 * the base's with the partner's OTA certificate, so the device accepts the partner's OTAs and
 * no longer the base vendor's.
 */
export const PAYLOAD_KEY_PATH = 'etc/update_engine/update-payload-key.pub.pem';

/** otacerts.zip: the certificate as its only entry, stored, with a fixed time (reproducible). */
export async function writeOtacertsZip(certPem: string, out: string, epoch: number): Promise<void> {
  const name = basename(certPem).endsWith('.x509.pem') ? basename(certPem) : 'ota.x509.pem';
  await writeStoredZip(out, [{ name, data: await readFile(certPem) }], {
    mtime: new Date(epoch * 1000),
    mode: 0o100644,
  });
}

/**
 * The system files that make the image trust `certPem` for OTAs: otacerts.zip, and the payload
 * key file where the base has one.
 */
export async function otaTrustFiles(
  certPem: string,
  work: string,
  epoch: number,
  hasPayloadKeyFile: boolean,
): Promise<ExtraFile[]> {
  const zip = join(work, 'otacerts.zip');
  await writeOtacertsZip(certPem, zip, epoch);
  const cert = new X509Certificate(await readFile(certPem));
  const sha = cert.fingerprint256.replaceAll(':', '').toLowerCase();
  const files: ExtraFile[] = [
    {
      partition: 'system',
      path: OTACERTS_PATH,
      source: zip,
      reason: `OTA packages must be signed by the partner's OTA key (certificate sha256 ${sha})`,
    },
  ];
  if (hasPayloadKeyFile) {
    const pem = join(work, 'update-payload-key.pub.pem');
    const key = cert.publicKey.export({ type: 'spki', format: 'pem' });
    await writeFile(pem, key);
    files.push({
      partition: 'system',
      path: PAYLOAD_KEY_PATH,
      source: pem,
      reason: "update_engine verifies payloads with the partner's OTA key",
    });
  }
  return files;
}
