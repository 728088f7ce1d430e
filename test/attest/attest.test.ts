import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { verifyAttestation, writeAttestation } from '../../scripts/attest/index.ts';
import type { Report } from '../../scripts/conformance/spec-schema.ts';
import { omie, workDir } from '../helpers.ts';

const dir = workDir('attest');
const image = join(dir, 'image');
const keys: Record<string, { priv: string; pub: string }> = {};

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
    spec: { version: '1.0.0', sha256: 'a'.repeat(64), dir: 'spec' },
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
  beforeAll(() => {
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
    await writeAttestation(report(), image, keys[k].priv, att);
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
    await writeAttestation(report(), image, keys.lab.priv, att);
    const text = readFileSync(att);
    const env = JSON.parse(text.toString());
    const payload = Buffer.from(env.payload, 'base64');
    // Flip bytes spread over the signed payload, and the signature.
    for (const at of [0, 17, Math.floor(payload.length / 2), payload.length - 2]) {
      const p = Buffer.from(payload);
      p[at] ^= 0x01;
      writeFileSync(join(dir, 'flipped.json'), JSON.stringify({ ...env, payload: p.toString('base64') }));
      const v = await verifyAttestation(join(dir, 'flipped.json'), image, keys.lab.pub);
      expect(v.ok).toBe(false);
      expect(v.reasons[0].code).toBe('BAD_SIGNATURE');
    }
    const sig = Buffer.from(env.signatures[0].sig, 'base64');
    sig[sig.length - 1] ^= 0x80;
    writeFileSync(
      join(dir, 'flipped.json'),
      JSON.stringify({ ...env, signatures: [{ ...env.signatures[0], sig: sig.toString('base64') }] }),
    );
    expect((await verifyAttestation(join(dir, 'flipped.json'), image, keys.lab.pub)).reasons[0].code).toBe(
      'BAD_SIGNATURE',
    );
    writeFileSync(join(dir, 'flipped.json'), JSON.stringify({ ...env, payloadType: 'application/json' }));
    expect((await verifyAttestation(join(dir, 'flipped.json'), image, keys.lab.pub)).reasons[0].code).toBe(
      'WRONG_PAYLOAD_TYPE',
    );
    writeFileSync(join(dir, 'flipped.json'), text.subarray(0, 40));
    expect((await verifyAttestation(join(dir, 'flipped.json'), image, keys.lab.pub)).reasons[0].code).toBe(
      'MALFORMED',
    );
  });

  it('a swapped partition image or an extra unattested file is rejected', async () => {
    const att = join(dir, 'swap.dsse.json');
    await writeAttestation(report(), image, keys.lab.priv, att);
    const other = join(dir, 'image2');
    mkdirSync(other, { recursive: true });
    writeFileSync(join(other, 'system.img'), Buffer.alloc(8192, 9));
    writeFileSync(join(other, 'vbmeta.img'), Buffer.alloc(4096, 2));
    writeFileSync(join(other, 'boot.img'), Buffer.alloc(10));
    const v = await verifyAttestation(att, other, keys.lab.pub);
    expect(v.ok).toBe(false);
    expect(v.reasons.map((r) => r.code).sort()).toEqual(['SUBJECT_MISMATCH', 'UNATTESTED_FILE']);
    expect(v.reasons.find((r) => r.code === 'SUBJECT_MISMATCH')?.message).toMatch(/system\.img/);
  });

  it('a certificate signed by another key is rejected as untrusted', async () => {
    const att = join(dir, 'other.dsse.json');
    await writeAttestation(report(), image, keys.other.priv, att);
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
      image,
      keys.lab.priv,
      att,
    );
    const v = await verifyAttestation(att, image, keys.lab.pub);
    expect(v.reasons.map((r) => r.code)).toEqual(['MUST_FAILED', 'WAIVER_EXPIRED']);
    const ok = join(dir, 'waived.dsse.json');
    await writeAttestation(
      report([
        { status: 'waived', waiver: { reason: 'x', expires: '2999-01-01', expired: false, source: 'p' } },
        { level: 'SHOULD', status: 'fail' },
      ]),
      image,
      keys.lab.priv,
      ok,
    );
    expect((await verifyAttestation(ok, image, keys.lab.pub)).ok).toBe(true);
  });
});
