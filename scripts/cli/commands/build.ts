import type { Command } from 'commander';
import { globalOpts } from '../main.ts';
import { makeOutput, table } from '../output.ts';
import { makeProgress } from '../progress.ts';

export function registerBuild(program: Command): void {
  program
    .command('build')
    .description(
      'remaster an Android base into a signed Omie image: strip Google, add the Omie apps and personal cloud, overlays, props, repack, AVB-sign, package, check',
    )
    .argument('<product>', 'product YAML, e.g. device/omie/tablet/products/omie-tablet.yaml')
    .option(
      '--base <path>',
      "base to use instead of the product's base.path: images folder, super.img, factory zip, OTA zip or payload.bin",
    )
    .option('--out <dir>', 'output folder (replaced only when the build succeeds)', 'out/omie')
    .option('--dry-run', 'print the plan (what is removed, added and changed per partition) and stop')
    .option('--keep-work', 'keep the temporary work folder for debugging')
    .option('--allow-test-keys', 'accept the public AOSP/AVB test keys (marks the image non-release)')
    .option('--no-check', 'package even if the image fails the Omie conformance spec')
    .addHelpText(
      'after',
      [
        '',
        'Output: <name>.img per partition, vbmeta.img, super.img (sparse), super_empty.img, android-info.txt,',
        '<product>-<version>-fastboot.zip, build-record.json, sbom.cdx.json (CycloneDX 1.5), check/ (reports).',
        'SOURCE_DATE_EPOCH fixes every timestamp: the same inputs and keys give byte-identical images.',
        'Exit 1 when the image fails a MUST requirement (nothing is written), 2 on bad input, 3 on a missing tool.',
      ].join('\n'),
    )
    .action(
      async (
        product: string,
        o: {
          base?: string;
          out: string;
          dryRun?: boolean;
          keepWork?: boolean;
          allowTestKeys?: boolean;
          check: boolean;
        },
        cmd: Command,
      ) => {
        const { json } = globalOpts(cmd);
        const out = makeOutput(json);
        const progress = makeProgress(json);
        try {
          const { build } = await import('../../build/pipeline.ts');
          const { renderPlan } = await import('../../build/plan.ts');
          const r = await build({
            product,
            base: o.base,
            out: o.out,
            dryRun: o.dryRun,
            keepWork: o.keepWork,
            allowTestKeys: o.allowTestKeys,
            noCheck: !o.check,
            onProgress: progress,
            log: (l) => out.warn(l.replace(/^warning: /, '')),
          });
          progress.stop();
          if (r.dryRun) {
            out.result(r.plan, renderPlan);
            return;
          }
          out.result(r, (v) =>
            [
              `built ${v.plan.product.name} ${v.plan.product.version} into ${v.outDir}${v.release ? '' : ' (NON-RELEASE: test keys)'}`,
              `removed ${v.plan.removedPackages.length} package(s), added ${v.plan.addedPackages.length}`,
              v.check && 'conforms' in v.check
                ? `conformance: ${v.check.conforms ? 'pass' : 'FAIL'} (reports in ${v.check.reportDir})`
                : 'conformance: not checked (--no-check)',
              '',
              table(
                (v.files ?? []).map((f) => [f.path, String(f.size), f.sha256.slice(0, 16)]),
                ['file', 'bytes', 'sha256'],
              ),
            ].join('\n'),
          );
        } finally {
          progress.stop();
        }
      },
    );
}
