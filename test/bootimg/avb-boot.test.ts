import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { addHashFooter } from '../../scripts/formats/avb/sign.ts';
import { omie, workDir } from '../helpers.ts';

describe('omie inspect on a boot image with an AVB footer', () => {
  it('shows the AVB footer and the boot image header together', async () => {
    const dir = workDir('bootimg-avb');
    writeFileSync(join(dir, 'kernel'), randomBytes(40_000));
    writeFileSync(join(dir, 'ramdisk'), randomBytes(20_000));
    const img = join(dir, 'boot.img');
    await execa('mkbootimg', [
      '--kernel',
      join(dir, 'kernel'),
      '--ramdisk',
      join(dir, 'ramdisk'),
      '--header_version',
      '1',
      '--os_version',
      '14.0.0',
      '--os_patch_level',
      '2026-01',
      '-o',
      img,
    ]);
    await addHashFooter(img, { partitionName: 'boot', partitionSize: 1024 * 1024, salt: '00'.repeat(32) });
    const r = await omie(['inspect', img, '--json']);
    expect(r.exitCode, r.stderr).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.kind).toBe('avb-footer');
    expect(j.result.contentKind).toBe('boot');
    expect(j.result.bootImage).toMatchObject({
      kind: 'boot',
      headerVersion: 1,
      osVersion: '14.0.0',
      osPatchLevel: '2026-01',
    });
  });
});
