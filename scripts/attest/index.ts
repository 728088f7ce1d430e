import { readFile, rename, writeFile } from 'node:fs/promises';
import { basename } from 'node:path';
import { sha256File } from '../build/record.ts';
import { readBuildReference } from '../conformance/build-ref.ts';
import { DEFAULT_SPEC_DIR, diffSpecFiles, loadSpec } from '../conformance/spec.ts';
import type { Profile, Report } from '../conformance/spec-schema.ts';
import { InputError } from '../errors.ts';
import { calculateVbmetaDigest } from '../formats/avb/index.ts';
import {
  type DsseEnvelope,
  keyId,
  loadPrivateKey,
  loadPublicKey,
  signEnvelope,
  verifyEnvelope,
} from './dsse.ts';
import {
  type ConformanceStatement,
  IN_TOTO_PAYLOAD_TYPE,
  imageSubjects,
  makeStatement,
  OMIE_CONFORMANCE_PREDICATE,
  statementSchema,
} from './statement.ts';

export { type DsseEnvelope, keyId } from './dsse.ts';
export { type ConformanceStatement, statementSchema } from './statement.ts';

/**
 * Signed conformance certificates: an in-toto Statement (subjects = the image files and their
 * sha256, or a device's vbmeta digest; predicate = exactly what was checked: every spec file,
 * profile, kit, product files, target, waivers, and every requirement's result) in a DSSE
 * envelope. in-toto/DSSE is an open format with independent verifiers (e.g. sigstore,
 * in-toto-golang), so a lab's certificate can be checked without Omie Kit.
 */
export async function writeAttestation(
  report: Report,
  o: { input?: string; key: string; out: string },
): Promise<DsseEnvelope> {
  const key = loadPrivateKey(await readFile(o.key), o.key);
  const statement = await makeStatement(report, o.input);
  const env = signEnvelope(IN_TOTO_PAYLOAD_TYPE, Buffer.from(JSON.stringify(statement)), key);
  const tmp = `${o.out}.tmp`;
  await writeFile(tmp, `${JSON.stringify(env, null, 2)}\n`);
  await rename(tmp, o.out);
  return env;
}

export type RejectionCode =
  | 'MALFORMED'
  | 'WRONG_PAYLOAD_TYPE'
  | 'UNTRUSTED_KEY'
  | 'BAD_SIGNATURE'
  | 'BAD_STATEMENT'
  | 'SPEC_MISMATCH'
  | 'PROFILE_MISMATCH'
  | 'PRODUCT_MISMATCH'
  | 'SUBJECT_MISMATCH'
  | 'SUBJECT_MISSING'
  | 'UNATTESTED_FILE'
  | 'VBMETA_MISMATCH'
  | 'MUST_FAILED'
  | 'WAIVER_EXPIRED';

export interface AttestationVerdict {
  ok: boolean;
  keyid: string;
  reasons: Array<{ code: RejectionCode; message: string; files?: string[] }>;
  statement?: ConformanceStatement;
}

export interface VerifyAttestationOptions {
  /** Public key (or certificate, or private key) of the signer trusted for this certificate. */
  trustedKey: string;
  /**
   * Image attestations: the image folder or file the certificate must be about. Device ones:
   * optionally the build the device must have been running (its vbmeta digest is compared).
   */
  image?: string;
  /** The spec the certificate must have been made under (default: the kit's own spec/). */
  spec?: string;
  /** The profile it must have been made for (default: image). */
  profile?: Profile;
  /** When given: the product YAML it must name (by digest). */
  product?: string;
  /** Verification time, for waiver expiry. */
  now?: Date;
}

/**
 * Checks an attestation against a trusted key, a trusted spec and profile, and the image (or
 * device build) in hand: the signature; that the spec applied is the trusted one file by file
 * (naming the files that differ); the profile; every subject digest against the image's files
 * (and no image file left out) and the image's vbmeta digest; and that no MUST requirement
 * failed or rests on a waiver expired at verification time.
 */
