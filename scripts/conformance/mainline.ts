/**
 * Google's Mainline modules and their AOSP replacements (spec/mainline-modules.yaml), shared by
 * requirement 2.5/C-0-1 and the build's plan: which APKs and APEXes are Google's builds of a
 * platform module, and which AOSP module takes each one's place.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse } from 'yaml';
import { InputError } from '../errors.ts';
import { globToRegExp } from './context.ts';

export interface MainlineModule {
  /** Package (or `*` glob) of Google's build: an APK's package or an APEX container's package. */
  google: string;
  /** The AOSP module's package; null when the Google module is removed without a replacement. */
  aosp: string | null;
  kind: 'apk' | 'apex';
}

/** The requirement whose parameters hold `googleApexPatterns`. */
export const MAINLINE_REQUIREMENT = '2.5/C-0-1';

/** Used when the spec gives no `googleApexPatterns`. */
export const DEFAULT_GOOGLE_APEX_PATTERNS = ['com.google.android.*', 'com.google.mainline.*'];

export async function loadMainlineModules(specDir: string): Promise<MainlineModule[]> {
  const file = join(specDir, 'mainline-modules.yaml');
  if (!existsSync(file)) return [];
  let raw: unknown;
  try {
    raw = parse(await readFile(file, 'utf8'));
  } catch (e) {
    throw new InputError(`${file}: cannot read: ${(e as Error).message}`, {
      code: 'SPEC_INVALID',
      context: { file },
    });
  }
  const list = (raw as { modules?: unknown })?.modules;
  if (!Array.isArray(list))
    throw new InputError(`${file}: no modules: list`, { code: 'SPEC_INVALID', context: { file } });
  return list.map((m, i) => {
    const o = (m ?? {}) as Record<string, unknown>;
    const ok =
      typeof o.google === 'string' &&
      (o.aosp === null || typeof o.aosp === 'string') &&
      (o.kind === 'apk' || o.kind === 'apex');
    if (!ok)
      throw new InputError(
        `${file}: modules[${i}] needs google: <package>, aosp: <package|null>, kind: apk|apex`,
        {
          code: 'SPEC_INVALID',
          context: { file, index: i, found: m },
        },
      );
    return { google: o.google as string, aosp: o.aosp as string | null, kind: o.kind as 'apk' | 'apex' };
  });
}

/**
 * The Google module `pkg` is, with its AOSP replacement, or null when it is none. An APEX not in
 * the table but matching `googleApexPatterns` is replaced by com.android.<rest of its name>.
 */
export function googleMainlineModule(
  pkg: string,
  kind: 'apk' | 'apex',
  modules: readonly MainlineModule[],
  googleApexPatterns: readonly string[] = DEFAULT_GOOGLE_APEX_PATTERNS,
): { google: string; aosp: string | null } | null {
  const m = modules.find((x) => x.kind === kind && globToRegExp(x.google).test(pkg));
  if (m) return { google: pkg, aosp: m.aosp };
  if (kind === 'apex' && googleApexPatterns.some((p) => globToRegExp(p).test(pkg))) {
    const rest = /^com\.google\.(?:android\.)?(.+)$/.exec(pkg)?.[1] ?? pkg;
    return { google: pkg, aosp: `com.android.${rest}` };
  }
  return null;
}
