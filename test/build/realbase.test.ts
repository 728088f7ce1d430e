/**
 * `omie build` and `omie check` on a Pixel/GSI-shaped base (scripts/sample/realistic-base.ts):
 * system_ext/odm/vendor_dlkm, lz4hc product, footered logical images, boot/init_boot/vendor_boot/
 * dtbo hash footers, vbmeta chaining to vbmeta_system, two-group A/B super, APEX files.
 * Our AVB verifier and `info_image` text (byte-compared with avbtool's in test/avb/) check
 * every output; avbtool verify_image --follow_chain_partitions checks them again where it is
 * present (test/oracles.ts). Other oracles: dump.erofs, aapt via readApkIdentity.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { type BuildResult, build } from '../../scripts/build/pipeline.ts';
import { readApkIdentity } from '../../scripts/build/plan.ts';
import {
  formatAvbInfo,
  infoImage,
  type VerifyImageResult,
  verifyImage,
} from '../../scripts/formats/avb/index.ts';
import { openFilesystem } from '../../scripts/fs/index.ts';
import {
  generateRealisticBase,
  REALISTIC_ROLLBACK,
  type RealisticBase,
} from '../../scripts/sample/realistic-base.ts';
import { omie, onceInDir, REALISTIC_BASE_INPUTS, sampleFixture, workDir } from '../helpers.ts';
import { AVBTOOL } from '../oracles.ts';
import { writeRealbaseTree } from './realbase-profile.ts';

const dir = workDir('realbase');
const baseDir = join(dir, 'base');
let rb: RealisticBase;
let product: string;
let tree: string;

const withAvbtool = it.skipIf(!AVBTOOL.present);

async function avbtool(args: string[]) {
  return execa('python3', [AVBTOOL.path, ...args], { reject: false });
}

/** avbtool verify_image --follow_chain_partitions on a vbmeta.img: exit 0, and its stdout. */
async function avbtoolVerifiesChain(vbmeta: string): Promise<string> {
  const r = await avbtool(['verify_image', '--image', vbmeta, '--follow_chain_partitions']);
  expect(r.exitCode, `${r.stdout}\n${r.stderr}`).toBe(0);
  return r.stdout;
}

/** Our verifier on a vbmeta.img, following the chain: the partitions whose contents verified. */
async function verifiedPartitions(vbmeta: string): Promise<string[]> {
  const all = (r: VerifyImageResult): VerifyImageResult['descriptors'] => [
    ...r.descriptors,
    ...r.chained.flatMap(all),
  ];
  return all(await verifyImage(vbmeta))
    .filter((d) => d.result === 'verified')
    .map((d) => d.partitionName)
    .sort();
}

/** `avbtool info_image` text, as our reader prints it (the same lines: test/avb/sign-verify.test.ts). */
async function infoText(image: string): Promise<string> {
  return formatAvbInfo(await infoImage(image));
}

async function apksIn(image: string, probe: string) {
  const fs = await openFilesystem(image);
  const out: Array<{ path: string; package: string; signers: string[] }> = [];
  try {
    for (const e of await fs.list()) {
      if (e.type !== 'file' || !e.path.endsWith('.apk')) continue;
      await fs.copyOut(e.path, probe);
      const id = await readApkIdentity(probe);
      out.push({ path: e.path, package: id.package, signers: id.signers });
    }
  } finally {
    await fs.close();
  }
  return out;
}

/** Partition names of the hash/hashtree descriptors and chain descriptors avbtool sees in a vbmeta image. */
async function avbInfo(image: string) {
  const text = await infoText(image);
  const descs = [
    ...text.matchAll(
      /^\s+(Hash|Hashtree|Chain Partition) descriptor:\n(?:.*\n)*?\s+Partition Name:\s+(\S+)/gm,
    ),
  ];
  return {
    text,
    hash: descs
      .filter((m) => m[1] === 'Hash')
      .map((m) => m[2])
      .sort(),
    hashtree: descs
      .filter((m) => m[1] === 'Hashtree')
      .map((m) => m[2])
      .sort(),
    chain: descs
      .filter((m) => m[1] === 'Chain Partition')
      .map((m) => m[2])
      .sort(),
  };
}

