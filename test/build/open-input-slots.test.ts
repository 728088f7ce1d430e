import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openInput } from '../../scripts/conformance/open-input.ts';
import { workDir } from '../helpers.ts';

describe('a folder of images dumped from an A/B device (system_a.img, boot_b.img…)', () => {
  const dir = join(workDir('open-input-slots'), 'dump');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  for (const f of ['system_a', 'system_b', 'boot_a', 'boot_b', 'vendor_b', 'vbmeta'])
    writeFileSync(join(dir, `${f}.img`), Buffer.from(f));

  it('names partitions without the slot suffix and takes slot a by default', async () => {
    const r = await openInput(dir, join(dir, '..', 'work-a'));
    expect(Object.keys(r.images).sort()).toEqual(['boot', 'system', 'vbmeta', 'vendor']);
    expect(r.images.system).toBe(join(dir, 'system_a.img'));
    expect(r.images.boot).toBe(join(dir, 'boot_a.img'));
    // Only slot b has vendor: it is the one there is.
    expect(r.images.vendor).toBe(join(dir, 'vendor_b.img'));
  });

  it('takes slot b when asked', async () => {
    const r = await openInput(dir, join(dir, '..', 'work-b'), { slot: 'b' });
    expect(r.images.system).toBe(join(dir, 'system_b.img'));
    expect(r.images.boot).toBe(join(dir, 'boot_b.img'));
  });
});
