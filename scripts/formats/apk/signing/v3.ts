/**
 * APK Signature Scheme v3 and v3.1 (apksig V3SchemeVerifier, V3SigningCertificateLineage):
 * signers per platform SDK range plus the proof-of-rotation lineage — a chain of certificates in
 * which each node's signed data (certificate, algorithm id) is signed by the previous node's key.
 */
import { VerificationError } from '../../../errors.ts';
import type { ZipArchive } from '../zip.ts';
import { BlockId, type SigningBlock } from './block.ts';
import {
  type CertificateInfo,
  LpReader,
  type ParsedCertificate,
  parseCertificate,
  SIGNATURE_ALGORITHMS,
  schemeFormatError,
  verifySignature,
} from './common.ts';
import { type BlockScheme, type PlatformRange, type VerifiedSigner, verifyBlockSigners } from './v2.ts';

export const V3Attr = {
  PROOF_OF_ROTATION: 0x3ba06f8c,
  /** In a v3.0 signer: the SDK from which the v3.1 block's (rotated) signer applies. */
  ROTATION_MIN_SDK_VERSION: 0x559f8b02,
  ROTATION_ON_DEV_RELEASE: 0xc2a6b3ba,
} as const;

/** Lineage node flags (SigningCertificateLineage.SignerCapabilities). */
const CAPABILITIES: Array<[number, string]> = [
  [1, 'installedData'],
  [2, 'sharedUid'],
  [4, 'permission'],
  [8, 'rollback'],
  [16, 'auth'],
];

export interface LineageNode {
  certificate: CertificateInfo;
  /** Capabilities granted to this (older) signer, e.g. installedData, sharedUid, permission. */
  capabilities: string[];
  flags: number;
  /** Algorithm the parent used to sign this node (null for the first). */
  parentSignatureAlgorithm: string | null;
}

/** Parses and verifies a proof-of-rotation lineage (attribute value: u32 version, nodes). */
export function parseLineage(
  value: Buffer,
  scheme: BlockScheme,
): { nodes: LineageNode[]; certs: ParsedCertificate[] } {
  try {
    const r = new LpReader(value, scheme);
    const version = r.u32('lineage version');
    if (version !== 1)
      throw new VerificationError(scheme, `unsupported proof-of-rotation lineage version ${version}`, {
        code: 'APK_SIG_LINEAGE_VERSION',
      });
    const nodes: LineageNode[] = [];
    const certs: ParsedCertificate[] = [];
    let lastCert: ParsedCertificate | null = null;
    let lastSigAlg = 0;
    while (r.remaining > 0) {
      const n = nodes.length + 1;
      const nr = new LpReader(r.prefixed('lineage node'), scheme);
      const signedData = nr.prefixed('lineage signed data');
      const flags = nr.u32('lineage flags');
      const sigAlg = nr.u32('lineage signature algorithm');
      const signature = nr.prefixed('lineage signature');
      const sd = new LpReader(signedData, scheme);
      const certDer = sd.prefixed('lineage certificate');
      const signedSigAlg = sd.u32('lineage signed algorithm');
      if (lastCert) {
        const alg = SIGNATURE_ALGORITHMS[lastSigAlg];
        if (!alg)
          throw new VerificationError(
            scheme,
            `lineage node #${n}: unknown signature algorithm 0x${lastSigAlg.toString(16)}`,
            {
              code: 'APK_SIG_LINEAGE_ALGORITHM',
            },
          );
        if (!verifySignature(alg, lastCert.publicKey, signedData, signature))
          throw new VerificationError(
            scheme,
            `lineage node #${n}: signature by the previous certificate does not verify`,
            {
              code: 'APK_SIG_LINEAGE_SIGNATURE_MISMATCH',
              context: { node: n },
            },
          );
        if (signedSigAlg !== lastSigAlg)
          throw new VerificationError(scheme, `lineage node #${n}: signing algorithm id mismatch`, {
            code: 'APK_SIG_LINEAGE_ALGORITHM',
          });
      }
      const cert = parseCertificate(certDer, scheme, `lineage certificate #${n}`);
      certs.push(cert);
      nodes.push({
        certificate: cert.info,
        flags,
        capabilities: CAPABILITIES.filter(([b]) => flags & b).map(([, s]) => s),
        parentSignatureAlgorithm: lastCert ? (SIGNATURE_ALGORITHMS[signedSigAlg]?.name ?? null) : null,
      });
      lastCert = cert;
      lastSigAlg = sigAlg;
    }
    if (!nodes.length)
      throw new VerificationError(scheme, 'empty proof-of-rotation lineage', {
        code: 'APK_SIG_LINEAGE_EMPTY',
      });
    return { nodes, certs };
  } catch (e) {
    schemeFormatError(scheme, e);
  }
}

