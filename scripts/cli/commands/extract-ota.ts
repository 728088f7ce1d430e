import type { Command } from 'commander';
import { globalOpts } from '../main.ts';
import { makeOutput } from '../output.ts';
import { makeProgress } from '../progress.ts';

export function registerExtractOta(program: Command): void {
  program
    .command('extract-ota')
    .description(
      'extract partition images from a full A/B OTA (OTA zip or payload.bin), verifying every operation and partition hash',
    )
    .argument('<ota>', 'OTA zip or payload.bin')
    .argument('<outdir>', 'directory for <partition>.img files')
    .option('-p, --partition <name...>', 'only these partitions (default: all)')
    .option('--no-verify', 'skip operation and partition SHA-256 checks')
    .option('--no-verity', 'do not recompute the dm-verity hash tree / FEC the device would compute')
    .option('-j, --jobs <n>', 'parallel worker threads (default: CPU cores)', (v) => Number.parseInt(v, 10))
    .addHelpText(
      'after',
      '\nIncremental (delta) OTAs are refused: they need the old partitions. Exit 1 when a hash does not match.',
    )
    .action(
      async (
        ota: string,
        outdir: string,
        o: { partition?: string[]; verify: boolean; verity: boolean; jobs?: number },
        cmd: Command,
      ) => {
        const json = globalOpts(cmd).json;
        const out = makeOutput(json);
        const progress = makeProgress(json);
        try {
          const { extractPayload } = await import('../../formats/payload/extract.ts');
          const parts = await extractPayload(ota, outdir, {
            partitions: o.partition,
            verify: o.verify,
            regenerateVerity: o.verity,
            concurrency: o.jobs,
            onProgress: progress,
          });
          progress.stop();
          out.result({ file: ota, outdir, partitions: parts }, (v) =>
            v.partitions
              .map(
                (p) =>
                  `${p.name.padEnd(16)} ${String(p.size).padStart(12)}  ${p.sha256}  ${p.verified ? 'verified' : 'unverified'}`,
              )
              .join('\n'),
          );
        } finally {
          progress.stop();
        }
      },
    );
}
