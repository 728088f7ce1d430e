import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bundleFromJSON } from '@sigstore/bundle';
import { toSignedEntity, toTrustMaterial, Verifier } from '@sigstore/verify';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { signEnvelope } from '../../scripts/attest/dsse.ts';
import { verifyAttestation, writeAttestation } from '../../scripts/attest/index.ts';
import { DEFAULT_SPEC_DIR, loadSpec, type Spec } from '../../scripts/conformance/spec.ts';
import type { Report } from '../../scripts/conformance/spec-schema.ts';
import { omie, workDir } from '../helpers.ts';

const dir = workDir('attest');
const image = join(dir, 'image');
const keys: Record<string, { priv: string; pub: string }> = {};
let kitSpec: Spec;

function report(over: Partial<Report['results'][number]>[] = []): Report {
  const base: Report['results'][number] = {
    id: '3.1/C-1-1',
    section: '3.1',
    level: 'MUST',
    title: 'No Google package',
    rationale: 'r',
    howChecked: 'h',
    status: 'pass',
    message: 'ok',
    evidence: [],
    durationMs: 1,
  };
  const results = [
    base,
    { ...base, id: '3.1/C-1-2' },
    ...over.map((o, i) => ({ ...base, id: `9.9/C-${i + 1}-1`, ...o })),
  ];
  return {
    reportVersion: 1,
    tool: { name: 'omie', version: '0.1.0' },
    spec: { version: kitSpec.version, sha256: kitSpec.sha256, dir: kitSpec.dir, files: kitSpec.files },
    target: { kind: 'image', input: image, description: 'test image', partitions: ['system'] },
    profile: 'image',
    startedAt: '2026-11-25T00:00:00.000Z',
    durationMs: 5,
    summary: {
      total: results.length,
      pass: results.length,
      fail: 0,
      waived: 0,
      notApplicable: 0,
      error: 0,
      mustFailed: 0,
      shouldFailed: 0,
      conforms: true,
    },
    results,
  };
}

function keyFiles(name: string, type: 'rsa' | 'ec' | 'ed25519') {
  const kp =
    type === 'rsa'
      ? generateKeyPairSync('rsa', { modulusLength: 2048 })
      : type === 'ec'
        ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
        : generateKeyPairSync('ed25519');
  const priv = join(dir, `${name}.key.pem`);
  const pub = join(dir, `${name}.pub.pem`);
  writeFileSync(priv, kp.privateKey.export({ type: 'pkcs8', format: 'pem' }));
  writeFileSync(pub, kp.publicKey.export({ type: 'spki', format: 'pem' }));
  keys[name] = { priv, pub };
}

