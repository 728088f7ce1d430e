import { mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { OmieError } from '../../scripts/errors.ts';
import {
  applyExt4Edits,
  createExt4,
  Ext4Reader,
  ext4Info,
  parseEaList,
  parseLsP,
} from '../../scripts/fs/ext4.ts';
import { capabilitiesXattr, capabilityNames } from '../../scripts/fs/fs-config.ts';
import { detectFilesystem, openFilesystem } from '../../scripts/fs/index.ts';
import { FileContexts } from '../../scripts/fs/selinux.ts';
import { workDir } from '../helpers.ts';

const W = workDir('fs-ext4');
const FC = FileContexts.parse(
  [
    '/ u:object_r:rootfs:s0',
    '/system(/.*)? u:object_r:system_file:s0',
    '/system/bin/logd u:object_r:logd_exec:s0',
    // Longer than the 40 bytes debugfs prints inline with ea_list: read back with ea_get -x.
    '/system/bin/hw/android\\.hardware\\.graphics\\.composer@2\\.4-service u:object_r:hal_graphics_composer_default_exec:s0',
  ].join('\n'),
);
const EPOCH = 1707134400;

async function makeSrc(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  await mkdir(join(dir, 'system/bin/hw'), { recursive: true });
  await mkdir(join(dir, 'system/app/Old'), { recursive: true });
  await writeFile(join(dir, 'system/build.prop'), 'ro.build.type=userdebug\n');
  await writeFile(join(dir, 'system/bin/logd'), 'ELF-logd');
  await writeFile(join(dir, 'system/bin/hw/android.hardware.graphics.composer@2.4-service'), 'ELF-hwc');
  await writeFile(join(dir, 'system/app/Old/Old.apk'), Buffer.alloc(20000, 3));
  await writeFile(join(dir, 'system/app/Old/with space.txt'), 'spaces in names');
  await symlink('/system/bin/logd', join(dir, 'system/bin/log-link'));
}

async function create(image: string): Promise<void> {
  await makeSrc(join(W, 'src'));
  await createExt4(join(W, 'src'), image, {
    uuid: '11111111-2222-4333-8444-555555555555',
    mountPoint: '/',
    epoch: EPOCH,
    fileContexts: FC,
    fsConfig: [
      { path: '/system/bin', mode: 0o751, uid: 0, gid: 2000 },
      { path: '/system/bin/*', mode: 0o755, uid: 0, gid: 2000 },
      {
        path: '/system/bin/logd',
        mode: 0o550,
        uid: 1036,
        gid: 1036,
        capabilities: ['SYSLOG', 'AUDIT_CONTROL', 'SETGID'],
      },
    ],
  });
}

describe('ext4 through e2fsprogs', () => {
  const image = join(W, 'a.img');
  beforeAll(async () => create(image), 60_000);

  it('creates from a directory with owners, modes, labels and capabilities; e2fsck -fn is clean', async () => {
    expect(await detectFilesystem(image)).toBe('ext4');
    const r = await execa('e2fsck', ['-fn', image], { reject: false });
    expect(r.exitCode).toBe(0);
    const fs = await openFilesystem(image);
    const logd = (await fs.stat('/system/bin/logd'))!;
    expect(logd).toMatchObject({
      type: 'file',
      mode: 0o550,
      uid: 1036,
      gid: 1036,
      label: 'u:object_r:logd_exec:s0',
    });
    expect(capabilityNames(logd.capabilities!)).toEqual(['SETGID', 'AUDIT_CONTROL', 'SYSLOG']);
    expect(logd.capabilities).toBe(capabilitiesXattr(['SYSLOG', 'AUDIT_CONTROL', 'SETGID']).toString('hex'));
    expect((await fs.stat('/system/bin'))!).toMatchObject({ mode: 0o751, uid: 0, gid: 2000 });
    expect((await fs.stat('/system/bin/hw/android.hardware.graphics.composer@2.4-service'))!.label).toBe(
      'u:object_r:hal_graphics_composer_default_exec:s0',
    );
    expect((await fs.stat('/system/bin/log-link'))!).toMatchObject({
      type: 'symlink',
      target: '/system/bin/logd',
    });
    expect((await fs.stat('/'))!.label).toBe('u:object_r:rootfs:s0');
    expect((await fs.readFile('/system/app/Old/with space.txt')).toString()).toBe('spaces in names');
    // Cross-check against debugfs's own stat output (the oracle: what e2fsprogs reads from the inode).
    const st = await execa('debugfs', ['-R', 'stat /system/bin/logd', image]);
    expect(st.stdout).toMatch(/User:\s+1036\s+Group:\s+1036/);
    expect(st.stdout).toMatch(/Mode:\s+0550/);
  });

  it('is reproducible: the same tree and options give the same bytes', async () => {
    const b = join(W, 'b.img');
    await create(b);
    const { stdout } = await execa('cmp', [image, b], { reject: false });
    expect(stdout).toBe('');
  });

  it('applies edits in one session: recursive remove, mkdir, write, symlink, setattr; grows when needed', async () => {
    const img = join(W, 'edit.img');
    await create(img);
    const before = await ext4Info(img);
    const big = join(W, 'big.bin');
    await writeFile(big, Buffer.alloc(before.freeBlocks * before.blockSize + 4 * 1024 * 1024, 7));
    await applyExt4Edits(
      img,
      [
        { op: 'remove', path: '/system/app/Old' },
        {
          op: 'mkdir',
          path: '/system/priv-app',
          mode: 0o755,
          uid: 0,
          gid: 0,
          label: 'u:object_r:system_file:s0',
        },
        {
          op: 'mkdir',
          path: '/system/priv-app/New',
          mode: 0o755,
          uid: 0,
          gid: 0,
          label: 'u:object_r:system_file:s0',
        },
        {
          op: 'write',
          path: '/system/priv-app/New/New.apk',
          source: big,
          mode: 0o644,
          uid: 0,
          gid: 0,
          label: 'u:object_r:system_file:s0',
        },
        {
          op: 'write',
          path: '/system/build.prop',
          source: join(W, 'src/system/build.prop'),
          mode: 0o600,
          uid: 1000,
          gid: 1000,
          label: 'u:object_r:system_file:s0',
        },
        {
          op: 'symlink',
          path: '/system/bin/sh',
          target: 'logd',
          uid: 0,
          gid: 2000,
          label: 'u:object_r:system_file:s0',
        },
        { op: 'setattr', path: '/system/bin/logd', capabilities: null },
      ],
      { epoch: EPOCH },
    );
    const after = await ext4Info(img);
    expect(after.blockCount).toBeGreaterThan(before.blockCount);
    expect((await execa('e2fsck', ['-fn', img], { reject: false })).exitCode).toBe(0);
    const fs = new Ext4Reader(img);
    expect(await fs.exists('/system/app/Old')).toBe(false);
    expect(await fs.exists('/system/app/Old/Old.apk')).toBe(false);
    expect((await fs.stat('/system/priv-app/New/New.apk'))!).toMatchObject({
      mode: 0o644,
      uid: 0,
      gid: 0,
      label: 'u:object_r:system_file:s0',
      size: Buffer.byteLength(await import('node:fs/promises').then((m) => m.readFile(big))),
    });
    expect((await fs.stat('/system/build.prop'))!).toMatchObject({ mode: 0o600, uid: 1000, gid: 1000 });
    expect((await fs.stat('/system/bin/sh'))!).toMatchObject({ type: 'symlink', target: 'logd', gid: 2000 });
    const logd = (await fs.stat('/system/bin/logd'))!;
    expect(logd.capabilities).toBeUndefined();
    expect(logd.label).toBe('u:object_r:logd_exec:s0');
  });

  it('shrinks to fit, and unshares blocks first on images with the shared_blocks feature', async () => {
    const img = join(W, 'shared.img');
    await create(img);
    // Mark the image as deduplicated (e2fsdroid -s sets this read-only-compat feature).
    await execa('debugfs', ['-w', '-R', 'feature shared_blocks', img]);
    expect((await ext4Info(img)).features).toContain('shared_blocks');
    const before = await ext4Info(img);
    await applyExt4Edits(img, [{ op: 'remove', path: '/system/app/Old' }], { epoch: EPOCH, shrink: true });
    const after = await ext4Info(img);
    expect(after.features).not.toContain('shared_blocks');
    expect(after.blockCount).toBeLessThan(before.blockCount);
    expect((await execa('e2fsck', ['-fn', img], { reject: false })).exitCode).toBe(0);
  });

  it('reports bad edits as typed errors', async () => {
    const img = join(W, 'bad.img');
    await create(img);
    await expect(applyExt4Edits(img, [{ op: 'remove', path: '/nope' }])).rejects.toThrow(OmieError);
    await expect(
      applyExt4Edits(img, [
        {
          op: 'write',
          path: '/no/parent/x',
          source: join(W, 'src/system/build.prop'),
          mode: 0o644,
          uid: 0,
          gid: 0,
        },
      ]),
    ).rejects.toThrow(/parent directory/);
    await expect(
      applyExt4Edits(img, [{ op: 'mkdir', path: '/sys\ntem', mode: 0o755, uid: 0, gid: 0 }]),
    ).rejects.toThrow(OmieError);
  });

  it('parses debugfs listings and xattr renderings', () => {
    expect(parseLsP('/2/040755/0/0/.//\n/14/100644/1000/2000/Foo.apk/3/\n/0/000000/0/0//0/\n')).toEqual([
      { ino: 2, mode: 0o40755, uid: 0, gid: 0, name: '.', size: 0 },
      { ino: 14, mode: 0o100644, uid: 1000, gid: 2000, name: 'Foo.apk', size: 3 },
      { ino: 0, mode: 0, uid: 0, gid: 0, name: '', size: 0 },
    ]);
    const ea = parseEaList(
      'Extended attributes:\n  security.selinux (26) = "u:object_r:system_file:s0\\000"\n  security.capability (20) = 01 00 00 02 00 20 00 00 00 00 00 00 00 00 00 00 00 00 00 00 \n  security.selinux (65)\n',
    );
    expect(ea[0].value!.toString()).toBe('u:object_r:system_file:s0\0');
    expect(ea[1].value!.toString('hex')).toBe('0100000200200000000000000000000000000000');
    expect(ea[2]).toEqual({ name: 'security.selinux', length: 65, value: null });
  });
});