beforeAll(async () => {
  const fx = await sampleFixture();
  tree = fx.tree;
  await onceInDir(baseDir, REALISTIC_BASE_INPUTS, async () => {
    await generateRealisticBase({ outDir: baseDir });
  });
  rb = {
    dir: baseDir,
    images: {},
    vbmeta: join(baseDir, 'vbmeta.img'),
    vbmetaSystem: join(baseDir, 'vbmeta_system.img'),
    factoryZip: join(baseDir, 'factory.zip'),
    superImg: join(baseDir, 'super.img.sparse'),
  } as RealisticBase;
  const t = join(dir, 'tree');
  rmSync(t, { recursive: true, force: true });
  product = writeRealbaseTree(tree, t);
}, 900_000);

describe('the realistic base fixture', () => {
  const SIGNED = [
    'boot',
    'init_boot',
    'vendor_boot',
    'dtbo',
    'vendor',
    'odm',
    'vendor_dlkm',
    'system',
    'system_ext',
    'product',
  ];

  it('verifies, following the chain to vbmeta_system', async () => {
    expect(await verifiedPartitions(rb.vbmeta)).toEqual([...SIGNED].sort());
    const top = await avbInfo(rb.vbmeta);
    expect(top.chain).toEqual(['vbmeta_system']);
    expect((await avbInfo(rb.vbmetaSystem)).hashtree).toEqual(['product', 'system', 'system_ext']);
  });

  withAvbtool(`verifies with avbtool, following the chain to vbmeta_system ${AVBTOOL.reason}`, async () => {
    const stdout = await avbtoolVerifiesChain(rb.vbmeta);
    for (const p of SIGNED) expect(stdout).toMatch(new RegExp(`^${p}: Successfully verified`, 'm'));
  });

  it('has a vendor ext4 with shared_blocks and one block really shared (dumpe2fs, debugfs, e2fsck -fn clean)', async () => {
    const img = join(baseDir, 'vendor.img');
    expect((await execa('dumpe2fs', ['-h', img])).stdout).toMatch(/features:.*shared_blocks/);
    const block = async (p: string) =>
      /EXTENTS:\n\(0\):(\d+)/.exec((await execa('debugfs', ['-R', `stat ${p}`, img])).stdout)?.[1];
    expect(await block('/etc/init/dedupe-a.rc')).toBe(await block('/etc/init/dedupe-b.rc'));
    expect((await execa('e2fsck', ['-fn', img], { reject: false })).exitCode).toBe(0);
  });

  it('has an lz4hc-compressed product erofs (dump.erofs)', async () => {
    // Layout 3/4: EROFS_INODE_COMPRESSED_FULL/COMPACT (erofs_fs.h).
    const r = await execa('dump.erofs', ['--path=/app/Maps/Maps.apk', join(baseDir, 'product.img')], {
      reject: false,
    });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Layout: [34]\b/);
  });
});

describe('omie check on the unmodified realistic base', () => {
  let report: { results: Array<{ id: string; status: string; evidence?: Array<Record<string, string>> }> };
  beforeAll(async () => {
    const out = join(dir, 'check-base');
    rmSync(out, { recursive: true, force: true });
    const r = await omie(['check', baseDir, '--product', product, '--report-dir', out, '--format', 'json'], {
      env: { OMIE_HOME: process.env.OMIE_HOME ?? '' },
    });
    expect(r.exitCode).toBe(1);
    report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8'));
  }, 300_000);
  const result = (id: string) => report.results.find((x) => x.id === id)!;

  it('reports the Google packages of system_ext, product and product/overlay with their paths', () => {
    const r = result('2.1/C-0-1');
    expect(r.status).toBe('fail');
    const where = (r.evidence ?? []).map((e) => `${e.partition}:${e.file}:${e.package}`).sort();
    expect(where).toEqual([
      'product:app/Maps/Maps.apk:com.google.android.apps.maps',
      'product:overlay/GoogleConfigOverlay.apk:com.google.android.overlay.gmsconfig',
      'product:priv-app/Velvet/Velvet.apk:com.google.android.googlequicksearchbox',
      'system_ext:priv-app/GoogleServicesFramework/GoogleServicesFramework.apk:com.google.android.gsf',
    ]);
  });

  it('reports Google XMLs in system_ext/etc/permissions and product/etc/permissions', () => {
    const files = (result('2.2/C-0-1').evidence ?? []).map((e) => `${e.partition}:${e.file}`);
    expect(files).toContain('product:etc/permissions/privapp-permissions-google-p.xml');
    expect(files).toContain('system_ext:etc/permissions/privapp-permissions-google-se.xml');
  });

  it('reads props of every partition (product/etc/build.prop, odm/etc/build.prop)', () => {
    const props = (result('2.3/C-0-1').evidence ?? []).map((e) => e.prop);
    expect(props).toContain('ro.com.google.gmsversion'); // product/etc/build.prop only
    const ids = (result('7.1/C-0-1').evidence ?? []).map((e) => e.prop);
    expect(ids).toContain('ro.product.odm.brand');
    expect(ids).toContain('ro.product.system_ext.brand');
  });
});

