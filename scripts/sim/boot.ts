/**
 * Booting the virtual device into Android: the one routine every path that starts Android goes
 * through (power on, `fastboot reboot`, `adb reboot`, the end of a sideloaded update).
 *
 * As a bootloader with A/B boot control (libavb_ab / boot_control HAL) does it: the active slot is
 * tried first, then the other one if it is still bootable (not marked unbootable, and either booted
 * successfully before or with retries left). A slot that has not booted successfully spends one
 * retry. Each slot is verified (verified-boot.ts); a slot that does not verify is marked unbootable
 * (no retries left) and the next one is tried; the slot that boots becomes the active one. When no
 * slot boots, the device stays in the bootloader, as real ones do ("no valid slot to boot").
 *
 * Once Android is up, the slot is marked successful (update_verifier), the stored rollback indexes
 * move up to what the booted slot carries (but never past what the other bootable slot needs),
 * and, after a wipe, an owner who turns USB debugging back on (`ownerEnablesAdb`) does so.
 * `ro.boot.verifiedbootstate`, `ro.boot.veritymode`, `ro.boot.vbmeta.digest`, `ro.boot.slot_suffix`
 * and `sys.boot_completed` come from the boot record written here.
 */
import { createHash } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { VBMETA_FLAG_HASHTREE_DISABLED, VBMETA_FLAG_VERIFICATION_DISABLED } from '../formats/avb/vbmeta.ts';
import type { ProgressFn } from '../progress.ts';
import { ownerEnablesUsbDebugging, readSettings } from './settings.ts';
import type { BootRecord, DeviceJson, SimState, Slot } from './state.ts';
import { ensureAvb, type SlotVerdict, slotRollbackIndexes, verifySlot } from './verified-boot.ts';

export interface BootOptions {
  /** One line per event ("slot b: red (ERROR_VERIFICATION …)"). */
  log?: (line: string) => void;
  onProgress?: ProgressFn;
}

const other = (s: Slot): Slot => (s === 'a' ? 'b' : 'a');

function bootable(d: DeviceJson, s: Slot): boolean {
  if (d.slotUnbootable?.[s]) return false;
  return d.slotSuccessful?.[s] === true || (d.slotRetryCount?.[s] ?? 0) > 0;
}

/**
 * Boots Android from the device's state: verifies, picks the slot, records the outcome and leaves
 * the device in "adb" mode (booted) or "bootloader" (nothing bootable). Returns the boot record.
 */
export async function bootAndroid(st: SimState, opts: BootOptions = {}): Promise<BootRecord> {
  await st.reload();
  await ensureAvb(st);
  const d = st.info;
  const log = opts.log ?? (() => {});
  const record: BootRecord = { booted: false, slot: null, failures: [] };
  const marks: Array<(d: DeviceJson) => void> = [];
  let verdict: SlotVerdict | undefined;
  const candidates: Array<Slot | null> = d.currentSlot ? [d.currentSlot, other(d.currentSlot)] : [null];
  for (const slot of candidates) {
    if (slot && !bootable(d, slot)) continue;
    if (slot && !d.slotSuccessful?.[slot]) {
      const left = Math.max(0, (d.slotRetryCount?.[slot] ?? 0) - 1);
      marks.push((x) => {
        x.slotRetryCount = { a: 0, b: 0, ...x.slotRetryCount, [slot]: left };
      });
    }
    const v = await verifySlot(st, slot, { onProgress: opts.onProgress });
    if (v.boots) {
      verdict = v;
      record.booted = true;
      record.slot = slot;
      break;
    }
    const message = v.message ?? v.result;
    record.failures.push({ slot, result: v.result, message });
    log(`slot ${slot ?? '-'}: does not boot (${v.result}: ${message})`);
    if (slot)
      marks.push((x) => {
        x.slotUnbootable = { a: false, b: false, ...x.slotUnbootable, [slot]: true };
        x.slotRetryCount = { a: 0, b: 0, ...x.slotRetryCount, [slot]: 0 };
        x.slotSuccessful = { a: false, b: false, ...x.slotSuccessful, [slot]: false };
      });
  }
  if (verdict) {
    const v = verdict.verification;
    record.verifiedBootState = verdict.state;
    record.vbmetaDigest = v.vbmetaDigest;
    record.vbmetaSize = v.vbmetaSize;
    if (v.publicKey?.length) record.publicKeyDigest = createHash('sha256').update(v.publicKey).digest('hex');
    if (!(v.flags & VBMETA_FLAG_VERIFICATION_DISABLED))
      record.verityMode = v.flags & VBMETA_FLAG_HASHTREE_DISABLED ? 'disabled' : 'enforcing';
    log(`slot ${record.slot ?? '-'}: ${verdict.state}, vbmeta digest ${v.vbmetaDigest ?? '-'}`);
  }
  const slot = record.slot;
  // Rollback protection moves forward only on a locked device that verified cleanly, and only as
  // far as the other slot, while it can still boot, allows (libavb_ab's rule).
  let rollback: Record<string, string> | undefined;
  if (verdict && !d.unlocked && verdict.result === 'OK') {
    const fallback =
      slot && bootable(d, other(slot)) ? await slotRollbackIndexes(st, other(slot)) : undefined;
    rollback = { ...d.avb?.rollbackIndexes };
    for (const [loc, value] of verdict.verification.rollbackIndexes) {
      let v = value;
      const keep = fallback?.get(loc);
      if (keep !== undefined && keep < v) v = keep;
      if (v > BigInt(rollback[String(loc)] ?? '0')) rollback[String(loc)] = v.toString();
    }
  }
  await st.update((x) => {
    for (const m of marks) m(x);
    x.boot = record;
    x.mode = record.booted ? 'adb' : 'bootloader';
    if (record.booted && slot) {
      x.currentSlot = slot;
      // update_verifier: the system came up, the slot is good.
      x.slotSuccessful = { a: false, b: false, ...x.slotSuccessful, [slot]: true };
    }
    if (rollback && x.avb) x.avb.rollbackIndexes = rollback;
  });
  if (record.booted) {
    // init creates what a fresh /data needs on every boot.
    await mkdir(join(st.dir, 'data', 'media', '0'), { recursive: true });
    await mkdir(join(st.dir, 'data', 'local', 'tmp'), { recursive: true });
    // After a wipe the device sits at setup with USB debugging off, until an owner turns it on.
    if (
      st.info.ownerEnablesAdb &&
      (await readSettings(st.dir, st.info.serial)).global.device_provisioned === '0'
    )
      await ownerEnablesUsbDebugging(st.dir);
  }
  return record;
}
