/** Section 7: Identity. */
import type { CheckContext } from '../context.ts';
import {
  type CheckFamily,
  type CheckOutcome,
  type Evidence,
  fail,
  notApplicable,
  pass,
  verdict,
} from '../types.ts';

const FIELDS = ['brand', 'manufacturer', 'model', 'device', 'name'] as const;
const PREFIXES = [
  'ro.product.',
  'ro.product.system.',
  'ro.product.system_ext.',
  'ro.product.product.',
  'ro.product.vendor.',
  'ro.product.odm.',
];

async function identityMatches(ctx: CheckContext): Promise<CheckOutcome> {
  const id = ctx.product?.identity;
  if (!id) return notApplicable('no product given (--product) to compare the identity with');
  const props = await ctx.facts.props();
  const ev: Evidence[] = [];
  const ok: Evidence[] = [];
  for (const f of FIELDS) {
    let seen = false;
    for (const pre of PREFIXES) {
      const k = `${pre}${f}`;
      if (!(k in props)) continue;
      seen = true;
      (props[k] === id[f] ? ok : ev).push({
        prop: k,
        value: props[k],
        detail: props[k] === id[f] ? 'matches' : `product says ${id[f]}`,
      });
    }
    if (!seen) ev.push({ prop: `ro.product.${f}`, detail: `not set; product says ${id[f]}` });
  }
  return verdict(
    ev,
    'brand, manufacturer, model, device and name match the product',
    (k) => `${k} identity propert(ies) differ from the product`,
    ok,
  );
}

async function fingerprintMatches(ctx: CheckContext): Promise<CheckOutcome> {
  const props = await ctx.facts.props();
  const key = ['ro.build.fingerprint', 'ro.system.build.fingerprint', 'ro.product.build.fingerprint'].find(
    (k) => props[k],
  );
  if (!key)
    return fail('no build fingerprint property', [{ prop: 'ro.build.fingerprint', detail: 'not set' }]);
  const fp = props[key];
  const ev: Evidence[] = [];
  const m = /^([^/]+)\/([^/]+)\/([^:]+):([^/]*)\/([^/]*)\/([^:]*):([^/]+)\/(.+)$/.exec(fp);
  if (!m)
    return fail('fingerprint does not have the form brand/name/device:release/id/incremental:type/tags', [
      { prop: key, value: fp, detail: 'malformed' },
    ]);
  const [, brand, name, device, , , , type, tags] = m;
  const id = ctx.product?.identity;
  if (id) {
    if (brand !== id.brand)
      ev.push({ prop: key, value: fp, detail: `brand ${brand}, product says ${id.brand}` });
    if (name !== id.name) ev.push({ prop: key, value: fp, detail: `name ${name}, product says ${id.name}` });
    if (device !== id.device)
      ev.push({ prop: key, value: fp, detail: `device ${device}, product says ${id.device}` });
  }
  if (props['ro.build.type'] && type !== props['ro.build.type'])
    ev.push({ prop: key, value: fp, detail: `type ${type}, ro.build.type is ${props['ro.build.type']}` });
  if (props['ro.build.tags'] && tags !== props['ro.build.tags'])
    ev.push({ prop: key, value: fp, detail: `tags ${tags}, ro.build.tags is ${props['ro.build.tags']}` });
  return ev.length
    ? fail(`${ev.length} fingerprint mismatch(es)`, ev)
    : pass(
        id
          ? 'fingerprint names the product and the real build type and tags'
          : 'fingerprint is consistent (no product to compare the identity with)',
        [{ prop: key, value: fp, detail: 'fingerprint' }],
      );
}

async function omieVersion(ctx: CheckContext): Promise<CheckOutcome> {
  const v = (await ctx.facts.props())['ro.omie.version'];
  if (!v) return fail('ro.omie.version is not set', [{ prop: 'ro.omie.version', detail: 'not set' }]);
  if (ctx.product && v !== ctx.product.version)
    return fail(`ro.omie.version is ${v}, the product is ${ctx.product.version}`, [
      { prop: 'ro.omie.version', value: v, detail: `product version ${ctx.product.version}` },
    ]);
  return pass(`ro.omie.version=${v}`, [{ prop: 'ro.omie.version', value: v, detail: 'present' }]);
}

export const identityChecks: CheckFamily = {
  '7.1/C-0-1': identityMatches,
  '7.1/C-0-2': fingerprintMatches,
  '7.1/C-0-3': omieVersion,
};
