import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { addHashFooter, makeVbmetaImage } from '../../scripts/formats/avb/index.ts';
import { omie } from '../helpers.ts';
import { DIR, makeImage, testKey } from './fixtures.ts';

const D = join(DIR, 'inspect');

beforeAll(async () => {
  await mkdir(D, { recursive: true });
  const k = await testKey(2048);
  await makeVbmetaImage(join(D, 'vbmeta.img'), {
    algorithm: 'SHA256_RSA2048',
    key: k,
    rollbackIndex: 12,
    props: { 'com.omie.os_version': '14' },
  });
  // A tiny "ext4": the superblock magic at 1080 is all the detector looks at.
  const ext = Buffer.alloc(64 * 1024);
  ext.writeUInt16LE(0xef53, 1080);
  await writeFile(join(D, 'vendor.img'), ext);
  await addHashFooter(join(D, 'vendor.img'), { partitionName: 'vendor', salt: '01' });
  await makeImage(join(D, 'plain.bin'), 8192, 3);
}, 120_000);

describe('omie inspect', () => {
  it('recognises a vbmeta image and prints avbtool-style info with --json', async () => {
    const r = await omie(['--json', 'inspect', join(D, 'vbmeta.img')]);
    expect(r.exitCode).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.kind).toBe('vbmeta');
    expect(j.result.info.algorithm).toBe('SHA256_RSA2048');
    expect(j.result.info.rollbackIndex).toBe('12');
    expect(j.result.signature).toBe('valid');
    expect(j.result.info.descriptors[0]).toMatchObject({
      kind: 'property',
      key: 'com.omie.os_version',
      valueText: '14',
      value: '3134',
    });
  });

  it('recognises an image with an AVB footer and what is under it', async () => {
    const r = await omie(['--json', 'inspect', join(D, 'vendor.img')]);
    expect(r.exitCode).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.kind).toBe('avb-footer');
    expect(j.result.contentKind).toBe('ext4');
    expect(j.result.signature).toBe('unsigned');
    expect(j.result.info.footer.originalImageSize).toBe(64 * 1024);
    expect(j.result.info.descriptors[0]).toMatchObject({ kind: 'hash', partitionName: 'vendor', salt: '01' });
    const human = await omie(['inspect', join(D, 'vendor.img')]);
    expect(human.stdout).toContain('Hash descriptor:');
  });

  it('does not claim other files', async () => {
    const r = await omie(['--json', 'inspect', join(D, 'plain.bin')]);
    expect(r.stdout).not.toMatch(/"kind": "(vbmeta|avb-footer)"/);
  });
});
