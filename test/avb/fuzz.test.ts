import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { OmieError } from '../../scripts/errors.ts';
import {
  encodeFooter,
  FOOTER_SIZE,
  formatAvbInfo,
  generateVbmetaBlob,
  infoImage,
  parseFooter,
  parseVbmeta,
  readAvbPublicKey,
  verifyVbmeta,
} from '../../scripts/formats/avb/index.ts';
import { mutate, prng } from '../helpers.ts';
import { DIR, testKey } from './fixtures.ts';

const D = join(DIR, 'fuzz');
let blob: Buffer;

beforeAll(async () => {
  await mkdir(D, { recursive: true });
  const k = await testKey(2048);
  const res = await generateVbmetaBlob(
    {
      algorithm: 'SHA256_RSA2048',
      key: k,
      props: { 'ro.x': 'y', bin: Buffer.from([0, 1, 2]) },
      kernelCmdlines: ['console=ttyS0'],
      chainPartitions: [{ partitionName: 'boot', rollbackIndexLocation: 1, publicKey: readAvbPublicKey(k) }],
      publicKeyMetadata: Buffer.from('md'),
    },
    [
      {
        kind: 'hash',
        imageSize: 4096,
        hashAlgorithm: 'sha256',
        partitionName: 'dtbo',
        salt: Buffer.alloc(32, 1),
        digest: Buffer.alloc(32, 2),
        flags: 0,
      },
      {
        kind: 'hashtree',
        dmVerityVersion: 1,
        imageSize: 8192,
        treeOffset: 8192,
        treeSize: 4096,
        dataBlockSize: 4096,
        hashBlockSize: 4096,
        fecNumRoots: 0,
        fecOffset: 0,
        fecSize: 0,
        hashAlgorithm: 'sha1',
        partitionName: 'system',
        salt: Buffer.alloc(20, 3),
        rootDigest: Buffer.alloc(20, 4),
        flags: 0,
      },
      { kind: 'unknown', tag: 99n, data: Buffer.from('future descriptor') },
    ],
  );
  blob = res.blob;
});

function onlyTyped(fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof OmieError)) throw new Error(`untyped error: ${(e as Error).stack}`);
  }
}

describe('fuzzing AVB parsers', () => {
  it('the seed blob round-trips and verifies', () => {
    const p = parseVbmeta(blob);
    expect(p.descriptors.map((d) => d.kind)).toEqual([
      'hash',
      'hashtree',
      'unknown',
      'chain_partition',
      'property',
      'property',
      'kernel_cmdline',
    ]);
    expect(verifyVbmeta(p).signed).toBe(true);
  });

  it('3000 mutated vbmeta blobs: parse/verify/format throw only typed errors', () => {
    const rnd = prng(0xa5b0);
    const t0 = Date.now();
    let parsed = 0;
    for (let i = 0; i < 3000; i++) {
      const m = mutate(blob, rnd);
      onlyTyped(() => {
        const p = parseVbmeta(m);
        parsed++;
        formatAvbInfo({
          image: 'x',
          minimumLibavbVersion: '1.0',
          headerBlockSize: 256,
          authenticationBlockSize: p.header.authenticationDataBlockSize,
          auxiliaryBlockSize: p.header.auxiliaryDataBlockSize,
          algorithm: 'NONE',
          rollbackIndex: p.header.rollbackIndex,
          flags: p.header.flags,
          rollbackIndexLocation: p.header.rollbackIndexLocation,
          releaseString: p.header.releaseString,
          descriptors: p.descriptors,
        });
        verifyVbmeta(p);
      });
    }
    expect(parsed).toBeGreaterThan(100); // the mutations do not all break the structure
    expect(Date.now() - t0).toBeLessThan(30_000);
  });

  it('2000 mutated footers: typed errors only, offsets checked against the image size', () => {
    const footer = encodeFooter({ originalImageSize: 4096, vbmetaOffset: 4096, vbmetaSize: 1000 });
    const rnd = prng(77);
    for (let i = 0; i < 2000; i++)
      onlyTyped(() => parseFooter(mutate(footer, rnd).subarray(0, FOOTER_SIZE), { imageSize: 16384 }));
    expect(() =>
      parseFooter(encodeFooter({ originalImageSize: 4096, vbmetaOffset: 1 << 30, vbmetaSize: 10 }), {
        imageSize: 16384,
      }),
    ).toThrow(OmieError);
  });

  it('300 mutated footer images read from disk: typed errors only', async () => {
    const rnd = prng(4242);
    const base = Buffer.concat([Buffer.alloc(4096, 7), blob, Buffer.alloc(4096 - (blob.length % 4096))]);
    const end = Buffer.alloc(4096);
    encodeFooter({ originalImageSize: 4096, vbmetaOffset: 4096, vbmetaSize: blob.length }).copy(
      end,
      4096 - 64,
    );
    const image = Buffer.concat([base, end]);
    const p = join(D, 'f.img');
    for (let i = 0; i < 300; i++) {
      // Mutate the vbmeta region and the footer, keep the data.
      const m = Buffer.concat([image.subarray(0, 4096), mutate(image.subarray(4096), rnd)]);
      await writeFile(p, m);
      try {
        await infoImage(p);
      } catch (e) {
        if (!(e instanceof OmieError)) throw e;
      }
    }
  });
});
