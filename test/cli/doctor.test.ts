import { describe, expect, it } from 'vitest';
import table from '../../scripts/host/tools.json' with { type: 'json' };
import { omie } from '../helpers.ts';

describe('omie doctor', () => {
  it('--json lists every host tool with found, version and debianPackage', async () => {
    const r = await omie(['doctor', '--json']);
    const report = JSON.parse(r.stdout);
    expect(report.tools.map((t: { name: string }) => t.name).sort()).toEqual(
      table.tools.map((t) => t.name).sort(),
    );
    for (const t of report.tools) {
      expect(typeof t.found).toBe('boolean');
      expect(t).toHaveProperty('version');
      expect(typeof t.debianPackage).toBe('string');
    }
    const aapt = report.tools.find((t: { name: string }) => t.name === 'aapt');
    expect(aapt.found).toBe(true);
    expect(aapt.version).toMatch(/Android Asset Packaging Tool/);
    const present = (x: { found: boolean; required: boolean }) => x.found || !x.required;
    expect(r.exitCode).toBe(report.tools.every(present) && report.files.every(present) ? 0 : 3);
  });

  it('names the Debian package and install command for a missing tool', async () => {
    const r = await omie(['doctor', '--json'], {
      env: { PATH: '/nonexistent', HOME: process.env.HOME ?? '/root' },
    });
    expect(r.exitCode).toBe(3);
    const report = JSON.parse(r.stdout);
    const adb = report.tools.find((t: { name: string }) => t.name === 'adb');
    expect(adb).toMatchObject({ found: false, debianPackage: 'adb' });
    expect(adb.install).toContain('apt-get install -y adb');
  });

  it('exits 2 on an unknown command', async () => {
    const r = await omie(['no-such-command']);
    expect(r.exitCode).toBe(2);
  });
});
