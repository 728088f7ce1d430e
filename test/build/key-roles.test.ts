/**
 * Release signing by key role (scripts/build/key-roles.ts), its SELinux and OTA side effects,
 * the tags a release build carries (props.ts releaseTags, as AOSP's EditTags) and the identity
 * keys the plan adds to each partition namespace. The end-to-end path is test/build/testkeys.test.ts.
 */
import { createHash, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import yazl from 'yazl';
import { generateSigningKey } from '../../scripts/apkgen/index.ts';
import { apexTestKeys } from '../../scripts/build/apex-keys.ts';
import {
  checkMacPermissionsUnique,
  checkRoleKeysDistinct,
  checkSharedUids,
  type RoleKey,
  rewriteMacPermissions,
  roleOfSigners,
  testKeyRoles,
} from '../../scripts/build/key-roles.ts';
import { buildDate, type OmieRelease, otacertsTestKeys, propEditsFor } from '../../scripts/build/plan.ts';
import { parseProps, releaseTags } from '../../scripts/build/props.ts';
import { APK_KEY_ROLES, type ApkKeyRole } from '../../scripts/formats/apk/known-signers.ts';
import { omie, workDir } from '../helpers.ts';
import { AOSP_TESTKEYS } from '../oracles.ts';

const dir = workDir('key-roles');

const der = (pem: string) => Buffer.from(new X509Certificate(readFileSync(pem)).raw);
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Role keys: `own` roles get the named key, the others the fallback (signing.apkKey). */
function roleKeys(
  fallback: Buffer,
  own: Partial<Record<ApkKeyRole, Buffer>> = {},
): Record<ApkKeyRole, RoleKey> {
  const out = {} as Record<ApkKeyRole, RoleKey>;
  for (const r of APK_KEY_ROLES) {
    const d = own[r] ?? fallback;
    out[r] = {
      key: { name: r, keyPk8: '', certPem: '', keyPem: '' },
      certSha256: sha(d),
      certDer: d,
      from: own[r] ? `signing.apkKeys.${r}` : 'signing.apkKey',
    };
  }
  return out;
}

let testPlatform: Buffer;
let testMedia: Buffer;
let partnerPlatform: Buffer;
let partnerApk: Buffer;
let roles: Map<string, ApkKeyRole>;

beforeAll(async () => {
  const k = (n: string) => generateSigningKey(join(dir, 'keys'), n, { subject: `/CN=${n}`, bits: 2048 });
  testPlatform = der((await k('stand-in-platform')).certPem);
  testMedia = der((await k('stand-in-media')).certPem);
  partnerPlatform = der((await k('partner-platform')).certPem);
  partnerApk = der((await k('partner-apk')).certPem);
  roles = testKeyRoles(
    new Map([
      [sha(testPlatform), 'platform'],
      [sha(testMedia), 'media'],
    ]),
  );
}, 120_000);

describe('key roles of the public test keys', () => {
  it('knows the role of every AOSP test key (spec/known-signers.yaml), testkey as releasekey', () => {
    const known = testKeyRoles();
    expect(known.get('a40da80a59d170caa950cf15c18c454d47a39b26989d8b640ecd745ba71bf5dc')).toBe('releasekey');
    expect(known.get('c8a2e9bccf597c2fb6dc66bee293fc13f2fc47ec77bc6b2b0d52c11f51192ab8')).toBe('platform');
    expect(known.get('28bbfe4a7b97e74681dc55c2fbb6ccb8d6c74963733f6af6ae74d8c3a6e879fd')).toBe('shared');
    expect(known.get('abf21f9e2af1d881cc673fddcefa6ed9c269a437bd64b279cf45844cfd589126')).toBe('sdk_sandbox');
    expect(new Set(known.values())).toEqual(new Set(APK_KEY_ROLES));
    expect(roleOfSigners(['00'.repeat(32), sha(testMedia)], roles)).toBe('media');
    expect(roleOfSigners(['00'.repeat(32)], roles)).toBeNull();
  });

  it.skipIf(!AOSP_TESTKEYS.present)(`matches the fixture keys' certificates ${AOSP_TESTKEYS.reason}`, () => {
    const known = testKeyRoles();
    for (const k of ['platform', 'shared', 'media', 'networkstack', 'bluetooth', 'sdk_sandbox'] as const)
      expect([k, known.get(sha(der(join(AOSP_TESTKEYS.path, `${k}.x509.pem`))))]).toEqual([k, k]);
    expect(known.get(sha(der(join(AOSP_TESTKEYS.path, 'testkey.x509.pem'))))).toBe('releasekey');
  });
});

describe('mac_permissions.xml', () => {
  const xml = () =>
    `<?xml version="1.0" encoding="iso-8859-1"?><policy><signer signature="${testPlatform.toString('hex').toUpperCase()}"><seinfo value="platform"/></signer><signer signature="${testMedia.toString('hex')}"><seinfo value="media"/></signer><signer signature="abcd"><seinfo value="other"/></signer></policy>\n`;

  it('replaces the test certificate of each re-signed role with its partner certificate, nothing else', () => {
    const keys = roleKeys(partnerApk, { platform: partnerPlatform });
    const r = rewriteMacPermissions(xml(), roles, keys, new Set<ApkKeyRole>(['platform', 'media']))!;
    expect(r.roles).toEqual(['media', 'platform']);
    expect(r.left).toEqual([]);
    expect(r.text).toBe(
      xml()
        .replace(testPlatform.toString('hex').toUpperCase(), partnerPlatform.toString('hex'))
        .replace(testMedia.toString('hex'), partnerApk.toString('hex')),
    );
  });

  it('leaves a role none of whose APKs was re-signed (its apps live in APEXes), and says so', () => {
    const r = rewriteMacPermissions(xml(), roles, roleKeys(partnerApk), new Set<ApkKeyRole>(['platform']))!;
    expect(r.roles).toEqual(['platform']);
    expect(r.left).toEqual(['media']);
    expect(r.text).toContain(testMedia.toString('hex'));
    expect(rewriteMacPermissions('<policy/>', roles, roleKeys(partnerApk), new Set())).toBeNull();
  });

  it('refuses two stanzas for one certificate once re-signed, naming the roles', () => {
    const keys = roleKeys(partnerApk);
    const before = xml();
    const r = rewriteMacPermissions(before, roles, keys, new Set<ApkKeyRole>(['platform', 'media']))!;
    expect(() =>
      checkMacPermissionsUnique(
        [{ where: 'system:plat_mac_permissions.xml', before, after: r.text, roles: r.roles }],
        keys,
      ),
    ).toThrow(
      expect.objectContaining({
        code: 'MAC_PERMISSIONS_DUPLICATE',
        context: expect.objectContaining({ roles: ['platform', 'media'] }),
      }),
    );
    // A duplicate the base already had is not the build's doing.
    expect(() =>
      checkMacPermissionsUnique([{ where: 'x', before: r.text, after: r.text, roles: r.roles }], keys),
    ).not.toThrow();
  });
});

describe('role separation and shared UIDs', () => {
  it('refuses roles merged onto signing.apkKey, allows roles the product keys on purpose', () => {
    const used = new Set<ApkKeyRole>(['platform', 'releasekey', 'media']);
    expect(() => checkRoleKeysDistinct(used, roleKeys(partnerApk, { platform: partnerPlatform }))).toThrow(
      expect.objectContaining({ code: 'KEY_ROLES_MERGED', context: { roles: [['releasekey', 'media']] } }),
    );
    expect(() =>
      checkRoleKeysDistinct(used, roleKeys(partnerApk, { platform: partnerPlatform, media: testMedia })),
    ).not.toThrow();
    expect(() =>
      checkRoleKeysDistinct(
        new Set<ApkKeyRole>(['platform', 'media']),
        roleKeys(partnerApk, { platform: partnerPlatform, media: partnerPlatform }),
      ),
    ).not.toThrow();
  });

  it('refuses a shared UID whose members end with different signers, and only that', () => {
    const m = (pkg: string, uid: string | null, s: string) => ({
      where: `system:/${pkg}`,
      package: pkg,
      sharedUserId: uid,
      signers: [s],
    });
    expect(() =>
      checkSharedUids([
        m('android', 'android.uid.system', 'aa'),
        m('com.android.settings', 'android.uid.system', 'aa'),
        m('x', null, 'bb'),
      ]),
    ).not.toThrow();
    let err: { code?: string; message?: string; context?: { sharedUids?: unknown[] } } = {};
    try {
      checkSharedUids([
        m('android', 'android.uid.system', 'aa'),
        m('com.oem.tweaks', 'android.uid.system', 'bb'),
        m('com.android.providers.contacts', 'android.uid.shared', 'cc'),
      ]);
    } catch (e) {
      err = e as typeof err;
    }
    expect(err.code).toBe('SHARED_UID_SPLIT');
    expect(err.message).toContain('android.uid.system: android (aa), com.oem.tweaks (bb)');
    expect(err.context?.sharedUids).toHaveLength(1);
  });
});

describe('release tags and identity properties', () => {
  it('edits tags as sign_target_files_apks EditTags does', () => {
    expect(releaseTags('14/UQ1A/eng.1:userdebug/test-keys', '/')).toBe(
      '14/UQ1A/eng.1:userdebug/release-keys',
    );
    expect(releaseTags('a/b:user/dev-keys,foo', '/')).toBe('a/b:user/foo,release-keys');
    expect(releaseTags('release-keys', '/')).toBe('release-keys');
  });

  const id = {
    brand: 'Omie',
    manufacturer: 'Omie',
    model: 'Omie Tablet',
    device: 'tablet',
    name: 'omie_tablet',
  };
  const fallback = { release: '14', buildId: 'UQ1A', incremental: '1' };
  const edited = (
    text: string,
    part: 'system' | 'system_ext' | 'vendor' | 'vendor_dlkm',
    opts: { complete?: boolean; main?: boolean; release?: OmieRelease },
  ) => {
    const edits = propEditsFor(text, part, id, [], {}, () => false, fallback, opts);
    const out: Record<string, string> = Object.fromEntries(parseProps(text).map((p) => [p.key, p.value]));
    for (const e of edits) if (e.op === 'set') out[e.key] = e.value!;
    return { out, edits };
  };

  it("adds the identity keys a partition's own build.prop lacks, and only there", () => {
    const { out, edits } = edited('ro.system_ext.build.id=UQ1A\n', 'system_ext', { complete: true });
    expect(out['ro.product.system_ext.model']).toBe('Omie Tablet');
    expect(out['ro.system_ext.build.fingerprint']).toBe(
      'Omie/omie_tablet/tablet:14/UQ1A/1:user/release-keys',
    );
    expect(edits.find((e) => e.key === 'ro.product.system_ext.brand')?.reason).toMatch(/added/);
    expect(edited('ro.system_ext.build.id=UQ1A\n', 'system_ext', {}).edits).toEqual([]);
  });

  it('sets ro.product.* and ro.build.fingerprint outright in the system build.prop (init derives them otherwise)', () => {
    const { out } = edited(
      'ro.system.build.tags=test-keys\nro.build.thumbprint=14/UQ1A/1:userdebug/test-keys\n',
      'system',
      {
        complete: true,
        main: true,
      },
    );
    for (const f of ['brand', 'manufacturer', 'model', 'device', 'name'] as const)
      expect(out[`ro.product.${f}`]).toBe(id[f]);
    expect(out['ro.build.fingerprint']).toMatch(/:user\/release-keys$/);
    expect(out['ro.build.tags']).toBe('release-keys');
    expect(out['ro.system.build.tags']).toBe('release-keys');
    expect(out['ro.build.thumbprint']).toBe('14/UQ1A/1:userdebug/release-keys');
  });

  it('stamps each Omie release: its version in every incremental and fingerprint, its date where given', () => {
    const text =
      'ro.build.version.incremental=11269751\nro.system.build.version.incremental=11269751\n' +
      'ro.build.date.utc=1707134400\nro.system.build.date.utc=1707134400\nro.build.date=Mon Feb  5 12:00:00 UTC 2024\n' +
      'ro.build.description=x\n';
    const v1 = edited(text, 'system', { complete: true, main: true, release: { version: '1.0.0' } }).out;
    const v2 = edited(text, 'system', { complete: true, main: true, release: { version: '1.0.1+beta' } }).out;
    expect(v1['ro.build.version.incremental']).toBe('11269751.omie-1.0.0');
    expect(v1['ro.system.build.version.incremental']).toBe('11269751.omie-1.0.0');
    expect(v1['ro.build.fingerprint']).toBe(
      'Omie/omie_tablet/tablet:14/UQ1A/11269751.omie-1.0.0:user/release-keys',
    );
    expect(v1['ro.system.build.fingerprint']).toBe(v1['ro.build.fingerprint']);
    expect(v1['ro.build.description']).toBe('omie_tablet-user 14 UQ1A 11269751.omie-1.0.0 release-keys');
    // A character a fingerprint cannot hold is replaced; two releases never share a fingerprint.
    expect(v2['ro.build.fingerprint']).toContain('/11269751.omie-1.0.1_beta:');
    // Without a release date the base's stays; with one, every date key has it.
    expect(v1['ro.build.date.utc']).toBe('1707134400');
    const dated = edited(text, 'system', {
      main: true,
      release: { version: '1.0.1', dateUtc: 1733616000 },
    }).out;
    expect(dated['ro.build.date.utc']).toBe('1733616000');
    expect(dated['ro.system.build.date.utc']).toBe('1733616000');
    expect(dated['ro.build.date']).toBe('Sun Dec  8 00:00:00 UTC 2024');
    expect(buildDate(1707134400)).toBe('Mon Feb  5 12:00:00 UTC 2024');
  });

  it('gives a kernel-module partition release-keys tags and nothing else (as sign_target_files_apks)', () => {
    const text =
      'ro.vendor_dlkm.build.fingerprint=oem/x/y:14/A/1:userdebug/test-keys\nro.vendor_dlkm.build.tags=test-keys\nro.vendor_dlkm.build.type=userdebug\nro.product.vendor_dlkm.brand=oem\n';
    // Not stamped as the Omie release either: its incremental and date are the module build's.
    const stamped =
      text + 'ro.vendor_dlkm.build.version.incremental=7\nro.vendor_dlkm.build.date.utc=1707134400\n';
    const { out } = edited(text, 'vendor_dlkm', { complete: true });
    expect(
      edited(stamped, 'vendor_dlkm', { complete: true, release: { version: '1.0.1', dateUtc: 1733616000 } })
        .out,
    ).toEqual({
      ...out,
      'ro.vendor_dlkm.build.version.incremental': '7',
      'ro.vendor_dlkm.build.date.utc': '1707134400',
    });
    expect(out).toEqual({
      'ro.vendor_dlkm.build.fingerprint': 'oem/x/y:14/A/1:userdebug/release-keys',
      'ro.vendor_dlkm.build.tags': 'release-keys',
      'ro.vendor_dlkm.build.type': 'userdebug',
      'ro.product.vendor_dlkm.brand': 'oem',
    });
    expect(
      edited('ro.vendor_dlkm.build.tags=release-keys\n', 'vendor_dlkm', { complete: true }).edits,
    ).toEqual([]);
  });

  it('rewrites any namespace a file carries (a vendor build.prop with ro.product.odm.* and ro.bootimage.build.fingerprint)', () => {
    const { out } = edited(
      'ro.product.odm.brand=oem\nro.bootimage.build.fingerprint=oem/x/y:14/A/1:user/test-keys\n',
      'vendor',
      {},
    );
    expect(out['ro.product.odm.brand']).toBe('Omie');
    expect(out['ro.bootimage.build.fingerprint']).toMatch(/^Omie\/omie_tablet\/tablet:.*release-keys$/);
  });
});

describe('OTA certificates and APEXes signed with test keys', () => {
  const zip = (entries: Array<{ name: string; data: Buffer }>) =>
    new Promise<Buffer>((res) => {
      const z = new yazl.ZipFile();
      for (const e of entries) z.addBuffer(e.data, e.name);
      z.end();
      const parts: Buffer[] = [];
      z.outputStream.on('data', (d: Buffer) => parts.push(d)).on('end', () => res(Buffer.concat(parts)));
    });

  it.skipIf(!AOSP_TESTKEYS.present)(
    `names the test keys of an otacerts.zip ${AOSP_TESTKEYS.reason}`,
    async () => {
      const z = await zip([
        { name: 'testkey.x509.pem', data: readFileSync(join(AOSP_TESTKEYS.path, 'testkey.x509.pem')) },
        {
          name: 'partner.x509.pem',
          data: Buffer.from(
            `-----BEGIN CERTIFICATE-----\n${partnerApk.toString('base64')}\n-----END CERTIFICATE-----\n`,
          ),
        },
      ]);
      expect(await otacertsTestKeys(z, 'otacerts.zip')).toEqual([
        'testkey.x509.pem (AOSP test key (testkey / releasekey))',
      ]);
    },
  );

  it('judges nothing it cannot read (no certificate, not a zip)', async () => {
    expect(
      await otacertsTestKeys(await zip([{ name: 'x.pem', data: Buffer.from('junk') }]), 'o.zip'),
    ).toEqual([]);
    expect(await otacertsTestKeys(Buffer.from('not a zip'), 'o.zip')).toEqual([]);
    const junk = join(dir, 'junk.apex');
    (await import('node:fs')).writeFileSync(junk, 'not a zip');
    expect(await apexTestKeys(junk)).toEqual([]);
  });
});

describe('omie keys init --roles', () => {
  it('creates a key per role (0600), and refuses a role AOSP does not have', async () => {
    const env = { OMIE_HOME: join(dir, 'home') };
    const r = await omie(
      ['keys', 'init', 'acme', '--roles', 'platform,media', '--avb-bits', '2048', '--json'],
      { env },
    );
    expect(r.exitCode, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(Object.keys(out.roles).sort()).toEqual(['media', 'platform']);
    const { statSync } = await import('node:fs');
    expect(statSync(join(env.OMIE_HOME, 'keys/acme/platform.pk8')).mode & 0o777).toBe(0o600);
    expect(out.roles.platform.certSha256).toBe(sha(der(join(env.OMIE_HOME, 'keys/acme/platform.x509.pem'))));
    expect(out.roles.platform.certSha256).not.toBe(out.roles.media.certSha256);
    const bad = await omie(['keys', 'init', 'acme', '--roles', 'platfrom', '--json'], { env });
    expect(bad.exitCode).toBe(2);
    expect(JSON.parse(bad.stdout).error).toMatchObject({
      code: 'KEY_ROLE_UNKNOWN',
      context: { roles: ['platfrom'] },
    });
  }, 120_000);
});
