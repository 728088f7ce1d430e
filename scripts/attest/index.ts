import { readFile, rename, writeFile } from 'node:fs/promises';
import { sha256File } from '../build/record.ts';
import type { Report } from '../conformance/spec-schema.ts';
import { InputError } from '../errors.ts';
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
  statementSchema,
} from './statement.ts';

export { type DsseEnvelope, keyId } from './dsse.ts';
export { type ConformanceStatement, statementSchema } from './statement.ts';

/**
 * Signed conformance certificates: an in-toto Statement (subjects = the image files and their
 * sha256, predicate = the spec digest and every requirement's result) in a DSSE envelope.
 * in-toto/DSSE is an open format with independent verifiers (e.g. sigstore, in-toto-golang), so
 * a lab's certificate can be checked without Omie Kit.
 */
export async function writeAttestation(
  report: Report,
  input: string,
  keyPath: string,
  outPath: string,
): Promise<DsseEnvelope> {
  const key = loadPrivateKey(await readFile(keyPath), keyPath);
  const statement = await makeStatement(report, input);
  const env = signEnvelope(IN_TOTO_PAYLOAD_TYPE, Buffer.from(JSON.stringify(statement)), key);
  const tmp = `${outPath}.tmp`;
  await writeFile(tmp, `${JSON.stringify(env, null, 2)}\n`);
  await rename(tmp, outPath);
  return env;
}

export type RejectionCode =
  | 'MALFORMED'
  | 'WRONG_PAYLOAD_TYPE'
  | 'UNTRUSTED_KEY'
  | 'BAD_SIGNATURE'
  | 'BAD_STATEMENT'
  | 'SUBJECT_MISMATCH'
  | 'SUBJECT_MISSING'
  | 'UNATTESTED_FILE'
  | 'MUST_FAILED'
  | 'WAIVER_EXPIRED';

export interface AttestationVerdict {
  ok: boolean;
  keyid: string;
  reasons: Array<{ code: RejectionCode; message: string }>;
  statement?: ConformanceStatement;
}

/**
 * Checks an attestation against the image in hand and a trusted key: the signature, that every
 * subject digest matches the image's files (and no image file is left out), and that no MUST
 * requirement failed or rests on an expired waiver (expired at verification time `now`).
 */
export async function verifyAttestation(
  file: string,
  imageInput: string,
  trustedKeyPath: string,
  now = new Date(),
): Promise<AttestationVerdict> {
  const key = loadPublicKey(await readFile(trustedKeyPath), trustedKeyPath);
  const verdict: AttestationVerdict = { ok: false, keyid: keyId(key), reasons: [] };
  const reject = (code: RejectionCode, message: string) => {
    verdict.reasons.push({ code, message });
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

  const parsed = statementSchema.safeParse(safeJson(Buffer.from(env.payload, 'base64').toString('utf8')));
  if (!parsed.success)
    return reject(
      'BAD_STATEMENT',
      `the signed payload is not an Omie conformance statement: ${parsed.error.issues[0]?.message}`,
    );
  const st = parsed.data;
  verdict.statement = st;

  const files = await imageSubjects(imageInput);
  const byName = new Map(files.map((f) => [f.name, f.path]));
  for (const s of st.subject) {
    const p = byName.get(s.name);
    if (!p) {
      reject('SUBJECT_MISSING', `${s.name} is attested but not in ${imageInput}`);
      continue;
    }
    const d = await sha256File(p);
    if (d !== s.digest.sha256)
      reject('SUBJECT_MISMATCH', `${s.name}: sha256 ${d} differs from the attested ${s.digest.sha256}`);
  }
  for (const f of files)
    if (!st.subject.some((s) => s.name === f.name))
      reject('UNATTESTED_FILE', `${f.name} is in the image but not attested`);

  const today = now.toISOString().slice(0, 10);
  for (const r of st.predicate.results) {
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

function safeJson(s: string): unknown {
  try {
    return JSON.parse(s);
  } catch {
    return undefined;
  }
}
