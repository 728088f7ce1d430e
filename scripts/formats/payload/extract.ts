import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import {
  type ErrorContext,
  type ExitCode,
  FormatError,
  type FormatErrorDetails,
  InputError,
  OmieError,
  VerificationError,
} from '../../errors.ts';
import type { ProgressFn } from '../../progress.ts';
import { applyPartition, type PartitionJob, type PartitionResult } from './apply.ts';
import { assertFullPayload, deltaReason, type Payload, readPayload } from './reader.ts';

export type { PartitionResult } from './apply.ts';

export interface ExtractOptions {
  /** Partition names to extract (default: all). Unknown names are an InputError. */
  partitions?: string[];
  /** Verify operation data hashes and final partition hashes (default true). */
  verify?: boolean;
  /** Parallel workers (default: available cores, at most the number of partitions). */
  concurrency?: number;
  /** Recompute dm-verity hash tree and FEC where the manifest says the device would (default true). */
  regenerateVerity?: boolean;
  /** Run in this thread instead of worker threads (small payloads, debugging). */
  inProcess?: boolean;
  /**
   * Folder with `<partition>.img` of the build an incremental OTA was made from. Every source
   * image is checked against old_partition_info before anything is written.
   */
  sourceDir?: string;
  onProgress?: ProgressFn;
}

/**
 * Extracts partitions of an A/B OTA (payload.bin or OTA zip) into `outDir/<name>.img`. Each
 * partition is rebuilt in its own worker thread, writing operation output at its dst_extents
 * offsets; every operation's data hash and every partition's final hash is checked. An
 * incremental OTA needs `sourceDir` (the images it was made from, checked first); without it,
 * DeltaPayloadError ("a full OTA is required").
 */
export async function extractPayload(
  path: string,
  outDir: string,
  opts: ExtractOptions = {},
): Promise<PartitionResult[]> {
  const payload = await readPayload(path);
  return extractPartitions(payload, outDir, opts);
}

/** Same as extractPayload for an already-read payload. */
export async function extractPartitions(
  payload: Payload,
  outDir: string,
  opts: ExtractOptions = {},
): Promise<PartitionResult[]> {
  const all = payload.manifest.partitions;
  const wanted = opts.partitions ?? all.map((p) => p.name);
  for (const n of wanted)
    if (!all.some((p) => p.name === n))
      throw new InputError(`payload has no partition ${JSON.stringify(n)}`, {
        code: 'PAYLOAD_NO_SUCH_PARTITION',
        context: { file: payload.location.file, partition: n, available: all.map((p) => p.name) },
      });
  const parts = all.filter((p) => wanted.includes(p.name));
  const selected: Payload = { ...payload, manifest: { ...payload.manifest, partitions: parts } };
  const sources = opts.sourceDir && deltaReason(selected) ? await checkSources(selected, opts) : undefined;
  if (!sources)
    assertFullPayload(
      selected,
      'an incremental OTA applies over the images of the build it updates: give their folder (extract-ota --source <dir>)',
    );
  await mkdir(outDir, { recursive: true });
  const jobs: PartitionJob[] = parts.map((partition) => ({
    file: payload.location.file,
    blobsOffset: payload.blobsOffset,
    blockSize: payload.manifest.blockSize,
    partition,
    outPath: join(outDir, `${partition.name}.img`),
    sourcePath: sources?.get(partition.name),
    verify: opts.verify,
    regenerateVerity: opts.regenerateVerity,
  }));
  const progress = opts.onProgress;
  const run = (job: PartitionJob) => {
    const report = progress
      ? (done: number, total: number) =>
          progress({ stage: `extract ${job.partition.name}`, done, total, unit: 'bytes' })
      : undefined;
    return opts.inProcess ? applyPartition(job, report) : applyInWorker(job, report);
  };
  const limit = Math.max(1, Math.min(opts.concurrency ?? availableParallelism(), jobs.length));
  const results: PartitionResult[] = new Array(jobs.length);
  let next = 0;
  let failed: unknown;
  const lanes = Array.from({ length: limit }, async () => {
    while (next < jobs.length && failed === undefined) {
      const i = next++;
      try {
        results[i] = await run(jobs[i]);
      } catch (e) {
        failed ??= e;
      }
    }
  });
  await Promise.all(lanes);
  if (failed !== undefined) throw failed;
  return results;
}

/**
 * The source image of every partition of an incremental payload, each checked against
 * old_partition_info (size and SHA-256 of its first `size` bytes) before anything is applied:
 * applying an OTA to the wrong build must fail before it writes a byte.
 */
