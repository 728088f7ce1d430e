import { describe, expect, it } from 'vitest';
import { OmieError } from '../../scripts/errors.ts';
import { FileContexts, literalPrefix, parseFileContexts, requiredLiteral } from '../../scripts/fs/selinux.ts';
import { platFileContexts } from '../../scripts/sample/base-content.ts';
import { mutate, prng } from '../helpers.ts';

describe('file_contexts', () => {
  const plat = FileContexts.parse(platFileContexts());

  it('looks up labels like libselinux: anchored regexes, last match wins, exact paths last', () => {
    const cases: Array<[string, string | null, Parameters<FileContexts['lookup']>[1]?]> = [
      ['/', 'u:object_r:rootfs:s0'],
      ['/system', 'u:object_r:system_file:s0'],
      ['/system/app/Foo/Foo.apk', 'u:object_r:system_file:s0'],
      ['/system/lib64/libc.so', 'u:object_r:system_lib_file:s0'],
      ['/system/lib/libc.so', 'u:object_r:system_lib_file:s0'],
      ['/system/bin/logd', 'u:object_r:logd_exec:s0'],
      ['/system/bin/linker64', 'u:object_r:system_linker_exec:s0'],
      ['/system/bin/run-as', 'u:object_r:runas_exec:s0', 'file'],
      // `--` restricts to regular files: a directory of that name falls back to system_file.
      ['/system/bin/run-as', 'u:object_r:system_file:s0', 'dir'],
      ['/system/etc/selinux/plat_file_contexts', 'u:object_r:file_contexts_file:s0'],
      ['/system/usr/share/zoneinfo/tzdata', 'u:object_r:system_zoneinfo_file:s0'],
      ['/vendor/etc/gps.conf', 'u:object_r:vendor_configs_file:s0'],
      ['/vendor/app/Cam/Cam.apk', 'u:object_r:vendor_app_file:s0'],
      ['/system/vendor/app/Cam/Cam.apk', 'u:object_r:vendor_app_file:s0'],
      ['/product/priv-app/X/X.apk', 'u:object_r:system_file:s0'],
      ['/product/overlay/X.apk', 'u:object_r:vendor_overlay_file:s0'],
      ['/data/app/x', 'u:object_r:apk_data_file:s0'],
      ['/data/vendor/x', null], // <<none>>
      ['/lost+found', 'u:object_r:rootfs:s0'],
      ['/build.prop', 'u:object_r:rootfs:s0'],
      ['/buildXprop', null], // the dot is escaped: no match, and no catch-all for / children
      ['/systemx', null], // anchored: /system(/.*)? does not match /systemx
    ];
    for (const [path, label, type] of cases) expect([path, plat.lookup(path, type)]).toEqual([path, label]);
  });

  it('moves exact-path specs after regex specs (an earlier exact line still beats a later regex)', () => {
    const fc = FileContexts.parse('/a/b u:object_r:exact:s0\n/a(/.*)? u:object_r:re:s0\n');
    expect(fc.lookup('/a/b')).toBe('u:object_r:exact:s0');
    expect(fc.lookup('/a/c')).toBe('u:object_r:re:s0');
  });

  it('counts a backslash-escaped character as literal (libselinux spec_hasMetaChars): such specs are exact', () => {
    // An escaped dot is no meta character: the spec is exact, sorted last, and beats the later regex.
    const fc = FileContexts.parse(
      '/system/build\\.prop u:object_r:build_prop:s0\n/system(/.*)? u:object_r:system_file:s0\n',
    );
    expect(fc.lookup('/system/build.prop')).toBe('u:object_r:build_prop:s0');
    expect(fc.lookup('/system/buildXprop')).toBe('u:object_r:system_file:s0');
  });

  it('anchors like compile_regex (^ + regex + $ as text), with DOTALL and POSIX classes', () => {
    // `^/a|/b$`: a top-level alternation means "starts with /a" or "ends with /b".
    const fc = FileContexts.parse(
      '/a|/b u:object_r:alt:s0\n/dev/block/by-name/[[:alnum:]_]+ u:object_r:blk:s0\n',
    );
    expect(fc.lookup('/a/deeper/file')).toBe('u:object_r:alt:s0');
    expect(fc.lookup('/x/b')).toBe('u:object_r:alt:s0');
    expect(fc.lookup('/x/c')).toBeNull();
    expect(fc.lookup('/dev/block/by-name/system_a')).toBe('u:object_r:blk:s0');
    expect(fc.lookup('/dev/block/by-name/sys-a')).toBeNull();
    expect(() => FileContexts.parse('/x[[:nope:]] u:object_r:x:s0\n')).toThrow(/invalid regular expression/);
  });

  it('skips specs by literal prefix without changing any answer (differential, 20k lookups)', () => {
    expect(literalPrefix('/system/bin/foo\\.so')).toBe('/system/bin/foo.so');
    expect(literalPrefix('/systemx?/a')).toBe('/system');
    expect(literalPrefix('/data/vendor(/.*)?')).toBe('/data/vendor');
    expect(literalPrefix('/a/b\\d+')).toBe('/a/b');
    expect(literalPrefix('/a|/b')).toBe('');
    expect(literalPrefix('/(a|b)/c')).toBe('/');
    expect(requiredLiteral('/(vendor|system/vendor)/bin/hw/android\\.hardware\\.x@1\\.0-service')).toBe(
      '/bin/hw/android.hardware.x@1.0-service',
    );
    expect(requiredLiteral('/(a)?/bcd?e[fg]hij(/.*)?')).toBe('/bc');
    expect(requiredLiteral('/x[0-9]{2}yzw')).toBe('yzw');
    expect(requiredLiteral('/a|/tail')).toBe('');
    const extra = [
      '/systemx?/odd u:object_r:odd:s0',
      '/a|/tail u:object_r:alt:s0',
      '/x[|]y u:object_r:bar:s0',
      '/syst.* u:object_r:any_syst:s0',
      '/system/bin -d u:object_r:late_bin_dir:s0',
      '/vendor u:object_r:vendor_root:s0',
    ];
    const fc = FileContexts.parse(`${platFileContexts()}\n${extra.join('\n')}\n`);
    const naive = (path: string, type?: Parameters<FileContexts['lookup']>[1]) => {
      const specs = (
        fc as unknown as { compiled: Array<{ re: RegExp; fileType: string | null; context: string | null }> }
      ).compiled;
      for (let i = specs.length - 1; i >= 0; i--) {
        if (type && specs[i].fileType && specs[i].fileType !== type) continue;
        if (specs[i].re.test(path)) return specs[i].context;
      }
      return null;
    };
    const rnd = prng(9);
    const parts = [
      'system',
      'vendor',
      'product',
      'bin',
      'lib64',
      'etc',
      'app',
      'systemx',
      'syste',
      'odd',
      'tail',
      'a',
      'data',
      'x|y',
      'build.prop',
      'hw',
      'logd',
    ];
    for (let i = 0; i < 20000; i++) {
      const n = 1 + Math.floor(rnd() * 5);
      const path = `/${Array.from({ length: n }, () => parts[Math.floor(rnd() * parts.length)]).join('/')}`;
      const type = rnd() < 0.5 ? 'file' : 'dir';
      expect([path, fc.lookup(path, type)]).toEqual([path, naive(path, type)]);
    }
  });

  it('ignores tokens after the third, like read_spec_entries (trailing comments)', () => {
    const fc = FileContexts.parse('/a -- u:object_r:a:s0 # a trailing comment\n/b u:object_r:b:s0\n');
    expect(fc.lookup('/a', 'file')).toBe('u:object_r:a:s0');
    expect(fc.lookup('/a', 'dir')).toBeNull();
    expect(fc.lookup('/b')).toBe('u:object_r:b:s0');
  });

  it('refuses the compiled file_contexts.bin (magic 0xf97cff8a) with a clear error', () => {
    const bin = Buffer.alloc(64);
    bin.writeUInt32LE(0xf97cff8a, 0);
    expect(() => FileContexts.parse(bin, 'file_contexts.bin')).toThrow(/compiled file_contexts.bin/);
    expect(() => FileContexts.parse(bin.toString('utf8'))).toThrow(/compiled file_contexts.bin/);
    expect(() => FileContexts.parse(bin.toString('latin1'))).toThrow(/compiled file_contexts.bin/);
    expect(FileContexts.parse(Buffer.from('/a u:object_r:a:s0\n')).lookup('/a')).toBe('u:object_r:a:s0');
  });

  it('concatenates files: later files override earlier matches', () => {
    const vendor = FileContexts.parse('/(vendor|system/vendor)/etc/gps\\.conf u:object_r:gps_conf:s0\n');
    expect(FileContexts.concat(plat, vendor).lookup('/vendor/etc/gps.conf')).toBe('u:object_r:gps_conf:s0');
  });

  it('rejects malformed lines with their line number', () => {
    expect(() => parseFileContexts('/a u:object_r:x:s0\n/b -q u:object_r:y:s0\n')).toThrow(/line 2/);
    expect(() => parseFileContexts('/a b c d\n')).toThrow(/file_contexts/);
    expect(() => FileContexts.parse('/a(  u:object_r:x:s0\n')).toThrow(/invalid regular expression/);
  });

  it('fuzz: mutated file_contexts only ever throw OmieError', () => {
    const base = Buffer.from(platFileContexts());
    const rnd = prng(6);
    for (let i = 0; i < 2000; i++) {
      const text = mutate(base, rnd).toString('latin1');
      try {
        FileContexts.parse(text).lookup('/system/bin/logd', 'file');
      } catch (e) {
        expect(e).toBeInstanceOf(OmieError);
      }
    }
  });
});
