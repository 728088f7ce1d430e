/**
 * APK signature verification across schemes, with apksigner's verdict rules: every scheme present
 * must verify; v1 is required when the APK supports SDKs below 24; the signers of all schemes must
 * agree (v2/v1 may be signed by the oldest key of a v3 rotation lineage).
 */
import { OmieError, VerificationError } from '../../../errors.ts';
import type { ZipArchive } from '../zip.ts';
import { BlockId, findSigningBlock } from './block.ts';
import type { CertificateInfo } from './common.ts';
import { v1SignatureBlocks, verifyV1 } from './v1.ts';
import { type SchemeSigner, verifyV2 } from './v2.ts';
import { type LineageNode, verifyV3 } from './v3.ts';

export type { CertificateInfo } from './common.ts';
export type { SchemeSigner } from './v2.ts';
export type { LineageNode } from './v3.ts';

export type SchemeName = 'v1' | 'v2' | 'v3' | 'v3.1';

export interface SchemeError {
  code: string;
  message: string;
  context: Record<string, unknown>;
}

export interface SchemeReport {
  scheme: SchemeName;
  /** The APK carries a signature of this scheme. */
  present: boolean;
  /** Present and verified (every scheme present is verified, even one the platform would skip, unless `consultedOnly`). */
  verified: boolean;
  /**
   * Whether apksigner/the platform consults this scheme for the APK's SDK range (apksig
   * ApkVerifier): v1 only when minSdk < 24 or no v2/v3 signature exists; v2 only when minSdk < 28
   * or no v3 signature exists. A failure in a scheme that is not consulted does not fail the verdict.
   */
  considered: boolean;
  signers: SchemeSigner[];
  /** Why verification failed (present && !verified). */
  error: SchemeError | null;
}

export interface SignatureReport {
  /** apksigner's overall verdict ("Verifies"). */
  verified: boolean;
  schemes: Record<SchemeName, SchemeReport>;
  /** Certificates apksigner prints for --print-certs: the v3 signer(s) if any, else v2, else v1. */
  signers: CertificateInfo[];
  /** v3 proof-of-rotation lineage, oldest first. */
  lineage: LineageNode[] | null;
  /** v3.0 attribute: SDK from which the v3.1 signer applies. */
  rotationMinSdk: number | null;
  /** Other IDs in the APK Signing Block (hex), e.g. source stamps, padding. */
  otherBlockIds: string[];
  /** Reasons for a negative verdict beyond per-scheme errors. */
  problems: string[];
}

function empty(scheme: SchemeName): SchemeReport {
  return { scheme, present: false, verified: false, considered: false, signers: [], error: null };
}

function asSchemeError(e: unknown): SchemeError {
  if (e instanceof OmieError) return { code: e.code, message: e.message, context: e.context };
  return { code: 'INTERNAL', message: String((e as Error)?.message ?? e), context: {} };
}

export interface VerifyOptions {
  /** The APK's minSdkVersion (decides whether v1 is required). */
  minSdk: number;
  /**
   * The APK's targetSdkVersion (default: minSdk, as the platform defaults it). From 30 (Android
   * 11) the platform refuses to install an APK without a v2 or later signature, and apksig's
   * verifier reports it (ApkVerifier, MIN_SIG_SCHEME_FOR_TARGET_SDK_NOT_MET).
   */
  targetSdk?: number;
  /**
   * Verify only the schemes the verdict consults: v1 is then skipped (reported present, not
   * verified) when minSdk >= 24 and a v2/v3 signature exists, as apksig skips it. Verifying v1
   * inflates and hashes every entry; a build reads every APK twice (plan, check) for the verdict
   * and the signers alone. Default false: every scheme present is verified.
   */
  consultedOnly?: boolean;
}

