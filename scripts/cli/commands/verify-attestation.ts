import type { Command } from 'commander';
import { ExitCode } from '../../errors.ts';
import { globalOpts } from '../main.ts';
import { makeOutput } from '../output.ts';

export function registerVerifyAttestation(program: Command): void {
  program
    .command('verify-attestation')
    .description('verify a signed conformance certificate (DSSE/in-toto) against an image and a trusted key')
    .argument('<file>', 'the attestation written by `omie check --attest`')
    .requiredOption('--image <path>', 'the image folder (or file) the certificate is about')
    .requiredOption('--trusted-key <pem>', 'public key (or certificate) of the partner or lab that signed it')
    .addHelpText(
      'after',
      '\nExit 0 when the signature verifies, every attested digest matches the image, and no MUST failed or rests on an expired waiver; 1 otherwise, with each reason.',
    )
    .action(async (file: string, o: { image: string; trustedKey: string }, cmd: Command) => {
      const out = makeOutput(globalOpts(cmd).json);
      const { verifyAttestation } = await import('../../attest/index.ts');
      const v = await verifyAttestation(file, o.image, o.trustedKey);
      out.result(
        {
          ok: v.ok,
          keyid: v.keyid,
          reasons: v.reasons,
          subjects: v.statement?.subject,
          summary: v.statement?.predicate.summary,
        },
        (r) =>
          r.ok
            ? `ok: ${file} is signed by ${r.keyid.slice(0, 16)}…, matches ${r.subjects?.length} image file(s), and every MUST requirement passed`
            : [`REJECTED: ${file}`, ...r.reasons.map((x) => `  ${x.code}: ${x.message}`)].join('\n'),
      );
      process.exitCode = v.ok ? ExitCode.ok : ExitCode.checkFailed;
    });
}
