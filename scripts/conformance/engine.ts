/**
 * The conformance engine: runs every requirement of the spec against a SystemView and produces
 * a Report. Requirement metadata comes from the spec; the logic from checks/, keyed by ID.
 */
import pkg from '../../package.json' with { type: 'json' };
import { asOmieError, InputError } from '../errors.ts';
import type { ProgressFn } from '../progress.ts';
import type { BuildReference } from './build-ref.ts';
import { allChecks } from './checks/index.ts';
import { type CheckContext, Facts, type SpecData } from './context.ts';
import type { ProductFacts } from './product.ts';
import { type Spec, sectionOf } from './spec.ts';
import type { Profile, Report, RequirementResult, Summary } from './spec-schema.ts';
import type { CheckFamily, CheckOutcome } from './types.ts';
import type { SystemView } from './view.ts';
import { isExpired, type SourcedWaiver } from './waivers.ts';

export interface EngineOptions {
  profile: Profile;
  /** The build a device must be running (`check --device … --image BUILD`). */
  build?: BuildReference;
  product?: ProductFacts;
  waivers?: SourcedWaiver[];
  data: SpecData;
  /** Checks by requirement ID (default: every implemented check). */
  checks?: CheckFamily;
  /** Only these requirement IDs (default: all). */
  only?: string[];
  now?: Date;
  onProgress?: ProgressFn;
}

/** Evaluates the spec on a view. Never throws for a failing check: errors become `error` results. */
export async function runChecks(spec: Spec, view: SystemView, opts: EngineOptions): Promise<Report> {
  const started = new Date();
  const now = opts.now ?? started;
  const checks = opts.checks ?? allChecks;
  const waivers = opts.waivers ?? [];
  const ids = new Set(spec.requirements.map((r) => r.id));
  for (const w of waivers) {
    if (!ids.has(w.id))
      throw new InputError(`waiver for unknown requirement ${w.id}`, {
        code: 'WAIVER_UNKNOWN_ID',
        context: { id: w.id, source: w.source },
        hint: 'waivers must name a requirement ID of the spec (see spec/requirements/)',
      });
  }
  const facts = new Facts(view, opts.product, opts.data);
  const results: RequirementResult[] = [];
  const reqs = spec.requirements.filter((r) => !opts.only || opts.only.includes(r.id));
  for (const [i, req] of reqs.entries()) {
    opts.onProgress?.({ stage: 'check requirements', done: i, total: reqs.length, unit: 'items' });
    const t0 = performance.now();
    let outcome: CheckOutcome;
    const fn = checks[req.id];
    if (!req.profiles.includes(opts.profile)) {
      outcome = {
        status: 'not-applicable',
        message: `not part of the ${opts.profile} profile`,
        evidence: [],
      };
    } else if (!fn) {
      outcome = { status: 'error', message: 'no check is implemented for this requirement', evidence: [] };
    } else {
      const ctx: CheckContext = {
        view,
        profile: opts.profile,
        requirement: req,
        params: req.params,
        product: opts.product,
        build: opts.build,
        facts,
        paramsOf: (id) => spec.requirements.find((r) => r.id === id)?.params ?? {},
      };
      try {
        outcome = await fn(ctx);
      } catch (e) {
        const err = asOmieError(e);
        outcome = {
          status: 'error',
          message: err.message,
          evidence: [{ detail: `${err.code}: ${err.message}` }],
        };
      }
    }
    const result: RequirementResult = {
      id: req.id,
      section: sectionOf(req.id),
      level: req.level,
      title: req.title,
      rationale: req.rationale.trim(),
      howChecked: req.check[opts.profile],
      status: outcome.status,
      message: outcome.message,
      evidence: outcome.evidence.map(
        (e) => Object.fromEntries(Object.entries(e).filter(([, v]) => v !== undefined)) as typeof e,
      ),
      durationMs: Math.round((performance.now() - t0) * 100) / 100,
    };
    applyWaiver(
      result,
      waivers.find((w) => w.id === req.id),
      now,
    );
    results.push(result);
  }
  opts.onProgress?.({ stage: 'check requirements', done: reqs.length, total: reqs.length, unit: 'items' });
  return {
    reportVersion: 1,
    tool: { name: 'omie', version: pkg.version },
    spec: { version: spec.version, sha256: spec.sha256, dir: spec.dir, files: spec.files },
    target: {
      kind: view.kind,
      input: view.input,
      description: view.description,
      partitions: await view.allPartitions().catch(() => []),
      ...(await bootIdentity(view, facts)),
      ...(opts.build ? { build: { source: opts.build.source, vbmetaDigest: opts.build.vbmetaDigest } } : {}),
    },
    profile: opts.profile,
    product: opts.product
      ? {
          name: opts.product.name,
          version: opts.product.version,
          file: opts.product.file,
          ...(opts.product.deviceProfile ? { deviceProfile: opts.product.deviceProfile } : {}),
        }
      : undefined,
    waivers: waivers.map((w) => ({ id: w.id, reason: w.reason, expires: w.expires, source: w.source })),
    startedAt: started.toISOString(),
    durationMs: Math.round(Date.now() - started.getTime()),
    summary: summarize(results),
    results,
  };
}

/**
 * What identifies the verified-boot state of the target: the vbmeta digest (an image: computed
 * from its vbmeta; a device: the one its bootloader reports) and a device's verified boot state.
 */
async function bootIdentity(
  view: SystemView,
  facts: Facts,
): Promise<{ vbmetaDigest?: string; verifiedBootState?: string }> {
  if (view.kind === 'device') {
    const props = await facts.props().catch(() => ({}) as Record<string, string>);
    return {
      ...(props['ro.boot.vbmeta.digest']
        ? { vbmetaDigest: props['ro.boot.vbmeta.digest'].toLowerCase() }
        : {}),
      ...(props['ro.boot.verifiedbootstate']
        ? { verifiedBootState: props['ro.boot.verifiedbootstate'] }
        : {}),
    };
  }
  const digest = await view.vbmetaDigest?.().catch(() => null);
  return digest ? { vbmetaDigest: digest } : {};
}

/** A valid waiver turns fail/error into waived; an expired one leaves it failed and says so. */
function applyWaiver(r: RequirementResult, w: SourcedWaiver | undefined, now: Date): void {
  if (!w) return;
  const expired = isExpired(w, now);
  r.waiver = { reason: w.reason, expires: w.expires, expired, source: w.source };
  if (r.status !== 'fail' && r.status !== 'error') return;
  if (expired) {
    r.status = 'fail';
    r.evidence.push({ detail: `waiver expired on ${w.expires} (${w.source}): ${w.reason}` });
    r.message = `${r.message} (waiver expired ${w.expires})`;
  } else {
    r.status = 'waived';
    r.message = `${r.message} — waived until ${w.expires}: ${w.reason}`;
  }
}

export function summarize(results: RequirementResult[]): Summary {
  const count = (s: string) => results.filter((r) => r.status === s).length;
  const bad = (lvl: string) =>
    results.filter((r) => r.level === lvl && (r.status === 'fail' || r.status === 'error')).length;
  const mustFailed = bad('MUST');
  return {
    total: results.length,
    pass: count('pass'),
    fail: count('fail'),
    waived: count('waived'),
    notApplicable: count('not-applicable'),
    error: count('error'),
    mustFailed,
    shouldFailed: bad('SHOULD'),
    conforms: mustFailed === 0,
  };
}
