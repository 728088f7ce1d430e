/** Every implemented check, keyed by requirement ID (one file per requirement family). */
import type { CheckFamily } from '../types.ts';
import { appsChecks } from './apps.ts';
import { customerSideChecks } from './customer-side.ts';
import { googleChecks } from './google.ts';
import { identityChecks } from './identity.ts';
import { personalCloudChecks } from './personal-cloud.ts';
import { securityChecks } from './security.ts';
import { trackingChecks } from './tracking.ts';

export const checkFamilies: Record<string, CheckFamily> = {
  google: googleChecks,
  tracking: trackingChecks,
  'personal-cloud': personalCloudChecks,
  'customer-side': customerSideChecks,
  apps: appsChecks,
  security: securityChecks,
  identity: identityChecks,
};

export const allChecks: CheckFamily = Object.assign({}, ...Object.values(checkFamilies));
