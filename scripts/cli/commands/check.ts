import type { Command } from 'commander';
import { parseFormats, REPORT_FORMATS } from '../../conformance/reporters/index.ts';
import { failureDigest } from '../../conformance/reporters/text.ts';
import type { Report } from '../../conformance/spec-schema.ts';
import { InputError } from '../../errors.ts';
import { globalOpts } from '../main.ts';
import { makeOutput, table } from '../output.ts';
import { makeProgress } from '../progress.ts';

interface CheckOpts {
  device?: string;
  image?: string;
  spec?: string;
  profile?: string;
  product?: string;
  waivers?: string;
  reportDir?: string;
  format: string;
  attest?: boolean;
  key?: string;
  attestOut?: string;
}

function human(report: Report, files: Record<string, string>): string {
  const s = report.summary;
  const order: Record<string, number> = { fail: 0, error: 1, waived: 2, pass: 3, 'not-applicable': 4 };
  const rows = [...report.results]
    .sort((a, b) => order[a.status] - order[b.status])
    .map((r) => [
      r.status.toUpperCase(),
      r.id,
      r.level,
      r.message.length > 90 ? `${r.message.slice(0, 87)}...` : r.message,
    ]);
  const lines = [
    `${report.target.description} (profile ${report.profile}, spec ${report.spec.version})`,
    table(rows, ['RESULT', 'ID', 'LEVEL', 'DETAIL']),
    '',
    `${s.pass} pass, ${s.fail} fail, ${s.error} error, ${s.waived} waived, ${s.notApplicable} not applicable`,
    s.conforms
      ? 'CONFORMS: every MUST requirement passed'
      : `DOES NOT CONFORM: ${s.mustFailed} MUST requirement(s) failed`,
  ];
  const reportPath = files.html ?? files.json;
  const digest = failureDigest(report, { reportPath });
  if (digest.length) {
    lines.push(
      '',
      'What to fix (first offenders of each failing requirement):',
      ...digest.map((l) => `  ${l}`),
    );
    lines.push(
      reportPath
        ? `Every offender and why each requirement protects the owner: ${reportPath}`
        : 'Every offender and why each requirement protects the owner: rerun with --report-dir <dir> (report.html, report.json)',
    );
  }
  for (const [f, p] of Object.entries(files)) lines.push(`${f}: ${p}`);
  return lines.join('\n');
}

export function registerCheck(program: Command): void {
  program
    .command('check')
    .description('check an image or a live device against the Omie conformance spec')
    .argument('[image]', 'image folder (*.img), super.img, sparse image, or fastboot/factory zip')
    .option('--device <serial>', 'check a live device over adb instead of an image')
    .option(
      '--image <path>',
      'the build being certified: with --device, the build the device must run (image folder, build output folder, build-record.json, or an image/zip); without, same as the [image] argument',
    )
    .option('--spec <dir>', "spec folder (default: the kit's spec/)")
    .option(
      '--profile <profile>',
      'image | device (default: device for --device, else the product spec profile, else image)',
    )
    .option(
      '--product <product.yaml>',
      'product to compare identity, apps, endpoints and AVB with (its waivers apply)',
    )
    .option('--waivers <file>', 'YAML/JSON file { waivers: [{ id, reason, expires: YYYY-MM-DD }] }')
    .option('--report-dir <dir>', 'write reports to this folder')
    .option(
      '--format <list>',
      `report formats, comma-separated: ${REPORT_FORMATS.join(',')}`,
      REPORT_FORMATS.join(','),
    )
    .option(
      '--attest',
      'also write a signed conformance certificate (in-toto Statement in a DSSE envelope) for the image or device',
    )
    .option(
      '--key <pem>',
      'private key (RSA, ECDSA or Ed25519 PEM) of the partner or lab signing the certificate',
    )
    .option(
      '--attest-out <file>',
      'certificate path (default: <report-dir>/attestation.dsse.json, else ./attestation.dsse.json)',
    )
    .addHelpText(
      'after',
      `
Results per requirement: pass, fail, waived, not-applicable, error (with evidence).
Exit codes: 0 every MUST requirement passed (or was waived), 1 a MUST requirement failed
or errored, 2 bad input (unreadable image, invalid spec/product/waivers), 3 environment.
Reports: report.json (spec/schemas/report.schema.json), junit.xml, report.sarif (SARIF 2.1.0),
report.html (self-contained). On GitHub Actions a summary is appended to $GITHUB_STEP_SUMMARY.
With --json, prints the report.json document on stdout.

Examples:
  omie check out/omie-tablet/images --product device/omie/tablet/products/omie-tablet.yaml --report-dir out/check
  omie check factory.zip --format html,junit --report-dir reports
  omie check --device 0123456789ABCDEF --image out/omie-tablet --product device/omie/tablet/products/omie-tablet.yaml
  omie check out/omie-tablet --attest --key lab.pem --report-dir out/check`,
    )
    .action(async (imageArg: string | undefined, o: CheckOpts, cmd: Command) => {
      const json = globalOpts(cmd).json;
      const out = makeOutput(json);
      if (o.profile && o.profile !== 'image' && o.profile !== 'device')
        throw new InputError(`--profile must be image or device, not ${o.profile}`, { code: 'CHECK_USAGE' });
      if (imageArg && o.image && imageArg !== o.image)
        throw new InputError('give the image once: as the argument or as --image', { code: 'CHECK_USAGE' });
      const given = imageArg ?? o.image;
      // With --device, the image names the build the device must be running.
      const image = o.device ? undefined : given;
      const build = o.device ? given : undefined;
      if (o.attest && (!o.key || (!image && !o.device)))
        throw new InputError(
          "--attest needs --key <pem> and an image or --device (a certificate binds image digests or a device's vbmeta digest)",
          {
            code: 'CHECK_USAGE',
            hint: 'verify it later with `omie verify-attestation <file> --image <dir> --trusted-key <public pem>`',
          },
        );
      const formats = parseFormats(o.format);
      const { runCheckWithFiles } = await import('../../conformance/run.ts');
      const progress = makeProgress(json);
      try {
        const { report, files } = await runCheckWithFiles({
          image,
          device: o.device,
          build,
          spec: o.spec,
          profile: o.profile as 'image' | 'device' | undefined,
          product: o.product,
          waivers: o.waivers,
          reportDir: o.reportDir,
          formats,
          onProgress: progress,
        });
        if (o.attest && o.key) {
          const { writeAttestation } = await import('../../attest/index.ts');
          const { join } = await import('node:path');
          const dest = o.attestOut ?? join(o.reportDir ?? '.', 'attestation.dsse.json');
          await writeAttestation(report, { input: image, key: o.key, out: dest });
          files.attestation = dest;
        }
        progress.stop();
        out.result(report, (r) => human(r, files));
        process.exitCode = report.summary.conforms ? 0 : 1;
      } finally {
        progress.stop();
      }
    });
}
