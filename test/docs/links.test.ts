import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT } from '../helpers.ts';

/**
 * The user docs stand on their own: every relative link in README.md and docs/ lands on a file
 * of the repository (and on a heading, when it names one), and none leaves the repository (a
 * clone has no ../shared).
 */

const DOCS = [
  resolve(ROOT, 'README.md'),
  ...readdirSync(resolve(ROOT, 'docs')).map((f) => resolve(ROOT, 'docs', f)),
].filter((f) => f.endsWith('.md'));

/** GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens. */
function anchors(md: string): Set<string> {
  const out = new Set<string>();
  let inCode = false;
  for (const line of md.split('\n')) {
    if (line.startsWith('```')) inCode = !inCode;
    const m = !inCode && /^#{1,6} (.+)$/.exec(line);
    if (m)
      out.add(
        m[1]!
          .toLowerCase()
          .replace(/[^\p{L}\p{N} _-]/gu, '')
          .replace(/ /g, '-'),
      );
  }
  return out;
}

/** Markdown links `[text](target)` outside code blocks and code spans. */
function links(md: string): string[] {
  const text = md.replace(/```[\s\S]*?```/g, '').replace(/`[^`\n]*`/g, '');
  return [...text.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]!);
}

describe('user docs', () => {
  it('link only to files and headings of the repository', () => {
    expect(DOCS.length).toBeGreaterThan(3);
    const problems: string[] = [];
    for (const doc of DOCS) {
      const name = relative(ROOT, doc);
      for (const target of links(readFileSync(doc, 'utf8'))) {
        if (/^[a-z]+:/.test(target)) continue; // https:, mailto:
        const [path, anchor] = target.split('#') as [string, string | undefined];
        const file = path ? resolve(dirname(doc), path) : doc;
        if (relative(ROOT, file).startsWith('..')) {
          problems.push(`${name}: ${target} leaves the repository`);
          continue;
        }
        if (!existsSync(file)) {
          problems.push(`${name}: ${target}: no such file`);
          continue;
        }
        if (
          anchor &&
          file.endsWith('.md') &&
          statSync(file).isFile() &&
          !anchors(readFileSync(file, 'utf8')).has(anchor)
        )
          problems.push(`${name}: ${target}: no such heading in ${relative(ROOT, file)}`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('send no reader to the design notes beside the repository', () => {
    const problems = DOCS.filter((d) => /shared\/(DESIGN|REFERENCE)\.md/.test(readFileSync(d, 'utf8'))).map(
      (d) => relative(ROOT, d),
    );
    expect(problems).toEqual([]);
  });
});