export async function verifyAttestation(
  file: string,
  o: VerifyAttestationOptions,
): Promise<AttestationVerdict> {
  const key = loadPublicKey(await readFile(o.trustedKey), o.trustedKey);
  const verdict: AttestationVerdict = { ok: false, keyid: keyId(key), reasons: [] };
  const reject = (code: RejectionCode, message: string, files?: string[]) => {
    verdict.reasons.push({ code, message, ...(files ? { files } : {}) });
    return verdict;
  };
  let env: DsseEnvelope;
  try {
    env = JSON.parse(await readFile(file, 'utf8')) as DsseEnvelope;
    if (
      typeof env.payload !== 'string' ||
      typeof env.payloadType !== 'string' ||
      !Array.isArray(env.signatures)
    )
      throw new Error('not a DSSE envelope');
  } catch (e) {
    if (e instanceof InputError) throw e;
    return reject('MALFORMED', `${file}: not a DSSE envelope (${(e as Error).message})`);
  }
  if (env.payloadType !== IN_TOTO_PAYLOAD_TYPE)
    return reject(
      'WRONG_PAYLOAD_TYPE',
      `payloadType is ${JSON.stringify(env.payloadType)}, expected ${IN_TOTO_PAYLOAD_TYPE}`,
    );
  const sig = verifyEnvelope(env, key);
  if (!sig.keyidMatched)
    return reject(
      'UNTRUSTED_KEY',
      `no signature by the trusted key ${verdict.keyid.slice(0, 16)}… (signed by ${env.signatures.map((s) => s.keyid.slice(0, 16)).join(', ')}…)`,
    );
  if (!sig.verified)
    return reject(
      'BAD_SIGNATURE',
      'the signature does not verify with the trusted key: the envelope was altered or signed by another key',
    );

  const raw = safeJson(Buffer.from(env.payload, 'base64').toString('utf8')) as { predicateType?: unknown };
  const parsed = statementSchema.safeParse(raw);
  if (!parsed.success) {
    const older = typeof raw?.predicateType === 'string' && raw.predicateType !== OMIE_CONFORMANCE_PREDICATE;
    return reject(
      'BAD_STATEMENT',
      older
        ? `the statement's predicate is ${raw.predicateType}, not ${OMIE_CONFORMANCE_PREDICATE}: it does not name the spec files it was made under, so it cannot be checked against a trusted spec`
        : `the signed payload is not an Omie conformance statement: ${parsed.error.issues[0]?.path.join('.')}: ${parsed.error.issues[0]?.message}`,
    );
  }
  const st = parsed.data;
  verdict.statement = st;
  const p = st.predicate;

  // The spec: the trusted one, file by file.
  const trusted = await loadSpec(o.spec ?? DEFAULT_SPEC_DIR);
  const diff = diffSpecFiles(trusted.files, p.spec.files);
  if (diff.length || p.spec.version !== trusted.version)
    reject(
      'SPEC_MISMATCH',
      `made under another spec than ${trusted.dir} (${trusted.version})${p.spec.version !== trusted.version ? `: spec version ${p.spec.version}` : ''}${diff.length ? `; files that differ: ${diff.map((d) => `${d.path} (${d.change === 'missing' ? 'not in the attested spec' : d.change === 'added' ? 'not in the trusted spec' : 'changed'})`).join(', ')}` : ''}`,
      diff.map((d) => d.path),
    );
  const profile = o.profile ?? 'image';
  if (p.profile !== profile || p.target.kind !== profile)
    reject('PROFILE_MISMATCH', `made for the ${p.profile} profile, not ${profile}`);
  if (o.product) {
    const d = await sha256File(o.product);
    if (!p.product) reject('PRODUCT_MISMATCH', `names no product; expected ${basename(o.product)}`);
    else if (p.product.yaml.sha256 !== d)
      reject(
        'PRODUCT_MISMATCH',
        `made for product ${p.product.name} ${p.product.version} (${p.product.yaml.file} ${p.product.yaml.sha256.slice(0, 16)}…), not ${o.product} (${d.slice(0, 16)}…)`,
        [p.product.yaml.file],
      );
  }

  if (p.target.kind === 'image') {
    if (!o.image)
      reject('SUBJECT_MISSING', 'an image attestation is verified against its image: pass --image');
    else await checkImage(st, o.image, reject);
  } else if (o.image) {
    const build = await readBuildReference(o.image);
    if (p.target.vbmetaDigest !== build.vbmetaDigest)
      reject(
        'VBMETA_MISMATCH',
        `the device reported vbmeta digest ${p.target.vbmetaDigest ?? '(none)'}, the build ${o.image} has ${build.vbmetaDigest}`,
      );
  }

  const today = (o.now ?? new Date()).toISOString().slice(0, 10);
  for (const r of p.results) {
    if (r.level !== 'MUST') continue;
    if (r.status === 'fail' || r.status === 'error')
      reject('MUST_FAILED', `MUST requirement ${r.id} ${r.status === 'fail' ? 'failed' : 'errored'}`);
    if (r.status === 'waived' && r.waiver && r.waiver.expires < today)
      reject(
        'WAIVER_EXPIRED',
        `MUST requirement ${r.id} rests on a waiver that expired on ${r.waiver.expires}`,
      );
  }
  verdict.ok = verdict.reasons.length === 0;
  return verdict;
}

/** Subjects against the image's files, and the attested vbmeta digest against the image's. */
async function checkImage(
  st: ConformanceStatement,
  image: string,
  reject: (code: RejectionCode, message: string, files?: string[]) => unknown,
): Promise<void> {
  const files = await imageSubjects(image);
  const byName = new Map(files.map((f) => [f.name, f.path]));
  for (const s of st.subject) {
    const p = byName.get(s.name);
    if (!p) {
      reject('SUBJECT_MISSING', `${s.name} is attested but not in ${image}`, [s.name]);
      continue;
    }
    const d = await sha256File(p);
    if (d !== s.digest.sha256)
      reject('SUBJECT_MISMATCH', `${s.name}: sha256 ${d} differs from the attested ${s.digest.sha256}`, [
        s.name,
      ]);
  }
  for (const f of files)
    if (!st.subject.some((s) => s.name === f.name))
      reject('UNATTESTED_FILE', `${f.name} is in the image but not attested`, [f.name]);
  const vbmeta = byName.get('vbmeta.img');
  const attested = st.predicate.target.vbmetaDigest;
  if (vbmeta) {
    const d = await calculateVbmetaDigest(vbmeta, (name) => byName.get(`${name}.img`)).catch(() => undefined);
    if (d !== attested)
      reject(
        'VBMETA_MISMATCH',
        `the image's vbmeta digest is ${d ?? '(unreadable)'}, the attested one ${attested ?? '(none)'}`,
      );
  }
}

function safeJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return undefined;
  }
}