describe('conformance attestations (DSSE + in-toto)', () => {
  beforeAll(async () => {
    kitSpec = await loadSpec(DEFAULT_SPEC_DIR);
    mkdirSync(image, { recursive: true });
    writeFileSync(join(image, 'system.img'), Buffer.alloc(8192, 1));
    writeFileSync(join(image, 'vbmeta.img'), Buffer.alloc(4096, 2));
    keyFiles('lab', 'ec');
    keyFiles('other', 'ec');
    keyFiles('rsa', 'rsa');
    keyFiles('ed', 'ed25519');
  });

  it.each(['lab', 'rsa', 'ed'])('round trip verifies (%s key) through the CLI', async (k) => {
    const att = join(dir, `ok-${k}.dsse.json`);
    await writeAttestation(report(), { input: image, key: keys[k].priv, out: att });
    const r = await omie([
      'verify-attestation',
      att,
      '--image',
      image,
      '--trusted-key',
      keys[k].pub,
      '--json',
    ]);
    expect(r.exitCode, r.stdout).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.ok).toBe(true);
    expect(j.subjects.map((s: { name: string }) => s.name)).toEqual(['system.img', 'vbmeta.img']);
  });

  it('flipping any byte of the envelope is rejected with a named reason', async () => {
    const att = join(dir, 'flip.dsse.json');
    await writeAttestation(report(), { input: image, key: keys.lab.priv, out: att });
    const text = readFileSync(att);
    const env = JSON.parse(text.toString());
    const payload = Buffer.from(env.payload, 'base64');
    // Flip bytes spread over the signed payload, and the signature.
    for (const at of [0, 17, Math.floor(payload.length / 2), payload.length - 2]) {
      const p = Buffer.from(payload);
      p[at] ^= 0x01;
      writeFileSync(join(dir, 'flipped.json'), JSON.stringify({ ...env, payload: p.toString('base64') }));
      const v = await verifyAttestation(join(dir, 'flipped.json'), {
        image: image,
        trustedKey: keys.lab.pub,
      });
      expect(v.ok).toBe(false);
      expect(v.reasons[0].code).toBe('BAD_SIGNATURE');
    }
    const sig = Buffer.from(env.signatures[0].sig, 'base64');
    sig[sig.length - 1] ^= 0x80;
    writeFileSync(
      join(dir, 'flipped.json'),
      JSON.stringify({ ...env, signatures: [{ ...env.signatures[0], sig: sig.toString('base64') }] }),
    );
    expect(
      (await verifyAttestation(join(dir, 'flipped.json'), { image: image, trustedKey: keys.lab.pub }))
        .reasons[0].code,
    ).toBe('BAD_SIGNATURE');
    writeFileSync(join(dir, 'flipped.json'), JSON.stringify({ ...env, payloadType: 'application/json' }));
    expect(
      (await verifyAttestation(join(dir, 'flipped.json'), { image: image, trustedKey: keys.lab.pub }))
        .reasons[0].code,
    ).toBe('WRONG_PAYLOAD_TYPE');
    writeFileSync(join(dir, 'flipped.json'), text.subarray(0, 40));
    expect(
      (await verifyAttestation(join(dir, 'flipped.json'), { image: image, trustedKey: keys.lab.pub }))
        .reasons[0].code,
    ).toBe('MALFORMED');
  });

  it('a swapped partition image or an extra unattested file is rejected', async () => {
    const att = join(dir, 'swap.dsse.json');
    await writeAttestation(report(), { input: image, key: keys.lab.priv, out: att });
    const other = join(dir, 'image2');
    mkdirSync(other, { recursive: true });
    writeFileSync(join(other, 'system.img'), Buffer.alloc(8192, 9));
    writeFileSync(join(other, 'vbmeta.img'), Buffer.alloc(4096, 2));
    writeFileSync(join(other, 'boot.img'), Buffer.alloc(10));
    const v = await verifyAttestation(att, { image: other, trustedKey: keys.lab.pub });
    expect(v.ok).toBe(false);
    expect(v.reasons.map((r) => r.code).sort()).toEqual(['SUBJECT_MISMATCH', 'UNATTESTED_FILE']);
    expect(v.reasons.find((r) => r.code === 'SUBJECT_MISMATCH')?.message).toMatch(/system\.img/);
  });

  it('a certificate signed by another key is rejected as untrusted', async () => {
    const att = join(dir, 'other.dsse.json');
    await writeAttestation(report(), { input: image, key: keys.other.priv, out: att });
    const r = await omie(['verify-attestation', att, '--image', image, '--trusted-key', keys.lab.pub]);
    expect(r.exitCode).toBe(1);
    expect(r.stdout).toMatch(/UNTRUSTED_KEY/);
  });

  it('a failed MUST or a MUST waived past expiry is rejected; a SHOULD failure is not', async () => {
    const att = join(dir, 'must.dsse.json');
    await writeAttestation(
      report([
        { status: 'fail' },
        { status: 'waived', waiver: { reason: 'x', expires: '2020-01-01', expired: true, source: 'p' } },
        { level: 'SHOULD', status: 'fail' },
      ]),
      { input: image, key: keys.lab.priv, out: att },
    );
    const v = await verifyAttestation(att, { image: image, trustedKey: keys.lab.pub });
    expect(v.reasons.map((r) => r.code)).toEqual(['MUST_FAILED', 'WAIVER_EXPIRED']);
    const ok = join(dir, 'waived.dsse.json');
    await writeAttestation(
      report([
        { status: 'waived', waiver: { reason: 'x', expires: '2999-01-01', expired: false, source: 'p' } },
        { level: 'SHOULD', status: 'fail' },
      ]),
      { input: image, key: keys.lab.priv, out: ok },
    );
    expect((await verifyAttestation(ok, { image: image, trustedKey: keys.lab.pub })).ok).toBe(true);
  });

  it('an attestation made under a weakened spec is rejected, naming the files that differ', async () => {
    // A copy of spec/ without section 6.3 and with a tracker deleted.
    const weak = join(dir, 'weak-spec');
    rmSync(weak, { recursive: true, force: true });
    cpSync(DEFAULT_SPEC_DIR, weak, { recursive: true });
    const sec = parse(readFileSync(join(weak, 'requirements/security.yaml'), 'utf8'));
    sec.requirements = sec.requirements.filter((r: { id: string }) => !r.id.startsWith('6.3/'));
    writeFileSync(join(weak, 'requirements/security.yaml'), stringify(sec));
    const trackers = parse(readFileSync(join(weak, 'trackers.yaml'), 'utf8'));
    const list = Array.isArray(trackers) ? trackers : trackers.trackers;
    list.splice(0, 1);
    writeFileSync(join(weak, 'trackers.yaml'), stringify(trackers));
    const weakSpec = await loadSpec(weak);
    const att = join(dir, 'weak.dsse.json');
    await writeAttestation(
      {
        ...report(),
        spec: { version: weakSpec.version, sha256: weakSpec.sha256, dir: weak, files: weakSpec.files },
      },
      { input: image, key: keys.lab.priv, out: att },
    );
    const v = await verifyAttestation(att, { image, trustedKey: keys.lab.pub });
    expect(v.ok).toBe(false);
    expect(v.reasons).toMatchObject([
      { code: 'SPEC_MISMATCH', files: ['requirements/security.yaml', 'trackers.yaml'] },
    ]);
    expect(v.reasons[0].message).toMatch(
      /requirements\/security\.yaml \(changed\), trackers\.yaml \(changed\)/,
    );
    // Verified against the spec it was made under, it holds.
    expect((await verifyAttestation(att, { image, trustedKey: keys.lab.pub, spec: weak })).ok).toBe(true);
    // A spec missing a data file is named too.
    rmSync(join(weak, 'known-signers.yaml'));
    const r = await omie([
      'verify-attestation',
      att,
      '--image',
      image,
      '--trusted-key',
      keys.lab.pub,
      '--spec',
      weak,
      '--json',
    ]);
    expect(r.exitCode).toBe(1);
    expect(JSON.parse(r.stdout).reasons[0]).toMatchObject({
      code: 'SPEC_MISMATCH',
      files: ['known-signers.yaml'],
    });
  });

  it('an attestation for another profile or product is rejected; the statement names what was checked', async () => {
    const product = join(dir, 'product.yaml');
    const device = join(dir, 'device.yaml');
    writeFileSync(product, 'name: omie-tablet\nversion: 1.0.0\n');
    writeFileSync(device, 'vendor: omie\n');
    const att = join(dir, 'named.dsse.json');
    await writeAttestation(
      {
        ...report(),
        product: { name: 'omie-tablet', version: '1.0.0', file: product, deviceProfile: device },
        waivers: [{ id: '3.1/C-1-2', reason: 'lab unit', expires: '2999-01-01', source: product }],
      },
      { input: image, key: keys.lab.priv, out: att },
    );
    const v = await verifyAttestation(att, { image, trustedKey: keys.lab.pub, product });
    expect(v.reasons).toEqual([]);
    expect(v.statement?.predicate).toMatchObject({
      tool: { name: 'omie-kit' },
      spec: { version: kitSpec.version, sha256: kitSpec.sha256 },
      profile: 'image',
      product: {
        name: 'omie-tablet',
        version: '1.0.0',
        yaml: {
          file: 'product.yaml',
          sha256: createHash('sha256').update(readFileSync(product)).digest('hex'),
        },
        deviceProfile: { file: 'device.yaml' },
      },
      target: { kind: 'image' },
      waivers: [{ id: '3.1/C-1-2', reason: 'lab unit', expires: '2999-01-01', source: 'product.yaml' }],
    });
    expect(v.statement?.predicate.spec.files.map((f) => f.path)).toEqual(
      expect.arrayContaining([
        'spec.yaml',
        'requirements/security.yaml',
        'trackers.yaml',
        'known-signers.yaml',
      ]),
    );
    const other = await verifyAttestation(att, { image, trustedKey: keys.lab.pub, profile: 'device' });
    expect(other.reasons.map((r) => r.code)).toEqual(['PROFILE_MISMATCH']);
    writeFileSync(join(dir, 'product2.yaml'), 'name: omie-tablet\nversion: 1.0.1\n');
    const changed = await verifyAttestation(att, {
      image,
      trustedKey: keys.lab.pub,
      product: join(dir, 'product2.yaml'),
    });
    expect(changed.reasons.map((r) => r.code)).toEqual(['PRODUCT_MISMATCH']);
  });

  it('a statement of the first version (no spec files) is rejected with the reason', async () => {
    const att = join(dir, 'v1.dsse.json');
    await writeAttestation(report(), { input: image, key: keys.lab.priv, out: att });
    const env = JSON.parse(readFileSync(att, 'utf8'));
    const st = JSON.parse(Buffer.from(env.payload, 'base64').toString());
    st.predicateType = 'https://omie.example/attestation/conformance/v1';
    const payload = Buffer.from(JSON.stringify(st));
    const old = signEnvelope(env.payloadType, payload, createPrivateKey(readFileSync(keys.lab.priv)));
    writeFileSync(att, JSON.stringify(old));
    const v = await verifyAttestation(att, { image, trustedKey: keys.lab.pub });
    expect(v.reasons).toMatchObject([{ code: 'BAD_STATEMENT' }]);
    expect(v.reasons[0].message).toMatch(/does not name the spec files/);
  });
});

