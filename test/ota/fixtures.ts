/**
 * Builds of the sample product for the OTA suites, made once per run and shared: 1.0.0 (b1) and
 * 1.0.1 (b2, its Wallet app rebuilt with a new label), signed for OTAs with an RSA-2048 key of their
 * own (AOSP's paycheck checks 256-byte signatures only), and `variantBuild` for more builds of the
 * same tree with a changed product file.
 */
import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { build } from '../../scripts/build/pipeline.ts';
import { generateSampleApps } from '../../scripts/sample/apps.ts';
import type { FixtureInput } from '../fixture-inputs.ts';
import { onceInDir, SAMPLE_HOME, sampleFixture, workDir } from '../helpers.ts';

// The sample partner's keys (the APK key signs OTAs where no otaKey is set), as sampleFixture sets.
process.env.OMIE_HOME = SAMPLE_HOME;

export const OTA_WORK = workDir('ota');
export const FIX = join(OTA_WORK, 'fixture');
/** The OTA key: KEY.pem, KEY.pk8, KEY.x509.pem. */
export const KEY = join(FIX, 'keys', 'ota');
export const B1 = join(FIX, 'b1');
export const B2 = join(FIX, 'b2');
export const TREE1 = join(FIX, 'tree1');
export const TREE2 = join(FIX, 'tree2');
export const PRODUCT = (tree: string) => join(tree, 'device/omie/tablet/products/omie-tablet.yaml');

/** The builds come from the whole kit (its build pipeline, sample tree and generators). */
export const BUILD_INPUTS: FixtureInput[] = [
  'test/ota/fixtures.ts',
  'scripts',
  'device',
  'overlays',
  'prebuilt-apps',
];

export async function openssl(args: string[], input?: Buffer) {
  return execa('openssl', args, { input, encoding: 'buffer', stripFinalNewline: false, reject: false });
}

/** An RSA-2048 key as signapk takes it: KEY.pem, KEY.pk8 (DER PKCS#8) and KEY.x509.pem. */
export async function makeKey(key: string, cn: string): Promise<void> {
  await openssl(['genrsa', '-out', `${key}.pem`, '2048']);
  await openssl([
    'pkcs8',
    '-topk8',
    '-nocrypt',
    '-outform',
    'DER',
    '-in',
    `${key}.pem`,
    '-out',
    `${key}.pk8`,
  ]);
  await openssl([
    'req',
    '-new',
    '-x509',
    '-sha256',
    '-key',
    `${key}.pem`,
    '-out',
    `${key}.x509.pem`,
    '-days',
    '3650',
    '-subj',
    `/O=Omie test/CN=${cn}`,
  ]);
}

async function makeBuilds(): Promise<void> {
  const fx = await sampleFixture();
  mkdirSync(join(FIX, 'keys'), { recursive: true });
  await makeKey(KEY, 'OTA');
  for (const [tree, version] of [
    [TREE1, '1.0.0'],
    [TREE2, '1.0.1'],
  ]) {
    cpSync(fx.tree, tree, { recursive: true });
    const yaml = readFileSync(PRODUCT(tree), 'utf8')
      .replace(/^version: .*$/m, `version: ${version}`)
      .replace(/ro\.omie\.version: .*$/m, `ro.omie.version: ${version}`)
      .replace(/^( {2}apkKey: .*)$/m, `$1\n  otaKey: { file: ${KEY}.x509.pem }`)
      .replace('../../../../.omie/sample-base/factory.zip', join(fx.base, 'factory.zip'));
    writeFileSync(PRODUCT(tree), yaml);
  }
  const wallet = join(TREE2, 'prebuilt-apps/Wallet/app.yaml');
  writeFileSync(wallet, readFileSync(wallet, 'utf8').replace(/^label: .*$/m, 'label: Wallet Plus'));
  await generateSampleApps(TREE2, ['Wallet']);
  await build({ product: PRODUCT(TREE1), out: B1 });
  await build({ product: PRODUCT(TREE2), out: B2 });
}

/** b1 and b2 (made once per run). */
export async function otaBuilds(): Promise<void> {
  await onceInDir(FIX, BUILD_INPUTS, makeBuilds);
}

