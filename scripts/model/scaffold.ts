import { existsSync } from 'node:fs';
import { cp, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join, relative, resolve } from 'node:path';
import { InputError } from '../errors.ts';

export interface ScaffoldOptions {
  /** The kit's own tree (templates: the reference device, apps and overlays). */
  kitRoot: string;
  vendor: string;
  codename: string;
  product: string;
  fastbootProduct: string;
  brand: string;
  model: string;
}

export interface ScaffoldResult {
  dir: string;
  files: string[];
}

const NAME = /^[a-z0-9_]+$/;

/**
 * Writes a partner's starting tree: a device profile, one product, the Omie app declarations
 * and overlays, copied from the kit's reference tablet. Everything is written to a temporary
 * folder first and moved in place at the end, so a failure leaves nothing half-written.
 */
export async function scaffold(target: string, o: ScaffoldOptions): Promise<ScaffoldResult> {
  for (const [k, v] of [
    ['vendor', o.vendor],
    ['codename', o.codename],
  ] as const) {
    if (!NAME.test(v))
      throw new InputError(`--${k} must be lower-case letters, digits and _ (got "${v}")`, {
        code: 'USAGE',
        context: { [k]: v },
      });
  }
  if (!/^[a-z0-9][a-z0-9._-]*$/.test(o.product))
    throw new InputError(`--product must be a lower-case name like acme-tab (got "${o.product}")`, {
      code: 'USAGE',
    });
  const dir = resolve(target);
  const clash = ['device', 'prebuilt-apps', 'overlays'].map((d) => join(dir, d)).filter((p) => existsSync(p));
  if (clash.length) {
    throw new InputError(`${dir} already has ${clash.map((c) => relative(dir, c)).join(', ')}`, {
      code: 'INIT_EXISTS',
      context: { dir, existing: clash },
      hint: 'pick an empty folder, or add the device by hand under device/<vendor>/<codename>/',
    });
  }
  const tmp = join(dirname(dir), `.omie-init-${process.pid}-${Date.now()}`);
  try {
    const devDir = join(tmp, 'device', o.vendor, o.codename);
    await mkdir(join(devDir, 'products'), { recursive: true });
    const ref = join(o.kitRoot, 'device/omie/tablet');
    const device = (await readFile(join(ref, 'device.yaml'), 'utf8'))
      .replace(/^vendor: .*/m, `vendor: ${o.vendor}`)
      .replace(/^codename: .*/m, `codename: ${o.codename}`)
      .replace(/^name: .*/m, `name: ${o.brand} ${o.model}`)
      .replace(/products: \[omie_tablet\]/, `products: [${o.fastbootProduct}]`)
      .replace(
        /^# Reference Omie tablet.*$/m,
        `# ${o.brand} ${o.model}: edit partitions, super layout and AVB to match the hardware.`,
      );
    await writeFile(join(devDir, 'device.yaml'), device);
    await cp(join(ref, 'partitions.yaml'), join(devDir, 'partitions.yaml'));
    const product = (await readFile(join(ref, 'products/omie-tablet.yaml'), 'utf8'))
      .replace(/^name: .*/m, `name: ${o.product}`)
      .replace(
        /^# The embedded sample product.*$/m,
        `# ${o.product}: an Omie product for the ${o.brand} ${o.model}.`,
      )
      .replace(
        /^ {2}path: .*$/m,
        '  path: path/to/your/base   # a factory zip, super.img, OTA zip or images folder',
      )
      .replace(/^ {2}brand: .*/m, `  brand: ${o.brand}`)
      .replace(/^ {2}manufacturer: .*/m, `  manufacturer: ${o.brand}`)
      .replace(/^ {2}model: .*/m, `  model: ${o.model}`)
      .replace(/^ {2}device: .*/m, `  device: ${o.codename}`)
      .replace(/^ {2}name: omie_tablet/m, `  name: ${o.fastbootProduct}`)
      .replace(/name: omie-sample-partner/g, `name: ${o.vendor}-partner`);
    await writeFile(join(devDir, 'products', `${o.product}.yaml`), product);
    await cp(join(o.kitRoot, 'prebuilt-apps'), join(tmp, 'prebuilt-apps'), {
      recursive: true,
      filter: (src) => !src.endsWith('.apk'),
    });
    await cp(join(o.kitRoot, 'overlays'), join(tmp, 'overlays'), { recursive: true });
    await mkdir(dir, { recursive: true });
    const files: string[] = [];
    for (const top of ['device', 'prebuilt-apps', 'overlays']) {
      await rename(join(tmp, top), join(dir, top));
      files.push(top);
    }
    return {
      dir,
      files: [
        `device/${o.vendor}/${o.codename}/device.yaml`,
        `device/${o.vendor}/${o.codename}/partitions.yaml`,
        `device/${o.vendor}/${o.codename}/products/${o.product}.yaml`,
        'prebuilt-apps/*/app.yaml',
        'overlays/*/overlay.yaml',
      ],
    };
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}
