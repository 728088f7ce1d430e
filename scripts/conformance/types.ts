/** Types shared by the conformance engine and its checks. */
import type { CheckContext } from './context.ts';
import type { Evidence, ResultStatus } from './spec-schema.ts';

export type { Evidence } from './spec-schema.ts';

/** What a check returns; the engine adds the requirement's metadata, waivers and timing. */
export interface CheckOutcome {
  status: Exclude<ResultStatus, 'waived'>;
  message: string;
  evidence: Evidence[];
}

export type CheckFn = (ctx: CheckContext) => Promise<CheckOutcome>;

/** Checks of one requirement family, keyed by requirement ID. */
export type CheckFamily = Record<string, CheckFn>;

export const pass = (message: string, evidence: Evidence[] = []): CheckOutcome => ({
  status: 'pass',
  message,
  evidence,
});
export const fail = (message: string, evidence: Evidence[] = []): CheckOutcome => ({
  status: 'fail',
  message,
  evidence,
});
export const notApplicable = (message: string, evidence: Evidence[] = []): CheckOutcome => ({
  status: 'not-applicable',
  message,
  evidence,
});

/** pass when there is no evidence of a violation, else fail with it. */
export function verdict(
  violations: Evidence[],
  okMessage: string,
  failMessage: (n: number) => string,
  okEvidence: Evidence[] = [],
): CheckOutcome {
  return violations.length ? fail(failMessage(violations.length), violations) : pass(okMessage, okEvidence);
}
