import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { ROOT } from './helpers.ts';

/**
 * Reference tools that no Debian or npm package provides (avbtool, AOSP's payload checker) and
 * real third-party fixtures (AOSP test keys, update_engine samples). They sit beside the
 * repository in `../shared` on CI; a clone without them skips the tests that need them, visibly
 * (`it.skipIf(!X.present)`), and a run with `CI=true` fails instead, so CI never counts a
 * cross-check that did not run as passed. Host tools follow the same rule (test/host-tools.ts).
 */
export interface Oracle {
  /** Absolute path of the tool or fixture folder. */
  path: string;
  present: boolean;
  /** Why a test that needs it is skipped, for the test's name. */
  reason: string;
}

/**
 * The one rule for whatever a test needs from outside the repository: when it is missing, the
 * tests that need it skip with `why` in their names, and under `CI=true` importing the module
 * that asks for it fails, saying `why` and how to get it (`fix`).
 */
export function needed(path: string, present: boolean, why: string, fix: string): Oracle {
  if (!present && process.env.CI === 'true') throw new Error(`missing on CI: ${why} (${fix})`);
  return { path, present, reason: present ? '' : `(skipped: ${why})` };
}

export const SHARED = resolve(ROOT, '../shared');

function oracle(rel: string): Oracle {
  const path = resolve(SHARED, rel);
  return needed(
    path,
    existsSync(path),
    `${rel} not found beside the repository`,
    'CI must run beside ../shared; see docs/testing.md',
  );
}

export const AVBTOOL = oracle('oracles/avbtool');
export const PAYCHECK = oracle('oracles/update_payload/paycheck.py');
export const AOSP_TESTKEYS = oracle('fixtures/aosp-testkeys');
export const UPDATE_ENGINE_SAMPLES = oracle('fixtures/update_engine');
