import { resolve } from 'node:path';
import type { Command } from 'commander';
import { globalOpts } from '../main.ts';
import { makeOutput } from '../output.ts';

const KIT_ROOT = resolve(import.meta.dirname, '../../..');

export function registerInit(program: Command): void {
  program
    .command('init')
    .description('scaffold a new device profile and product for a hardware partner')
    .argument('<dir>', 'folder to create the tree in (device/, prebuilt-apps/, overlays/)')
    .requiredOption('--vendor <name>', 'vendor folder name (lower-case), e.g. acme')
    .requiredOption('--codename <name>', 'device codename (lower-case), e.g. tab10')
    .option('--product <name>', 'product name', 'omie-tablet')
    .option('--fastboot-product <name>', 'what `fastboot getvar product` answers on the device')
    .option('--brand <text>', 'brand shown to the owner', 'Omie')
    .option('--model <text>', 'model name shown to the owner', 'Tablet')
    .addHelpText(
      'after',
      '\nThen edit the device profile to match the hardware and run `omie validate` on each file.',
    )
    .action(async (dir: string, o: Record<string, string>, cmd: Command) => {
      const out = makeOutput(globalOpts(cmd).json);
      const { scaffold } = await import('../../model/scaffold.ts');
      const r = await scaffold(dir, {
        kitRoot: KIT_ROOT,
        vendor: o.vendor,
        codename: o.codename,
        product: o.product,
        fastbootProduct: o.fastbootProduct ?? `${o.vendor}_${o.codename}`,
        brand: o.brand,
        model: o.model,
      });
      out.result(r, (v) =>
        [
          `created in ${v.dir}:`,
          ...v.files.map((f) => `  ${f}`),
          '',
          'next: edit the device profile, then `omie validate` each file',
        ].join('\n'),
      );
    });
}
