import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { ROOT } from './helpers.ts';

/**
 * Reference tools that no Debian or npm package provides (avbtool, AOSP's payload checker) and
 * real third-party fixtures (AOSP test keys, update_engine samples). They sit beside the
 * repository in `../shared` on CI; a clone without them skips the tests that need them, visibly
 * (`it.skipIf(!X.present)`), and a run with `CI=true` fails instead, so CI never counts a
 * cross-check that did not run as passed.
 */
export interface Oracle {
  /** Absolute path of the tool or fixture folder. */
  path: string;
  present: boolean;
  /** Why a test that needs it is skipped, for the test's name. */
  reason: string;
}

export const SHARED = resolve(ROOT, '../shared');

function oracle(rel: string): Oracle {
  const path = resolve(SHARED, rel);
  const present = existsSync(path);
  if (!present && process.env.CI === 'true')
    throw new Error(`oracle missing on CI: ${path} (CI must run beside ../shared; see docs/testing.md)`);
  return { path, present, reason: present ? '' : `(skipped: ${rel} not found beside the repository)` };
}

export const AVBTOOL = oracle('oracles/avbtool');
export const PAYCHECK = oracle('oracles/update_payload/paycheck.py');
export const AOSP_TESTKEYS = oracle('fixtures/aosp-testkeys');
export const UPDATE_ENGINE_SAMPLES = oracle('fixtures/update_engine');
