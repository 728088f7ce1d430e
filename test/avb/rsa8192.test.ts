import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import {
  type AvbAlgorithmName,
  formatAvbInfo,
  infoImage,
  makeVbmetaImage,
  verifyImage,
} from '../../scripts/formats/avb/index.ts';
import { AVBTOOL } from '../oracles.ts';
import { avbtool, DIR, testKey } from './fixtures.ts';

// Separate file: an 8192-bit key takes tens of seconds to generate once (then it is cached).
const D = join(DIR, 'rsa8192');
let k8192: string;
beforeAll(async () => {
  await mkdir(join(D, 'ref'), { recursive: true });
  k8192 = await testKey(8192);
}, 300_000);

describe('RSA-8192 algorithms', () => {
  for (const alg of ['SHA256_RSA8192', 'SHA512_RSA8192'] as AvbAlgorithmName[]) {
    const ours = join(D, `${alg}.img`);
    it(`${alg}: signs and verifies with an 8192-bit key`, async () => {
      await makeVbmetaImage(ours, { algorithm: alg, key: k8192, rollbackIndex: 9, props: { a: 'b' } });
      const v = await verifyImage(ours, { expectedPublicKey: k8192 });
      expect(v.algorithm).toBe(alg);
    });

    it.skipIf(!AVBTOOL.present)(
      `${alg}: bytes equal avbtool's, and avbtool verifies ours ${AVBTOOL.reason}`,
      async () => {
        await makeVbmetaImage(ours, { algorithm: alg, key: k8192, rollbackIndex: 9, props: { a: 'b' } });
        const ref = join(D, 'ref', `${alg}.img`);
        await avbtool([
          'make_vbmeta_image',
          '--output',
          ref,
          '--algorithm',
          alg,
          '--key',
          k8192,
          '--rollback_index',
          '9',
          '--prop',
          'a:b',
        ]);
        expect((await readFile(ours)).equals(await readFile(ref))).toBe(true);
        expect(formatAvbInfo(await infoImage(ours))).toBe(await avbtool(['info_image', '--image', ours]));
        await avbtool(['verify_image', '--image', ours, '--key', k8192]);
      },
    );
  }
});