/**
 * Interoperability: the envelopes verify with Sigstore's own verifier (@sigstore/verify, the
 * library behind `npm audit signatures` and sigstore-js), given the signer's public key, with no
 * Omie code in the verification path. The DSSE envelope goes into a Sigstore bundle (v0.3) as is.
 */
describe('a third-party verifier accepts our envelopes', () => {
  function sigstoreVerify(envPath: string, pubPem: string): void {
    const env = JSON.parse(readFileSync(envPath, 'utf8'));
    const bundle = bundleFromJSON({
      mediaType: 'application/vnd.dev.sigstore.bundle.v0.3+json',
      verificationMaterial: {
        publicKey: { hint: env.signatures[0].keyid },
        tlogEntries: [],
        timestampVerificationData: { rfc3161Timestamps: [] },
      },
      dsseEnvelope: env,
    });
    const pub = createPublicKey(readFileSync(pubPem));
    const trust = toTrustMaterial(
      { mediaType: '', tlogs: [], certificateAuthorities: [], ctlogs: [], timestampAuthorities: [] },
      (hint) => {
        if (hint !== env.signatures[0].keyid) throw new Error(`unknown key ${hint}`);
        return { publicKey: pub, validFor: () => true };
      },
    );
    // Offline, key-based verification: no transparency log, CT log or timestamp authority.
    new Verifier(trust, { tlogThreshold: 0, ctlogThreshold: 0, timestampThreshold: 0 }).verify(
      toSignedEntity(bundle),
    );
  }

  it.each(['lab', 'rsa', 'ed'])(
    '@sigstore/verify accepts a %s-signed envelope and refuses a tampered one',
    async (k) => {
      const att = join(dir, `sigstore-${k}.dsse.json`);
      await writeAttestation(report(), { input: image, key: keys[k].priv, out: att });
      expect(() => sigstoreVerify(att, keys[k].pub)).not.toThrow();
      // Another key does not verify it.
      expect(() => sigstoreVerify(att, keys.other.pub)).toThrow(/signature/i);
      const env = JSON.parse(readFileSync(att, 'utf8'));
      const st = JSON.parse(Buffer.from(env.payload, 'base64').toString());
      st.predicate.summary.fail = 0;
      st.predicate.results[0].status = 'pass';
      st.predicate.spec.files[0].sha256 = '0'.repeat(64);
      writeFileSync(
        att,
        JSON.stringify({ ...env, payload: Buffer.from(JSON.stringify(st)).toString('base64') }),
      );
      expect(() => sigstoreVerify(att, keys[k].pub)).toThrow(/signature/i);
    },
  );
});
