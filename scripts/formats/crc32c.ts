/**
 * CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) as the Linux kernel's crc32c(seed, buf, len):
 * no initial or final inversion beyond the seed the caller passes (erofs passes ~0 and stores the
 * result as is). node:zlib only has the IEEE CRC-32.
 */
const TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32cRaw(seed: number, buf: Uint8Array): number {
  let c = seed >>> 0;
  for (let i = 0; i < buf.length; i++) c = TABLE[(c ^ buf[i]) & 0xff] ^ (c >>> 8);
  return c >>> 0;
}

/** The usual CRC-32C (iSCSI, ext4 metadata_csum before their own seeding): inverted in and out. */
export function crc32c(buf: Uint8Array): number {
  return (crc32cRaw(0xffffffff, buf) ^ 0xffffffff) >>> 0;
}
