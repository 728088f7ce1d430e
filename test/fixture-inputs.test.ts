/** The digest that keys fixtures cached under test/.work follows what they are made from. */
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { describe, expect, it } from 'vitest';
import { inputsDigest } from './fixture-inputs.ts';
import { ROOT } from './helpers.ts';

// The digest follows references only inside the repository and outside test/, so the sample
// generator lives in a hidden folder at the top of it, removed after each test.
const dir = join(ROOT, '.fixture-inputs-test');
const rel = (p: string) => relative(ROOT, join(dir, p));

function write(files: Record<string, string>) {
  rmSync(dir, { recursive: true, force: true });
  for (const [p, c] of Object.entries(files)) {
    mkdirSync(join(dir, p, '..'), { recursive: true });
    writeFileSync(join(dir, p), c);
  }
}

describe('inputsDigest', () => {
  it('changes with a file the generator imports, a worker it starts and a data file it opens', () => {
    const files = {
      'gen.ts': "import { a } from './lib/a.ts';\nconst w = new URL('./worker.mjs', import.meta.url);\n",
      'lib/a.ts': "export const a = resolve(import.meta.dirname, 'data.json');\n",
      'lib/data.json': '{}',
      'worker.mjs': '',
      'unrelated.ts': '',
    };
    try {
      write(files);
      const base = inputsDigest([rel('gen.ts')]);
      expect(inputsDigest([rel('gen.ts')])).toBe(base);
      for (const p of ['lib/a.ts', 'lib/data.json', 'worker.mjs']) {
        write({ ...files, [p]: `${files[p as keyof typeof files]}// changed\n` });
        expect(inputsDigest([rel('gen.ts')]), p).not.toBe(base);
      }
      write({ ...files, 'unrelated.ts': 'changed' });
      expect(inputsDigest([rel('gen.ts')])).toBe(base);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('counts every file of a folder but those it is told to skip', () => {
    try {
      write({ 'x/app.yaml': 'a', 'x/app.apk': 'built' });
      const skip = { path: rel('x'), skip: /\.apk$/ };
      const base = inputsDigest([skip]);
      write({ 'x/app.yaml': 'a', 'x/app.apk': 'built again' });
      expect(inputsDigest([skip])).toBe(base);
      expect(inputsDigest([rel('x')])).not.toBe(inputsDigest([skip]));
      write({ 'x/app.yaml': 'b', 'x/app.apk': 'built again' });
      expect(inputsDigest([skip])).not.toBe(base);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
