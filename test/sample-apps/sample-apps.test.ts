import { cpSync, mkdirSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { ApexArchive, inspectApexPayload } from '../../scripts/formats/apex/index.ts';
import { loadApp } from '../../scripts/model/index.ts';
import { omie, ROOT, workDir } from '../helpers.ts';

const dir = workDir('sample-apps');
const home = join(dir, 'home');
const tree = join(dir, 'tree');

describe('omie sample-apps', () => {
  beforeAll(async () => {
    mkdirSync(tree, { recursive: true });
    for (const d of ['device', 'overlays']) cpSync(join(ROOT, d), join(tree, d), { recursive: true });
    cpSync(join(ROOT, 'prebuilt-apps'), join(tree, 'prebuilt-apps'), {
      recursive: true,
      filter: (s) => !/\.(apk|c?apex)(\.sha256)?$/.test(s),
    });
    const r = await omie(['sample-apps', '--json'], { cwd: tree, env: { OMIE_HOME: home } });
    expect(r.exitCode, r.stderr).toBe(0);
  }, 300_000);

  const names = readdirSync(join(ROOT, 'prebuilt-apps')).sort();

  it.each(names)('%s: apksigner verifies it and aapt shows the declared package', async (name) => {
    const app = await loadApp(join(tree, 'prebuilt-apps', name, 'app.yaml'));
    const apk = app.apkPath;
    const v = await execa('apksigner', ['verify', '--print-certs', apk], { reject: false });
    expect(v.exitCode, v.stderr).toBe(0);
    const badging = (await execa('aapt', ['dump', 'badging', apk])).stdout;
    expect(badging).toContain(`package: name='${app.package}'`);
    if (app.kind === 'apex') {
      // An APEX module: named after its package, payload signed with the sample AVB key.
      const a = await ApexArchive.open(apk);
      const img = join(dir, `${name}.payload.img`);
      try {
        expect(a.info).toMatchObject({
          name: app.package,
          packageName: app.package,
          container: { verified: true },
        });
        await a.extractPayload(img);
        expect((await inspectApexPayload(img, a.info)).problems).toEqual([]);
      } finally {
        await a.close();
      }
      expect(readFileSync(`${apk}.sha256`, 'utf8').trim()).toMatch(/^[0-9a-f]{64}$/);
      return;
    }
    expect(badging).toContain(`application-label:'${app.label}'`);
    expect(badging.includes("uses-permission: name='android.permission.INTERNET'")).toBe(
      Boolean(app.internet),
    );
    const pin = readFileSync(`${apk}.sha256`, 'utf8').trim();
    expect(pin).toMatch(/^[0-9a-f]{64}$/);
  });

  it('the sample key lives outside the tree with 0600 files', () => {
    const keyDir = join(home, 'keys/omie-sample-apps');
    for (const f of readdirSync(keyDir)) expect(statSync(join(keyDir, f)).mode & 0o077, f).toBe(0);
    expect(
      readdirSync(join(tree, 'prebuilt-apps/PersonalCloud')).some(
        (f) => f.endsWith('.pem') || f.endsWith('.pk8'),
      ),
    ).toBe(false);
  });
});
