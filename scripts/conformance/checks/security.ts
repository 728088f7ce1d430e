/** Section 6: Security (build properties, su, SELinux, AVB, verified boot state). */
import { basename } from 'node:path';
import { PUBLIC_TEST_KEY_SHA256 } from '../../formats/avb/keys.ts';
import type { CheckContext } from '../context.ts';
import { stringList } from '../context.ts';
import {
  type CheckFamily,
  type CheckOutcome,
  type Evidence,
  fail,
  notApplicable,
  pass,
  verdict,
} from '../types.ts';
import { CMDLINE_PARTITIONS, type VbmetaFacts } from '../view.ts';

async function propEquals(ctx: CheckContext): Promise<CheckOutcome> {
  const prop = String(ctx.params.prop);
  const expected = String(ctx.params.expected);
  const props = await ctx.facts.props();
  const v = props[prop];
  if (v === undefined) {
    // ro.debuggable defaults to 0 when unset; only trust that on a user build.
    if (prop === 'ro.debuggable' && props['ro.build.type'] === 'user')
      return pass(`${prop} is unset (0) on a user build`, [{ prop, detail: 'unset' }]);
    return fail(`${prop} is not set (expected ${expected})`, [{ prop, detail: 'not set in any build.prop' }]);
  }
  return v === expected
    ? pass(`${prop}=${v}`, [{ prop, value: v, detail: 'as required' }])
    : fail(`${prop}=${v}, expected ${expected}`, [{ prop, value: v, detail: `expected ${expected}` }]);
}

/** Where su binaries are installed on rooted builds. */
const SU_PATHS = [
  '/system/bin/su',
  '/system/xbin/su',
  '/system_ext/bin/su',
  '/product/bin/su',
  '/vendor/bin/su',
  '/vendor/xbin/su',
  '/odm/bin/su',
  '/sbin/su',
  '/debug_ramdisk/su',
];

async function noSu(ctx: CheckContext): Promise<CheckOutcome> {
  const ev: Evidence[] = [];
  if (ctx.view.kind === 'device' && ctx.view.shell) {
    // Every Android has /system/bin/sh: if listing it prints nothing, an empty answer below
    // would mean nothing either.
    if (!(await ctx.view.shell('ls /system/bin/sh')).trim())
      return fail(
        'files cannot be listed over adb (`ls /system/bin/sh` printed nothing): su was not looked for',
        [{ file: '/system/bin/sh', detail: '`ls` printed nothing' }],
      );
    // One `ls` per path: portable across toybox and minimal shells; a missing file prints nothing.
    for (const f of SU_PATHS) {
      if ((await ctx.view.shell(`ls ${f}`)).trim()) ev.push({ file: f, detail: 'su binary present' });
    }
    return verdict(
      [...new Map(ev.map((e) => [e.file, e])).values()],
      'no su binary',
      (k) => `${k} su binar(ies)`,
    );
  }
  const partitions = await ctx.facts.partitions();
  if (!partitions.length) return notApplicable('no readable filesystem partition: nothing to check');
  for (const partition of partitions) {
    const stack = [''];
    while (stack.length) {
      const dir = stack.pop() as string;
      for (const e of await ctx.view.listFiles(partition, dir)) {
        if (e.type === 'dir') stack.push(e.path);
        else if (e.name === 'su') ev.push({ partition, file: e.path, detail: `su ${e.type} present` });
      }
    }
  }
  return verdict(ev, 'no su binary on any partition', (k) => `${k} su binar(ies) found`);
}

