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

  it('names a physical partition the profile signs but the base lacks; a missing logical one is fine', () => {
    expect(() => checkBaseCoverage(device, { system: 's' })).toThrow(
      expect.objectContaining({
        code: 'BASE_PARTITION_MISSING',
        context: expect.objectContaining({ missing: ['boot'] }),
      }),
    );
    expect(() => checkBaseCoverage(device, { boot: 'b' })).not.toThrow();
  });
});
