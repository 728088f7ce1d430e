import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..');
const TESTS = join(ROOT, 'test') + sep;

/**
 * What a fixture cached under test/.work is made from (see `onceInDir` in test/helpers.ts): paths
 * relative to the repository (or absolute) of files and folders. A folder counts with every file
 * under it but those matching `skip` (outputs kept beside their inputs, such as the APKs built
 * into prebuilt-apps/). A source file counts with the repository files it refers to,
 * transitively: relative imports (static and dynamic), workers and data opened through
 * `new URL('./x', import.meta.url)` or `resolve(import.meta.dirname, 'x')` — a generator brings
 * its own code. References into test/ are not followed: a test module counts where it is listed
 * (the file whose code makes the fixture), not because a generator's caller imports it.
 */
export type FixtureInput = string | { path: string; skip: RegExp };

const SOURCE = /\.(ts|mts|mjs|js)$/;
const REFERENCES = [
  /(?:\bfrom|\bimport)\s*\(?\s*['"](\.{1,2}\/[^'"\n]+)['"]/g,
  /new URL\(\s*['"](\.{1,2}\/[^'"\n]+)['"]\s*,\s*import\.meta\.url/g,
  /(?:resolve|join)\(\s*import\.meta\.dirname\s*,\s*['"]([^'"\n]+)['"]\s*\)/g,
];

/** A short printable name of an input, as the `.done` marker of a fixture records it. */
export function inputName(input: FixtureInput): string {
  return typeof input === 'string' ? input : `${input.path} (but ${input.skip})`;
}

/**
 * SHA-256 over the path and content of every file the inputs name, in path order: equal digests,
 * equal inputs. A path that does not exist counts as missing (it may appear later).
 */
export function inputsDigest(inputs: readonly FixtureInput[]): string {
  const files = new Map<string, string>();
  const visit = (abs: string, skip?: RegExp, listed = false) => {
    if (files.has(abs) || (!listed && abs.startsWith(TESTS))) return;
    const st = statSync(abs, { throwIfNoEntry: false });
    if (!st) {
      files.set(abs, 'missing');
      return;
    }
    if (st.isDirectory()) {
      for (const name of readdirSync(abs, { recursive: true, encoding: 'utf8' }).sort()) {
        const f = join(abs, name);
        if (!skip?.test(f) && statSync(f).isFile()) visit(f, undefined, true);
      }
      return;
    }
    const content = readFileSync(abs);
    files.set(abs, createHash('sha256').update(content).digest('hex'));
    if (!SOURCE.test(abs) || !abs.startsWith(ROOT + sep)) return;
    const text = content.toString('utf8');
    for (const re of REFERENCES)
      for (const m of text.matchAll(re)) {
        const ref = resolve(dirname(abs), m[1]!);
        if (ref.startsWith(ROOT + sep)) visit(ref);
      }
  };
  for (const input of inputs) {
    const { path, skip } = typeof input === 'string' ? { path: input, skip: undefined } : input;
    visit(resolve(ROOT, path), skip, true);
  }
  const h = createHash('sha256');
  for (const abs of [...files.keys()].sort()) h.update(`${relative(ROOT, abs)}\0${files.get(abs)}\n`);
  return h.digest('hex');
}