describe('omie build on the realistic base', () => {
  const out = join(dir, 'out');
  let res: BuildResult;
  beforeAll(async () => {
    res = await build({ product, base: baseDir, out });
  }, 900_000);

  it('passes the conformance check', () => {
    expect(res.check && 'conforms' in res.check && res.check.conforms).toBe(true);
  });

  withAvbtool(
    `avbtool verify_image --follow_chain_partitions passes on the output ${AVBTOOL.reason}`,
    async () => {
      await avbtoolVerifiesChain(join(out, 'vbmeta.img'));
    },
  );

  it('re-signs the chain with the partner key and the profile rollback index', async () => {
    expect(await verifiedPartitions(join(out, 'vbmeta.img'))).toEqual([
      'boot',
      'dtbo',
      'init_boot',
      'odm',
      'product',
      'system',
      'system_ext',
      'vendor',
      'vendor_boot',
      'vendor_dlkm',
    ]);
    const top = await avbInfo(join(out, 'vbmeta.img'));
    expect(top.hash).toEqual(['boot', 'dtbo', 'init_boot', 'vendor_boot']);
    expect(top.hashtree).toEqual(['odm', 'vendor', 'vendor_dlkm']);
    expect(top.chain).toEqual(['vbmeta_system']);
    const sys = await avbInfo(join(out, 'vbmeta_system.img'));
    expect(sys.hashtree).toEqual(['product', 'system', 'system_ext']);
    expect(sys.text).toMatch(/Rollback Index Location:\s+1/);
    // The profile's index, which is not below the base's.
    expect(sys.text).toMatch(new RegExp(`Rollback Index:\\s+${REALISTIC_ROLLBACK.vbmetaSystem}\\n`));
    expect(top.text).toMatch(new RegExp(`Rollback Index:\\s+${REALISTIC_ROLLBACK.vbmetaSystem}\\n`));
    // The partner key signs both: the chain descriptor's key is the one vbmeta_system is signed with.
    expect(top.text).toContain(/Public key \(sha1\):\s+(\S+)/.exec(sys.text)![1]);
  });

  it('removes Google apps from system_ext, product and product/overlay; re-signs the test-key app; keeps odm/vendor overlays', async () => {
    const probe = join(dir, 'probe.apk');
    const all: Record<string, string[]> = {};
    for (const p of ['system', 'system_ext', 'product', 'vendor', 'odm'])
      all[p] = (await apksIn(join(out, `${p}.img`), probe)).map((a) => a.package);
    const every = Object.values(all).flat();
    expect(every.filter((x) => x.startsWith('com.google.'))).toEqual([]);
    expect(all.system_ext).toContain('com.android.launcher3');
    expect(all.vendor).toContain('com.oem.frameworkres.overlay');
    expect(all.odm).toContain('com.oem.cameratuning');
    const manifest = JSON.parse(readFileSync(join(baseDir, 'sample-base.json'), 'utf8'));
    const launcher = (await apksIn(join(out, 'system_ext.img'), probe)).find(
      (a) => a.package === 'com.android.launcher3',
    )!;
    expect(launcher.signers).not.toContain(manifest.signers.testkey);
  });

  it('keeps the APEX files and the untouched vendor_dlkm filesystem byte for byte', async () => {
    const fs = await openFilesystem(join(out, 'system.img'));
    try {
      for (const f of ['/system/apex/com.android.tzdata.apex', '/system/apex/com.android.art.capex']) {
        const before = await openFilesystem(join(baseDir, 'system.img'));
        try {
          expect((await fs.readFile(f)).equals(await before.readFile(f))).toBe(true);
        } finally {
          await before.close();
        }
      }
    } finally {
      await fs.close();
    }
    // The filesystem bytes, up to the footer's original image size (the footer is re-made with our salt).
    const fsBytes = async (img: string) => {
      const size = Number((await infoImage(img)).footer?.originalImageSize);
      expect(size).toBeGreaterThan(0);
      return createHash('sha256').update(readFileSync(img).subarray(0, size)).digest('hex');
    };
    expect(await fsBytes(join(out, 'vendor_dlkm.img'))).toBe(await fsBytes(join(baseDir, 'vendor_dlkm.img')));
  });

  it('unshares the edited vendor (shared_blocks cleared, e2fsck -fn clean, both files intact)', async () => {
    const img = join(out, 'vendor.img');
    const size = Number((await infoImage(img)).footer?.originalImageSize);
    const plain = join(dir, 'vendor-fs.img');
    writeFileSync(plain, readFileSync(img).subarray(0, size));
    expect((await execa('dumpe2fs', ['-h', plain])).stdout).not.toMatch(/features:.*shared_blocks/);
    const fsck = await execa('e2fsck', ['-fn', plain], { reject: false });
    expect(fsck.exitCode, fsck.stdout).toBe(0);
    const fs = await openFilesystem(plain);
    try {
      const a = await fs.readFile('/etc/init/dedupe-a.rc');
      expect(a.toString()).toMatch(/^# identical in two files/);
      expect((await fs.readFile('/etc/init/dedupe-b.rc')).equals(a)).toBe(true);
    } finally {
      await fs.close();
    }
  });

  it('keeps product lz4hc-compressed after the edit (dump.erofs)', async () => {
    const r = await execa('dump.erofs', ['--path=/app/DeskClock/DeskClock.apk', join(out, 'product.img')], {
      reject: false,
    });
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/Layout: [34]\b/);
  });

  it('packages super with both groups and A/B names', async () => {
    const r = await omie(['inspect', join(out, 'super_empty.img'), '--json']);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(r.stdout).toContain('google_system_dynamic_partitions_a');
    expect(r.stdout).toContain('google_vendor_dynamic_partitions_b');
    expect(r.stdout).toContain('vendor_dlkm_a');
  });
});

