import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { execa } from 'execa';
import { type ApkSpec, buildApk, generateSigningKey, type SignOptions, signApk } from '../apkgen/index.ts';
import { inspectApk } from '../formats/apk/inspect.ts';
import type { BenchOptions, BenchResult } from './types.ts';

/**
 * Inspect 100 APKs (manifest and resources, every signature scheme present and the lineage, DEX
 * class scan for trackers, file SHA-256) against a shell loop of `aapt dump badging` +
 * `apksigner verify --print-certs` over the same files, in the same run. Goal: >= 20x faster.
 *
 * The corpus looks like what an owner's device or a store mirror holds: 100 different apps, each
 * with its own signer (nothing a per-certificate memo can reuse across APKs), in a mix of
 * v1-only (old minSdk), v1+v2, v2+v3 with RSA or EC keys, v3 with key rotation, and large
 * multi-dex apps with a big asset. They are real APKs (aapt + smali + zipalign + apksigner),
 * generated once into the work folder and reused by later runs; generation is not timed.
 *
 * Three of our figures: the library in-process (what `omie build` and `omie check` pay per APK),
 * `omie audit` on all of them as one command, and `omie inspect` run once per APK from a shell
 * loop, as a user inspecting files one by one would (start-up bound).
 */

const ROOT = resolve(import.meta.dirname, '../..');

type Kind = 'v1-only' | 'v1+v2' | 'v2+v3' | 'v2+v3-ec' | 'v3-rotation' | 'large-multidex';

/** How many APKs of each kind: 100 in all. */
const MIX: Array<[Kind, number]> = [
  ['v1-only', 25],
  ['v1+v2', 25],
  ['v2+v3', 20],
  ['v2+v3-ec', 10],
  ['v3-rotation', 10],
  ['large-multidex', 10],
];

const TRACKERS = [
  'com.google.firebase.analytics.FirebaseAnalytics',
  'com.appsflyer.AppsFlyerLib',
  'io.sentry.Sentry',
  'com.facebook.appevents.AppEventsLogger',
];

interface Planned {
  file: string;
  kind: Kind;
  spec: ApkSpec;
  /** Bytes of an uncompressible asset added before signing (large apps). */
  assetBytes: number;
}

function plan(dir: string): Planned[] {
  const out: Planned[] = [];
  let n = 0;
  for (const [kind, count] of MIX) {
    for (let i = 0; i < count; i++, n++) {
      const id = String(n).padStart(3, '0');
      const pkg = `org.omie.bench.app${id}`;
      const large = kind === 'large-multidex';
      const classCount = large ? 6000 : 150 + ((n * 37) % 400);
      const classes = Array.from({ length: classCount }, (_, c) => `${pkg}.feature${c % 25}.C${c}`);
      // One app in four carries tracker SDKs, as the audit rules expect to find them.
      if (n % 4 === 0) classes.push(...TRACKERS.slice(0, 1 + (n % TRACKERS.length)));
      const minSdk = kind === 'v1-only' ? 19 : kind === 'v1+v2' ? 21 : 26;
      // From target 30 the platform refuses an APK without a v2 signature: v1-only apps are old ones.
      const targetSdk = kind === 'v1-only' ? 28 : 33;
      out.push({
        file: join(dir, `app${id}-${kind}.apk`),
        kind,
        assetBytes: large ? 8 << 20 : 0,
        spec: {
          package: pkg,
          versionCode: 1000 + n,
          versionName: `1.${n}`,
          label: `App ${id}`,
          minSdk,
          targetSdk,
          usesPermissions: [
            'android.permission.INTERNET',
            ...(n % 3 === 0 ? ['android.permission.CAMERA'] : []),
            ...(n % 5 === 0 ? ['android.permission.ACCESS_FINE_LOCATION'] : []),
            ...(n % 7 === 0 ? ['android.permission.READ_CONTACTS'] : []),
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
            { type: 'receiver', name: '.Boot', exported: n % 2 === 0 },
          ],
          classes,
          extraDexFiles: large ? 2 : 0,
        },
      });
    }
  }
  return out;
}

