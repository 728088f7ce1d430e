import { cpSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { availableParallelism, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { execa } from 'execa';
import { settle, timed } from './build.ts';
import type { BenchOptions, BenchResult } from './types.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const PRODUCT = 'device/omie/tablet/products/omie-tablet.yaml';

/**
 * OTA packages of the ~1 GiB sample: `omie ota` of a build (the full package) against `xz -T0 -6`
 * over the same partition images in the same run (the compression every full OTA does, so the
 * floor). Goal: <= 1.3x its time, peak RSS <= 400 MiB. Then the incremental package between that
 * build and one that differs by its version and one app: goal <= 10% of the full package's size.
 */
export async function bench(o: BenchOptions): Promise<BenchResult[]> {
  const home = join(o.workDir, 'home');
  const env = { ...process.env, OMIE_HOME: home };
  const omie = join(ROOT, 'scripts/omie.mjs');
  const base = join(o.workDir, `sample-base-${o.sizeMiB}`);
  if (!existsSync(join(base, 'factory.zip'))) {
    o.log(`ota: generating a ${o.sizeMiB} MiB sample base (once)`);
    await execa('node', [omie, 'sample-base', base, '--size-mib', String(o.sizeMiB)], { env });
  }
  await execa('node', [omie, 'keys', 'init', 'omie-sample-partner'], { env });
  // Two product trees: 1.0.0, and 1.0.1 whose Wallet app was rebuilt with another label.
  const builds: string[] = [];
  for (const [i, version] of ['1.0.0', '1.0.1'].entries()) {
    const tree = join(o.workDir, `tree-${version}`);
    const out = join(o.workDir, `build-${version}`);
    builds.push(out);
    if (existsSync(join(out, 'build-record.json'))) continue;
    await rm(tree, { recursive: true, force: true });
    for (const d of ['device', 'overlays', 'prebuilt-apps'])
      cpSync(join(ROOT, d), join(tree, d), { recursive: true, filter: (s) => !/\.apk(\.sha256)?$/.test(s) });
    const product = join(tree, PRODUCT);
    writeFileSync(
      product,
      readFileSync(product, 'utf8')
        .replace(/^version: .*$/m, `version: ${version}`)
        .replace(/ro\.omie\.version: .*$/m, `ro.omie.version: ${version}`),
    );
    if (i === 1) {
      const wallet = join(tree, 'prebuilt-apps/Wallet/app.yaml');
      writeFileSync(wallet, readFileSync(wallet, 'utf8').replace(/^label: .*$/m, 'label: Wallet Plus'));
    }
    await execa('node', [omie, 'sample-apps'], { env, cwd: tree });
    o.log(`ota: building ${version} (once)`);
    await execa('node', [omie, 'build', product, '--base', join(base, 'factory.zip'), '--out', out], { env });
    // An OTA reads the partition images only: the GiBs of super.img and the fastboot zip can go.
    for (const f of readdirSync(out))
      if (f === 'super.img' || f.endsWith('-fastboot.zip')) await rm(join(out, f));
  }
  const [old, next] = builds;
  const images = ['vbmeta', 'system', 'product', 'vendor']
    .map((p) => join(old, `${p}.img`))
    .filter((f) => existsSync(f));
  const full = join(o.workDir, 'full.zip');
  const incremental = join(o.workDir, 'incremental.zip');
  const floor = join(o.workDir, 'floor.xz');
  const ours: number[] = [];
  const ref: number[] = [];
  let rss = 0;
  for (let i = 0; i < 2; i++) {
    await rm(full, { force: true });
    await settle();
    const r = await timed('node', [omie, '--json', 'ota', old, '--out', full], { OMIE_HOME: home });
    ours.push(r.seconds);
    rss = Math.max(rss, r.rssKiB);
    await settle();
    ref.push((await timed('sh', ['-c', `xz -T0 -6 -c ${images.join(' ')} > ${floor}`])).seconds);
    o.log(`ota: full run ${i + 1}: ${r.seconds.toFixed(1)} s, xz -T0 -6 ${ref[ref.length - 1].toFixed(1)} s`);
  }
  await rm(floor, { force: true });
  await settle();
  const inc = await timed('node', [omie, '--json', 'ota', next, '--from', old, '--out', incremental], {
    OMIE_HOME: home,
  });
  const fullSize = statSync(full).size;
  const incSize = statSync(incremental).size;
  const mib = (n: number) => n / 1024 / 1024;
  o.log(
    `ota: full ${mib(fullSize).toFixed(1)} MiB in ${Math.min(...ours).toFixed(1)} s, incremental ${mib(incSize).toFixed(2)} MiB in ${inc.seconds.toFixed(1)} s; peak RSS ${(rss / 1024).toFixed(0)} MiB`,
  );
  const t = Math.min(...ours);
  const x = Math.min(...ref);
  return [
    {
      name: `full OTA of the ${o.sizeMiB} MiB sample build (omie ota)`,
      ours: t,
      reference: x,
      referenceName: 'xz -T0 -6 over the same partition images',
      ratio: t / x,
      goal: '<= 1.3x',
      notes: `peak RSS ${(rss / 1024).toFixed(0)} MiB (goal <= 400); package ${mib(fullSize).toFixed(1)} MiB; ${availableParallelism()} cores, load ${loadavg()[0].toFixed(1)}`,
    },
    {
      name: 'incremental OTA 1.0.0 -> 1.0.1 (version and one app changed), size',
      ours: mib(incSize),
      reference: mib(fullSize),
      referenceName: 'the full OTA (MiB)',
      ratio: incSize / fullSize,
      goal: '<= 0.10',
      notes: `made in ${inc.seconds.toFixed(1)} s, peak RSS ${(inc.rssKiB / 1024).toFixed(0)} MiB`,
    },
  ];
}
