import { generateKeyPair } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { copyFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { execa } from 'execa';
import { prng, workDir } from '../helpers.ts';
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