describe('omie build on the realistic factory zip (super_empty.img + separate logical images)', () => {
  const out = join(dir, 'out-zip');
  let res: BuildResult;
  beforeAll(async () => {
    res = await build({ product, base: join(baseDir, 'factory.zip'), out });
  }, 900_000);

  it('conforms, and its chain verifies', async () => {
    expect(res.check && 'conforms' in res.check && res.check.conforms).toBe(true);
    expect(existsSync(join(out, 'init_boot.img'))).toBe(true);
    expect(await verifiedPartitions(join(out, 'vbmeta.img'))).toContain('init_boot');
  });

  withAvbtool(`verifies with avbtool ${AVBTOOL.reason}`, async () => {
    await avbtoolVerifiesChain(join(out, 'vbmeta.img'));
  });
});

describe('bases the device profile does not account for', () => {
  describe('a profile that does not re-sign dtbo and vendor_boot', () => {
    const out = join(dir, 'out-carry');
    beforeAll(async () => {
      const t = join(dir, 'tree-carry');
      rmSync(t, { recursive: true, force: true });
      const p = writeRealbaseTree(tree, t, (d) =>
        d.replace(/^ {4}- \{ partition: (dtbo|vendor_boot), type: hash.*\n/gm, ''),
      );
      const res = await build({ product: p, base: baseDir, out, noCheck: true });
      expect(res.dryRun).toBe(false);
    }, 900_000);

    it('carries over the base descriptors of those partitions, and the chain verifies', async () => {
      expect(await verifiedPartitions(join(out, 'vbmeta.img'))).toEqual(
        expect.arrayContaining(['dtbo', 'vendor_boot']),
      );
      const top = await avbInfo(join(out, 'vbmeta.img'));
      expect(top.hash).toEqual(['boot', 'dtbo', 'init_boot', 'vendor_boot']);
      // Carried as they are: the base's salt and digest, and the image passed through unchanged.
      const digestOf = (text: string, part: string) =>
        new RegExp(`Partition Name:\\s+${part}\\n\\s+Salt:\\s+(\\S+)\\n\\s+Digest:\\s+(\\S+)`)
          .exec(text)
          ?.slice(1);
      const baseTop = await avbInfo(join(baseDir, 'vbmeta.img'));
      expect(digestOf(top.text, 'dtbo')).toEqual(digestOf(baseTop.text, 'dtbo'));
      expect(digestOf(top.text, 'dtbo')).toBeTruthy();
      expect(readFileSync(join(out, 'dtbo.img')).equals(readFileSync(join(baseDir, 'dtbo.img')))).toBe(true);
    });

    withAvbtool(`avbtool verifies the chain with the carried descriptors ${AVBTOOL.reason}`, async () => {
      await avbtoolVerifiesChain(join(out, 'vbmeta.img'));
    });
  });

  it('refuses to carry a descriptor of a partition the build edits', async () => {
    const t = join(dir, 'tree-stale');
    rmSync(t, { recursive: true, force: true });
    const p = writeRealbaseTree(tree, t, (d) =>
      d.replace(/^ {4}- \{ partition: system_ext, type: hashtree.*\n/gm, ''),
    );
    await expect(
      build({ product: p, base: baseDir, out: join(dir, 'out-stale'), dryRun: true }),
    ).rejects.toMatchObject({
      code: 'AVB_DESCRIPTOR_STALE',
      context: { partition: 'system_ext' },
    });
  }, 300_000);

  it('refuses a base with partitions the profile omits, naming them', async () => {
    const t = join(dir, 'tree-no-odm');
    rmSync(t, { recursive: true, force: true });
    const p = writeRealbaseTree(tree, t, (d) =>
      d
        .replace(/^ {2}- \{ name: (odm|vendor_dlkm), .*\n/gm, '')
        .replace('[vendor, odm, vendor_dlkm]', '[vendor]')
        .replace(/^ {4}- \{ partition: (odm|vendor_dlkm), .*\n/gm, ''),
    );
    await expect(
      build({ product: p, base: baseDir, out: join(dir, 'out-no-odm'), dryRun: true }),
    ).rejects.toMatchObject({
      code: 'BASE_PARTITION_NOT_IN_PROFILE',
      context: { unlisted: ['odm', 'vendor_dlkm'] },
    });
  }, 300_000);

  it('refuses a profile whose rollback index is below the base vbmeta_system one', async () => {
    const t = join(dir, 'tree-rollback');
    rmSync(t, { recursive: true, force: true });
    const p = writeRealbaseTree(tree, t, (d) => d.replace(/rollbackIndex: \d+/, 'rollbackIndex: 1'));
    await expect(
      build({ product: p, base: baseDir, out: join(dir, 'out-rollback'), dryRun: true }),
    ).rejects.toMatchObject({
      code: 'AVB_ROLLBACK_BELOW_BASE',
      context: { profile: '1', base: { '1': String(REALISTIC_ROLLBACK.vbmetaSystem) } },
    });
  }, 300_000);

  it('refuses a super-only base when the profile signs boot partitions it does not carry', async () => {
    await expect(
      build({ product, base: join(baseDir, 'super.img.sparse'), out: join(dir, 'out-super'), dryRun: true }),
    ).rejects.toMatchObject({
      code: 'BASE_PARTITION_MISSING',
      context: { missing: ['boot', 'dtbo', 'init_boot', 'vendor_boot'] },
    });
  }, 300_000);
});
