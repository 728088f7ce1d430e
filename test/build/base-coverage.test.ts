import { describe, expect, it } from 'vitest';
import { checkBaseCoverage } from '../../scripts/build/base-coverage.ts';
import type { DeviceProfile } from '../../scripts/model/index.ts';

const device = {
  file: 'device.yaml',
  partitions: [
    { name: 'boot', fs: 'raw', location: 'physical', size: 8 << 20 },
    { name: 'vbmeta', fs: 'raw', location: 'physical', size: 65536 },
    { name: 'system', fs: 'ext4', location: 'super', size: 1 << 30 },
  ],
  avb: {
    footers: [
      { partition: 'boot', type: 'hash', hashAlgorithm: 'sha256' },
      { partition: 'system', type: 'hashtree', hashAlgorithm: 'sha256' },
    ],
    chained: [{ partition: 'vbmeta_system', rollbackIndexLocation: 1, partitions: ['system'] }],
  },
} as unknown as DeviceProfile;

describe('base partitions against the device profile', () => {
  it('accepts the listed partitions, the vbmetas it regenerates and a factory zip firmware', () => {
    expect(() =>
      checkBaseCoverage(device, {
        boot: 'b',
        system: 's',
        vbmeta: 'v',
        vbmeta_system: 'vs',
        bootloader: 'bl',
        radio: 'r',
      }),
    ).not.toThrow();
  });

  it('names the unlisted ones', () => {
    expect(() => checkBaseCoverage(device, { boot: 'b', system: 's', odm: 'o', dtbo: 'd' })).toThrow(
      expect.objectContaining({
        code: 'BASE_PARTITION_NOT_IN_PROFILE',
        context: expect.objectContaining({ unlisted: ['dtbo', 'odm'] }),
      }),
    );
  });

  it('names a physical partition the profile signs but the base lacks', () => {
    expect(() => checkBaseCoverage(device, { system: 's' })).toThrow(
      expect.objectContaining({
        code: 'BASE_PARTITION_MISSING',
        context: expect.objectContaining({ missing: ['boot'] }),
      }),
    );
  });

  it('names a logical one too (a GSI without vendor), with both fixes', () => {
    const withVendor = {
      ...device,
      partitions: [...device.partitions, { name: 'vendor', fs: 'ext4', location: 'super', size: 1 << 28 }],
      avb: {
        ...device.avb,
        footers: [...device.avb.footers, { partition: 'vendor', type: 'hashtree', hashAlgorithm: 'sha256' }],
      },
    } as unknown as DeviceProfile;
    let err: { code?: string; message?: string; hint?: string; context?: { missing?: string[] } } = {};
    try {
      checkBaseCoverage(withVendor, { boot: 'b', system: 's' });
    } catch (e) {
      err = e as typeof err;
    }
    expect(err.code).toBe('BASE_PARTITION_MISSING');
    expect(err.context?.missing).toEqual(['vendor']);
    expect(err.message).toContain('vendor (logical)');
    expect(err.hint).toContain("add the device's vendor.img to the base folder");
    expect(err.hint).toMatch(/drop vendor from device\.yaml/);
  });

  it('counts the partitions of a chained vbmeta as signed', () => {
    const chainedOnly = {
      ...device,
      avb: { ...device.avb, footers: device.avb.footers.filter((f) => f.partition === 'boot') },
    } as unknown as DeviceProfile;
    expect(() => checkBaseCoverage(chainedOnly, { boot: 'b' })).toThrow(
      expect.objectContaining({ context: expect.objectContaining({ missing: ['system'] }) }),
    );
  });
});
