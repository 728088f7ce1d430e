import { cpSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildApk, smaliClass } from '../../scripts/apkgen/index.ts';
import { ApexArchive, inspectApexPayload } from '../../scripts/formats/apex/index.ts';
import {
  DATA_STORE_META_DATA,
  PERSONAL_CLOUD_PERMISSION,
  ROLE_META_DATA,
} from '../../scripts/model/app-roles.ts';
import { loadApp } from '../../scripts/model/index.ts';
import { omie, ROOT, workDir } from '../helpers.ts';
import { disassemble, find, type SmaliClassInfo, xmltree } from './oracles.ts';

const dir = workDir('sample-apps');
const home = join(dir, 'home');
const tree = join(dir, 'tree');

/** One entry of an APK, as Info-ZIP's unzip extracts it. */
async function unzipEntry(apk: string, entry: string): Promise<Buffer> {
  return Buffer.from(
    (await execa('unzip', ['-p', apk, entry], { encoding: 'buffer', stripFinalNewline: false })).stdout,
  );
}

beforeAll(async () => {
  mkdirSync(tree, { recursive: true });
  for (const d of ['device', 'overlays']) cpSync(join(ROOT, d), join(tree, d), { recursive: true });
  cpSync(join(ROOT, 'prebuilt-apps'), join(tree, 'prebuilt-apps'), {
    recursive: true,
    filter: (s) => !/\.(apk|c?apex)(\.sha256)?$/.test(s),
  });
  const r = await omie(['sample-apps', '--json'], { cwd: tree, env: { OMIE_HOME: home } });
  expect(r.exitCode, r.stderr).toBe(0);
}, 300_000);

