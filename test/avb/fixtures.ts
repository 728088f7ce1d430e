import { generateKeyPair } from 'node:crypto';
import { chmodSync, existsSync, writeFileSync } from 'node:fs';
import { copyFile, mkdir, rename, writeFile } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';
import { execa } from 'execa';
import { prng, ROOT, workDir } from '../helpers.ts';
import { AVBTOOL } from '../oracles.ts';

/**
 * Shared fixtures for the AVB tests: keys (cached across runs), images, the avbtool oracle.
 * A test that runs avbtool is `it.skipIf(!AVBTOOL.present)` (test/oracles.ts).
 */
export const DIR = workDir('avb');

/** Runs the reference avbtool; returns stdout, throws with stderr on failure. */
export async function avbtool(args: string[], cwd = DIR): Promise<string> {
  const r = await execa('python3', [AVBTOOL.path, ...args], { cwd, reject: false, stripFinalNewline: false });
  if (r.exitCode !== 0) throw new Error(`avbtool ${args.join(' ')} failed (${r.exitCode}): ${r.stderr}`);
  return String(r.stdout);
}

/** Exit code of avbtool (for "must fail" cross-checks). */
export async function avbtoolStatus(args: string[], cwd = DIR): Promise<number> {
  const r = await execa('python3', [AVBTOOL.path, ...args], { cwd, reject: false });
  return r.exitCode ?? -1;
}

/** An RSA key of `bits` (PKCS#1 PEM), generated once and kept in test/.work/avb/keys. */
export async function testKey(bits: 2048 | 4096 | 8192, name = `key${bits}`): Promise<string> {
  const dir = workDir('avb/keys');
  const path = join(dir, `${name}.pem`);
  if (existsSync(path)) return path;
  const { privateKey } = await promisify(generateKeyPair)('rsa', {
    modulusLength: bits,
    publicExponent: 65537,
  });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, privateKey.export({ type: 'pkcs1', format: 'pem' }), { mode: 0o600 });
  await copyFile(tmp, path);
  return path;
}

/** Deterministic pseudo-random bytes. */
export function randomData(size: number, seed: number): Buffer {
  const rnd = prng(seed);
  const b = Buffer.alloc(size);
  for (let i = 0; i + 4 <= size; i += 4) b.writeUInt32LE(Math.floor(rnd() * 0x100000000), i);
  for (let i = size - (size % 4); i < size; i++) b[i] = Math.floor(rnd() * 256);
  return b;
}

/** Writes a deterministic image (random data with some zero blocks, like a filesystem). */
export async function makeImage(path: string, size: number, seed: number): Promise<string> {
  const b = randomData(size, seed);
  for (let off = 4096 * 3; off + 4096 <= size; off += 4096 * 7) b.fill(0, off, off + 4096);
  await writeFile(path, b);
  return path;
}

/**
 * Public half of AOSP's testkey_rsa4096 (external/avb/test/data/testkey_rsa4096.pem, a key AOSP
 * publishes for tests). The PEM text was found through the code search tool in a public GitHub
 * source file embedding that key (wuxianlin spreadtrumtools MainActivity.java); only the public
 * key is kept here. Its AVB blob digest must equal the one the oracles' README states (test/avb/keys.test.ts).
 */
export const AOSP_TESTKEY_RSA4096_PUBLIC_PEM = `-----BEGIN PUBLIC KEY-----
MIICIjANBgkqhkiG9w0BAQEFAAOCAg8AMIICCgKCAgEA2ASv49OEbH4NiT3CjNMS
VeliyfEPXswWcqtEfCxlSpS1FisAuwbvEwdTTPlkuSh6G4SYiNhnpCP5p0vcSg/3
OhiuVKgV/rCtrDXaO60nvK/o0y83NNZRK2xaJ9eWBq9ruIDK+jC0sYWzTaqqwxY0
Grjnx/r5CXerl5PrRK7PILzwgBHbIwxHcblt1ntgR4cWVpO3wiqasEwBDDDYk4fw
7W6LvjBb9qav3YB8RV6PkZNeRP64ggfuecq/MXNiWOPNxLzCER2hSr/+J32h9jWj
XsrcVy8+8Mldhmr4r2an7c247aFfupuFGtUJrpROO8/LXMl5gPfMpkqoatjTMRH5
9gJjKhot0RpmGxZBvb33TcBK5SdJX39Y4yct5clmDlI4Fjj7FutTP+b96aJeJVnY
eUX/A0wmogBajsJRoRX5e/RcgZsYRzXYLQXprQ81dBWjjovMJ9p8XeT6BNMFC7o6
sklFL0fHDUE/l4BNP8G1u3BfpzevSCISRS71D4eS4oQB+RIPFBUkzomZ7rnEF3Bw
Feq+xmwfYrP0LRaH+1YeRauuMuReke1TZl697a3mEjkNg8noa2wtpe7EWmaujJfX
DWxJx/XEkjGLCe4z2qk3tkkY+A5gRcgzke8gVxC+eC2DJtbKYfkv4L8FMFJaEhwA
p13MfC7FlYujO/BDLl7dANsCAwEAAQ==
-----END PUBLIC KEY-----
`;

