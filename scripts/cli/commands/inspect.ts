import type { Command } from 'commander';
import { InputError } from '../../errors.ts';
import { globalOpts } from '../main.ts';
import { makeOutput } from '../output.ts';

export function registerInspect(program: Command): void {
  program
    .command('inspect')
    .description(
      'identify an artifact by its content (APEX, APK, sparse, super, vbmeta, payload, boot image, zip, ext4, erofs…) and summarise it',
    )
    .argument('<file>', 'the artifact to inspect')
    .addHelpText(
      'after',
      '\nWith --json, prints {"kind": ..., "file": ..., "result": {...}}; the result schema per kind is documented in README.',
    )
    .action(async (file: string, _opts, cmd: Command) => {
      const out = makeOutput(globalOpts(cmd).json);
      const { detect } = await import('../../inspect/detect.ts');
      const { detectors } = await import('../../inspect/detectors.ts');
      const d = await detect(file, detectors);
      if (!d) {
        throw new InputError(`${file}: unrecognised artifact`, {
          code: 'UNKNOWN_ARTIFACT',
          context: { file, known: detectors.map((x) => x.kind) },
          hint: 'omie inspect reads files by content; this one matches none of the known magics',
        });
      }
      const result = await d.inspect(file);
      out.result({ kind: d.kind, file, result }, (v) => `${file}: ${d.kind}\n${d.human(v.result)}`);
    });
}