/** The sample apps that are APKs (the others are APEX modules, checked below). */
const apkApps = () =>
  readdirSync(join(ROOT, 'prebuilt-apps'))
    .filter(
      (n) =>
        !/^apk: \{ file: \S+\.c?apex,/m.test(
          readFileSync(join(ROOT, 'prebuilt-apps', n, 'app.yaml'), 'utf8'),
        ),
    )
    .sort();

describe('omie sample-apps', () => {
  const names = apkApps();

  it.each(names)('%s: apksigner verifies it and aapt shows the declared package', async (name) => {
    const app = await loadApp(join(tree, 'prebuilt-apps', name, 'app.yaml'));
    const apk = join(tree, 'prebuilt-apps', name, `${name}.apk`);
    const v = await execa('apksigner', ['verify', '--print-certs', apk], { reject: false });
    expect(v.exitCode, v.stderr).toBe(0);
    const badging = (await execa('aapt', ['dump', 'badging', apk])).stdout;
    expect(badging).toContain(`package: name='${app.package}'`);
    expect(badging).toContain(`application-label:'${app.label}'`);
    expect(badging.includes("uses-permission: name='android.permission.INTERNET'")).toBe(
      Boolean(app.internet),
    );
    const pin = readFileSync(`${apk}.sha256`, 'utf8').trim();
    expect(pin).toMatch(/^[0-9a-f]{64}$/);
  });

  it("the kit's own app audit finds nothing to warn the owner about", async () => {
    const apks = names.map((n) => join(tree, 'prebuilt-apps', n, `${n}.apk`));
    const r = await omie(['audit', ...apks, '--format', 'json']);
    const doc = JSON.parse(r.stdout);
    const warnings = doc.apps.flatMap(
      (a: { package: string; warnings: Array<{ id: string; detail?: string }> }) =>
        a.warnings.map((w) => `${a.package}: ${w.id}`),
    );
    expect(warnings).toEqual([]);
  });

  it('APEX modules: apksigner verifies the container, the manifest names the module, apexd would mount the payload', async () => {
    const apexes = readdirSync(join(ROOT, 'prebuilt-apps')).filter((n) => !names.includes(n));
    expect(apexes).toEqual(['Tzdata']);
    for (const name of apexes) {
      const app = await loadApp(join(tree, 'prebuilt-apps', name, 'app.yaml'));
      expect(app.kind).toBe('apex');
      const v = await execa('apksigner', ['verify', app.apkPath], { reject: false });
      expect(v.exitCode, v.stderr).toBe(0);
      const a = await ApexArchive.open(app.apkPath);
      const img = join(dir, `${name}.payload.img`);
      try {
        expect(a.info).toMatchObject({
          name: app.package,
          packageName: app.package,
          container: { verified: true },
        });
        await a.extractPayload(img);
        expect((await inspectApexPayload(img, a.info, { verifyHashtree: true })).problems).toEqual([]);
      } finally {
        await a.close();
      }
      expect(readFileSync(`${app.apkPath}.sha256`, 'utf8').trim()).toMatch(/^[0-9a-f]{64}$/);
    }
  });

  it('the sample key lives outside the tree with 0600 files', () => {
    const keyDir = join(home, 'keys/omie-sample-apps');
    for (const f of readdirSync(keyDir)) expect(statSync(join(keyDir, f)).mode & 0o077, f).toBe(0);
    expect(
      readdirSync(join(tree, 'prebuilt-apps/PersonalCloud')).some(
        (f) => f.endsWith('.pem') || f.endsWith('.pk8'),
      ),
    ).toBe(false);
  });
});

/** The framework class each component type must extend (the platform instantiates it as one). */
const COMPONENT_SUPER: Record<string, string> = {
  activity: 'Landroid/app/Activity;',
  service: 'Landroid/app/Service;',
  receiver: 'Landroid/content/BroadcastReceiver;',
  provider: 'Landroid/content/ContentProvider;',
};

/**
 * Methods a subclass must implement: abstract in AOSP (Service, BroadcastReceiver,
 * ContentProvider, AbstractThreadedSyncAdapter, AbstractAccountAuthenticator), or, for
 * BackupTransport, those whose AOSP default throws UnsupportedOperationException.
 */
const MUST_IMPLEMENT: Record<string, string[]> = {
  'Landroid/app/Activity;': [],
  'Landroid/app/Service;': ['onBind(Landroid/content/Intent;)Landroid/os/IBinder;'],
  'Landroid/content/BroadcastReceiver;': ['onReceive(Landroid/content/Context;Landroid/content/Intent;)V'],
  'Landroid/content/ContentProvider;': [
    'onCreate()Z',
    'query(Landroid/net/Uri;[Ljava/lang/String;Ljava/lang/String;[Ljava/lang/String;Ljava/lang/String;)Landroid/database/Cursor;',
    'getType(Landroid/net/Uri;)Ljava/lang/String;',
    'insert(Landroid/net/Uri;Landroid/content/ContentValues;)Landroid/net/Uri;',
    'delete(Landroid/net/Uri;Ljava/lang/String;[Ljava/lang/String;)I',
    'update(Landroid/net/Uri;Landroid/content/ContentValues;Ljava/lang/String;[Ljava/lang/String;)I',
  ],
  'Landroid/content/AbstractThreadedSyncAdapter;': [
    'onPerformSync(Landroid/accounts/Account;Landroid/os/Bundle;Ljava/lang/String;Landroid/content/ContentProviderClient;Landroid/content/SyncResult;)V',
  ],
  'Landroid/accounts/AbstractAccountAuthenticator;': [
    'editProperties(Landroid/accounts/AccountAuthenticatorResponse;Ljava/lang/String;)Landroid/os/Bundle;',
    'addAccount(Landroid/accounts/AccountAuthenticatorResponse;Ljava/lang/String;Ljava/lang/String;[Ljava/lang/String;Landroid/os/Bundle;)Landroid/os/Bundle;',
    'confirmCredentials(Landroid/accounts/AccountAuthenticatorResponse;Landroid/accounts/Account;Landroid/os/Bundle;)Landroid/os/Bundle;',
    'getAuthToken(Landroid/accounts/AccountAuthenticatorResponse;Landroid/accounts/Account;Ljava/lang/String;Landroid/os/Bundle;)Landroid/os/Bundle;',
    'getAuthTokenLabel(Ljava/lang/String;)Ljava/lang/String;',
    'updateCredentials(Landroid/accounts/AccountAuthenticatorResponse;Landroid/accounts/Account;Ljava/lang/String;Landroid/os/Bundle;)Landroid/os/Bundle;',
    'hasFeatures(Landroid/accounts/AccountAuthenticatorResponse;Landroid/accounts/Account;[Ljava/lang/String;)Landroid/os/Bundle;',
  ],
  'Landroid/app/backup/BackupTransport;': [
    'name()Ljava/lang/String;',
    'transportDirName()Ljava/lang/String;',
    'currentDestinationString()Ljava/lang/String;',
    'dataManagementLabel()Ljava/lang/String;',
    'finishRestore()V',
    'cancelFullBackup()V',
  ],
};

/** What a bound service's onBind must hand out, by the action it is bound with. */
const BINDERS: Record<string, { framework: string; call: string }> = {
  'android.content.SyncAdapter': {
    framework: 'Landroid/content/AbstractThreadedSyncAdapter;',
    call: 'Landroid/content/AbstractThreadedSyncAdapter;->getSyncAdapterBinder()Landroid/os/IBinder;',
  },
  'android.accounts.AccountAuthenticator': {
    framework: 'Landroid/accounts/AbstractAccountAuthenticator;',
    call: 'Landroid/accounts/AbstractAccountAuthenticator;->getIBinder()Landroid/os/IBinder;',
  },
  'android.backup.TRANSPORT_HOST': {
    framework: 'Landroid/app/backup/BackupTransport;',
    call: 'Landroid/app/backup/BackupTransport;->getBinder()Landroid/os/IBinder;',
  },
};

const descriptorOf = (pkg: string, name: string) =>
  `L${(name.startsWith('.') ? pkg + name : name.includes('.') ? name : `${pkg}.${name}`).replace(/\./g, '/')};`;

/** The APK's classes from a class up to the first framework class: [own…, framework]. */
function chain(classes: Map<string, SmaliClassInfo>, descriptor: string): string[] {
  const out = [descriptor];
  for (let c = classes.get(descriptor); c; c = classes.get(c.superClass)) out.push(c.superClass);
  return out;
}

/** `Class.method` of every framework method a class of the APK leaves unimplemented. */
function unimplemented(classes: Map<string, SmaliClassInfo>): string[] {
  const out: string[] = [];
  for (const c of classes.values()) {
    const ch = chain(classes, c.descriptor);
    const framework = ch.at(-1)!;
    for (const sig of MUST_IMPLEMENT[framework] ?? []) {
      const impl = ch
        .slice(0, -1)
        .map((x) => classes.get(x)!.methods.get(sig))
        .find(Boolean);
      if (!impl || impl.modifiers.includes('abstract')) out.push(`${c.descriptor}${sig}`);
    }
  }
  return out;
}

describe('the sample apps would run', () => {
  const names = apkApps();
  const apkOf = (name: string) => join(tree, 'prebuilt-apps', name, `${name}.apk`);

  async function dexClasses(name: string) {
    const dex = join(dir, `${name}.dex`);
    writeFileSync(dex, await unzipEntry(apkOf(name), 'classes.dex'));
    return { dex, classes: await disassemble(dex) };
  }

  it.each(names)(
    '%s: every declared component is a class of classes.dex that extends its framework class and implements it',
    async (name) => {
      const app = await loadApp(join(tree, 'prebuilt-apps', name, 'app.yaml'));
      const manifest = await xmltree(apkOf(name), 'AndroidManifest.xml');
      const { dex, classes } = await dexClasses(name);
      const application = find(manifest, 'application')[0]!;
      const components = application.children.filter((c) => c.name in COMPONENT_SUPER);
      expect(components.length).toBeGreaterThan(0);
      for (const c of components) {
        const d = descriptorOf(app.package, c.attrs.name!);
        const own = classes.get(d);
        expect(own, `${c.name} ${c.attrs.name} is not in classes.dex`).toBeDefined();
        expect(own!.modifiers).not.toContain('abstract');
        expect(chain(classes, d)).toContain(COMPONENT_SUPER[c.name]);
        // The platform instantiates components through their public no-argument constructor.
        expect(own!.methods.get('<init>()V')?.modifiers, `${d} constructor`).toContain('public');
        // A bound service hands out the binder of a framework object it made.
        for (const action of find(c, 'action').map((a) => a.attrs.name!)) {
          const b = BINDERS[action];
          if (!b) continue;
          expect(own!.methods.get('onBind(Landroid/content/Intent;)Landroid/os/IBinder;')?.body).toContain(
            b.call,
          );
          const made = [
            ...own!.methods.get('onCreate()V')!.body.matchAll(/new-instance v\d+, (L[^;]+;)/g),
          ].map((m) => m[1]!);
          expect(
            made.some((m) => chain(classes, m).includes(b.framework)),
            `${d} makes a ${b.framework}`,
          ).toBe(true);
        }
      }
      // No class of the APK leaves a method of its framework superclass unimplemented.
      expect(unimplemented(classes)).toEqual([]);
      // ART's dex file verifier (dexdump verifies before it dumps) accepts it.
      const dump = await execa('dexdump', ['-f', dex], { reject: false });
      expect(dump.exitCode, dump.stderr).toBe(0);
    },
  );

  it('the checks are not vacuous: a provider without update() is caught', async () => {
    const apk = join(dir, 'half-provider.apk');
    const pkg = 'org.omie.halfprovider';
    const full = smaliClass(`${pkg}.Store`, 'Landroid/content/ContentProvider;');
    // The generated class with its update() removed.
    const half = full.replace(/\.method public update\([\s\S]*?\.end method\n/, '');
    expect(half).not.toBe(full);
    await buildApk(
      {
        package: pkg,
        components: [{ type: 'provider', name: '.Store', authorities: `${pkg}.store` }],
        code: [{ name: `${pkg}.Store`, smali: half }],
      },
      null,
      apk,
    );
    const dex = join(dir, 'half-provider.dex');
    writeFileSync(dex, await unzipEntry(apk, 'classes.dex'));
    expect(unimplemented(await disassemble(dex))).toEqual([
      'Lorg/omie/halfprovider/Store;update(Landroid/net/Uri;Landroid/content/ContentValues;Ljava/lang/String;[Ljava/lang/String;)I',
    ]);
  });

  it('the verifier is not vacuous: dexdump rejects a damaged classes.dex', async () => {
    const { dex } = await dexClasses('Wallet');
    const bad = readFileSync(dex);
    bad[bad.length - 8] ^= 0xff;
    const damaged = join(dir, 'damaged.dex');
    writeFileSync(damaged, bad);
    expect((await execa('dexdump', ['-f', damaged], { reject: false })).exitCode).not.toBe(0);
  });

  it('the personal cloud stores, syncs, backs up and adds its account for real', async () => {
    const apk = apkOf('PersonalCloud');
    const manifest = await xmltree(apk, 'AndroidManifest.xml');
    const { classes } = await dexClasses('PersonalCloud');
    const body = (cls: string, sig: string) =>
      classes.get(`Lorg/omie/personalcloud/${cls};`)?.methods.get(sig)?.body ?? '';
    const P = MUST_IMPLEMENT['Landroid/content/ContentProvider;']!;
    expect(body('DataStoreProvider', P[0]!)).toContain('->openOrCreateDatabase(');
    expect(body('DataStoreProvider', P[1]!)).toContain('Landroid/database/sqlite/SQLiteDatabase;->query(');
    expect(body('DataStoreProvider', P[3]!)).toContain('Landroid/database/sqlite/SQLiteDatabase;->insert(');
    expect(body('DataStoreProvider', P[4]!)).toContain('Landroid/database/sqlite/SQLiteDatabase;->delete(');
    expect(body('DataStoreProvider', P[5]!)).toContain('Landroid/database/sqlite/SQLiteDatabase;->update(');
    expect(
      body('SyncAdapter', MUST_IMPLEMENT['Landroid/content/AbstractThreadedSyncAdapter;']![0]!),
    ).toContain('Landroid/content/ContentProviderClient;->query(');
    const addAccount = MUST_IMPLEMENT['Landroid/accounts/AbstractAccountAuthenticator;']![1]!;
    expect(body('Authenticator', addAccount)).toContain('->addAccountExplicitly(');
    expect(
      body(
        'CloudTransport',
        'performBackup(Landroid/content/pm/PackageInfo;Landroid/os/ParcelFileDescriptor;I)I',
      ),
    ).toContain('Ljava/io/FileOutputStream;');
    // The transport registers under the name the build's overlay makes the default.
    expect(body('CloudTransport', 'name()Ljava/lang/String;')).toContain(
      '"org.omie.personalcloud/.BackupTransportService"',
    );
    // Authenticator and sync adapter are described by the XML the platform reads, and agree.
    const metaOf = (action: string) =>
      find(manifest, 'service')
        .find((s) => find(s, 'action').some((a) => a.attrs.name === action))
        ?.children.find((c) => c.name === 'meta-data' && c.attrs.name === action);
    expect(metaOf('android.accounts.AccountAuthenticator')?.attrs.resource).toMatch(/^@0x7f/);
    expect(metaOf('android.content.SyncAdapter')?.attrs.resource).toMatch(/^@0x7f/);
    const auth = find(await xmltree(apk, 'res/xml/authenticator.xml'), 'account-authenticator')[0]!;
    const sync = find(await xmltree(apk, 'res/xml/syncadapter.xml'), 'sync-adapter')[0]!;
    const provider = find(manifest, 'provider')[0]!;
    expect(sync.attrs.accountType).toBe(auth.attrs.accountType);
    expect(sync.attrs.contentAuthority).toBe(provider.attrs.authorities);
    // Other publishers' customer-side apps can hold the permission: the owner grants it
    // (protectionLevel dangerous = 0x1), and the provider requires it.
    const perm = find(manifest, 'permission').find((p) => p.attrs.name === PERSONAL_CLOUD_PERMISSION)!;
    expect(perm.attrs.protectionLevel).toBe('0x1');
    expect(perm.attrs.label).toMatch(/^@0x7f/);
    expect(perm.attrs.description).toMatch(/^@0x7f/);
    expect(provider.attrs.permission).toBe(PERSONAL_CLOUD_PERMISSION);
  });

  it.each(names)('%s: declares its Omie role in its manifest', async (name) => {
    const app = await loadApp(join(tree, 'prebuilt-apps', name, 'app.yaml'));
    const application = find(await xmltree(apkOf(name), 'AndroidManifest.xml'), 'application')[0]!;
    const meta = application.children.filter((c) => c.name === 'meta-data');
    expect(meta.find((m) => m.attrs.name === ROLE_META_DATA)?.attrs.value).toBe(app.role);
    if (app.role === 'customer-app') {
      expect(meta.find((m) => m.attrs.name === DATA_STORE_META_DATA)?.attrs.value).toBeTruthy();
      const uses = find(await xmltree(apkOf(name), 'AndroidManifest.xml'), 'uses-permission').map(
        (u) => u.attrs.name,
      );
      expect(uses).toContain(PERSONAL_CLOUD_PERMISSION);
    }
  });
});
