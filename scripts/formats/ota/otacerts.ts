import { createHash, X509Certificate } from 'node:crypto';
import { bufferSource, ZipArchive } from '../apk/zip.ts';

/**
 * otacerts.zip, the certificates a system accepts OTA packages from: every *.x509.pem entry, as
 * recovery (LoadKeysFromZipfile) and update_engine (CertificateParser) load them from
 * /system/etc/security/otacerts.zip. An entry that is not a certificate is skipped, as they skip it.
 */

/** Where a partition holds otacerts.zip, relative to the partition's root. */
export const OTACERTS_PATH = 'etc/security/otacerts.zip';
/** Where the running system holds it: the one recovery and update_engine read. */
export const SYSTEM_OTACERTS = `/system/${OTACERTS_PATH}`;

export interface OtaCertificate {
  name: string;
  certificate: X509Certificate;
  /** SHA-256 of the DER certificate (what apksigner and `omie` print). */
  sha256: string;
}

export async function readOtaCertificates(zip: Buffer, name = 'otacerts.zip'): Promise<OtaCertificate[]> {
  const z = await ZipArchive.open(bufferSource(zip, name));
  const out: OtaCertificate[] = [];
  for (const e of z.entries) {
    if (!e.name.endsWith('x509.pem')) continue;
    try {
      const certificate = new X509Certificate(await z.read(e, 65536));
      out.push({
        name: e.name,
        certificate,
        sha256: createHash('sha256').update(certificate.raw).digest('hex'),
      });
    } catch {
      // not a certificate
    }
  }
  return out;
}
