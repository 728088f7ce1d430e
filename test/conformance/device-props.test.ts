/**
 * The device profile's verified-boot requirements cannot be passed by a property the device
 * leaves out: every absent property is a failure, or not applicable with its reason, never a pass.
 */
import { resolve } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import type { SpecData } from '../../scripts/conformance/context.ts';
import { runChecks } from '../../scripts/conformance/engine.ts';
import { memoryView } from '../../scripts/conformance/memory-view.ts';
import { loadSpec, type Spec } from '../../scripts/conformance/spec.ts';
import { loadSpecData } from '../../scripts/conformance/spec-data.ts';
import { ROOT } from '../helpers.ts';
import { cleanFixture, type Fixture, PARTNER_AVB } from './fixtures.ts';

let spec: Spec;
let data: SpecData;

beforeAll(async () => {
  spec = await loadSpec(resolve(ROOT, 'spec'));
  data = await loadSpecData(spec.dir);
});

const DEVICE_BOOT_IDS = ['6.3/C-0-1', '6.3/C-0-4', '6.4/C-1-1', '6.4/C-1-2', '6.4/C-1-3'];

async function run(f: Fixture, o: { withBuild?: boolean; withProduct?: boolean } = {}) {
  const r = await runChecks(spec, memoryView(f.sys), {
    profile: 'device',
    product: o.withProduct === false ? undefined : f.product,
    build: o.withBuild === false ? undefined : f.build,
    data,
    only: DEVICE_BOOT_IDS,
  });
  return Object.fromEntries(r.results.map((x) => [x.id, x]));
}

function props(f: Fixture): Record<string, string> {
  if (!f.sys.deviceProps) throw new Error('not a device fixture');
  return f.sys.deviceProps;
}

describe('device verified-boot properties', () => {
  it('the clean device passes all five, and the report names its vbmeta digest and boot state', async () => {
    const f = cleanFixture('device');
    const r = await runChecks(spec, memoryView(f.sys), {
      profile: 'device',
      product: f.product,
      build: f.build,
      data,
    });
    const mine = r.results.filter((x) => DEVICE_BOOT_IDS.includes(x.id));
    expect(mine.map((x) => `${x.id} ${x.status}`)).toEqual(DEVICE_BOOT_IDS.map((id) => `${id} pass`));
    expect(r.target).toMatchObject({
      vbmetaDigest: 'ee'.repeat(32),
      verifiedBootState: 'green',
      build: { source: 'out/omie-tablet', vbmetaDigest: 'ee'.repeat(32) },
    });
  });

  for (const prop of [
    'ro.boot.vbmeta.digest',
    'ro.boot.vbmeta.avb_version',
    'ro.boot.veritymode',
    'ro.boot.verifiedbootstate',
    'ro.boot.flash.locked',
    'ro.boot.vbmeta.device_state',
  ]) {
    it(`${prop} left out passes nothing that depends on it`, async () => {
      const clean = await run(cleanFixture('device'));
      const f = cleanFixture('device');
      delete props(f)[prop];
      const after = await run(f);
      const changed = DEVICE_BOOT_IDS.filter((id) => after[id].status !== clean[id].status);
      expect(changed.length, `${prop}: nothing noticed its absence`).toBeGreaterThan(0);
      for (const id of changed) {
        expect(after[id].status, `${id} without ${prop}`).toBe('fail');
        expect(JSON.stringify(after[id].evidence)).toContain(prop);
      }
    });
  }

  it.each([
    ['eio', /I\/O errors/],
    ['logging', /only logged/],
    ['disabled', /off/],
  ])('dm-verity in %s mode fails 6.3/C-0-4', async (mode, why) => {
    const f = cleanFixture('device');
    props(f)['ro.boot.veritymode'] = mode;
    const r = await run(f);
    expect(r['6.3/C-0-4'].status).toBe('fail');
    expect(r['6.3/C-0-4'].evidence[0].detail).toMatch(why);
  });

  it("yellow passes only with the partner's key: the build's, else the product's", async () => {
    const f = cleanFixture('device');
    props(f)['ro.boot.verifiedbootstate'] = 'yellow';
    props(f)['ro.boot.vbmeta.public_key_digest'] = PARTNER_AVB;
    expect((await run(f))['6.4/C-1-1'].message).toMatch(/build's \(out\/omie-tablet\) partner key/);
    expect((await run(f, { withBuild: false }))['6.4/C-1-1'].status).toBe('pass');
    const none = await run(f, { withBuild: false, withProduct: false });
    expect(none['6.4/C-1-1'].status).toBe('fail');
    expect(none['6.4/C-1-1'].evidence[1].detail).toMatch(/pass --image <build> or --product/);
    props(f)['ro.boot.vbmeta.public_key_digest'] = 'ab'.repeat(32);
    expect((await run(f))['6.4/C-1-1'].status).toBe('fail');
    delete props(f)['ro.boot.vbmeta.public_key_digest'];
    const unset = await run(f);
    expect(unset['6.4/C-1-1'].status).toBe('fail');
    expect(unset['6.4/C-1-1'].evidence[1].detail).toMatch(/not set/);
  });

  it('without a build, 6.4/C-1-3 is not applicable and says how to give one', async () => {
    const r = await run(cleanFixture('device'), { withBuild: false });
    expect(r['6.4/C-1-3'].status).toBe('not-applicable');
    expect(r['6.4/C-1-3'].message).toMatch(/--image/);
  });
});