async function selinuxEnforcing(ctx: CheckContext): Promise<CheckOutcome> {
  const ev: Evidence[] = [];
  const ok: Evidence[] = [];
  const cmdline = await ctx.view.kernelCmdline();
  if (cmdline !== null) {
    for (const tok of cmdline.split(/\s+/)) {
      if (
        /^androidboot\.selinux=permissive$/.test(tok) ||
        /^enforcing=0$/.test(tok) ||
        /^selinux=0$/.test(tok)
      )
        ev.push({ value: tok, detail: 'kernel command line makes SELinux permissive' });
    }
    if (!ev.length) ok.push({ value: cmdline.slice(0, 300), detail: 'kernel command line' });
  }
  const props = await ctx.facts.props();
  const bootSelinux = props['ro.boot.selinux'];
  if (bootSelinux === 'permissive')
    ev.push({ prop: 'ro.boot.selinux', value: 'permissive', detail: 'bootloader asked for permissive' });
  else if (bootSelinux)
    ok.push({ prop: 'ro.boot.selinux', value: bootSelinux, detail: 'bootloader setting' });
  if (ctx.view.kind === 'device') {
    // getenforce may be unavailable to the shell user; then cmdline and ro.boot.selinux decide.
    const mode = ctx.view.shell ? (await ctx.view.shell('getenforce')).trim() : '';
    if (mode) (mode === 'Enforcing' ? ok : ev).push({ value: mode, detail: 'getenforce' });
    if (!ev.length && !ok.length)
      return fail(
        'the SELinux mode could not be observed: getenforce printed nothing and /proc/cmdline is unreadable',
        [{ detail: 'getenforce, /proc/cmdline and ro.boot.selinux gave nothing to check' }],
      );
  } else if (cmdline === null) {
    const boots = (await ctx.view.allPartitions()).filter((p) => CMDLINE_PARTITIONS.includes(p));
    if (!boots.length)
      return notApplicable(
        `the image carries no kernel command line (no ${CMDLINE_PARTITIONS.join(', ')} image, no vbmeta cmdline descriptor): check the device with --device`,
      );
    // Boot images were read and carry an empty command line (GKI boot images do).
    ok.push(...boots.map((p) => ({ partition: p, detail: 'boot image without a kernel command line' })));
  }
  return verdict(ev, 'SELinux is not permissive', (k) => `${k} sign(s) of permissive SELinux`, ok);
}

async function vbmetaOrFail(ctx: CheckContext): Promise<VbmetaFacts[] | CheckOutcome> {
  const v = await ctx.view.vbmeta();
  if (v === null || v.length === 0) {
    if (ctx.view.kind === 'device')
      return notApplicable('vbmeta structures are not readable over adb; see the device checks of 6.4');
    return fail('the image has no vbmeta: nothing is verified at boot', [
      { detail: 'no vbmeta.img / vbmeta_*.img / AVB footer found' },
    ]);
  }
  return v;
}

const isOutcome = (x: unknown): x is CheckOutcome => typeof x === 'object' && x !== null && 'status' in x;

async function vbmetaSigned(ctx: CheckContext): Promise<CheckOutcome> {
  if (ctx.view.kind === 'device') {
    const props = await ctx.facts.props();
    const v = props['ro.boot.vbmeta.avb_version'];
    const d = props['ro.boot.vbmeta.digest'];
    return v && d
      ? pass('the bootloader verified a signed vbmeta', [
          { prop: 'ro.boot.vbmeta.digest', value: d, detail: `AVB ${v}` },
        ])
      : fail('the bootloader reported no vbmeta verification', [
          {
            prop: 'ro.boot.vbmeta.avb_version',
            value: v ?? '',
            detail: v ? 'AVB version' : 'not set: boot did not use AVB',
          },
          {
            prop: 'ro.boot.vbmeta.digest',
            value: d ?? '',
            detail: d ? 'vbmeta digest' : 'not set: no verified vbmeta',
          },
        ]);
  }
  const vb = await vbmetaOrFail(ctx);
  if (isOutcome(vb)) return vb;
  const ev: Evidence[] = [];
  const ok: Evidence[] = [];
  for (const v of vb) {
    if (v.algorithm === 'NONE')
      ev.push({ partition: v.partition, value: v.algorithm, detail: 'vbmeta is not signed' });
    else if (!v.signatureValid)
      ev.push({
        partition: v.partition,
        value: v.algorithm,
        detail: `signature does not verify${v.verifyError ? `: ${v.verifyError}` : ''}`,
      });
    else
      ok.push({
        partition: v.partition,
        value: v.algorithm,
        detail: `signed, key SHA-256 ${v.publicKeySha256 ?? '?'}`,
      });
  }
  return verdict(
    ev,
    `${vb.length} vbmeta structure(s) signed and verified`,
    (k) => `${k} vbmeta problem(s)`,
    ok,
  );
}

