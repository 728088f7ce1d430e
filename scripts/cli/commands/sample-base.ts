import type { Command } from 'commander';
import { InputError } from '../../errors.ts';
import { globalOpts } from '../main.ts';
import { makeOutput, table } from '../output.ts';
import { makeProgress } from '../progress.ts';

export function registerSampleBase(program: Command): void {
  program
    .command('sample-base')
    .description(
      'build the sample GSI-like Android base (ext4 system + vendor, erofs product, vbmeta, super.img, factory.zip) carrying Google apps to remove',
    )
    .argument('<dir>', 'output folder')
    .option('--size-mib <n>', 'pad the system image so the base is about this many MiB (bench: 1024)')
    .option(
      '--keys <dir>',
      'folder of the stand-in signing keys, created on first use (default: $OMIE_HOME/keys/sample-base)',
    )
    .option('--apk-cache <dir>', 'reuse APKs built earlier from the same spec and key')
    .addHelpText(
      'after',
      `
Reproducible: the same keys and options give byte-identical outputs. Google's release key and the
AOSP test key are played by stand-in keys (google-release-stand-in, test-key-stand-in); the digest
of the Google stand-in is written to <dir>/sample-base.json as googleSigners so that the build
removes the app only identifiable by its signer.`,
    )
    .action(async (dir: string, o: { sizeMib?: string; keys?: string; apkCache?: string }, cmd: Command) => {
      const { json } = globalOpts(cmd);
      const out = makeOutput(json);
      let sizeMiB: number | undefined;
      if (o.sizeMib !== undefined) {
        sizeMiB = Number(o.sizeMib);
        if (!Number.isInteger(sizeMiB) || sizeMiB < 0 || sizeMiB > 16384)
          throw new InputError(`--size-mib must be an integer between 0 and 16384, got ${o.sizeMib}`, {
            code: 'USAGE',
          });
      }
      const progress = makeProgress(json);
      const { defaultSampleKeysDir, generateSampleBase } = await import('../../sample/base.ts');
      const base = await generateSampleBase({
        outDir: dir,
        keysDir: o.keys ?? defaultSampleKeysDir(),
        apkCacheDir: o.apkCache,
        sizeMiB,
        onProgress: progress,
      });
      progress.stop();
      out.result(base, (b) =>
        [
          `sample base in ${b.dir}: system.img, product.img, vendor.img, vbmeta.img, super.img, factory.zip`,
          table(
            b.apps.map((a) => [a.partition, a.imagePath, a.spec.package, a.signer, a.expect]),
            ['partition', 'path', 'package', 'signer', 'expected fate'],
          ),
        ].join('\n'),
      );
    });
}
