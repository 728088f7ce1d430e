/**
 * The build's preflight names what the check will refuse, from the plan alone, with the
 * parameters of the spec the check uses, and honours the product's waivers.
 */
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Plan, PlannedApk } from '../../scripts/build/plan.ts';
import { apksTheCheckRefuses } from '../../scripts/build/preflight.ts';
import type { ResolvedProduct } from '../../scripts/model/index.ts';
import { ROOT, workDir } from '../helpers.ts';

const SIGNER = 'ab'.repeat(32);
const OTHER = 'cd'.repeat(32);

function plan(apks: Array<Partial<PlannedApk>>, added: string[] = []): Plan {
  const full = apks.map((a) => ({
    path: `/system/app/${a.package}/x.apk`,
    package: 'x',
    versionName: null,
    signers: [OTHER],
    action: 'keep' as const,
    reason: 'test',
    ...a,
  }));
  return {
    schema: 'omie.plan/1',
    product: { name: 't', version: '1' },
    partitions: [
      {
        partition: 'system',
        fs: 'ext4',
        mountPoint: '/',
        prefix: '/system',
        apks: full,
        apexes: [],
        removals: [],
        xmlEdits: [],
        additions: [],
        props: [],
      },
    ],
    removedPackages: [],
    keptPackages: full.filter((a) => a.action === 'keep').map((a) => a.package),
    addedPackages: added,
    refusals: [],
  };
}

const product = (waivers: Array<{ id: string; expires: string }> = []) =>
  ({
    file: 'p.yaml',
    product: { waivers: waivers.map((w) => ({ ...w, reason: 'r' })) },
  }) as unknown as ResolvedProduct;

/** A copy of the kit's spec whose 2.1/C-0-2 also lists SIGNER as Google's. */
function specWithSigner(): string {
  const dir = join(workDir('preflight'), 'spec');
  cpSync(join(ROOT, 'spec'), dir, { recursive: true });
  const google = join(dir, 'requirements/google.yaml');
  const text = readFileSync(google, 'utf8');
  const edited = text.replace(/(googleSignerSha256:\n(\s+)#.*\n)/, `$1$2- ${SIGNER}\n`);
  expect(edited).not.toBe(text);
  writeFileSync(google, edited);
  return dir;
}

describe('build preflight', () => {
  const now = new Date('2026-12-03T00:00:00Z');

  it('names kept and added packages matching 2.1/C-0-1 and kept APKs signed by a Google key (2.1/C-0-2)', async () => {
    const spec = specWithSigner();
    const p = plan(
      [
        { package: 'com.google.android.packageinstaller' },
        { package: 'com.example.renamed', signers: [OTHER, SIGNER] },
        { package: 'com.google.android.gms', action: 'remove', signers: [SIGNER] },
        { package: 'org.lineageos.jelly' },
      ],
      ['com.omie.wallet', 'com.google.android.tts'],
    );
    const r = await apksTheCheckRefuses(p, product(), now, spec);
    expect(r).toEqual([
      {
        requirement: '2.1/C-0-1',
        package: 'com.google.android.packageinstaller',
        where: 'system:/system/app/com.google.android.packageinstaller/x.apk',
        because: 'com.google.*',
      },
      {
        requirement: '2.1/C-0-2',
        package: 'com.example.renamed',
        where: 'system:/system/app/com.example.renamed/x.apk',
        because: SIGNER,
      },
      {
        requirement: '2.1/C-0-1',
        package: 'com.google.android.tts',
        where: undefined,
        because: 'com.google.*',
      },
    ]);
    // The kit's own spec does not list SIGNER: only the names are refused.
    expect((await apksTheCheckRefuses(p, product(), now)).map((x) => x.requirement)).toEqual([
      '2.1/C-0-1',
      '2.1/C-0-1',
    ]);
  });

  it('a waiver in force skips its requirement; an expired one does not', async () => {
    const spec = specWithSigner();
    const p = plan([{ package: 'com.google.android.packageinstaller', signers: [SIGNER] }]);
    const live = await apksTheCheckRefuses(
      p,
      product([{ id: '2.1/C-0-1', expires: '2027-01-01' }]),
      now,
      spec,
    );
    expect(live.map((x) => x.requirement)).toEqual(['2.1/C-0-2']);
    const expired = await apksTheCheckRefuses(
      p,
      product([{ id: '2.1/C-0-1', expires: '2026-01-01' }]),
      now,
      spec,
    );
    expect(expired.map((x) => x.requirement)).toEqual(['2.1/C-0-1', '2.1/C-0-2']);
    const both = product([
      { id: '2.1/C-0-1', expires: '2027-01-01' },
      { id: '2.1/C-0-2', expires: '2027-01-01' },
    ]);
    expect(await apksTheCheckRefuses(p, both, now, spec)).toEqual([]);
  });
});
