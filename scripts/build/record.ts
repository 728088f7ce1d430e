import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import pkg from '../../package.json' with { type: 'json' };

/** Files at least this large are hashed in a worker thread (its start-up costs ~30 ms). */
const WORKER_MIN_BYTES = 32 * 1024 * 1024;

/**
 * SHA-256 of a file, streamed (images are large). A large file is hashed in a worker thread, so
 * that hashing several at once (Promise.all) uses every core.
 */
export async function sha256File(path: string): Promise<string> {
  if ((await stat(path)).size >= WORKER_MIN_BYTES) return sha256InWorker(path);
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 4 << 20 })) h.update(chunk as Buffer);
  return h.digest('hex');
}

// At most one hashing worker per core: Promise.all over twenty images must not start twenty
// threads (and twenty pairs of read buffers) at once.
let running = 0;
const waiting: Array<() => void> = [];

async function sha256InWorker(path: string): Promise<string> {
  if (running >= availableParallelism()) await new Promise<void>((r) => waiting.push(r));
  running++;
  try {
    return await hashInWorker(path);
  } finally {
    running--;
    waiting.shift()?.();
  }
}

function hashInWorker(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const w = new Worker(new URL('./sha256.worker.mjs', import.meta.url), {
      workerData: { path },
      execArgv: [],
      // Only Buffers (outside the JS heap) pass through: a small young generation keeps the
      // thread's footprint down (the build's peak RSS is measured).
      resourceLimits: { maxYoungGenerationSizeMb: 2 },
    });
    w.once('message', (m: { hex?: string; error?: string; code?: string }) => {
      if (m.hex) resolve(m.hex);
      else reject(Object.assign(new Error(`${path}: ${m.error}`), { code: m.code, path }));
    });
    w.once('error', reject);
    w.once('exit', (code) => reject(new Error(`sha256 worker for ${path} exited with code ${code}`)));
  });
}

export interface FileDigest {
  path: string;
  sha256: string;
  size: number;
}

export async function digestFile(path: string, label = path): Promise<FileDigest> {
  return { path: label, sha256: await sha256File(path), size: (await stat(path)).size };
}

/** Build time: SOURCE_DATE_EPOCH when set (reproducible builds), else a fixed epoch of the release. */
export function sourceDateEpoch(): number {
  return releaseDate() ?? 1_700_000_000;
}

/**
 * The release's date when the builder gives one (SOURCE_DATE_EPOCH, seconds since 1970): it
 * becomes the image's ro.build.date.utc, which OTAs and updaters compare. Without it the
 * base's date stays, so two builds of one base have the same date.
 */
export function releaseDate(): number | undefined {
  const v = process.env.SOURCE_DATE_EPOCH;
  return v && /^\d+$/.test(v) ? Number(v) : undefined;
}

export interface BundledApp {
  partition: string;
  path: string;
  package: string;
  versionName?: string;
  versionCode?: number;
  sha256: string;
  signerSha256: string[];
  source: 'base' | 'product' | 'overlay';
  /** An APEX (a platform module; `package` is its container's, `apexName` its apex_manifest.pb name). */
  apexName?: string;
}

/** CycloneDX 1.5 SBOM of every APK and APEX in the image. */
export function makeSbom(opts: {
  product: string;
  version: string;
  apps: BundledApp[];
}): Record<string, unknown> {
  const epoch = sourceDateEpoch();
  const seed = createHash('sha256')
    .update(JSON.stringify([opts.product, opts.version, opts.apps.map((a) => a.sha256)]))
    .digest('hex');
  // A deterministic v4-shaped UUID: same image, same serial number.
  const uuid = `${seed.slice(0, 8)}-${seed.slice(8, 12)}-4${seed.slice(13, 16)}-a${seed.slice(17, 20)}-${seed.slice(20, 32)}`;
  const sorted = [...opts.apps].sort((a, b) =>
    `${a.partition}/${a.path}`.localeCompare(`${b.partition}/${b.path}`),
  );
  return {
    bomFormat: 'CycloneDX',
    specVersion: '1.5',
    serialNumber: `urn:uuid:${uuid}`,
    version: 1,
    metadata: {
      timestamp: new Date(epoch * 1000).toISOString(),
      tools: { components: [{ type: 'application', name: 'omie-kit', version: pkg.version }] },
      component: {
        type: 'operating-system',
        'bom-ref': `omie:${opts.product}`,
        name: opts.product,
        version: opts.version,
      },
    },
    components: sorted.map((a) => ({
      type: 'application',
      'bom-ref': `${a.partition}:/${a.path}`,
      name: a.package,
      version: a.versionName ?? String(a.versionCode ?? ''),
      purl: `pkg:generic/${encodeURIComponent(a.package)}@${encodeURIComponent(a.versionName ?? String(a.versionCode ?? '0'))}`,
      hashes: [{ alg: 'SHA-256', content: a.sha256 }],
      properties: [
        { name: 'omie:partition', value: a.partition },
        { name: 'omie:path', value: a.path },
        { name: 'omie:source', value: a.source },
        ...(a.apexName ? [{ name: 'android:apexName', value: a.apexName }] : []),
        { name: 'android:versionCode', value: String(a.versionCode ?? '') },
        ...a.signerSha256.map((s) => ({ name: 'android:signer:sha256', value: s })),
      ],
    })),
  };
}
