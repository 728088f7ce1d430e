/**
 * The v1 signature block's fast DER reader against the pkijs reader it stands in for: on the
 * fixtures' blocks (apksigner), on openssl CMS blocks with signed attributes and key-id sids, and
 * on thousands of mutated blocks — wherever the fast reader accepts, pkijs must accept too and
 * yield the same certificates, signer infos, signed attributes and signatures.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  type Pkcs7SignedData,
  parsePkcs7Fast,
  parsePkcs7WithPkijs,
} from '../../scripts/formats/apk/signing/pkcs7.ts';
import { bufferSource, ZipArchive } from '../../scripts/formats/apk/zip.ts';
import { runTool } from '../../scripts/host/tools.ts';
import { mutate, prng, workDir } from '../helpers.ts';
import { ensureFixtures } from './fixtures.ts';

function plain(sd: Pkcs7SignedData) {
  return {
    certificates: sd.certificates.map((c) => c.toString('hex')),
    signerInfos: sd.signerInfos.map((si) => ({
      certificate: si.findCertificate(),
      digest: si.digestAlgorithmOid,
      signatureAlgorithm: si.signatureAlgorithmOid,
      signedAttrs: si.signedAttrs
        ? { der: si.signedAttrs.der.toString('hex'), md: si.signedAttrs.messageDigest()?.toString('hex') }
        : null,
      signature: si.signature().toString('hex'),
    })),
  };
}

/** pkijs's view, or the error it stops with. */
function reference(block: Buffer) {
  try {
    const r = parsePkcs7WithPkijs(block);
    return r.sd ? plain(r.sd) : { notSignedData: r.contentType };
  } catch (e) {
    return { error: String(e) };
  }
}

const blocks: Array<{ name: string; block: Buffer }> = [];

beforeAll(async () => {
  const paths = await ensureFixtures();
  for (const [name, path] of Object.entries(paths)) {
    const z = await ZipArchive.open(bufferSource(readFileSync(path)));
    for (const e of z.entries)
      if (/^META-INF\/[^/]+\.(RSA|DSA|EC)$/.test(e.name))
        blocks.push({ name: `${name}!${e.name}`, block: await z.read(e) });
  }
  // openssl is required (tools.json), and ensureFixtures made its keys with it already.
  const dir = workDir('apk/pkcs7');
  const keys = join(paths['v123']!, '../keys');
  const sf = join(dir, 'CERT.SF');
  writeFileSync(sf, 'Signature-Version: 1.0\r\nCreated-By: test\r\n\r\n');
  const variants: Array<[string, string[]]> = [
    ['cms-signed-attrs', []],
    ['cms-no-attrs', ['-noattr']],
    ['cms-keyid', ['-keyid']],
    ['cms-no-smimecap', ['-nosmimecap']],
  ];
  for (const [name, extra] of variants)
    for (const k of ['rsa-a', 'ec-b']) {
      const out = join(dir, `${name}-${k}.p7`);
      await runTool('openssl', [
        'cms',
        '-sign',
        '-binary',
        '-md',
        'sha256',
        '-in',
        sf,
        '-signer',
        join(keys, `${k}.x509.pem`),
        '-inkey',
        join(keys, `${k}.pem`),
        '-outform',
        'DER',
        '-out',
        out,
        ...extra,
      ]);
      blocks.push({ name: `${name}-${k}`, block: readFileSync(out) });
    }
}, 240_000);

describe('PKCS#7 fast reader', () => {
  it('reads the apksigner and openssl blocks exactly as pkijs does', () => {
    expect(blocks.length).toBeGreaterThan(8);
    let fast = 0;
    for (const { name, block } of blocks) {
      const f = parsePkcs7Fast(block);
      if (!f) continue;
      fast++;
      expect(plain(f), name).toEqual(reference(block));
    }
    // Every apksigner block and the common openssl shapes take the fast path…
    for (const { name, block } of blocks)
      if (!name.startsWith('cms-keyid')) expect(parsePkcs7Fast(block), name).not.toBeNull();
    // …and a SubjectKeyIdentifier sid is left to pkijs.
    expect(fast).toBe(blocks.filter((b) => !b.name.startsWith('cms-keyid')).length);
    const withAttrs = blocks.find((b) => b.name === 'cms-signed-attrs-rsa-a');
    expect(withAttrs).toBeDefined();
    expect(parsePkcs7Fast(withAttrs!.block)?.signerInfos[0]?.signedAttrs).not.toBeNull();
  });

  it('mutated blocks: whenever the fast reader accepts, pkijs agrees', () => {
    const rnd = prng(7);
    let accepted = 0;
    let cases = 0;
    for (const { name, block } of blocks)
      for (let i = 0; i < 200; i++) {
        const m = mutate(block, rnd);
        cases++;
        const f = parsePkcs7Fast(m);
        if (!f) continue;
        accepted++;
        expect(plain(f), `${name} case ${i}`).toEqual(reference(m));
      }
    // Mutations inside signatures and certificate bodies keep the shape: both paths get exercised.
    expect(accepted).toBeGreaterThan(cases / 20);
    expect(accepted).toBeLessThan(cases);
  });
});