export interface V3Result {
  signers: VerifiedSigner[];
  /** Lineage of the signer that carries one (the newest), oldest certificate first. */
  lineage: LineageNode[] | null;
  /** From the v3.0 signer: SDK from which v3.1 applies. */
  rotationMinSdk: number | null;
}

export async function verifyV3(
  zip: ZipArchive,
  block: SigningBlock,
  platform: PlatformRange,
  v31 = false,
): Promise<V3Result | null> {
  const scheme: BlockScheme = v31 ? 'v3.1' : 'v3';
  const pair = block.pairs.find((p) => p.id === (v31 ? BlockId.V31 : BlockId.V3));
  if (!pair) return null;
  const signers = await verifyBlockSigners(zip, block, pair.value, scheme, platform);
  // Signer SDK ranges must follow each other without overlap or hole (apksig
  // V3_INCONSISTENT_SDK_VERSIONS) and, for v3.0 without a v3.1 block, cover every platform from
  // max(minSdk, 28) up (V3_MISSING_SDK_VERSIONS). With v3.1, v3.0 deliberately stops below the
  // rotation SDK.
  const sorted = [...signers].sort((a, b) => a.raw.minSdk! - b.raw.minSdk!);
  for (let i = 1; i < sorted.length; i++)
    if (sorted[i]!.raw.minSdk !== sorted[i - 1]!.raw.maxSdk! + 1)
      throw new VerificationError(scheme, 'signers have overlapping or non-contiguous SDK version ranges', {
        code: 'APK_SIG_SDK_OVERLAP',
        context: { ranges: sorted.map((x) => [x.raw.minSdk, x.raw.maxSdk]) },
      });
  const firstMin = sorted[0]!.raw.minSdk!;
  const lastMax = sorted[sorted.length - 1]!.raw.maxSdk!;
  if (!v31 && !block.pairs.some((p) => p.id === BlockId.V31))
    if (firstMin > Math.max(platform.minSdk, 28) || lastMax < 0x7fffffff)
      throw new VerificationError(
        scheme,
        `signers cover SDK ${firstMin}..${lastMax}, not every platform from ${Math.max(platform.minSdk, 28)} on`,
        { code: 'APK_SIG_SDK_MISSING', context: { firstMin, lastMax } },
      );
  let lineage: LineageNode[] | null = null;
  let rotationMinSdk: number | null = null;
  for (const s of signers) {
    for (const a of s.raw.attributes) {
      if (a.id === V3Attr.PROOF_OF_ROTATION) {
        const l = parseLineage(a.value, scheme);
        const last = l.certs[l.certs.length - 1]!;
        if (!last.der.equals(s.certificates[0]!.der))
          throw new VerificationError(
            scheme,
            `signer #${s.raw.index + 1}: newest lineage certificate is not the signing certificate`,
            {
              code: 'APK_SIG_LINEAGE_SIGNER_MISMATCH',
            },
          );
        lineage = l.nodes;
      } else if (a.id === V3Attr.ROTATION_MIN_SDK_VERSION && a.value.length >= 4)
        rotationMinSdk = a.value.readUInt32LE(0);
    }
  }
  if (rotationMinSdk !== null && !v31 && !block.pairs.some((p) => p.id === BlockId.V31))
    throw new VerificationError(
      'v3',
      'signer declares a rotation min SDK but the APK has no v3.1 block (v3.1 stripped)',
      {
        code: 'APK_SIG_V31_STRIPPED',
      },
    );
  return { signers, lineage, rotationMinSdk };
}
