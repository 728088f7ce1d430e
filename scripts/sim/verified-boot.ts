/**
 * The virtual device's bootloader side of Android Verified Boot: the key it trusts (its OEM key,
 * fused at the factory), the custom key an owner may enroll in `avb_custom_key` (Pixel's flow),
 * the stored rollback indexes, the factory vbmeta a new device ships with, and the verification of
 * one slot as a bootloader does it with libavb (scripts/formats/avb verifyImageSet):
 *
 * - locked: everything must verify, with the OEM key (green) or the enrolled custom key (yellow);
 *   vbmeta flags that disable verity or verification are refused; anything else is red;
 * - unlocked: verification errors are tolerated (orange), as AVB_SLOT_VERIFY_FLAGS_ALLOW_VERIFICATION_ERROR;
 *   a vbmeta that cannot be read at all still does not boot.
 *
 * The sim's own OEM key is an RSA-2048 key made when the state is created: never the partner's.
 */
import { createHash, createPrivateKey, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, copyFile, mkdir, open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InputError } from '../errors.ts';
import {
  type AvbSlotVerifyResult,
  avbPublicKeyFromBytes,
  decodeAvbPublicKey,
  generateAvbKey,
  generateVbmetaBlob,
  type ImageSetVerification,
  readAvbImage,
  resultShouldContinue,
  VBMETA_FLAG_HASHTREE_DISABLED,
  VBMETA_FLAG_VERIFICATION_DISABLED,
  verifyImageSet,
} from '../formats/avb/index.ts';
import {
  AVB_CUSTOM_KEY,
  type SimAvbProfile,
  type SimState,
  type Slot,
  type VerifiedBootState,
} from './state.ts';

const OEM_PUBLIC = 'oem_key.avbpubkey';
const OEM_PRIVATE = 'oem_key.pem';
/** How much of `boot` the factory vbmeta covers (the factory kernel the sim pretends to ship). */
const FACTORY_BOOT_BYTES = 64 * 1024;

function avbDir(st: SimState): string {
  return join(st.dir, 'avb');
}

/**
 * Gives a new device its bootloader keys and factory OS: the OEM key (`profile.oemKey`, or one of
 * its own) and, when the sim holds the private half, a vbmeta signed with it in every slot, so a
 * new locked device boots green as it left the factory.
 */
export async function provisionAvb(
  st: SimState,
  profile: SimAvbProfile = {},
  opts: { factoryImage?: boolean } = {},
): Promise<void> {
  const dir = avbDir(st);
  await mkdir(dir, { recursive: true });
  const priv = join(dir, OEM_PRIVATE);
  let publicKey: Buffer;
  if (profile.oemKey) {
    const bytes = await readFile(profile.oemKey).catch((e: NodeJS.ErrnoException) => {
      throw new InputError(`cannot read the OEM key ${profile.oemKey}: ${e.code ?? e.message}`, {
        code: 'SIM_OEM_KEY',
        context: { file: profile.oemKey },
      });
    });
    publicKey = avbPublicKeyFromBytes(bytes, profile.oemKey);
    if (bytes.toString('latin1').includes('PRIVATE KEY-----')) {
      await copyFile(profile.oemKey, priv);
      await chmod(priv, 0o600);
    }
  } else
    publicKey = existsSync(priv)
      ? avbPublicKeyFromBytes(await readFile(priv))
      : await generateAvbKey(priv, 2048);
  await writeFile(join(dir, OEM_PUBLIC), publicKey);
  await st.update((d) => {
    d.avb = { ...d.avb, oemKeySha256: createHash('sha256').update(publicKey).digest('hex') };
  });
  if (existsSync(priv) && opts.factoryImage !== false) await writeFactoryVbmeta(st, priv);
}

/**
 * A state made before the sim had verified boot gets its OEM key now; what its slots hold stays
 * (a flashed vbmeta signed by another key then boots as such: orange unlocked, red locked).
 */
export async function ensureAvb(st: SimState): Promise<void> {
  if (!st.info.avb || !existsSync(join(avbDir(st), OEM_PUBLIC)))
    await provisionAvb(st, {}, { factoryImage: false });
}

/** The factory OS: a vbmeta signed by the OEM key over the start of `boot`, in each slot. */
async function writeFactoryVbmeta(st: SimState, keyPath: string): Promise<void> {
  const parts = st.info.partitions;
  if (!parts.vbmeta) return;
  const descriptors = [];
  if (parts.boot) {
    const size = Math.min(FACTORY_BOOT_BYTES, parts.boot.size);
    const salt = randomBytes(32);
    const digest = createHash('sha256').update(salt).update(Buffer.alloc(size)).digest();
    descriptors.push({
      kind: 'hash' as const,
      imageSize: size,
      hashAlgorithm: 'sha256',
      partitionName: 'boot',
      salt,
      digest,
      flags: 0,
    });
  }
  // The algorithm its key's size calls for (an OEM's RSA-4096 key signs SHA256_RSA4096).
  const bits = createPrivateKey(await readFile(keyPath)).asymmetricKeyDetails?.modulusLength ?? 2048;
  const { blob } = await generateVbmetaBlob(
    {
      algorithm: bits === 4096 ? 'SHA256_RSA4096' : bits === 8192 ? 'SHA256_RSA8192' : 'SHA256_RSA2048',
      key: keyPath,
      props: { 'com.omie.sim.factory': 'true' },
    },
    descriptors,
  );
  for (const slot of st.slotsOf('vbmeta')) {
    const tmp = st.tempPath('factory');
    await writeFile(tmp, blob);
    await st.commitPartition('vbmeta', slot, tmp);
  }
}

