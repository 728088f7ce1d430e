/**
 * Values of fastboot variables as real bootloaders and fastbootd report them, read the way the AOSP
 * host tool reads them (system/core/fastboot/fastboot.cpp):
 *
 * - `max-download-size`: android::base::ParseUint after Trim — "0x…" is hex, anything else decimal
 *   (fastbootd answers "0x10000000", several vendor bootloaders "268435456");
 * - `partition-size:<p>` (and erase/logical-block-size): fb_fix_numeric_var — Trim, then *implicit
 *   hex*: "4000000" means 0x4000000 (hammerhead and other LK bootloaders omit the prefix);
 * - `slot-count`: ParseInt (decimal unless "0x");
 * - `current-slot`: "a" or "_a" (get_current_slot strips one leading underscore);
 * - `getvar all`: INFO lines, "name: value" from bootloaders (LK/ABL print `%s: %s`, the name may
 *   itself hold colons: "partition-size:boot_a: 0x4000000") or "name:arg:value" from fastbootd.
 *
 * Every parser returns undefined for what the real client would not accept, never a guess.
 */

/** android::base::ParseUint: optional surrounding whitespace, "0x"/"0X" → hex, otherwise decimal. */
export function parseUintVar(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  let n: bigint;
  if (/^0[xX][0-9a-fA-F]+$/.test(v)) n = BigInt(v);
  else if (/^\d+$/.test(v)) n = BigInt(v);
  else return undefined;
  return n <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : undefined;
}

/** fb_fix_numeric_var then ParseUint: a size without "0x" is hex all the same. */
export function parseHexSizeVar(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const v = value.trim();
  return parseUintVar(/^0[xX]/.test(v) ? v : `0x${v}`);
}

/** "a" / "_a" → "a"; undefined for anything that is not one slot letter. */
export function parseSlotVar(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const v = value.trim().replace(/^_/, '');
  return /^[a-z]$/.test(v) ? v : undefined;
}

/** "yes"/"no" (fastbootd, most bootloaders) and "true"/"false" (dynamic-partition) as a boolean. */
export function parseYesNoVar(value: string | undefined): boolean | undefined {
  const v = value?.trim().toLowerCase();
  if (v === 'yes' || v === 'true') return true;
  if (v === 'no' || v === 'false') return false;
  return undefined;
}

/**
 * The INFO lines of `getvar all` as a map keyed by the variable as one would ask for it
 * ("product", "partition-size:boot_a"). Lines that are not a variable (banners, "all: done")
 * are skipped; a later duplicate wins, as a human reading the list would take the last one.
 */
export function parseGetvarAll(lines: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const raw of lines) {
    const line = raw.replace(/\r?\n$/, '');
    // Bootloader style: names never contain spaces, so the first ": " separates name and value.
    const sp = /^([^\s:][^\s]*?):\s+(.*)$/.exec(line);
    let name: string;
    let value: string;
    if (sp) {
      name = sp[1];
      value = sp[2];
    } else {
      // fastbootd style "name:arg:value": the value is after the last colon.
      const i = line.lastIndexOf(':');
      if (i <= 0 || /\s/.test(line.slice(0, i))) continue;
      name = line.slice(0, i);
      value = line.slice(i + 1);
    }
    if (name === 'all') continue;
    out[name] = value.trim();
  }
  return out;
}
