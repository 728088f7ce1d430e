import { describe, expect, it } from 'vitest';
import { applyPropEdits, getProp, parseProps, propPatternMatches } from '../../scripts/build/props.ts';
import { removePackageReferences, rootChildren } from '../../scripts/build/xml-edits.ts';
import { OmieError } from '../../scripts/errors.ts';
import { systemXmls } from '../../scripts/sample/base-content.ts';
import { mutate, prng } from '../helpers.ts';

describe('build.prop edits', () => {
  const text = '# comment\nro.a=1\nimport /x.prop\n ro.b = two words \nro.a=3\n';
  it('parses like init (trimmed keys and values, last definition wins)', () => {
    expect(parseProps(text).map((p) => [p.key, p.value])).toEqual([
      ['ro.a', '1'],
      ['ro.b', 'two words'],
      ['ro.a', '3'],
    ]);
    expect(getProp(text, 'ro.a')).toBe('3');
  });
  it('sets in place, removes, appends missing keys under one comment, keeps the rest', () => {
    const out = applyPropEdits(text, [
      { op: 'set', key: 'ro.a', value: '9', reason: '' },
      { op: 'remove', key: 'ro.b', reason: '' },
      { op: 'set', key: 'ro.new', value: 'x', reason: '' },
      { op: 'set', key: 'ro.new', value: 'y', reason: '' },
    ]);
    expect(out).toBe('# comment\nro.a=9\nimport /x.prop\nro.a=9\n\n# Omie\nro.new=y\n');
  });
  it('matches glob patterns', () => {
    expect(propPatternMatches('ro.com.google.*', 'ro.com.google.gmsversion')).toBe(true);
    expect(propPatternMatches('ro.com.google.*', 'ro.com.googlex')).toBe(false);
    expect(propPatternMatches('ro.opa.eligible_device', 'ro.opa.eligible_device')).toBe(true);
  });
});

describe('XML package reference edits', () => {
  const gone = (p: string) => p.startsWith('com.google.');
  it('cuts self-closing and nested elements (whole lines) and leaves comments and other elements alone', () => {
    const xml = `<?xml version="1.0"?>
<!-- mentions package="com.google.android.gms" in a comment -->
<permissions>
    <privapp-permissions package="com.google.android.gms">
        <permission name="android.permission.BACKUP"/>
    </privapp-permissions>
    <privapp-permissions package="com.android.settings">
        <permission name="android.permission.BACKUP"/>
    </privapp-permissions>
    <allow-in-power-save package='com.google.android.gms' /><allow-in-power-save package="com.android.shell"/>
    <backup-transport-whitelisted-service service="com.google.android.gms/.backup.BackupTransportService"/>
    <item name="com.google.android.gm/.Main" match="1"><set name="x"/></item>
</permissions>
`;
    const r = removePackageReferences(xml, gone);
    expect(r.removed.map((x) => [x.tag, x.attribute, x.package, x.line])).toEqual([
      ['privapp-permissions', 'package', 'com.google.android.gms', 4],
      ['allow-in-power-save', 'package', 'com.google.android.gms', 10],
      ['backup-transport-whitelisted-service', 'service', 'com.google.android.gms', 11],
      ['item', 'name', 'com.google.android.gm', 12],
    ]);
    expect(r.text).toBe(`<?xml version="1.0"?>
<!-- mentions package="com.google.android.gms" in a comment -->
<permissions>
    <privapp-permissions package="com.android.settings">
        <permission name="android.permission.BACKUP"/>
    </privapp-permissions>
    <allow-in-power-save package="com.android.shell"/>
</permissions>
`);
    expect(r.remainingChildren).toBe(2);
    expect(rootChildren('<a><b/></a>')).toBe(1);
  });
  it('fuzz: malformed XML only throws OmieError', () => {
    const rnd = prng(9);
    const seeds = systemXmls().map((f) => Buffer.from(f.content as string));
    for (let i = 0; i < 3000; i++) {
      const input = mutate(seeds[i % seeds.length], rnd).toString('latin1');
      try {
        removePackageReferences(input, gone);
      } catch (e) {
        expect(e).toBeInstanceOf(OmieError);
      }
    }
  });
});