/** The AVB public key blob of the OEM key. */
export async function oemPublicKey(st: SimState): Promise<Buffer> {
  return readFile(join(avbDir(st), OEM_PUBLIC));
}

/**
 * The key enrolled in `avb_custom_key`: an AVB public key blob (as `avbtool extract_public_key`
 * writes it) at the start of the partition, zeros after it. Undefined when the partition is absent,
 * erased, or does not hold a key.
 */
export async function enrolledCustomKey(st: SimState): Promise<Buffer | undefined> {
  if (!st.info.partitions[AVB_CUSTOM_KEY]) return undefined;
  const fh = await open(st.partitionPath(AVB_CUSTOM_KEY, null), 'r');
  try {
    const size = (await fh.stat()).size;
    const buf = Buffer.alloc(size);
    await fh.read(buf, 0, size, 0);
    return customKeyFrom(buf);
  } finally {
    await fh.close();
  }
}

/** The key blob at the start of `data` (zero padded), or undefined when it is not one. */
export function customKeyFrom(data: Buffer): Buffer | undefined {
  if (data.length < 8) return undefined;
  const bits = data.readUInt32BE(0);
  const len = 8 + 2 * (bits / 8);
  if (!bits || !Number.isInteger(len) || len > data.length) return undefined;
  try {
    decodeAvbPublicKey(data.subarray(0, len));
  } catch {
    return undefined;
  }
  if (data.subarray(len).some((b) => b !== 0)) return undefined;
  return Buffer.from(data.subarray(0, len));
}

export function storedRollbackIndex(st: SimState, location: number): bigint {
  return BigInt(st.info.avb?.rollbackIndexes?.[String(location)] ?? '0');
}

/** The file of partition `name` as the bootloader reads it for `slot` (A/B suffix as libavb asks). */
export function slotPartition(st: SimState, slot: Slot | null, name: string, useAbSuffix = true) {
  const parts = st.info.partitions;
  if (useAbSuffix && slot) {
    if (parts[`${name}_${slot}`]?.logical) return st.partitionPath(`${name}_${slot}`, null);
    return parts[name]?.slotted ? st.partitionPath(name, slot) : undefined;
  }
  return parts[name] && !parts[name].slotted ? st.partitionPath(name, null) : undefined;
}

export interface SlotVerdict {
  /** The bootloader lets this slot boot. */
  boots: boolean;
  /** green / yellow / orange when it boots. */
  state?: VerifiedBootState;
  result: AvbSlotVerifyResult;
  /** Why it does not boot (or what an unlocked device tolerated). */
  message?: string;
  verification: ImageSetVerification;
}

/** Verifies `slot` as the bootloader does before booting it (see the module comment). */
export async function verifySlot(
  st: SimState,
  slot: Slot | null,
  opts: { onProgress?: Parameters<typeof verifyImageSet>[0]['onProgress'] } = {},
): Promise<SlotVerdict> {
  const locked = !st.info.unlocked;
  const oem = await oemPublicKey(st);
  const custom = await enrolledCustomKey(st);
  const v = await verifyImageSet({
    partition: (name, ab) => slotPartition(st, slot, name, ab),
    topLevel: st.info.partitions.vbmeta ? 'vbmeta' : 'boot',
    abSlot: slot !== null,
    trustedKey: (pk) => pk.equals(oem) || (custom?.equals(pk) ?? false),
    storedRollbackIndex: (loc) => storedRollbackIndex(st, loc),
    allowVerificationError: !locked,
    onProgress: opts.onProgress,
  });
  const first = v.problems[0]?.message;
  if (!locked) {
    const boots = v.problems.every((p) => resultShouldContinue(p.result));
    return { boots, state: boots ? 'orange' : undefined, result: v.result, message: first, verification: v };
  }
  if (v.result !== 'OK') return { boots: false, result: v.result, message: first, verification: v };
  if (v.flags & (VBMETA_FLAG_HASHTREE_DISABLED | VBMETA_FLAG_VERIFICATION_DISABLED))
    return {
      boots: false,
      result: 'ERROR_VERIFICATION',
      message: `vbmeta disables ${v.flags & VBMETA_FLAG_VERIFICATION_DISABLED ? 'verification' : 'dm-verity'} (flags ${v.flags}): refused on a locked device`,
      verification: v,
    };
  const state: VerifiedBootState = v.publicKey?.equals(oem) ? 'green' : 'yellow';
  return { boots: true, state, result: 'OK', verification: v };
}

/**
 * Rollback indexes a slot's vbmeta structs carry (top-level and chained), read without verifying:
 * what the other slot needs to stay bootable when the stored indexes move up.
 */
export async function slotRollbackIndexes(st: SimState, slot: Slot | null): Promise<Map<number, bigint>> {
  const out = new Map<number, bigint>();
  const top = slotPartition(st, slot, st.info.partitions.vbmeta ? 'vbmeta' : 'boot');
  if (!top) return out;
  try {
    const img = await readAvbImage(top);
    out.set(img.vbmeta.header.rollbackIndexLocation, img.vbmeta.header.rollbackIndex);
    for (const d of img.vbmeta.descriptors) {
      if (d.kind !== 'chain_partition') continue;
      const file = slotPartition(st, slot, d.partitionName, !(d.flags & 1));
      if (file) out.set(d.rollbackIndexLocation, (await readAvbImage(file)).vbmeta.header.rollbackIndex);
    }
  } catch {
    /* an unreadable slot holds nothing back */
  }
  return out;
}
