// The CLI as one ES module, made by `npm start` (scripts/setup.sh): the launcher runs it instead
// of the TypeScript sources when it is up to date, which saves loading ~150 modules one by one
// through tsx (about half a second per command). It is a cache, never a requirement: when a
// source listed in its manifest changed (or it is missing), the launcher runs the sources.
// Plain JavaScript, so the launcher can use it without a TypeScript loader.
import { readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const ROOT = resolve(import.meta.dirname, '../..');
export const DEFAULT_BUNDLE_DIR = join(ROOT, '.omie/cli');

/** `{ file, manifest }` of the bundle in `dir` (its chunks sit beside it). */
function paths(dir) {
  return { file: join(dir, 'main.mjs'), manifest: join(dir, 'inputs.json') };
}

/**
 * Path of the bundle in `dir` when every source it was made from still has the size and
 * modification time recorded when it was made; otherwise null.
 */
export function freshBundle(dir = DEFAULT_BUNDLE_DIR) {
  const { file, manifest } = paths(dir);
  let inputs;
  try {
    inputs = JSON.parse(readFileSync(manifest, 'utf8')).inputs;
    statSync(file);
  } catch {
    return null;
  }
  for (const [path, [mtimeMs, size]] of Object.entries(inputs)) {
    const st = statSync(resolve(ROOT, path), { throwIfNoEntry: false });
    if (!st || st.mtimeMs !== mtimeMs || st.size !== size) return null;
  }
  return file;
}

/**
 * Bundles scripts/cli/main.ts (npm packages stay imports) into `dir`. Every source keeps its
 * own import.meta values (file paths baked in), so paths relative to a module still resolve.
 */
export async function buildBundle(dir = DEFAULT_BUNDLE_DIR) {
  const esbuild = await import('esbuild');
  const { file } = paths(dir);
  // Built beside the target, then swapped in: a launcher never sees half a bundle.
  const tmp = `${dir}.tmp-${process.pid}`;
  const metaOf = {
    name: 'per-module import.meta',
    setup(b) {
      b.onLoad({ filter: /\.(ts|mjs)$/ }, (args) => {
        const text = readFileSync(args.path, 'utf8')
          .replaceAll('import.meta.dirname', JSON.stringify(dirname(args.path)))
          .replaceAll('import.meta.filename', JSON.stringify(args.path))
          .replaceAll('import.meta.url', JSON.stringify(pathToFileURL(args.path).href));
        return { contents: text, loader: args.path.endsWith('.ts') ? 'ts' : 'js' };
      });
    },
  };
  const r = await esbuild.build({
    entryPoints: {
      main: join(ROOT, 'scripts/cli/main.ts'),
      // Worker threads cannot inherit the launcher's TypeScript loader: TypeScript workers are
      // bundled as entries of their own, found by the bundled code through __OMIE_BUNDLE_DIR__.
      'extract.worker': join(ROOT, 'scripts/formats/payload/extract.worker.ts'),
    },
    define: { __OMIE_BUNDLE_DIR__: JSON.stringify(dir) },
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    // Lazily imported commands stay separate chunks, so the npm packages only they use (adbkit,
    // zx …) are not loaded by every command.
    splitting: true,
    outdir: tmp,
    entryNames: '[name]',
    chunkNames: 'chunk-[hash]',
    outExtension: { '.js': '.mjs' },
    metafile: true,
    logLevel: 'warning',
    plugins: [metaOf],
  });
  const inputs = {};
  for (const p of Object.keys(r.metafile.inputs)) {
    const abs = resolve(process.cwd(), p);
    const st = statSync(abs);
    inputs[relative(ROOT, abs)] = [st.mtimeMs, st.size];
  }
  writeFileSync(join(tmp, 'inputs.json'), `${JSON.stringify({ inputs }, null, 1)}\n`);
  rmSync(dir, { recursive: true, force: true });
  renameSync(tmp, dir);
  return file;
}

if (process.argv[1] && resolve(process.argv[1]) === import.meta.filename) {
  const dir = process.argv[2] ? resolve(process.argv[2]) : DEFAULT_BUNDLE_DIR;
  try {
    console.log(`omie: bundled the CLI into ${relative(process.cwd(), await buildBundle(dir))}`);
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    console.error(`omie: could not bundle the CLI (${e.message}); commands run from the sources`);
  }
}
