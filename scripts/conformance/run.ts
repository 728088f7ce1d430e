/**
 * runCheck: the library entry of `omie check` (the build calls it at the end of `omie build`).
 * Opens the target (image or device), loads the spec, product and waivers, runs every
 * requirement, and writes the requested reports.
 */
import { dirname } from 'node:path';
import { InputError } from '../errors.ts';
import { loadProduct, type ResolvedProduct } from '../model/index.ts';
import type { ProgressFn } from '../progress.ts';
import { type BuildReference, readBuildReference } from './build-ref.ts';
import { runChecks } from './engine.ts';
import { imageView } from './image-view.ts';
import { type ProductFacts, productFacts } from './product.ts';
import { type ReportFormat, writeReports, writeStepSummary } from './reporters/index.ts';
import { DEFAULT_SPEC_DIR, loadSpec } from './spec.ts';
import { loadSpecData } from './spec-data.ts';
import type { Profile, Report } from './spec-schema.ts';
import type { SystemView } from './view.ts';
import { loadWaiversFile, type SourcedWaiver } from './waivers.ts';

export { DEFAULT_SPEC_DIR };

export interface RunCheckOptions {
  /** Image folder, super.img, sparse image, fastboot or factory zip. */
  image?: string;
  /** adb serial of a device. */
  device?: string;
  /**
   * With `device`: the build the device must be running (image folder, build output folder,
   * build-record.json, or an image file / zip), or its already-read reference.
   */
  build?: string | BuildReference;
  /** An already-open view (library callers); takes precedence over image/device. Not closed. */
  view?: SystemView;
  /** Spec folder (default: the kit's spec/). */
  spec?: string;
  /** Default: `device` for --device, else the product's `spec.profile`, else `image`. */
  profile?: Profile;
  /** Product YAML path, or an already resolved product. */
  product?: string | ResolvedProduct;
  /** A --waivers file (YAML/JSON); added to the product's waivers. */
  waivers?: string;
  /** Write reports here (nothing is written without it). */
  reportDir?: string;
  /** Default: all four. */
  formats?: ReportFormat[];
  /** Append a Markdown summary to $GITHUB_STEP_SUMMARY when set (default true). */
  stepSummary?: boolean;
  workDir?: string;
  now?: Date;
  onProgress?: ProgressFn;
}

export interface CheckRun {
  report: Report;
  /** format → written file. */
  files: Record<string, string>;
  stepSummary?: string;
}

/** Runs the checker; returns the report and the files written. */
export async function runCheckWithFiles(opts: RunCheckOptions): Promise<CheckRun> {
  const sources = [opts.view, opts.image, opts.device].filter((x) => x !== undefined).length;
  if (sources !== 1)
    throw new InputError(
      sources
        ? 'give either an image or --device, not both'
        : 'nothing to check: give an image path or --device <serial>',
      { code: 'CHECK_USAGE' },
    );
  const spec = await loadSpec(opts.spec ?? DEFAULT_SPEC_DIR);
  let resolved: ResolvedProduct | undefined;
  if (typeof opts.product === 'string') resolved = await loadProduct(opts.product);
  else resolved = opts.product;
  const product: ProductFacts | undefined = resolved ? productFacts(resolved) : undefined;
  const waivers: SourcedWaiver[] = [
    ...(product?.waivers ?? []).map((w) => ({ ...w, source: product?.file ?? 'product' })),
    ...(opts.waivers ? await loadWaiversFile(opts.waivers) : []),
  ];
  const profile: Profile =
    opts.profile ?? (opts.device ? 'device' : (resolved?.product.spec?.profile ?? 'image'));
  const data = await loadSpecData(spec.dir, resolved?.repoRoot ?? dirname(spec.dir));
  if (opts.build !== undefined && !opts.device && opts.view?.kind !== 'device')
    throw new InputError('a build to compare with (--image) goes with --device', {
      code: 'CHECK_USAGE',
      hint: 'omie check --device <serial> --image <build folder | build-record.json>',
    });
  const build = typeof opts.build === 'string' ? await readBuildReference(opts.build) : opts.build;
  const view =
    opts.view ??
    (opts.device
      ? // Loaded on demand: the adb client is large and image checks (every build) never use it.
        await (await import('./device-view.ts')).deviceView(opts.device, { workDir: opts.workDir })
      : await imageView(opts.image as string, { workDir: opts.workDir, onProgress: opts.onProgress }));
  let report: Report;
  try {
    report = await runChecks(spec, view, {
      profile,
      product,
      build,
      waivers,
      data,
      now: opts.now,
      onProgress: opts.onProgress,
    });
  } finally {
    if (!opts.view) await view.close();
  }
  const files = opts.reportDir
    ? await writeReports(report, opts.reportDir, opts.formats ?? ['json', 'junit', 'sarif', 'html'])
    : {};
  const stepSummary = opts.stepSummary === false ? undefined : await writeStepSummary(report);
  return { report, files, stepSummary };
}

/** Runs the checker and returns the report (see runCheckWithFiles for the files written). */
export async function runCheck(opts: RunCheckOptions): Promise<Report> {
  return (await runCheckWithFiles(opts)).report;
}
