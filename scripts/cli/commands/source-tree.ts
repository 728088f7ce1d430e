import type { Command } from 'commander';
import { globalOpts } from '../main.ts';
import { makeOutput, table } from '../output.ts';

export function registerSourceTree(program: Command): void {
  program
    .command('source-tree')
    .description(
      'generate a vendor/omie folder (Android.bp, product and board makefiles) for partners who build AOSP or LineageOS from source',
    )
    .argument('<product>', 'product YAML, e.g. device/omie/tablet/products/omie-tablet.yaml')
    .option('--out <dir>', 'output folder (replaced only when everything is written)', 'out/vendor/omie')
    .addHelpText(
      'after',
      `
Writes: Android.bp (android_app_import per pinned app, prebuilt_etc for its privapp/default-permission
XMLs and the personal cloud config, runtime_resource_overlay per overlay), omie.mk (identity,
PRODUCT_PACKAGES, properties; inherit it from the device's product makefile) and BoardConfigOmie.mk
(AVB algorithm, rollback index, key path from $OMIE_AVB_KEY). Every APK is checked against its pinned
sha256 and signer first. Exit 1 when an APK does not match its pins, 2 on a bad product.`,
    )
    .action(async (productPath: string, o: { out: string }, cmd: Command) => {
      const out = makeOutput(globalOpts(cmd).json);
      const { loadProduct } = await import('../../model/index.ts');
      const { generateSourceTree } = await import('../../sourcetree/index.ts');
      const result = await generateSourceTree(await loadProduct(productPath), o.out);
      out.result(result, (r) =>
        [
          `wrote ${r.out} (${r.modules.length} Soong modules)`,
          table(
            r.files.map((f) => [f.path, f.what]),
            ['file', 'what'],
          ),
        ].join('\n'),
      );
    });
}
