/**
 * Parsers of real device output (generated here from what toybox getprop, PackageManagerShellCommand
 * and the adb server print): multi-line property values, Android 11+ APK paths with '=', pm
 * suffixes, adb device states. Fuzzed: never a throw, never a wrong split.
 */
import { describe, expect, it } from 'vitest';
import { normalizeAdbState, parseGetprop, parsePmList } from '../../scripts/device/adb-output.ts';
import { prng } from '../helpers.ts';

describe('getprop output', () => {
  it('multi-line values, brackets inside values, empty values, CRLF from a pty', () => {
    const text = [
      '[dalvik.vm.heapsize]: [512m]',
      '[persist.sys.banner]: [first line',
      'second line]',
      '[ro.build.description]: [oriole-user 14 AP2A.240805.005 12025142 release-keys]',
      '[ro.odd]: [a]b]',
      '[ro.trailing]: [ends with ]]',
      '[ro.empty]: []',
      '[ro.multi.bracket]: [x]',
      'y]',
      '[ro.serialno]: [1A2B3C]',
      '',
    ].join('\n');
    const p = parseGetprop(text);
    expect(p['dalvik.vm.heapsize']).toBe('512m');
    expect(p['persist.sys.banner']).toBe('first line\nsecond line');
    expect(p['ro.build.description']).toBe('oriole-user 14 AP2A.240805.005 12025142 release-keys');
    expect(p['ro.odd']).toBe('a]b');
    expect(p['ro.trailing']).toBe('ends with ]');
    expect(p['ro.empty']).toBe('');
    expect(p['ro.multi.bracket']).toBe('x]\ny');
    expect(p['ro.serialno']).toBe('1A2B3C');
    expect(Object.keys(p)).toHaveLength(8);
    expect(parseGetprop(text.replace(/\n/g, '\r\n'))).toEqual(p);
  });

  it('fuzz: generated properties round-trip through the printed form', () => {
    const rnd = prng(0x9e7);
    const chars = 'ab ]=[\n:._-09';
    for (let i = 0; i < 500; i++) {
      const props: Record<string, string> = {};
      const n = 1 + Math.floor(rnd() * 6);
      for (let k = 0; k < n; k++) {
        let v = '';
        for (let j = Math.floor(rnd() * 12); j > 0; j--) v += chars[Math.floor(rnd() * chars.length)];
        // A value line that itself looks like a record start is ambiguous for any parser: avoid it.
        v = v.replace(/\n\[/g, '\n(');
        props[`ro.k${k}.${Math.floor(rnd() * 99)}`] = v;
      }
      const text = Object.entries(props)
        .map(([k, v]) => `[${k}]: [${v}]\n`)
        .join('');
      expect(parseGetprop(text)).toEqual(props);
    }
  });
});

describe('pm list packages output', () => {
  it('Android 11+ paths with "=", -U uids, -i installer, --show-versioncode, apex lines', () => {
    const text = [
      'package:/data/app/~~aGVsbG8tAbC_d-EfGhIjKl==/com.x-d29ybGQtQWJjRGVmR2hJams==/base.apk=com.x uid:10123',
      'package:/system/priv-app/Settings/Settings.apk=com.android.settings uid:1000',
      'package:/product/app/Maps/Maps.apk=com.google.android.apps.maps versionCode:1234  installer=null uid:10150,1010150',
      'package:com.only.name',
      'package:/data/app/com.legacy-1/base.apk=com.legacy',
      'apex:/apex/com.android.tzdata.apex=com.android.tzdata',
      'Error: something else',
      '',
    ].join('\r\n');
    expect(parsePmList(text)).toEqual([
      {
        name: 'com.x',
        path: '/data/app/~~aGVsbG8tAbC_d-EfGhIjKl==/com.x-d29ybGQtQWJjRGVmR2hJams==/base.apk',
        uid: [10123],
      },
      { name: 'com.android.settings', path: '/system/priv-app/Settings/Settings.apk', uid: [1000] },
      {
        name: 'com.google.android.apps.maps',
        path: '/product/app/Maps/Maps.apk',
        versionCode: 1234,
        installer: 'null',
        uid: [10150, 1010150],
      },
      { name: 'com.only.name', path: '' },
      { name: 'com.legacy', path: '/data/app/com.legacy-1/base.apk' },
      { name: 'com.android.tzdata', path: '/apex/com.android.tzdata.apex', apex: true },
    ]);
  });

  it('fuzz: random lines never throw, and names are always package names', () => {
    const rnd = prng(0x9a1);
    const chars = 'package:/=~ .uid0123abcX\n';
    for (let i = 0; i < 2000; i++) {
      let s = '';
      for (let j = Math.floor(rnd() * 60); j > 0; j--) s += chars[Math.floor(rnd() * chars.length)];
      for (const p of parsePmList(s)) expect(p.name).toMatch(/^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$/);
    }
  });
});

describe('adb device states', () => {
  it('one word per state as the adb server prints them', () => {
    for (const s of [
      'device',
      'unauthorized',
      'offline',
      'recovery',
      'rescue',
      'sideload',
      'bootloader',
      'host',
      'authorizing',
      'connecting',
    ])
      expect(normalizeAdbState(s)).toBe(s);
    expect(
      normalizeAdbState(
        'no permissions (missing udev rules? user is in the plugdev group); see [http://developer.android.com/tools/device.html]',
      ),
    ).toBe('no permissions');
    expect(normalizeAdbState('')).toBe('unknown');
  });
});
