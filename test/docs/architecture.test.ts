import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers.ts';

/**
 * The import rules docs/architecture.md states, checked against the code: the "may import"
 * column of its layer table is read from the document itself, so the two cannot drift apart.
 */

const SCRIPTS = resolve(ROOT, 'scripts');
/** Files at the root of scripts/ that every folder may import. */
const SHARED_ROOT_FILES = ['errors.ts', 'progress.ts'];

function layerTable(): Map<string, Set<string>> {
  const md = readFileSync(resolve(ROOT, 'docs/architecture.md'), 'utf8');
  const section = md.split(/^## /m).find((s) => s.startsWith('Layers and which may import which'));
  if (!section) throw new Error('docs/architecture.md has no "## Layers and which may import which" section');
  const rows = new Map<string, Set<string>>();
  for (const line of section.split('\n')) {
    const cells = line.split('|').map((c) => c.trim());
    const folder = /^`([a-z0-9-]+)\/`$/.exec(cells[1] ?? '')?.[1];
    if (!folder) continue;
    const may = [...(cells[3] ?? '').matchAll(/`([a-z0-9-]+)\/`/g)].map((m) => m[1]!);
    rows.set(folder, new Set(may));
  }
  return rows;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return sourceFiles(p);
    return /\.(ts|mts|mjs|js)$/.test(name) && !name.endsWith('.d.ts') && !name.endsWith('.d.mts') ? [p] : [];
  });
}

/** The folder of scripts/ a path is in, or the file name for a file at its root. */
function unit(path: string): string {
  const parts = relative(SCRIPTS, path).split(sep);
  return parts.length > 1 ? parts[0]! : `./${parts[0]}`;
}

interface Edge {
  from: string;
  to: string;
  file: string;
  spec: string;
}

/** Every relative import (static, type-only, re-export or dynamic) between units of scripts/. */
function imports(): Edge[] {
  const edges: Edge[] = [];
  for (const file of sourceFiles(SCRIPTS)) {
    const info = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
    for (const { fileName: spec } of info.importedFiles) {
      if (!spec.startsWith('.')) continue;
      const target = resolve(dirname(file), spec);
      if (!target.startsWith(SCRIPTS + sep)) continue; // package.json and the like
      const from = unit(file);
      const to = unit(target);
      if (from !== to) edges.push({ from, to, file: relative(ROOT, file), spec });
    }
  }
  return edges;
}

const table = layerTable();
const edges = imports();
const folders = readdirSync(SCRIPTS).filter((n) => statSync(join(SCRIPTS, n)).isDirectory());

describe('docs/architecture.md import rules', () => {
  it('lists every folder of scripts/, and only those', () => {
    expect(table.size).toBeGreaterThan(10);
    const problems = [
      ...folders.filter((f) => !table.has(f)).map((f) => `scripts/${f}/ has no row in the layer table`),
      ...[...table.keys()]
        .filter((f) => !folders.includes(f))
        .map((f) => `row ${f}/: no such folder in scripts/`),
      ...[...table].flatMap(([f, may]) =>
        [...may].filter((m) => !table.has(m)).map((m) => `row ${f}/ allows ${m}/, which has no row`),
      ),
    ];
    expect(problems).toEqual([]);
  });

  it('the table itself has no cycle (so the folders cannot import each other in a circle)', () => {
    const state = new Map<string, 'visiting' | 'done'>();
    const cycles: string[] = [];
    const visit = (f: string, path: string[]) => {
      if (state.get(f) === 'done') return;
      if (state.get(f) === 'visiting') {
        cycles.push([...path.slice(path.indexOf(f)), f].join(' → '));
        return;
      }
      state.set(f, 'visiting');
      for (const m of table.get(f) ?? []) visit(m, [...path, f]);
      state.set(f, 'done');
    };
    for (const f of table.keys()) visit(f, []);
    expect(cycles).toEqual([]);
  });

  it('every import between folders is one the table allows', () => {
    const problems = edges
      .filter((e) => {
        if (e.from.startsWith('./')) {
          // The launcher starts the CLI; errors.ts and progress.ts import no folder.
          return !(e.from === './omie.mjs' && e.to === 'cli');
        }
        if (e.to.startsWith('./')) return !SHARED_ROOT_FILES.includes(e.to.slice(2));
        return !table.get(e.from)?.has(e.to);
      })
      .map((e) => `${e.file} imports ${e.spec} (${e.from}/ → ${e.to.startsWith('./') ? e.to : `${e.to}/`})`);
    expect(problems).toEqual([]);
  });

  it('sees the imports it checks (the scan is not blind)', () => {
    // A few edges the code is known to have; if the scan misses them, it misses others too.
    const has = (from: string, to: string) => edges.some((e) => e.from === from && e.to === to);
    expect(has('build', 'conformance')).toBe(true); // static
    expect(has('cli', 'build')).toBe(true); // dynamic import() in a command
    expect(has('formats', './errors.ts')).toBe(true);
  });
});
