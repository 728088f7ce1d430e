import type { Command } from 'commander';
import { globalOpts } from '../main.ts';
import { makeOutput } from '../output.ts';
import { makeProgress } from '../progress.ts';

export function registerExtractOta(program: Command): void {
  program
    .command('extract-ota')
    .description(
      'extract partition images from an A/B OTA (OTA zip or payload.bin), verifying every operation and partition hash; incremental OTAs apply over --source',
    )
    .argument('<ota>', 'OTA zip or payload.bin')
    .argument('<outdir>', 'directory for <partition>.img files')
    .option('-p, --partition <name...>', 'only these partitions (default: all)')
    .option(
      '--source <dir>',
      'incremental OTAs: folder with <partition>.img of the build the OTA updates (each checked against the OTA first)',
    )
    .option('--no-verify', 'skip operation and partition SHA-256 checks')
    .option('--no-verity', 'do not recompute the dm-verity hash tree / FEC the device would compute')
    .option(
      '--cert <file>',
      'first check the metadata and payload signatures (and payload_properties.txt) with this X.509 certificate or public key, as the device does',
    )
    .option('-j, --jobs <n>', 'parallel worker threads (default: CPU cores)', (v) => Number.parseInt(v, 10))
    .addHelpText(
      'after',
      [
        '',
        'Incremental OTAs need --source (SOURCE_COPY, SOURCE_BSDIFF, BROTLI_BSDIFF, ZERO, DISCARD; PUFFDIFF,',
        'ZUCCHINI and LZ4DIFF operations are refused by name). Exit 1 when a hash or signature does not match,',
        '2 when an incremental OTA is given without --source.',
      ].join('\n'),
    )
    .action(
      async (
        ota: string,
        outdir: string,
        o: {
          partition?: string[];
          verify: boolean;
          verity: boolean;
          jobs?: number;
          cert?: string;
          source?: string;
        },
        cmd: Command,
      ) => {
        const json = globalOpts(cmd).json;
        const out = makeOutput(json);
        const progress = makeProgress(json);
        try {
          const { extractPartitions } = await import('../../formats/payload/extract.ts');
          const { readPayload } = await import('../../formats/payload/reader.ts');
          const payload = await readPayload(ota);
          let signatures: unknown;
          if (o.cert) {
            const { assertPayloadSigned } = await import('../../formats/payload/signature.ts');
            const r = await assertPayloadSigned(payload, o.cert);
            signatures = {
              metadata: r.metadataSignature.status,
              payload: r.payloadSignature.status,
              properties: r.properties,
            };
          }
          const parts = await extractPartitions(payload, outdir, {
            partitions: o.partition,
            verify: o.verify,
            regenerateVerity: o.verity,
            concurrency: o.jobs,
            sourceDir: o.source,
            onProgress: progress,
          });
          progress.stop();
          out.result({ file: ota, outdir, signatures, partitions: parts }, (v) =>
            (o.cert ? ['signatures: metadata valid, payload valid'] : [])
              .concat(
                v.partitions.map(
                  (p) =>
                    `${p.name.padEnd(16)} ${String(p.size).padStart(12)}  ${p.sha256}  ${p.verified ? 'verified' : 'unverified'}`,
                ),
              )
              .join('\n'),
          );
        } finally {
          progress.stop();
        }
      },
    );
}