const FEC_BIN = join(DIR, 'fec-bin');

/**
 * avbtool with a stand-in libfec `fec` on PATH, so add_hashtree_footer generates FEC the way a
 * real build does (no Debian package ships libfec's `fec` tool). Call installFakeFec() first.
 */
export async function avbtoolWithFec(
  args: string[],
  cwd = DIR,
): Promise<{ stdout: string; stderr: string; exitCode: number }> {
  const r = await execa('python3', [AVBTOOL.path, ...args], {
    cwd,
    reject: false,
    stripFinalNewline: false,
    env: { PATH: `${FEC_BIN}${delimiter}${process.env.PATH}` },
  });
  return { stdout: String(r.stdout), stderr: String(r.stderr), exitCode: r.exitCode ?? -1 };
}

const FAKE_FEC = `
import { copyFileSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { encodeFec, fecSize } from ${JSON.stringify(join(ROOT, 'scripts/formats/payload/fec.ts'))};
const a = process.argv.slice(2);
const roots = Number(a[a.indexOf('--roots') + 1]);
if (a[0] === '--print-fec-size') {
  // libfec fec_ecc_get_size: parity plus one 4096-byte header block.
  console.log(fecSize(Math.ceil(Number(a[1]) / 4096) * 4096, roots, 4096) + 4096);
} else {
  const [input, output] = a.slice(-2);
  const size = statSync(input).size;
  const parity = fecSize(size, roots, 4096);
  copyFileSync(input, output);
  const fh = await open(output, 'r+');
  await encodeFec(fh, { dataOffset: 0, dataSize: size, fecOffset: size, fecSize: parity, roots, blockSize: 4096 });
  await fh.close();
  const fec = readFileSync(output).subarray(size);
  const header = Buffer.alloc(4096);
  // struct fec_header at the end: magic, version, size, roots, fec_size, inp_size, hash[32]
  const h = header.subarray(4096 - 60);
  h.writeUInt32LE(0xfecfecfe, 0);
  h.writeUInt32LE(0, 4);
  h.writeUInt32LE(60, 8);
  h.writeUInt32LE(roots, 12);
  h.writeUInt32LE(parity, 16);
  h.writeBigUInt64LE(BigInt(size), 20);
  writeFileSync(output, Buffer.concat([fec, header]));
}
`;

/**
 * The stand-in answers avbtool the way libfec's `fec` does (--print-fec-size, --encode writing the
 * RS parity followed by a fec_header whose last 60 bytes avbtool reads), computing the parity with
 * the libfec-interleaved RS encoder of scripts/formats/payload/fec.ts.
 */
export async function installFakeFec(): Promise<void> {
  await mkdir(FEC_BIN, { recursive: true });
  const script = join(FEC_BIN, 'fec.mts');
  await writeFile(script, FAKE_FEC);
  const tsx = join(ROOT, 'node_modules/.bin/tsx');
  const bin = join(FEC_BIN, 'fec');
  writeFileSync(
    `${bin}.${process.pid}`,
    `#!/bin/sh\nexec ${JSON.stringify(tsx)} ${JSON.stringify(script)} "$@"\n`,
  );
  chmodSync(`${bin}.${process.pid}`, 0o755);
  await rename(`${bin}.${process.pid}`, bin);
}
