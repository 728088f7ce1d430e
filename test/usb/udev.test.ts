/**
 * The udev rule evaluator behind `omie doctor`'s USB checks: Debian's own 51-android.rules (the
 * file the doctor recommends) as the real input, and small rule sets for the language's corners.
 */
import { readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  evaluateUdevRules,
  loadUdevRules,
  type RulesFile,
  rulesGrantAccess,
} from '../../scripts/host/udev.ts';
import { workDir } from '../helpers.ts';
import { hostFile } from '../host-tools.ts';

const DEBIAN_RULES = '/lib/udev/rules.d/51-android.rules';
const RULES = hostFile(DEBIAN_RULES);

const rules = (text: string, path = '/etc/udev/rules.d/99-test.rules'): RulesFile[] => [{ path, text }];
const google = { idVendor: '18d1', idProduct: '4ee0' };
const user = (groups: string[] = []) => ({ name: 'alice', uid: 1000, groups });

describe('udev rules', () => {
  it.skipIf(!RULES.present)(
    `Debian's 51-android.rules: group plugdev and uaccess for listed vendors and products only ${RULES.reason}`,
    () => {
      const debian = rules(readFileSync(DEBIAN_RULES, 'utf8'), DEBIAN_RULES);
      const g = evaluateUdevRules(debian, google);
      expect(g).toMatchObject({ mode: '0660', group: 'plugdev', tags: ['uaccess'] });
      // The rule that grants it is the one at the end of the file, reached through ENV{adb_user}.
      const line = readFileSync(DEBIAN_RULES, 'utf8')
        .split('\n')
        .findIndex((l) => l.startsWith('ENV{adb_user}=="yes", MODE='));
      expect(g.setBy).toContain(`${DEBIAN_RULES}:${line + 1}`);
      expect(rulesGrantAccess(g, user(['plugdev']))).toMatchObject({ ok: true, via: 'group plugdev' });
      expect(rulesGrantAccess(g, user())).toMatchObject({ ok: true, viaGroup: 'plugdev' });
      expect(rulesGrantAccess(g, user()).via).toMatch(/uaccess/);
      // ASUS is listed product by product: a listed one is covered, another one is not.
      expect(evaluateUdevRules(debian, { idVendor: '0b05', idProduct: '4c80' }).group).toBe('plugdev');
      expect(evaluateUdevRules(debian, { idVendor: '0b05', idProduct: '4ee0' })).toEqual({
        tags: [],
        setBy: [],
      });
      expect(evaluateUdevRules(debian, { idVendor: '1234', idProduct: '5678' }).mode).toBeUndefined();
    },
  );

  it('follows GOTO/LABEL, ENV, patterns with alternatives, ATTRS and := finality', () => {
    const r = rules(`
# comment
SUBSYSTEM!="usb", GOTO="end"
ATTRS{idVendor}=="18d1|04e8", ATTR{idProduct}=="4e[e-f]?", ENV{android}="1"
ENV{android}=="1", ACTION=="add", MODE:="0660", GROUP="adbusers"
ENV{android}=="1", MODE="0666"
ATTR{idVendor}=="18d1", GOTO="end"
ATTR{idVendor}=="18d1", GROUP="never"
LABEL="end"
KERNEL=="1-*", ATTR{idVendor}=="18d1", \\
  TAG+="uaccess", TAG+="seat"
TAG=="seat", TAG-="seat"
`);
    const o = evaluateUdevRules(r, { ...google, kernel: '1-1' });
    expect(o).toMatchObject({ mode: '0660', group: 'adbusers', tags: ['uaccess'] });
    expect(o.setBy.map((w) => Number(w.split(':').pop()))).toEqual([5, 5, 10]);
    expect(evaluateUdevRules(r, { idVendor: '04e8', idProduct: '4ee0' }).group).toBe('adbusers');
    expect(evaluateUdevRules(r, { idVendor: '04e8', idProduct: '6860' }).group).toBeUndefined();
  });

  it('takes a rule it cannot evaluate as not matching, so the verdict errs on "no access"', () => {
    const r = rules('ATTR{idVendor}=="18d1", PROGRAM=="/bin/true", MODE="0666"\n');
    expect(evaluateUdevRules(r, google).mode).toBeUndefined();
    expect(rulesGrantAccess(evaluateUdevRules(r, google), user(['plugdev'])).ok).toBe(false);
  });

  it('decides access from mode, owner, group and uaccess', () => {
    const grant = (text: string, u = user()) => rulesGrantAccess(evaluateUdevRules(rules(text), google), u);
    expect(grant('ATTR{idVendor}=="18d1", MODE="0666"')).toMatchObject({ ok: true, via: 'everyone' });
    expect(grant('ATTR{idVendor}=="18d1", MODE="0600", OWNER="alice"')).toMatchObject({
      ok: true,
      via: 'owner',
    });
    expect(grant('ATTR{idVendor}=="18d1", MODE="0640", GROUP="plugdev"', user(['plugdev'])).ok).toBe(false);
    // udev's default mode for usb_device nodes, 0664, lets the group write
    expect(grant('ATTR{idVendor}=="18d1", GROUP="plugdev"', user(['plugdev'])).via).toBe('group plugdev');
    expect(grant('', user(['plugdev'])).ok).toBe(false);
    expect(grant('', { name: 'root', uid: 0, groups: [] })).toMatchObject({ ok: true, via: 'root' });
  });

  it('reads the rules directories as udevd does: sorted by name, /etc hides a file of the same name', async () => {
    const root = join(workDir('usb'), 'udev-dirs');
    const etc = join(root, 'etc');
    const lib = join(root, 'lib');
    await mkdir(etc, { recursive: true });
    await mkdir(lib, { recursive: true });
    await writeFile(join(lib, '51-android.rules'), 'ATTR{idVendor}=="18d1", MODE="0666"\n');
    await writeFile(join(etc, '51-android.rules'), 'ATTR{idVendor}=="18d1", MODE="0660", GROUP="plugdev"\n');
    await writeFile(join(lib, '40-early.rules'), 'ATTR{idVendor}=="18d1", OWNER="bob"\n');
    await writeFile(join(lib, 'README'), 'not rules');
    const files = loadUdevRules([etc, lib, join(root, 'missing')]);
    expect(files.map((f) => f.path)).toEqual([join(lib, '40-early.rules'), join(etc, '51-android.rules')]);
    expect(evaluateUdevRules(files, google)).toMatchObject({ mode: '0660', group: 'plugdev', owner: 'bob' });
  });
});
