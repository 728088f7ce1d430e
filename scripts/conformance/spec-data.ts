/**
 * Data files beside the spec that checks consult: spec/trackers.yaml (tracker SDK class
 * signatures, Exodus-Privacy style) and spec/known-signers.yaml (signer certificate digests of
 * Google, AOSP test keys, …). Both are read tolerantly: a list, or a map holding one.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse } from 'yaml';
import { InputError } from '../errors.ts';
import type { SpecData, TrackerSignature } from './context.ts';
import { loadMainlineModules } from './mainline.ts';
import { repoApps, repoProductSigners, repoSignerPins } from './product.ts';

/**
 * Used only when spec/trackers.yaml is absent: the most common tracker SDKs by their Exodus
 * code signatures, so the check never silently runs with nothing to look for.
 */
export const FALLBACK_TRACKERS: TrackerSignature[] = [
  {
    name: 'Google Firebase Analytics',
    category: 'analytics',
    prefixes: ['com.google.firebase.analytics.', 'com.google.android.gms.measurement.'],
  },
  {
    name: 'Google Analytics',
    category: 'analytics',
    prefixes: ['com.google.android.gms.analytics.', 'com.google.analytics.'],
  },
  {
    name: 'Google CrashLytics',
    category: 'crash-reporting',
    prefixes: ['com.crashlytics.', 'com.google.firebase.crashlytics.'],
  },
  { name: 'Google AdMob', category: 'advertising', prefixes: ['com.google.android.gms.ads.'] },
  { name: 'Facebook SDK', category: 'analytics', prefixes: ['com.facebook.appevents.', 'com.facebook.ads.'] },
  { name: 'AppsFlyer', category: 'analytics', prefixes: ['com.appsflyer.'] },
  { name: 'Adjust', category: 'analytics', prefixes: ['com.adjust.sdk.'] },
  { name: 'Branch', category: 'analytics', prefixes: ['io.branch.'] },
  { name: 'Flurry', category: 'analytics', prefixes: ['com.flurry.'] },
  { name: 'Mixpanel', category: 'analytics', prefixes: ['com.mixpanel.'] },
  { name: 'Amplitude', category: 'analytics', prefixes: ['com.amplitude.'] },
  { name: 'Segment', category: 'analytics', prefixes: ['com.segment.analytics.'] },
  { name: 'OneSignal', category: 'push', prefixes: ['com.onesignal.'] },
];

function listOf(raw: unknown, key: string): unknown[] {
  if (Array.isArray(raw)) return raw;
  if (raw && typeof raw === 'object') {
    const v = (raw as Record<string, unknown>)[key];
    if (Array.isArray(v)) return v;
  }
  return [];
}

/** `com\.foo\.|com\.bar\.` (Exodus code_signature) → ['com.foo.', 'com.bar.']. */
function signaturePrefixes(v: unknown): string[] {
  const parts = Array.isArray(v) ? v : typeof v === 'string' ? v.split('|') : [];
  return parts
    .filter((p): p is string => typeof p === 'string')
    .map((p) => p.replace(/\\\./g, '.').replace(/^\^/, '').replace(/[$]/g, '').replace(/\//g, '.').trim())
    .filter(Boolean);
}

async function readYamlFile(file: string): Promise<unknown> {
  try {
    return parse(await readFile(file, 'utf8'));
  } catch (e) {
    throw new InputError(`${file}: cannot read: ${(e as Error).message}`, {
      code: 'SPEC_INVALID',
      context: { file },
    });
  }
}

export async function loadTrackers(specDir: string): Promise<TrackerSignature[]> {
  const file = join(specDir, 'trackers.yaml');
  if (!existsSync(file)) return FALLBACK_TRACKERS;
  const out: TrackerSignature[] = [];
  for (const t of listOf(await readYamlFile(file), 'trackers')) {
    if (!t || typeof t !== 'object') continue;
    const o = t as Record<string, unknown>;
    const prefixes = signaturePrefixes(
      o.prefixes ?? o.classes ?? o.codeSignature ?? o.code_signature ?? o.signatures ?? o.packages,
    );
    if (!prefixes.length) continue;
    const cat = o.category ?? o.categories;
    out.push({
      name: String(o.name ?? o.id ?? prefixes[0]),
      category: Array.isArray(cat) ? cat.join(', ') : (cat as string | undefined),
      prefixes,
    });
  }
  return out.length ? out : FALLBACK_TRACKERS;
}

export async function loadKnownSigners(
  specDir: string,
): Promise<Map<string, { name: string; kind: string }>> {
  const out = new Map<string, { name: string; kind: string }>();
  const file = join(specDir, 'known-signers.yaml');
  if (!existsSync(file)) return out;
  const raw = await readYamlFile(file);
  const add = (o: Record<string, unknown>, kindHint?: string) => {
    const digests = [o.sha256, o.certSha256, o.digest, ...(Array.isArray(o.sha256s) ? o.sha256s : [])]
      .flat()
      .filter((d): d is string => typeof d === 'string' && /^[0-9a-fA-F:]{64,95}$/.test(d));
    const kind = String(o.kind ?? o.category ?? o.type ?? o.owner ?? kindHint ?? 'unknown').toLowerCase();
    for (const d of digests)
      out.set(d.replace(/:/g, '').toLowerCase(), {
        name: String(o.name ?? o.id ?? kind),
        kind: normaliseKind(kind, String(o.name ?? '')),
      });
  };
  for (const s of listOf(raw, 'signers')) if (s && typeof s === 'object') add(s as Record<string, unknown>);
  // A map of kind → list (e.g. { google: [...], aospTestKeys: [...] }).
  if (raw && typeof raw === 'object' && !Array.isArray(raw)) {
    for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
      if (k === 'signers' || !Array.isArray(v)) continue;
      for (const s of v) if (s && typeof s === 'object') add(s as Record<string, unknown>, k);
    }
  }
  return out;
}

function normaliseKind(kind: string, name: string): string {
  const s = `${kind} ${name}`.toLowerCase();
  if (/test|aosp-?dev|public/.test(s)) return 'aosp-test-key';
  if (/google/.test(s)) return 'google';
  return kind;
}

export async function loadSpecData(specDir: string, repoRoot?: string): Promise<SpecData> {
  return {
    trackers: await loadTrackers(specDir),
    knownSigners: await loadKnownSigners(specDir),
    repoPins: repoRoot ? repoSignerPins(repoRoot) : new Map(),
    mainline: await loadMainlineModules(specDir),
    repoApps: repoRoot ? repoApps(repoRoot) : new Map(),
    repoProductSigners: repoRoot ? repoProductSigners(repoRoot) : [],
  };
}