async function checkSources(payload: Payload, opts: ExtractOptions): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const part of payload.manifest.partitions) {
    const path = join(opts.sourceDir!, `${part.name}.img`);
    if (part.oldSize === undefined) continue;
    const st = await stat(path).catch(() => undefined);
    if (!st?.isFile())
      throw new InputError(`the incremental OTA patches ${part.name}, and ${path} does not exist`, {
        code: 'PAYLOAD_SOURCE_MISSING',
        context: { file: payload.location.file, partition: part.name, source: path },
        hint: 'give the folder of images the OTA was made from (<partition>.img each)',
      });
    if (st.size < part.oldSize)
      throw new VerificationError(
        'payload',
        `${path} is ${st.size} bytes, smaller than the ${part.oldSize} the OTA was made from`,
        {
          code: 'PAYLOAD_SOURCE_SIZE_MISMATCH',
          context: { partition: part.name, source: path, expected: part.oldSize, found: st.size },
        },
      );
    const found = await sha256Prefix(path, part.oldSize);
    if (part.oldSha256 && found !== part.oldSha256)
      throw new VerificationError(
        'payload',
        `${path} is not the ${part.name} image this OTA was made from (sha256 ${found}, expected ${part.oldSha256})`,
        {
          code: 'PAYLOAD_SOURCE_HASH_MISMATCH',
          context: { partition: part.name, source: path, expected: part.oldSha256, found },
        },
      );
    opts.onProgress?.({ stage: `check source ${part.name}`, done: 1, total: 1, unit: 'items' });
    out.set(part.name, path);
  }
  return out;
}

async function sha256Prefix(path: string, size: number): Promise<string> {
  const h = createHash('sha256');
  if (size > 0) await pipeline(createReadStream(path, { start: 0, end: size - 1 }), h);
  return h.digest('hex');
}

/** Set (by esbuild's define) only in the CLI bundle: the folder that holds its entries. */
declare const __OMIE_BUNDLE_DIR__: string | undefined;

/**
 * The worker's entry. In the CLI bundle, the bundle's own plain-JavaScript build of
 * extract.worker.ts. From the sources, the TypeScript module loaded through tsx's API (resolved by
 * absolute URL, so any cwd works): the `--import tsx` flag alone does not reach a worker's entry
 * module on Node 20, and a loader registered inside each worker is slow to start and not safe
 * under load, hence the bundle's build wherever there is one.
 */
function workerEntry(): { entry: string | URL; eval: boolean } {
  if (typeof __OMIE_BUNDLE_DIR__ === 'string')
    return { entry: pathToFileURL(join(__OMIE_BUNDLE_DIR__, 'extract.worker.mjs')), eval: false };
  const tsxApi = pathToFileURL(
    join(dirname(createRequire(import.meta.url).resolve('tsx/package.json')), 'dist/esm/api/index.mjs'),
  ).href;
  const worker = new URL('./extract.worker.ts', import.meta.url).href;
  return {
    entry: `import(${JSON.stringify(tsxApi)}).then((m) => { m.register(); return import(${JSON.stringify(worker)}); })`,
    eval: true,
  };
}

function applyInWorker(
  job: PartitionJob,
  onBytes?: (done: number, total: number) => void,
): Promise<PartitionResult> {
  return new Promise((resolve, reject) => {
    const { entry, eval: isCode } = workerEntry();
    const w = new Worker(entry, { eval: isCode, workerData: job });
    let settled = false;
    w.on(
      'message',
      (m: { kind: string; done?: number; total?: number; result?: PartitionResult; error?: WireError }) => {
        if (m.kind === 'progress') onBytes?.(m.done!, m.total!);
        else if (m.kind === 'done') {
          settled = true;
          resolve(m.result!);
        } else if (m.kind === 'error') {
          settled = true;
          reject(revive(m.error!));
        }
      },
    );
    w.on('error', (e) => {
      settled = true;
      reject(e);
    });
    w.on('exit', (code) => {
      if (!settled)
        reject(
          new OmieError(`extract worker for ${job.partition.name} exited with code ${code}`, {
            code: 'WORKER_EXIT',
            context: { partition: job.partition.name },
          }),
        );
    });
  });
}

interface WireError {
  name: string;
  message: string;
  code: string;
  exitCode: ExitCode;
  context: ErrorContext;
}

/** Rebuilds the typed error a worker threw (classes do not cross thread boundaries). */
function revive(e: WireError): OmieError {
  if (e.name === 'FormatError')
    return new FormatError(e.context as unknown as FormatErrorDetails, { code: e.code });
  if (e.name === 'VerificationError') {
    const scheme = String(e.context.scheme);
    const { scheme: _s, ...context } = e.context;
    return new VerificationError(scheme, e.message.slice(scheme.length + 2), { code: e.code, context });
  }
  if (e.name === 'InputError') return new InputError(e.message, { code: e.code, context: e.context });
  return new OmieError(e.message, { code: e.code, exitCode: e.exitCode, context: e.context });
}