/** Builds one APK of the plan, signed with keys of its own; written in place only when complete. */
async function generate(p: Planned, keysDir: string): Promise<void> {
  const name = p.spec.package.split('.').pop()!;
  const ec = p.kind === 'v2+v3-ec';
  const key = await generateSigningKey(keysDir, name, ec ? { algorithm: 'ec' } : {});
  let sign: SignOptions;
  if (p.kind === 'v1-only') sign = { key, v1: true, v2: false, v3: false };
  else if (p.kind === 'v1+v2') sign = { key, v1: true, v2: true, v3: false };
  else if (p.kind === 'v3-rotation')
    sign = { key, v3: true, rotation: { oldKey: await generateSigningKey(keysDir, `${name}-old`) } };
  else sign = { key, v1: false, v2: true, v3: true };
  const tmp = `${p.file}.tmp`;
  if (!p.assetBytes) {
    await buildApk(p.spec, sign, tmp);
  } else {
    // aapt adds the asset to the unsigned APK (it deflates .bin entries, and random bytes do not
    // shrink), then the APK is realigned and signed like the others.
    const work = await mkdtemp(join(tmpdir(), 'omie-bench-apk-'));
    try {
      const unsigned = join(work, 'unsigned.apk');
      await buildApk(p.spec, null, unsigned);
      await mkdir(join(work, 'assets'));
      await writeFile(join(work, 'assets/model.bin'), randomBytes(p.assetBytes));
      await utimes(join(work, 'assets/model.bin'), 1199145600, 1199145600);
      await execa('aapt', ['add', unsigned, 'assets/model.bin'], { cwd: work });
      const aligned = join(work, 'aligned.apk');
      await execa('zipalign', ['-f', '4', unsigned, aligned]);
      await signApk(aligned, tmp, sign);
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }
  await rename(tmp, p.file);
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return (performance.now() - t) / 1000;
}

export async function bench(opts: BenchOptions): Promise<BenchResult[]> {
  // Generated APKs are reused while the plan is the same: its digest names the folder.
  const digest = createHash('sha256')
    .update(JSON.stringify(plan('')))
    .digest('hex')
    .slice(0, 12);
  const dir = join(opts.workDir, `corpus-${digest}`);
  const keysDir = join(opts.workDir, 'keys');
  await mkdir(dir, { recursive: true });
  const planned = plan(dir);
  const missing = planned.filter((p) => !existsSync(p.file));
  if (missing.length) {
    opts.log(`apk: generating ${missing.length} APKs (aapt + smali + zipalign + apksigner; once, not timed)`);
    // Two at a time: each step is a JVM or a native tool, one per core.
    let next = 0;
    let done = 0;
    const worker = async () => {
      while (next < missing.length) {
        await generate(missing[next++]!, keysDir);
        if (++done % 10 === 0) opts.log(`apk: ${done}/${missing.length} generated`);
      }
    };
    await Promise.all([worker(), worker()]);
  }
  const files = planned.map((p) => p.file);
  let bytes = 0;
  for (const f of files) bytes += (await stat(f)).size;
  const corpus = `${files.length} APKs, ${(bytes / 2 ** 20).toFixed(0)} MiB, ${MIX.map(([k, n]) => `${n} ${k}`).join(', ')}, one signer each`;
  opts.log(`apk: corpus ${corpus}`);

  // Warm-up (page cache, JIT, platform permission table) outside the timing.
  await inspectApk(files[0]!);
  let trackers = 0;
  const byKind = new Map<Kind, number>();
  const ours = await timed(async () => {
    for (const p of planned) {
      const t = performance.now();
      const r = await inspectApk(p.file);
      byKind.set(p.kind, (byKind.get(p.kind) ?? 0) + performance.now() - t);
      if (!r.signatures.verified)
        throw new Error(`${p.file} did not verify: ${r.signatures.problems.join('; ')}`);
      trackers += r.trackers.length;
    }
  });
  const perKind = MIX.map(([k, n]) => `${k} ${((byKind.get(k) ?? 0) / n).toFixed(1)}`).join(', ');
  opts.log(`apk: in-process ${ours.toFixed(2)} s (${trackers} tracker hits); ms per APK: ${perKind}`);

  // The whole command, as a user runs it: node start-up, CLI, every APK, the report.
  const omie = [process.execPath, join(ROOT, 'scripts/omie.mjs')];
  const audit = await timed(async () => {
    const r = await execa(omie[0]!, [omie[1]!, 'audit', '--format', 'json', ...files], { reject: false });
    // Exit 1 is the audit's verdict (high-severity warnings), not a failure to run.
    if (r.exitCode !== 0 && r.exitCode !== 1)
      throw new Error(`omie audit failed (${r.exitCode}): ${r.stderr}`);
    const report = JSON.parse(String(r.stdout)) as { apps: unknown[] };
    if (report.apps.length !== files.length)
      throw new Error(`omie audit reported ${report.apps.length} apps`);
  });
  opts.log(`apk: omie audit (one command) ${audit.toFixed(2)} s`);
  const inspectLoop = await timed(() =>
    execa('sh', [
      '-c',
      'node="$1"; cli="$2"; shift 2; for f in "$@"; do "$node" "$cli" inspect "$f" >/dev/null || exit 1; done',
      'sh',
      ...omie,
      ...files,
    ]),
  );
  opts.log(`apk: omie inspect loop (one command per APK) ${inspectLoop.toFixed(2)} s`);

  const script =
    'for f in "$@"; do aapt dump badging "$f" >/dev/null || exit 1; apksigner verify --print-certs "$f" >/dev/null || exit 1; done';
  const reference = await timed(() => execa('sh', ['-c', script, 'sh', ...files]));
  opts.log(`apk: aapt + apksigner loop ${reference.toFixed(2)} s`);

  const referenceName = 'aapt dump badging + apksigner verify --print-certs loop';
  const perApk = (s: number) => `${((s / files.length) * 1000).toFixed(1)} ms per APK`;
  return [
    {
      name: `inspect ${files.length} APKs in process (speedup)`,
      ours,
      reference,
      referenceName,
      ratio: reference / ours,
      goal: '>= 20x faster (ratio = reference / ours)',
      notes: `${perApk(ours)}; ${corpus}`,
    },
    {
      name: `omie audit of ${files.length} APKs, whole command (speedup)`,
      ours: audit,
      reference,
      referenceName,
      ratio: reference / audit,
      goal: '>= 20x faster (ratio = reference / ours)',
      notes: perApk(audit),
    },
    {
      name: `omie inspect once per APK, ${files.length} commands (speedup)`,
      ours: inspectLoop,
      reference,
      referenceName,
      ratio: reference / inspectLoop,
      goal: 'none: start-up bound, shown for what a shell loop costs',
      notes: perApk(inspectLoop),
    },
  ];
}