/** Verifies all schemes; never throws for a bad signature (see `assertVerified`). */
export async function verifyApkSignatures(zip: ZipArchive, opts: VerifyOptions): Promise<SignatureReport> {
  const schemes: Record<SchemeName, SchemeReport> = {
    v1: empty('v1'),
    v2: empty('v2'),
    v3: empty('v3'),
    'v3.1': empty('v3.1'),
  };
  const problems: string[] = [];
  let lineage: LineageNode[] | null = null;
  let rotationMinSdk: number | null = null;
  let otherBlockIds: string[] = [];
  const certsOf: Partial<Record<SchemeName, string[]>> = {};

  let block: Awaited<ReturnType<typeof findSigningBlock>> = null;
  try {
    block = await findSigningBlock(zip);
  } catch (e) {
    const err = asSchemeError(e);
    for (const s of ['v2', 'v3'] as const) schemes[s] = { ...empty(s), present: true, error: err };
    problems.push(`APK Signing Block is malformed: ${err.message}`);
  }
  if (block) {
    const known = new Set<number>([BlockId.V2, BlockId.V3, BlockId.V31]);
    otherBlockIds = block.pairs.filter((p) => !known.has(p.id)).map((p) => `0x${p.id.toString(16)}`);
    const b = block;
    const run = async (s: 'v2' | 'v3' | 'v3.1', id: number, f: () => Promise<void>) => {
      if (!b.pairs.some((p) => p.id === id)) return;
      schemes[s].present = true;
      try {
        await f();
        schemes[s].verified = true;
      } catch (e) {
        schemes[s].error = asSchemeError(e);
      }
    };
    await run('v2', BlockId.V2, async () => {
      const r = (await verifyV2(zip, b, opts))!;
      schemes.v2.signers = r.map((x) => x.signer);
      certsOf.v2 = r.map((x) => x.signer.certificates[0]!.sha256);
    });
    await run('v3', BlockId.V3, async () => {
      const r = (await verifyV3(zip, b, opts))!;
      schemes.v3.signers = r.signers.map((x) => x.signer);
      certsOf.v3 = r.signers.map((x) => x.signer.certificates[0]!.sha256);
      lineage = r.lineage;
      rotationMinSdk = r.rotationMinSdk;
    });
    await run('v3.1', BlockId.V31, async () => {
      const r = (await verifyV3(zip, b, opts, true))!;
      schemes['v3.1'].signers = r.signers.map((x) => x.signer);
      certsOf['v3.1'] = r.signers.map((x) => x.signer.certificates[0]!.sha256);
      if (r.lineage) lineage = r.lineage;
    });
  }
  const newer = schemes.v2.present || schemes.v3.present || schemes['v3.1'].present;
  if (opts.consultedOnly && opts.minSdk >= 24 && newer)
    schemes.v1.present = v1SignatureBlocks(zip).length > 0;
  else
    try {
      const r = await verifyV1(zip, opts.minSdk);
      if (r) {
        schemes.v1.present = true;
        schemes.v1.verified = true;
        schemes.v1.signers = r.signers.map((s) => ({
          certificates: s.certificates,
          algorithm: `${s.digestAlgorithm} (${s.signatureAlgorithmOid})`,
          algorithms: [s.signatureAlgorithmOid],
          attributeIds: [],
        }));
        certsOf.v1 = r.signers.map((s) => s.certificates[0]!.sha256);
        for (const n of r.apkSignedSchemes) {
          const s = n === 2 ? 'v2' : n === 3 ? 'v3' : null;
          if (s && !schemes[s].present) {
            schemes.v1.verified = false;
            schemes.v1.error = {
              code: 'APK_SIG_STRIPPED',
              message: `v1: .SF declares APK Signature Scheme v${n}, but the APK has no v${n} signature (stripped)`,
              context: { scheme: 'v1', declared: n },
            };
          }
        }
      }
    } catch (e) {
      schemes.v1.present = true;
      schemes.v1.error = asSchemeError(e);
    }

  const hasV2 = schemes.v2.present;
  const hasV3 = schemes.v3.present || schemes['v3.1'].present;
  schemes.v1.considered = schemes.v1.present && (opts.minSdk < 24 || (!hasV2 && !hasV3));
  schemes.v2.considered = hasV2 && (opts.minSdk < 28 || !hasV3);
  schemes.v3.considered = schemes.v3.present;
  schemes['v3.1'].considered = schemes['v3.1'].present;
  const present = (Object.values(schemes) as SchemeReport[]).filter((s) => s.present);
  if (!present.length) problems.push('no signatures: the APK is not signed');
  for (const s of present)
    if (s.considered && !s.verified) problems.push(`${s.scheme} signature does not verify`);
  if (opts.minSdk < 24 && !schemes.v1.present && present.length)
    problems.push(`minSdkVersion ${opts.minSdk} < 24 requires a v1 (JAR) signature, which is missing`);
  const targetSdk = opts.targetSdk ?? opts.minSdk;
  if (
    targetSdk >= 30 &&
    present.length &&
    !schemes.v2.verified &&
    !schemes.v3.verified &&
    !schemes['v3.1'].verified
  )
    problems.push(
      `targetSdkVersion ${targetSdk} >= 30 requires an APK Signature Scheme v2 or later signature, which is missing`,
    );
  // Signers must agree across schemes; with rotation, older schemes carry the lineage's first key.
  const lineageCerts = new Set((lineage as LineageNode[] | null)?.map((n) => n.certificate.sha256) ?? []);
  const sameSet = (a: string[] = [], b: string[] = []) =>
    a.length === b.length && a.every((x) => b.includes(x));
  if (!schemes.v1.considered) delete certsOf.v1;
  if (!schemes.v2.considered) delete certsOf.v2;
  if (certsOf.v1 && certsOf.v2 && !sameSet(certsOf.v1, certsOf.v2)) problems.push('v1 and v2 signers differ');
  const newest = certsOf.v3;
  for (const older of [certsOf.v2, certsOf.v1]) {
    if (!newest || !older) continue;
    if (!sameSet(newest, older) && !older.every((c) => lineageCerts.has(c)))
      problems.push(
        "v3 signer differs from the older schemes' signer and is not linked by a rotation lineage",
      );
  }
  const effective = schemes.v3.verified
    ? schemes.v3.signers
    : schemes.v2.verified && schemes.v2.considered
      ? schemes.v2.signers
      : schemes.v1.verified && schemes.v1.considered
        ? schemes.v1.signers
        : [];
  return {
    verified: problems.length === 0,
    schemes,
    signers: effective.map((s) => s.certificates[0]!),
    lineage,
    rotationMinSdk,
    otherBlockIds,
    problems,
  };
}

/** Throws the first scheme's VerificationError (or a summary one) when the report is negative. */
export function assertVerified(report: SignatureReport, file?: string): void {
  if (report.verified) return;
  const failed = (Object.values(report.schemes) as SchemeReport[]).find((s) => s.considered && !s.verified);
  if (failed?.error)
    throw new VerificationError(failed.scheme, failed.error.message.replace(/^v[0-9.]+: /, ''), {
      code: failed.error.code,
      context: { ...failed.error.context, file },
    });
  throw new VerificationError('apk', report.problems.join('; '), {
    code: 'APK_SIG_NOT_VERIFIED',
    context: { file },
  });
}