async function vbmetaNotTestKey(ctx: CheckContext): Promise<CheckOutcome> {
  const known = ctx.facts.data.knownSigners;
  const testName = (d?: string) =>
    d ? (known.get(d)?.kind.includes('test') ? known.get(d)?.name : undefined) : undefined;
  if (ctx.view.kind === 'device') {
    const d = (await ctx.facts.props())['ro.boot.vbmeta.public_key_digest'];
    if (!d) return notApplicable('the device does not expose ro.boot.vbmeta.public_key_digest');
    // The digest is the SHA-256 of the AVB public key blob, as the image check computes it.
    const n = PUBLIC_TEST_KEY_SHA256[d.toLowerCase()] ?? testName(d.toLowerCase());
    return n
      ? fail(`vbmeta is signed with ${n}`, [
          { prop: 'ro.boot.vbmeta.public_key_digest', value: d, detail: n },
        ])
      : pass('vbmeta key is not a public test key', [
          { prop: 'ro.boot.vbmeta.public_key_digest', value: d, detail: 'not a known test key' },
        ]);
  }
  const vb = await vbmetaOrFail(ctx);
  if (isOutcome(vb)) return vb;
  const ev: Evidence[] = [];
  for (const v of vb) {
    const n = v.publicTestKeyName ?? testName(v.publicKeySha256);
    if (n)
      ev.push({
        partition: v.partition,
        value: v.publicKeySha256,
        detail: `signed with the public test key ${n}`,
      });
    for (const d of v.descriptors) {
      const cn = d.kind === 'chain' ? (d.publicTestKeyName ?? testName(d.publicKeySha256)) : undefined;
      if (cn)
        ev.push({
          partition: v.partition,
          value: d.publicKeySha256,
          detail: `chain descriptor for ${d.partition} trusts the public test key ${cn}`,
        });
    }
  }
  return verdict(ev, 'no vbmeta is signed with a public test key', (k) => `${k} public test key use(s)`);
}

async function descriptorsCover(ctx: CheckContext): Promise<CheckOutcome> {
  const vb = await vbmetaOrFail(ctx);
  if (isOutcome(vb)) return vb;
  const all = await ctx.view.allPartitions();
  const covered = new Map<string, string>();
  for (const v of vb)
    for (const d of v.descriptors)
      if (d.partition && (d.kind === 'hash' || d.kind === 'hashtree' || d.kind === 'chain'))
        covered.set(d.partition, d.kind);
  const chainedParts = new Set(vb.map((v) => v.partition));
  const want = new Map<string, string>();
  for (const p of stringList(ctx.params.hashtreePartitions)) if (all.includes(p)) want.set(p, 'hashtree');
  for (const p of stringList(ctx.params.hashPartitions)) if (all.includes(p)) want.set(p, 'hash');
  for (const f of ctx.product?.avb?.footers ?? []) want.set(f.partition, f.type);
  const ev: Evidence[] = [];
  const ok: Evidence[] = [];
  for (const [p, kind] of want) {
    const got = covered.get(p);
    // A partition with its own vbmeta (chained) is covered by the chain descriptor and its footer's descriptors.
    if (got === kind || (got === 'chain' && chainedParts.has(p)))
      ok.push({ partition: p, detail: `${got} descriptor` });
    else if (got === 'chain') ok.push({ partition: p, detail: 'chained vbmeta' });
    else
      ev.push({
        partition: p,
        value: got ?? 'none',
        detail: `needs a ${kind} descriptor, has ${got ?? 'none'}`,
      });
  }
  return verdict(
    ev,
    `${ok.length} verified partition(s) covered`,
    (k) => `${k} partition(s) not covered by verified boot`,
    ok,
  );
}

