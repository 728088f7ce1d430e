import { mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { OmieError } from '../../scripts/errors.ts';
import {
  applyErofsEdits,
  buildErofs,
  type ErofsMetadata,
  ErofsReader,
  extractErofs,
} from '../../scripts/fs/erofs.ts';
import { capabilitiesXattr } from '../../scripts/fs/fs-config.ts';
import { type FsEdit, labelXattr } from '../../scripts/fs/types.ts';
import { mutate, prng, workDir } from '../helpers.ts';

const W = workDir('fs-erofs');
const UUID = '5a6d2c1e-0000-4000-8000-0000000000aa';
const LABEL = 'u:object_r:system_file:s0';
const LONG_LABEL = 'u:object_r:hal_graphics_composer_default_exec:s0';
const x = (label: string) => labelXattr(label).toString('hex');

async function makeTree(dir: string): Promise<ErofsMetadata> {
  await rm(dir, { recursive: true, force: true });
  await mkdir(join(dir, 'priv-app/Gms'), { recursive: true });
  await mkdir(join(dir, 'etc/selinux'), { recursive: true });
  await mkdir(join(dir, 'bin'), { recursive: true });
  // A file larger than a block with a tail (flat inline layout when uncompressed).
  await writeFile(
    join(dir, 'priv-app/Gms/Gms.apk'),
    Buffer.from(Array.from({ length: 10000 }, (_, i) => (i * 7) & 0xff)),
  );
  await writeFile(
    join(dir, 'etc/selinux/product_file_contexts'),
    '/(product|system/product)(/.*)? u:object_r:system_file:s0\n',
  );
  await writeFile(join(dir, 'bin/daemon'), 'ELF');
  await symlink('/system/bin/toybox', join(dir, 'bin/ls'));
  for (let i = 0; i < 200; i++)
    await writeFile(join(dir, `etc/f${String(i).padStart(3, '0')}.xml`), `<x n="${i}"/>\n`);
  return [
    { path: '/', mode: 0o755, uid: 0, gid: 0, xattrs: { 'security.selinux': x(LABEL) } },
    { path: '/bin', mode: 0o751, uid: 0, gid: 2000, xattrs: { 'security.selinux': x(LABEL) } },
    {
      path: '/bin/daemon',
      mode: 0o750,
      uid: 1000,
      gid: 2000,
      xattrs: {
        'security.selinux': x(LONG_LABEL),
        'security.capability': capabilitiesXattr(['NET_BIND_SERVICE']).toString('hex'),
      },
    },
    { path: '/priv-app/Gms/Gms.apk', mode: 0o644, uid: 0, gid: 0, xattrs: { 'security.selinux': x(LABEL) } },
  ];
}

describe.each([false, true])('erofs (compressed: %s)', (compress) => {
  const src = join(W, `src-${compress}`);
  const image = join(W, `p-${compress}.img`);
  beforeAll(async () => {
    await buildErofs(src, image, await makeTree(src), { uuid: UUID, epoch: 1707134400, compress });
  }, 60_000);

  it('reads metadata and xattrs that agree with dump.erofs and fsck.erofs (the oracles)', async () => {
    expect((await execa('fsck.erofs', [image], { reject: false })).exitCode).toBe(0);
    const r = new ErofsReader(image);
    const list = await r.list();
    expect((await r.superblock()).uuid).toBe(UUID);
    const daemon = list.find((e) => e.path === '/bin/daemon')!;
    expect(daemon).toMatchObject({ mode: 0o750, uid: 1000, gid: 2000, label: LONG_LABEL });
    expect(daemon.capabilities).toBe(capabilitiesXattr(['NET_BIND_SERVICE']).toString('hex'));
    expect(list.find((e) => e.path === '/bin/ls')).toMatchObject({
      type: 'symlink',
      target: '/system/bin/toybox',
    });
    expect(list.filter((e) => e.path.startsWith('/etc/f')).length).toBe(200);
    for (const path of ['/bin/daemon', '/priv-app/Gms/Gms.apk', '/etc/f123.xml', '/bin']) {
      const d = await execa('dump.erofs', [`--path=${path}`, image]);
      const e = list.find((y) => y.path === path)!;
      const m = /Uid: (\d+)\s+Gid: (\d+)\s+Access: (\d+)/.exec(d.stdout)!;
      expect([Number(m[1]), Number(m[2]), Number.parseInt(m[3], 8) & 0o7777]).toEqual([e.uid, e.gid, e.mode]);
      if (e.type === 'file') expect(d.stdout).toContain(`Size: ${e.size}`);
    }
    // File data against fsck.erofs extraction (the oracle), and our own extraction against it.
    const out = join(W, `x-${compress}`);
    await rm(out, { recursive: true, force: true });
    await execa('fsck.erofs', [`--extract=${out}`, '--no-preserve', image]);
    const mine = join(W, `xm-${compress}`);
    await extractErofs(image, mine);
    expect((await readFile(join(mine, 'bin/daemon'))).toString()).toBe('ELF');
    for (const path of ['/priv-app/Gms/Gms.apk', '/etc/f007.xml', '/etc/selinux/product_file_contexts']) {
      expect((await r.readFile(path)).equals(await readFile(join(out, path)))).toBe(true);
      expect((await readFile(join(mine, path))).equals(await readFile(join(out, path)))).toBe(true);
    }
    await r.close();
  });

  it('rebuilds after edits keeping owners, modes, labels and capabilities; labels added files', async () => {
    const out = join(W, `edited-${compress}.img`);
    await writeFile(join(W, 'new.apk'), 'NEWAPK');
    const edits: FsEdit[] = [
      { op: 'remove', path: '/priv-app/Gms' },
      { op: 'mkdir', path: '/app', mode: 0o755, uid: 0, gid: 0, label: LABEL },
      { op: 'mkdir', path: '/app/New', mode: 0o755, uid: 0, gid: 0, label: LABEL },
      {
        op: 'write',
        path: '/app/New/New.apk',
        source: join(W, 'new.apk'),
        mode: 0o644,
        uid: 0,
        gid: 0,
        label: LABEL,
      },
      {
        op: 'write',
        path: '/etc/f001.xml',
        source: join(W, 'new.apk'),
        mode: 0o600,
        uid: 1000,
        gid: 1000,
        label: LONG_LABEL,
      },
    ];
    await applyErofsEdits(image, out, edits, { epoch: 1707134400 });
    expect((await execa('fsck.erofs', [out], { reject: false })).exitCode).toBe(0);
    const r = new ErofsReader(out);
    const list = await r.list();
    expect(list.some((e) => e.path.startsWith('/priv-app/Gms'))).toBe(false);
    expect(list.find((e) => e.path === '/app/New/New.apk')).toMatchObject({
      mode: 0o644,
      uid: 0,
      gid: 0,
      label: LABEL,
    });
    expect(list.find((e) => e.path === '/etc/f001.xml')).toMatchObject({
      mode: 0o600,
      uid: 1000,
      label: LONG_LABEL,
    });
    const daemon = list.find((e) => e.path === '/bin/daemon')!;
    expect(daemon).toMatchObject({ mode: 0o750, uid: 1000, gid: 2000, label: LONG_LABEL });
    expect(daemon.capabilities).toBe(capabilitiesXattr(['NET_BIND_SERVICE']).toString('hex'));
    expect((await r.readFile('/app/New/New.apk')).toString()).toBe('NEWAPK');
    expect((await r.superblock()).uuid).toBe(UUID);
    await r.close();
    // Reproducible: the same edit again gives the same bytes.
    const again = join(W, `edited2-${compress}.img`);
    await applyErofsEdits(image, again, edits, { epoch: 1707134400 });
    expect((await readFile(again)).equals(await readFile(out))).toBe(true);
  });
});

describe('erofs reader robustness', () => {
  it('fuzz: mutated images only ever throw OmieError', async () => {
    const src = join(W, 'fuzz-src');
    const image = join(W, 'fuzz.img');
    await buildErofs(src, image, await makeTree(src), { uuid: UUID, epoch: 0 });
    const good = await readFile(image);
    const rnd = prng(60);
    const target = join(W, 'fuzz-case.img');
    const start = Date.now();
    for (let i = 0; i < 400; i++) {
      // Mutate the metadata area (superblock, inodes, dirents), where the parser works.
      const head = mutate(good.subarray(0, 16384), rnd);
      await writeFile(target, Buffer.concat([head, good.subarray(16384)]));
      const r = new ErofsReader(target);
      try {
        const list = await r.list();
        const f = list.find((e) => e.type === 'file' && e.size < 65536);
        if (f)
          await r.readFile(f.path).catch((e) => {
            if (!(e instanceof OmieError)) throw e;
          });
      } catch (e) {
        expect(e).toBeInstanceOf(OmieError);
      } finally {
        await r.close();
      }
    }
    expect(Date.now() - start).toBeLessThan(60_000);
  }, 90_000);
});
