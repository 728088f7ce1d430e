/** The sim's device shell: the sh subset hosts (and `omie check --device`) run over adb. */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { runShell, type ShellContext } from '../../scripts/sim/adb-shell.ts';
import { bootAndroid } from '../../scripts/sim/boot.ts';
import { defaultSimProfile, SimState } from '../../scripts/sim/state.ts';
import { DeviceView } from '../../scripts/sim/view.ts';
import { workDir } from '../helpers.ts';

let ctx: ShellContext;
const run = async (line: string) => {
  const r = await runShell(line, ctx);
  return { out: r.stdout.toString(), err: r.stderr.toString(), code: r.exitCode };
};

beforeAll(async () => {
  const dir = join(workDir('sim'), `shell-${process.pid}`);
  rmSync(dir, { recursive: true, force: true });
  const state = await SimState.create(dir, defaultSimProfile({ serial: 'SHELL001', unlocked: false }));
  // A locked device fresh from the factory: its own OEM key signed what it boots (green).
  await bootAndroid(state);
  ctx = { view: new DeviceView(state), reboot: async () => {} };
});

describe('device shell', () => {
  it('runs for loops with [ -d ] tests over mount points', async () => {
    expect(await run('for d in /system /vendor /data /proc; do [ -d $d ] && echo $d; done')).toMatchObject({
      out: '/data\n/proc\n',
    });
  });

  it('if/elif/else, variables, $? and integer/string tests', async () => {
    expect((await run('if [ 1 -lt 2 ]; then echo yes; else echo no; fi')).out).toBe('yes\n');
    expect((await run('if false; then echo a; elif [ "x" = "x" ]; then echo b; fi; echo $?')).out).toBe(
      'b\n0\n',
    );
    expect((await run('X=5; echo "x=$X"; for i in a b; do echo $i$X; done')).out).toBe('x=5\na5\nb5\n');
    expect((await run('[ -z "" ] && [ -n a ] && [ ! -e /nope ] && echo ok')).out).toBe('ok\n');
    expect((await run('[ 1 -eq')).code).not.toBe(0);
    expect((await run('for x in 1 2; do exit 3; done; echo never')).code).toBe(3);
  });

  it('reads file-or-marker the way the conformance device view does', async () => {
    expect((await run('[ -f /proc/cmdline ] && cat /proc/cmdline || echo __OMIE_NO_FILE__')).out).toContain(
      'androidboot.verifiedbootstate=green',
    );
    expect(
      (await run("[ -f '/system/etc/x.xml' ] && cat '/system/etc/x.xml' || echo __OMIE_NO_FILE__")).out,
    ).toBe('__OMIE_NO_FILE__\n');
  });

  it('ls -1ap marks directories, /dev/block/by-name lists physical partitions and super', async () => {
    expect((await run('ls -1ap /')).out).toBe('./\n../\napex/\ndata/\ndev/\nproc/\nsdcard/\nstorage/\n');
    const byName = (await run('ls /dev/block/by-name/')).out.split('\n');
    expect(byName).toContain('boot_a');
    expect(byName).toContain('super');
    expect(byName).not.toContain('system_a'); // logical: inside super
    expect((await run('ls -l /proc')).out).toMatch(/^-r--r--r-- 1 root root +\d+ \S+ \S+ cmdline\n$/);
  });

  it('reports syntax errors and unknown commands like mksh', async () => {
    expect(await run('done')).toMatchObject({ code: 2, err: expect.stringContaining('syntax error') });
    expect(await run('if true; then')).toMatchObject({ code: 2 });
    expect(await run('frob')).toMatchObject({ code: 127, err: '/system/bin/sh: frob: not found\n' });
    expect(await run('echo a | grep b || echo nomatch')).toMatchObject({ out: 'nomatch\n', code: 0 });
  });

  it('redirects into /data, not into read-only partitions', async () => {
    expect((await run('echo hi > /data/local/tmp/f; cat /data/local/tmp/f')).out).toBe('hi\n');
    expect((await run('echo more >> /data/local/tmp/f; cat /data/local/tmp/f')).out).toBe('hi\nmore\n');
    expect((await run('echo x > /system/f')).code).toBe(1);
    expect((await run('nope 2>/dev/null; echo $?')).out).toBe('127\n');
    expect((await run('nope 2>&1')).out).toContain('not found');
  });
});
