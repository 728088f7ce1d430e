import pkg from '../../package.json' with { type: 'json' };
import { asOmieError } from '../errors.ts';
import { type ApkReport, type InspectOptions, inspectApk } from '../formats/apk/inspect.ts';
import { AUDIT_RULES, PERMISSION_GROUPS, type RuleKey, type Severity } from './rules.ts';
import type { AppAudit, AuditReport, AuditWarning } from './schema.ts';

export { AUDIT_RULES } from './rules.ts';
export type { AppAudit, AuditReport, AuditWarning } from './schema.ts';

export interface AuditContext {
  /** Package of the owner's personal cloud: backups to it are the owner's. */
  personalCloudPackage?: string;
}

const RANK: Record<Severity, number> = { high: 3, medium: 2, low: 1 };
const DEBUG_SUBJECT = /CN=Android Debug\b/;
const LAUNCHER = 'android.intent.action.MAIN';

/** The health warnings for one inspected APK. Pure: the same report gives the same warnings. */
export function auditReport(r: ApkReport, ctx: AuditContext = {}): AuditWarning[] {
  const out: AuditWarning[] = [];
  const warn = (key: RuleKey, details: string[]) => out.push({ ...AUDIT_RULES[key], details });
  if (r.trackers.length)
    warn(
      'tracker',
      r.trackers.map((t) => `${t.name} (${t.categories.join(', ')})`),
    );
  const requested = new Set(r.permissions.requested.map((p) => p.name));
  for (const group of Object.keys(PERMISSION_GROUPS) as Array<keyof typeof PERMISSION_GROUPS>) {
    const hits = PERMISSION_GROUPS[group].filter((p) => requested.has(p));
    if (hits.length) warn(group, hits);
  }
  const cleartext = r.application.usesCleartextTraffic ?? r.sdk.target < 28;
  if (cleartext) {
    warn('cleartext', [
      r.application.usesCleartextTraffic === null
        ? `usesCleartextTraffic not set and targetSdk ${r.sdk.target} < 28 (default: allowed)`
        : 'usesCleartextTraffic="true"',
    ]);
  }
  if (!r.signatures.verified)
    warn('signature', r.signatures.problems.length ? r.signatures.problems : ['no scheme verifies']);
  const testKeys = r.signatures.signers.filter((s) => s.known?.kind === 'public-test-key');
  if (testKeys.length)
    warn(
      'testKey',
      testKeys.map((s) => `${s.known?.name} (${s.sha256})`),
    );
  const debug = r.signatures.signers.filter((s) => DEBUG_SUBJECT.test(s.subject));
  if (debug.length)
    warn(
      'debugKey',
      debug.map((s) => s.subject),
    );
  if (r.application.debuggable) warn('debuggable', ['android:debuggable="true"']);
  if (r.application.testOnly) warn('testOnly', ['android:testOnly="true"']);
  const open = r.components.filter(
    (c) => c.exported && !c.permission && !c.intentFilters.some((f) => f.actions.includes(LAUNCHER)),
  );
  if (open.length)
    warn(
      'exported',
      open.map((c) => `${c.type} ${c.name}`),
    );
  const backupIsOwners =
    ctx.personalCloudPackage !== undefined && r.identity.package === ctx.personalCloudPackage;
  if (r.application.allowBackup && !backupIsOwners) {
    warn('backup', [
      `allowBackup is ${r.application.allowBackup ? 'on' : 'off'}${r.application.backupAgent ? `, backup agent ${r.application.backupAgent}` : ' (default: on)'}`,
    ]);
  }
  return out;
}

function worst(ws: AuditWarning[]): Severity | null {
  return ws.reduce<Severity | null>(
    (a, w) => (a === null || RANK[w.severity] > RANK[a] ? w.severity : a),
    null,
  );
}

export async function auditApk(
  path: string,
  ctx: AuditContext = {},
  opts: InspectOptions = {},
): Promise<AppAudit> {
  try {
    const r = await inspectApk(path, opts);
    const warnings = auditReport(r, ctx);
    return {
      file: path,
      sha256: r.sha256,
      package: r.identity.package,
      label: r.identity.label,
      versionName: r.identity.versionName,
      signers: r.signatures.signers.map((s) => s.sha256),
      warnings,
      worst: worst(warnings),
    };
  } catch (e) {
    const err = asOmieError(e);
    const warnings = [{ ...AUDIT_RULES.signature, details: [err.message] }];
    return {
      file: path,
      sha256: '0'.repeat(64),
      package: null,
      label: null,
      versionName: null,
      signers: [],
      warnings,
      worst: 'high',
      error: err.message,
    };
  }
}

export async function auditApks(paths: string[], ctx: AuditContext = {}): Promise<AuditReport> {
  const apps: AppAudit[] = [];
  for (const p of paths) apps.push(await auditApk(p, ctx));
  return { schema: 'omie.audit/1', tool: { name: 'omie', version: pkg.version }, apps };
}