/**
 * Another build of tree1's product into `out`, its product file changed by `edit` (the tree is
 * copied to `<out>-tree`). Call inside a fixture of the caller's (onceInDir).
 */
export async function variantBuild(out: string, edit: (yaml: string) => string): Promise<string> {
  await otaBuilds();
  const tree = `${out}-tree`;
  cpSync(TREE1, tree, { recursive: true });
  writeFileSync(PRODUCT(tree), edit(readFileSync(PRODUCT(tree), 'utf8')));
  await build({ product: PRODUCT(tree), out });
  return out;
}

export const SIDELOAD_FIX = join(OTA_WORK, 'sideload');
const at = (name: string) => join(SIDELOAD_FIX, name);

/** Packages and builds the sideload suite installs or sees refused. */
export const SIDELOAD = {
  /** Full OTA of b2 (1.0.1). */
  full2: at('full-1.0.1.zip'),
  /** Incremental from b1 to b2. */
  incr12: at('incr-1.0.0-1.0.1.zip'),
  /** 1.0.2 built a day later (ro.build.date.utc): a device running it refuses 1.0.1 as a downgrade. */
  b3: at('b3'),
  /** Full OTA of a build for another device (ro.product.device phablet), signed by the same key. */
  phablet: at('full-phablet.zip'),
  /** Full OTA of a build that trusts another OTA key, signed by it. */
  stranger: at('full-stranger.zip'),
  /** Full OTA of 1.0.3 whose vbmeta is signed by another AVB key than the partner's: a locked tablet does not boot it. */
  otherAvb: at('full-other-avb.zip'),
  strangerKey: at('stranger'),
  /** 1.0.0 built again with one more property: b1's fingerprint, other bytes. */
  b1Rebuilt: at('b1-rebuilt'),
};

async function makeSideloadFixture(): Promise<void> {
  const { makeOta } = await import('../../scripts/ota/make.ts');
  mkdirSync(SIDELOAD_FIX, { recursive: true });
  await makeOta({ build: B2, out: SIDELOAD.full2 });
  await makeOta({ build: B2, from: B1, out: SIDELOAD.incr12 });
  await variantBuild(SIDELOAD.b3, (y) =>
    y
      .replace(/^version: .*$/m, 'version: 1.0.2')
      .replace(/ro\.omie\.version: .*$/m, "ro.omie.version: 1.0.2\n    ro.build.date.utc: '1707220800'"),
  );
  await variantBuild(SIDELOAD.b1Rebuilt, (y) =>
    y.replace(/ro\.omie\.version: .*$/m, "ro.omie.version: 1.0.0\n    ro.omie.rebuild: '2'"),
  );
  const phablet = await variantBuild(at('b-phablet'), (y) =>
    y.replace(/^( {2}device:) tablet$/m, '$1 phablet'),
  );
  await makeOta({ build: phablet, out: SIDELOAD.phablet });
  await makeKey(SIDELOAD.strangerKey, 'Stranger OTA');
  const stranger = await variantBuild(at('b-stranger'), (y) =>
    y.replace(/^( {2}otaKey:) .*$/m, `$1 { file: ${SIDELOAD.strangerKey}.x509.pem }`),
  );
  await makeOta({ build: stranger, out: SIDELOAD.stranger });
  const otherAvb = await variantBuild(at('b-other-avb'), (y) =>
    y
      .replace(/^version: .*$/m, 'version: 1.0.3')
      .replace(/ro\.omie\.version: .*$/m, 'ro.omie.version: 1.0.3')
      .replace(/^( {2}avbKey:) .*$/m, '$1 { name: omie-sample-apps }'),
  );
  await makeOta({ build: otherAvb, out: SIDELOAD.otherAvb });
}

/** The sideload suite's packages and builds (made once per run, after b1 and b2). */
export async function sideloadFixture(): Promise<typeof SIDELOAD> {
  await otaBuilds();
  await onceInDir(SIDELOAD_FIX, BUILD_INPUTS, makeSideloadFixture);
  return SIDELOAD;
}
