import { describe, expect, it } from 'vitest';
import { mergedBuildProps } from '../../scripts/conformance/view.ts';

/** A view over in-memory files: partition → path → text. */
function view(files: Record<string, Record<string, string>>) {
  return {
    async readFile(partition: string, path: string) {
      const t = files[partition]?.[path];
      return t === undefined ? null : Buffer.from(t);
    },
  };
}

describe('merged build.prop, in property_service.cpp PropertyLoadBootDefaults order', () => {
  it('loads both /vendor/default.prop and /vendor/build.prop (build.prop wins)', async () => {
    const v = view({
      vendor: { 'default.prop': 'ro.a=default\nro.only.default=1\n', 'build.prop': 'ro.a=build\n' },
    });
    expect(await mergedBuildProps(v, ['vendor'])).toEqual({ 'ro.a': 'build', 'ro.only.default': '1' });
  });

  it('system_dlkm and vendor_dlkm etc/build.prop load; product overrides odm, odm overrides vendor', async () => {
    const v = view({
      system: { 'system/build.prop': 'ro.x=system\n' },
      system_dlkm: { 'etc/build.prop': 'ro.system_dlkm.build.id=A\nro.x=system_dlkm\n' },
      vendor: { 'build.prop': 'ro.x=vendor\nro.y=vendor\n' },
      vendor_dlkm: { 'etc/build.prop': 'ro.vendor_dlkm.build.id=B\n' },
      odm: { 'etc/build.prop': 'ro.y=odm\nro.z=odm\n' },
      product: { 'etc/build.prop': 'ro.z=product\n' },
    });
    const all = ['system', 'system_dlkm', 'vendor', 'vendor_dlkm', 'odm', 'product'];
    expect(await mergedBuildProps(v, all)).toEqual({
      'ro.x': 'vendor',
      'ro.y': 'odm',
      'ro.z': 'product',
      'ro.system_dlkm.build.id': 'A',
      'ro.vendor_dlkm.build.id': 'B',
    });
  });

  it('reads the legacy /product/build.prop when there is no etc/build.prop', async () => {
    const v = view({ product: { 'build.prop': 'ro.legacy=1\n' } });
    expect(await mergedBuildProps(v, ['product'])).toEqual({ 'ro.legacy': '1' });
  });
});
