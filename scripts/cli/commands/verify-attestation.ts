import type { Command } from 'commander';
import { ExitCode, InputError } from '../../errors.ts';
import { globalOpts } from '../main.ts';
import { makeOutput } from '../output.ts';

export function registerVerifyAttestation(program: Command): void {
  program
    .command('verify-attestation')
    .description(
      'verify a signed conformance certificate (DSSE/in-toto) against a trusted key, a trusted spec and the image',
    )
    .argument('<file>', 'the attestation written by `omie check --attest`')
    .requiredOption('--trusted-key <pem>', 'public key (or certificate) of the partner or lab that signed it')
    .option(
      '--image <path>',
      'the image folder (or file) an image certificate is about; for a device certificate, the build the device had to run',
    )
    .option('--spec <dir>', "the spec it must have been made under (default: the kit's spec/)")
    .option('--profile <profile>', 'image | device: the profile it must have been made for', 'image')
    .option('--product <product.yaml>', 'the product it must name (compared by digest)')
    .addHelpText(
      'after',
      `
Exit 0 when the signature verifies with the trusted key, the spec it was made under is the trusted
spec file for file (data files included), the profile matches, every attested digest matches the
image (and the image's vbmeta digest the attested one), and no MUST requirement failed or rests on
an expired waiver; 1 otherwise, with each reason (a spec mismatch names the files that differ).`,
    )
    .action(
      async (
        file: string,
        o: { image?: string; trustedKey: string; spec?: string; profile: string; product?: string },
        cmd: Command,
      ) => {
        const out = makeOutput(globalOpts(cmd).json);
        if (o.profile !== 'image' && o.profile !== 'device')
          throw new InputError(`--profile must be image or device, not ${o.profile}`, {
            code: 'CHECK_USAGE',
          });
        const { verifyAttestation } = await import('../../attest/index.ts');
        const v = await verifyAttestation(file, {
          trustedKey: o.trustedKey,
          image: o.image,
          spec: o.spec,
          profile: o.profile,
          product: o.product,
        });
        const p = v.statement?.predicate;
        out.result(
          {
            ok: v.ok,
            keyid: v.keyid,
            reasons: v.reasons,
            subjects: v.statement?.subject,
            spec: p ? { version: p.spec.version, sha256: p.spec.sha256 } : undefined,
            profile: p?.profile,
            target: p?.target,
            product: p?.product,
            summary: p?.summary,
          },
          (r) =>
            r.ok
              ? `ok: ${file} is signed by ${r.keyid.slice(0, 16)}…, made under the trusted spec ${r.spec?.version} for the ${r.profile} profile, matches ${r.subjects?.length} subject(s), and every MUST requirement passed`
              : [`REJECTED: ${file}`, ...r.reasons.map((x) => `  ${x.code}: ${x.message}`)].join('\n'),
        );
        process.exitCode = v.ok ? ExitCode.ok : ExitCode.checkFailed;
      },
    );
}
