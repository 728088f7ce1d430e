/**
 * Certificate DNs as apksigner prints them (Java X500Name.toString()), checked against
 * `keytool -printcert`, which prints the same Java form.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { javaDistinguishedName } from '../../scripts/formats/apk/signing/common.ts';
import { runTool } from '../../scripts/host/tools.ts';
import { workDir } from '../helpers.ts';
import { hostTool } from '../host-tools.ts';

const KEYTOOL = hostTool('keytool');

const SUBJECTS = [
  '/C=US/ST=California/L=Mountain View/O=Android/OU=Android/CN=Android/emailAddress=android@android.com',
  '/CN=Foo, Inc.+OU=multi/O=A "q" B/serialNumber=123/street=Main St/DC=example/UID=u1/title=Boss/GN=Jo/SN=Do/L= lead/ST=x=y',
  '/CN=Zoë  Müller/O=back\\\\slash/OU=trailing /postalCode=75001/C=FR',
];

describe('javaDistinguishedName', () => {
  it.skipIf(!KEYTOOL.present)(
    `equals keytool -printcert Owner/Issuer for tricky DNs ${KEYTOOL.reason}`,
    async () => {
      const dir = workDir('apk');
      for (const [i, subj] of SUBJECTS.entries()) {
        const key = join(dir, `dn-${i}.key`);
        const der = join(dir, `dn-${i}.der`);
        await runTool('openssl', [
          'req',
          '-x509',
          '-newkey',
          'ec',
          '-pkeyopt',
          'ec_paramgen_curve:P-256',
          '-nodes',
          '-keyout',
          key,
          '-outform',
          'der',
          '-out',
          der,
          '-days',
          '2',
          '-utf8',
          '-subj',
          subj,
        ]);
        const out = (await runTool('keytool', ['-J-Dfile.encoding=UTF-8', '-printcert', '-file', der]))
          .stdout;
        const owner = /^Owner: (.*)$/m.exec(out)![1];
        const x = new X509Certificate(readFileSync(der));
        expect(javaDistinguishedName(x.subject), subj).toBe(owner);
        expect(javaDistinguishedName(x.issuer), subj).toBe(/^Issuer: (.*)$/m.exec(out)![1]);
      }
    },
    60_000,
  );
});
