import { existsSync } from 'node:fs';
import { copyFile, mkdir, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { type ApkSpec, buildApk, generateSigningKey } from '../apkgen/index.ts';
import { inspectApk } from '../formats/apk/inspect.ts';
import type { BenchOptions, BenchResult } from './types.ts';

/**
 * Inspect 100 APKs (manifest + resources, signatures v1/v2/v3 + lineage, DEX class scan for
 * trackers, file SHA-256) in one process, vs a shell loop of `aapt dump badging` +
 * `apksigner verify --print-certs` over the same files in the same run. Goal: >= 20x faster.
 * The APKs are four real variants built with aapt + smali + apksigner, copied to 100 files.
 */

const COUNT = 100;

function variants(): Array<{ name: string; spec: ApkSpec; v3?: boolean; rotate?: boolean; ec?: boolean }> {
  const classes = Array.from({ length: 400 }, (_, i) => `org.omie.bench.pkg${i % 20}.C${i}`);
  const base: ApkSpec = {
    package: 'org.omie.bench',
    versionCode: 7,
    label: 'Bench',
    minSdk: 21,
    targetSdk: 29,
    usesPermissions: [
      'android.permission.INTERNET',
      'android.permission.CAMERA',
      'android.permission.READ_CONTACTS',
    ],
    components: [
      {
        type: 'activity',
        name: '.Main',
        exported: true,
        intentFilters: [
          { actions: ['android.intent.action.MAIN'], categories: ['android.intent.category.LAUNCHER'] },
        ],
      },
      { type: 'service', name: '.Sync' },
    ],
    classes,
  };
  return [
    { name: 'plain', spec: { ...base, package: 'org.omie.bench.plain' } },
    { name: 'v3', spec: { ...base, package: 'org.omie.bench.v3' }, v3: true, ec: true },
    { name: 'rotation', spec: { ...base, package: 'org.omie.bench.rot' }, rotate: true },
    {
      name: 'trackers',
      spec: {
        ...base,
        package: 'org.omie.bench.trk',
        classes: [
          ...classes,
          'com.google.firebase.analytics.FirebaseAnalytics',
          'com.appsflyer.AppsFlyerLib',
          'io.sentry.Sentry',
        ],
        extraDexFiles: 1,
      },
    },
  ];
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return (performance.now() - t) / 1000;
}

export async function bench(opts: BenchOptions): Promise<BenchResult[]> {
  const dir = join(opts.workDir, 'apks');
  const src = join(opts.workDir, 'src');
  await mkdir(dir, { recursive: true });
  await mkdir(src, { recursive: true });
  const rsa = await generateSigningKey(join(opts.workDir, 'keys'), 'bench-rsa');
  const ec = await generateSigningKey(join(opts.workDir, 'keys'), 'bench-ec', { algorithm: 'ec' });
  const built: string[] = [];
  for (const v of variants()) {
    const out = join(src, `${v.name}.apk`);
    if (!existsSync(out)) {
      opts.log(`apk: building ${v.name} with aapt + smali + apksigner`);
      await buildApk(
        v.spec,
        v.rotate ? { key: ec, v3: true, rotation: { oldKey: rsa } } : { key: v.ec ? ec : rsa, v3: !!v.v3 },
        out,
      );
    }
    built.push(out);
  }
  for (let i = 0; i < COUNT; i++)
    await copyFile(built[i % built.length]!, join(dir, `app${String(i).padStart(3, '0')}.apk`));
  const files = (await readdir(dir)).filter((f) => f.endsWith('.apk')).map((f) => join(dir, f));

  // Warm-up (page cache, JIT, platform permission table) outside the timing.
  await inspectApk(files[0]!);
  let trackers = 0;
  const ours = await timed(async () => {
    for (const f of files) {
      const r = await inspectApk(f);
      if (!r.signatures.verified) throw new Error(`${f} did not verify`);
      trackers += r.trackers.length;
    }
  });
  opts.log(`apk: ours ${ours.toFixed(2)} s for ${files.length} APKs (${trackers} tracker hits)`);
  const script =
    'for f in "$@"; do aapt dump badging "$f" >/dev/null || exit 1; apksigner verify --print-certs "$f" >/dev/null || exit 1; done';
  const reference = await timed(() => execa('sh', ['-c', script, 'sh', ...files]));
  opts.log(`apk: aapt + apksigner loop ${reference.toFixed(2)} s`);
  const speedup = reference / ours;
  return [
    {
      name: `inspect ${files.length} APKs (speedup)`,
      ours,
      reference,
      referenceName: 'aapt dump badging + apksigner verify --print-certs loop',
      ratio: speedup,
      goal: '>= 20x faster (ratio = reference / ours)',
      notes: `${((ours / files.length) * 1000).toFixed(1)} ms per APK`,
    },
  ];
}