async function rollbackAndFlags(ctx: CheckContext): Promise<CheckOutcome> {
  if (ctx.view.kind === 'device') {
    // libavb's avb_slot_verify always passes androidboot.veritymode: enforcing (restart or panic on
    // corruption), eio (I/O errors only), logging, or disabled. Only enforcing stops a changed
    // block from being used; an absent value means nothing is known.
    const mode = (await ctx.facts.props())['ro.boot.veritymode'];
    const ev = { prop: 'ro.boot.veritymode', value: mode ?? '' };
    if (mode === undefined)
      return fail('the bootloader reported no dm-verity mode (ro.boot.veritymode is not set)', [
        { ...ev, detail: 'not set: verified boot state of the partitions unknown' },
      ]);
    return mode === 'enforcing'
      ? pass('dm-verity is enforcing', [{ ...ev, detail: 'verity mode' }])
      : fail(`dm-verity is ${mode}, not enforcing`, [
          {
            ...ev,
            detail:
              mode === 'eio'
                ? 'corrupt blocks only return I/O errors: the device keeps running a changed system'
                : mode === 'logging'
                  ? 'corruption is only logged'
                  : 'verification is off',
          },
        ]);
  }
  const vb = await vbmetaOrFail(ctx);
  if (isOutcome(vb)) return vb;
  const top = vb.find((v) => v.partition === 'vbmeta') ?? vb[0];
  const ev: Evidence[] = [];
  for (const v of vb) {
    if (v.flags & 1)
      ev.push({ partition: v.partition, value: String(v.flags), detail: 'flag HASHTREE_DISABLED set' });
    if (v.flags & 2)
      ev.push({ partition: v.partition, value: String(v.flags), detail: 'flag VERIFICATION_DISABLED set' });
  }
  const want = ctx.product?.avb?.rollbackIndex;
  if (want !== undefined) {
    if (top.rollbackIndex !== want)
      ev.push({
        partition: top.partition,
        value: String(top.rollbackIndex),
        detail: `rollback index is not the product's ${want}`,
      });
  } else if (top.rollbackIndex <= 0) {
    ev.push({
      partition: top.partition,
      value: String(top.rollbackIndex),
      detail: 'rollback index is 0: older signed images can be flashed back',
    });
  }
  return verdict(
    ev,
    `rollback index ${top.rollbackIndex}, verification enabled`,
    (k) => `${k} rollback/flag problem(s)`,
    [{ partition: top.partition, value: String(top.rollbackIndex), detail: 'rollback index' }],
  );
}

/** 6.3/C-0-5: the partition bytes, not only the descriptors, match what vbmeta signs. */
async function contentsMatch(ctx: CheckContext): Promise<CheckOutcome> {
  if (!ctx.view.avbContents)
    return notApplicable(
      'the partition bytes are not readable here; on a device see 6.3/C-0-1 (vbmeta digest)',
    );
  const v = await ctx.view.avbContents();
  if (!v)
    return fail('the image has no vbmeta: no partition is verified at boot', [
      { detail: 'no vbmeta.img / vbmeta_*.img / AVB footer found' },
    ]);
  const ev: Evidence[] = v.problems.map((p) => ({
    partition: p.partition,
    file: p.file ? basename(p.file) : undefined,
    value:
      p.firstBadBlock !== undefined
        ? `${p.area} block ${p.firstBadBlock} (offset ${p.offset})`
        : `${p.area}${p.code ? ` ${p.code}` : ''}`,
    detail: `${p.vbmeta === p.partition ? '' : `descriptor in ${p.vbmeta}: `}${p.message}`,
  }));
  const ok: Evidence[] = v.descriptors.map((d) => ({
    partition: d.partition,
    value: d.kind,
    detail: `${d.result}${d.result === 'trusted-data' ? ' (data digests taken by the build from the same bytes; stored tree verified here)' : ''}${d.fec && d.fec !== 'absent' ? `, FEC ${d.fec}` : ''} (descriptor in ${d.vbmeta})`,
  }));
  return verdict(
    ev,
    `${v.descriptors.length} hash/hashtree descriptor(s) match the partition bytes${v.vbmetaDigest ? `; vbmeta digest ${v.vbmetaDigest}` : ''}`,
    (k) => `${k} verified-boot mismatch(es): ${[...new Set(v.problems.map((p) => p.partition))].join(', ')}`,
    ok,
  );
}

