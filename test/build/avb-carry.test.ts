import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  baseRollbackFloors,
  carriedDescriptors,
  checkRollbackFloors,
} from '../../scripts/build/avb-carry.ts';
import { OmieError } from '../../scripts/errors.ts';
import type { DeviceProfile } from '../../scripts/model/index.ts';
import {
  generateRealisticBase,
  REALISTIC_BOOT,
  REALISTIC_LOGICAL,
  REALISTIC_ROLLBACK,
} from '../../scripts/sample/realistic-base.ts';
import { mutate, onceInDir, prng, REALISTIC_BASE_INPUTS, sampleFixture, workDir } from '../helpers.ts';

const dir = workDir('avb-carry');
const baseDir = join(workDir('realbase'), 'base');

/** The realistic device's AVB section, with the footers given. */
function device(footers: string[]): DeviceProfile {
  return {
    file: 'device.yaml',
    avb: {
      footers: footers.map((partition) => ({ partition, type: 'hash', hashAlgorithm: 'sha256' })),
      chained: [
        {
          partition: 'vbmeta_system',
          rollbackIndexLocation: 1,
          partitions: ['system', 'system_ext', 'product'],
        },
      ],
    },
  } as unknown as DeviceProfile;
}

beforeAll(async () => {
  await sampleFixture();
  await onceInDir(baseDir, REALISTIC_BASE_INPUTS, async () => {
    await generateRealisticBase({ outDir: baseDir });
  });
}, 900_000);

describe('descriptors carried from the base vbmeta', () => {
  const images = () => ({
    vbmeta: join(baseDir, 'vbmeta.img'),
    vbmeta_system: join(baseDir, 'vbmeta_system.img'),
  });

  it('follows the chain and files each descriptor under the vbmeta that now lists its partition', async () => {
    const all = [...REALISTIC_BOOT, ...REALISTIC_LOGICAL];
    const keep = ['dtbo', 'product'];
    const got = await carriedDescriptors(device(all.filter((p) => !keep.includes(p))), images(), new Set());
    const names = (k: string) =>
      (got.get(k) ?? []).map((d) => ('partitionName' in d ? d.partitionName : '?')).sort();
    expect(names('vbmeta')).toEqual(['dtbo']);
    expect(names('vbmeta_system')).toEqual(['product']);
  });

  it('nothing to carry without a base vbmeta, or when every partition is re-signed', async () => {
    expect((await carriedDescriptors(device([]), {}, new Set())).size).toBe(0);
    const all = [...REALISTIC_BOOT, ...REALISTIC_LOGICAL];
    expect((await carriedDescriptors(device(all), images(), new Set())).size).toBe(0);
  });

  it('rollback floors per location come from the base vbmetas; a profile below them is refused', async () => {
    const floors = await baseRollbackFloors(images());
    expect(floors.get(0)).toBe(BigInt(REALISTIC_ROLLBACK.vbmeta));
    expect(floors.get(1)).toBe(BigInt(REALISTIC_ROLLBACK.vbmetaSystem));
    const dev = (n: number) => ({ file: 'd.yaml', avb: { rollbackIndex: n } }) as unknown as DeviceProfile;
    expect(() => checkRollbackFloors(dev(REALISTIC_ROLLBACK.vbmetaSystem), floors)).not.toThrow();
    expect(() => checkRollbackFloors(dev(5), floors)).toThrow(
      expect.objectContaining({
        code: 'AVB_ROLLBACK_BELOW_BASE',
        context: expect.objectContaining({ base: { '1': String(REALISTIC_ROLLBACK.vbmetaSystem) } }),
      }),
    );
  });

  it('mutated base vbmeta images give a result or a typed error, never a crash (fuzz, 300 cases)', async () => {
    const original = readFileSync(join(baseDir, 'vbmeta.img'));
    const copy = join(dir, 'vbmeta.img');
    copyFileSync(join(baseDir, 'vbmeta_system.img'), join(dir, 'vbmeta_system.img'));
    const rnd = prng(0x5eed);
    for (let i = 0; i < 300; i++) {
      writeFileSync(copy, mutate(original, rnd));
      try {
        await carriedDescriptors(
          device(['boot']),
          { vbmeta: copy, vbmeta_system: join(dir, 'vbmeta_system.img') },
          new Set(),
        );
      } catch (e) {
        expect(e, `case ${i}: ${(e as Error).stack}`).toBeInstanceOf(OmieError);
      }
    }
  }, 120_000);
});
