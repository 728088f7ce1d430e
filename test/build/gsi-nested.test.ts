/**
 * A GSI keeps product and system_ext inside system.img (/system/product, /system/system_ext;
 * /product and /system_ext are symlinks there). The plan must treat them as those partitions (app
 * folders, Google XMLs, build.prop), and the checker must read them as partitions of their own
 * without listing their files twice under system.
 */
import { mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { makePlan } from '../../scripts/build/plan.ts';
import { imageView } from '../../scripts/conformance/image-view.ts';
import { createExt4 } from '../../scripts/fs/ext4.ts';
import { openFilesystem } from '../../scripts/fs/index.ts';
import { FileContexts } from '../../scripts/fs/selinux.ts';
import { loadProduct } from '../../scripts/model/index.ts';
import { platFileContexts, systemBuildProp } from '../../scripts/sample/base-content.ts';
import { generateRealisticBase } from '../../scripts/sample/realistic-base.ts';
import { onceInDir, REALISTIC_BASE_INPUTS, sampleFixture, workDir } from '../helpers.ts';

const dir = workDir('gsi-nested');
const images = join(dir, 'images');
let product: string;

beforeAll(async () => {
  const fx = await sampleFixture();
  product = fx.product;
  // The realistic base's APKs, placed as a GSI places them.
  const baseDir = join(workDir('realbase'), 'base');
  await onceInDir(baseDir, REALISTIC_BASE_INPUTS, async () => {
    await generateRealisticBase({ outDir: baseDir });
  });
  const tree = join(dir, 'tree');
  rmSync(tree, { recursive: true, force: true });
  rmSync(images, { recursive: true, force: true });
  mkdirSync(images, { recursive: true });
  const put = (p: string, c: string | Buffer) => {
    mkdirSync(dirname(join(tree, p)), { recursive: true });
    writeFileSync(join(tree, p), c);
  };
  put('/system/build.prop', systemBuildProp());
  put('/system/etc/selinux/plat_file_contexts', platFileContexts());
  put(
    '/system/product/etc/build.prop',
    'ro.product.product.brand=google\nro.com.google.gmsversion=14_202402\n',
  );
  put(
    '/system/product/etc/permissions/privapp-permissions-google-p.xml',
    '<permissions><privapp-permissions package="com.google.android.apps.maps"><permission name="android.permission.INSTALL_PACKAGES"/></privapp-permissions></permissions>\n',
  );
  put('/system/system_ext/etc/build.prop', 'ro.product.system_ext.brand=google\n');
  const copy = async (image: string, from: string, to: string) => {
    const fs = await openFilesystem(join(baseDir, image));
    try {
      mkdirSync(dirname(join(tree, to)), { recursive: true });
      await fs.copyOut(from, join(tree, to));
    } finally {
      await fs.close();
    }
  };
  await copy('product.img', '/app/Maps/Maps.apk', '/system/product/app/Maps/Maps.apk');
  await copy(
    'system_ext.img',
    '/priv-app/GoogleServicesFramework/GoogleServicesFramework.apk',
    '/system/system_ext/priv-app/GoogleServicesFramework/GoogleServicesFramework.apk',
  );
  await copy(
    'system.img',
    '/system/priv-app/Settings/Settings.apk',
    '/system/priv-app/Settings/Settings.apk',
  );
  symlinkSync('/system/product', join(tree, 'product'));
  symlinkSync('/system/system_ext', join(tree, 'system_ext'));
  await createExt4(tree, join(images, 'system.img'), {
    uuid: '5a6d2c1e-0000-4000-8000-0000000002aa',
    volumeName: '/',
    mountPoint: '/',
    fileContexts: FileContexts.parse(platFileContexts(), 'plat_file_contexts'),
    shrink: true,
  });
}, 900_000);

describe('GSI with product and system_ext inside system.img', () => {
  it('omie check reads them as partitions product and system_ext, each APK once', async () => {
    const view = await imageView(images, { workDir: join(dir, 'view') });
    try {
      expect((await view.partitions()).sort()).toEqual(['product', 'system', 'system_ext']);
      const apks = (await view.apks()).map((a) => `${a.partition}:${a.path}`).sort();
      expect(apks).toEqual([
        'product:app/Maps/Maps.apk',
        'system:priv-app/Settings/Settings.apk',
        'system_ext:priv-app/GoogleServicesFramework/GoogleServicesFramework.apk',
      ]);
      expect((await view.listFiles('system', '')).map((e) => e.name)).not.toContain('product');
      expect((await view.listFiles('product', 'etc/permissions')).map((e) => e.path)).toEqual([
        'etc/permissions/privapp-permissions-google-p.xml',
      ]);
      const props = await view.props();
      expect(props['ro.com.google.gmsversion']).toBe('14_202402');
      expect(props['ro.product.system_ext.brand']).toBe('google');
    } finally {
      await view.close();
    }
  });

  it('the plan removes their app folders and Google XMLs, and edits their build.prop', async () => {
    const resolved = await loadProduct(product);
    const fs = await openFilesystem(join(images, 'system.img'));
    try {
      const plan = await makePlan([{ name: 'system', fs }], { ...resolved, apps: [] }, { verifyApps: false });
      const sys = plan.partitions[0];
      const removed = sys.removals.map((r) => r.path);
      expect(removed).toContain('/system/product/app/Maps');
      expect(removed).toContain('/system/system_ext/priv-app/GoogleServicesFramework');
      expect(removed).toContain('/system/product/etc/permissions/privapp-permissions-google-p.xml');
      const productProps = sys.props.find((x) => x.path === '/system/product/etc/build.prop');
      expect(productProps?.edits).toContainEqual(
        expect.objectContaining({ op: 'remove', key: 'ro.com.google.gmsversion' }),
      );
      expect(productProps?.edits).toContainEqual(
        expect.objectContaining({ key: 'ro.product.product.brand', value: 'Omie' }),
      );
      expect(sys.apks.find((a) => a.package === 'com.android.settings')?.action).toBe('keep');
    } finally {
      await fs.close();
    }
  });
});