async function verifiedBootState(ctx: CheckContext): Promise<CheckOutcome> {
  if (ctx.view.kind !== 'device') return notApplicable('a property of a booted device');
  const props = await ctx.facts.props();
  const state = props['ro.boot.verifiedbootstate'];
  const ev: Evidence = {
    prop: 'ro.boot.verifiedbootstate',
    value: state ?? '',
    detail: 'verified boot state',
  };
  if (state === 'green') return pass('verified boot state is green', [ev]);
  if (state === 'yellow') {
    const digest = props['ro.boot.vbmeta.public_key_digest']?.toLowerCase();
    // The partner's key: the one the build being certified is signed with, else the product's.
    const want = ctx.build?.avbPublicKeySha256 ?? ctx.product?.avb?.publicKeySha256;
    const whose = ctx.build?.avbPublicKeySha256 ? `the build's (${ctx.build.source})` : "the product's";
    if (digest && want && digest === want)
      return pass(`yellow with ${whose} partner key`, [
        ev,
        { prop: 'ro.boot.vbmeta.public_key_digest', value: digest, detail: `matches ${whose} AVB key` },
      ]);
    return fail("yellow, but the key is not shown to be the partner's", [
      ev,
      {
        prop: 'ro.boot.vbmeta.public_key_digest',
        value: digest ?? '',
        detail: !digest
          ? 'not set: the device does not say which key it booted with'
          : want
            ? `expected ${want}, ${whose} AVB key`
            : 'no partner key to compare with (pass --image <build> or --product)',
      },
    ]);
  }
  return fail(state ? `verified boot state is ${state}` : 'the bootloader reported no verified boot state', [
    { ...ev, detail: state ? ev.detail : 'ro.boot.verifiedbootstate is not set' },
  ]);
}

async function bootloaderLocked(ctx: CheckContext): Promise<CheckOutcome> {
  if (ctx.view.kind !== 'device') return notApplicable('a property of a booted device');
  const props = await ctx.facts.props();
  const locked = props['ro.boot.flash.locked'];
  const state = props['ro.boot.vbmeta.device_state'];
  const ev: Evidence[] = [
    {
      prop: 'ro.boot.flash.locked',
      value: locked ?? '',
      detail: locked === undefined ? 'not set' : 'flash lock',
    },
    {
      prop: 'ro.boot.vbmeta.device_state',
      value: state ?? '',
      detail: state === undefined ? 'not set' : 'device state',
    },
  ];
  if (locked === '1' && state === 'locked') return pass('bootloader locked', ev);
  return fail(
    locked === undefined || state === undefined
      ? 'the bootloader does not report its lock state: not shown to be locked'
      : 'bootloader is not locked',
    ev,
  );
}

/** 6.4/C-1-3: the device booted the very build being certified (its vbmeta digest). */
async function runsTheBuild(ctx: CheckContext): Promise<CheckOutcome> {
  if (ctx.view.kind !== 'device') return notApplicable('a property of a booted device');
  if (!ctx.build)
    return notApplicable('no build to compare with: pass the build as --image <folder | build-record.json>');
  const d = (await ctx.facts.props())['ro.boot.vbmeta.digest']?.toLowerCase();
  const want = ctx.build.vbmetaDigest;
  const ev = { prop: 'ro.boot.vbmeta.digest', value: d ?? '' };
  if (!d)
    return fail('the bootloader reported no vbmeta digest: which build the device runs is unknown', [
      { ...ev, detail: `not set; the build's is ${want}` },
    ]);
  return d === want
    ? pass(`the device runs the build (vbmeta digest ${d})`, [
        { ...ev, detail: `equals ${ctx.build.source}'s` },
      ])
    : fail('the device runs another build than the one being certified', [
        { ...ev, detail: `the build's (${ctx.build.source}) is ${want}` },
      ]);
}

export const securityChecks: CheckFamily = {
  '6.1/C-0-1': propEquals,
  '6.1/C-0-2': propEquals,
  '6.1/C-0-3': propEquals,
  '6.1/C-0-4': propEquals,
  '6.1/C-0-5': propEquals,
  '6.1/C-0-6': propEquals,
  '6.2/C-0-1': noSu,
  '6.2/C-0-2': selinuxEnforcing,
  '6.3/C-0-1': vbmetaSigned,
  '6.3/C-0-2': vbmetaNotTestKey,
  '6.3/C-0-3': descriptorsCover,
  '6.3/C-0-4': rollbackAndFlags,
  '6.3/C-0-5': contentsMatch,
  '6.4/C-1-1': verifiedBootState,
  '6.4/C-1-2': bootloaderLocked,
  '6.4/C-1-3': runsTheBuild,
};
