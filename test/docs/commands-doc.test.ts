import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { buildProgram } from '../../scripts/cli/main.ts';
import { omie, ROOT } from '../helpers.ts';

/**
 * Keeps docs/commands.md in step with what `omie … --help` shows. The rules are the ones stated
 * at the top of docs/commands.md: one `## omie <command>` section per command (a subcommand may
 * have its own `## omie <command> <sub>` section, or live in its parent's), a usage line in a
 * code block, every option of `--help` in its section, and nothing documented that is gone.
 */

const DOC = resolve(ROOT, 'docs/commands.md');

interface Section {
  path: string;
  body: string;
}

interface Cmd {
  path: string;
  cmd: Command;
  /** Options as --help lists them, without -h/--help. */
  flags: string[][];
}

const program = buildProgram();
const help = program.createHelp();

function optionFlags(c: Command): string[][] {
  return help
    .visibleOptions(c)
    .filter((o) => o.long !== '--help')
    .map((o) => [o.long, o.short].filter((f): f is string => Boolean(f)));
}

function walk(c: Command, prefix: string[], out: Cmd[]): Cmd[] {
  for (const sub of help.visibleCommands(c)) {
    if (sub.name() === 'help') continue;
    const path = [...prefix, sub.name()];
    out.push({ path: path.join(' '), cmd: sub, flags: optionFlags(sub) });
    walk(sub, path, out);
  }
  return out;
}

const commands = walk(program, [], []);
const byPath = new Map(commands.map((c) => [c.path, c]));
const globalFlags = optionFlags(program).flat();

/** `## omie …` sections, and the rest of the file (where the global options are documented). */
function parseDoc(md: string): { preamble: string; sections: Section[] } {
  const parts = md.split(/^## /m);
  const sections: Section[] = [];
  let preamble = parts[0]!;
  for (const part of parts.slice(1)) {
    const nl = part.indexOf('\n');
    const heading = (nl < 0 ? part : part.slice(0, nl)).trim();
    const m = /^omie ([a-z0-9-]+(?: [a-z0-9-]+)*)$/.exec(heading);
    if (m) sections.push({ path: m[1]!, body: part.slice(nl + 1) });
    else preamble += `## ${part}`;
  }
  return { preamble, sections };
}

/** The section that documents a command: its own, else its nearest ancestor's. */
function sectionOf(path: string, sections: Map<string, Section>): Section | undefined {
  const words = path.split(' ');
  for (let n = words.length; n > 0; n--) {
    const s = sections.get(words.slice(0, n).join(' '));
    if (s) return s;
  }
  return undefined;
}

/** Lines of fenced code blocks that run `omie …`, cut at a pipe, `&&`, `;` or comment. */
function usageLines(body: string): string[] {
  const lines: string[] = [];
  let inCode = false;
  for (const line of body.split('\n')) {
    if (line.startsWith('```')) {
      inCode = !inCode;
      continue;
    }
    if (!inCode) continue;
    const cmd = line.trim().split(/\s(?:\||&&|;|#)\s/)[0]!;
    if (cmd.startsWith('omie ') || cmd === 'omie') lines.push(cmd);
  }
  return lines;
}

/** The longest command path a usage line starts with (`omie keys init x` → `keys init`). */
function commandOfLine(line: string): string | undefined {
  const words = line.split(/\s+/).slice(1);
  for (let n = words.length; n > 0; n--) {
    const p = words.slice(0, n).join(' ');
    if (byPath.has(p)) return p;
  }
  return undefined;
}

function mentions(text: string, flag: string): boolean {
  const escaped = flag.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`(^|[^\\w-])${escaped}(?![\\w-])`, 'm').test(text);
}

/** The commands a section covers: its own and the subcommands that have no section of their own. */
function covered(section: Section, sections: Map<string, Section>): Cmd[] {
  return commands.filter((c) => sectionOf(c.path, sections) === section);
}

const md = readFileSync(DOC, 'utf8');
const { preamble, sections: list } = parseDoc(md);
const sections = new Map(list.map((s) => [s.path, s]));

describe('docs/commands.md', () => {
  it('has one section per command, and none for a command that does not exist', () => {
    const problems: string[] = [];
    const seen = new Set<string>();
    for (const s of list) {
      if (seen.has(s.path)) problems.push(`## omie ${s.path}: two sections`);
      seen.add(s.path);
      if (!byPath.has(s.path)) problems.push(`## omie ${s.path}: no such command in omie --help`);
    }
    for (const c of commands) {
      if (!c.path.includes(' ') && !sections.has(c.path))
        problems.push(`omie ${c.path}: no "## omie ${c.path}" section`);
    }
    expect(problems).toEqual([]);
  });

  it('shows a usage line with every argument of each command, and every option of its --help', () => {
    const problems: string[] = [];
    for (const c of commands) {
      const section = sectionOf(c.path, sections);
      if (!section) continue; // reported by the test above
      const where = `## omie ${section.path}`;
      const usages = usageLines(section.body).filter((l) => commandOfLine(l) === c.path);
      const runnable =
        c.cmd.registeredArguments.length > 0 || c.flags.length > 0 || c.cmd.commands.length === 0;
      if (runnable && usages.length === 0)
        problems.push(`${where}: no usage line starting "omie ${c.path}" in a code block`);
      for (const a of c.cmd.registeredArguments) {
        const name = a.name().replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
        const shown = new RegExp(`[<\\[]${name}(\\.\\.\\.)?[>\\]]`);
        if (usages.length > 0 && !usages.some((u) => shown.test(u)))
          problems.push(`${where}: the usage of omie ${c.path} does not show its argument <${a.name()}>`);
      }
      for (const flags of c.flags) {
        if (!mentions(section.body, flags[0]!))
          problems.push(`${where}: option ${flags[0]} of omie ${c.path} is not documented`);
      }
    }
    for (const f of globalFlags) {
      if (!mentions(preamble, f))
        problems.push(`global option ${f} is not documented outside the command sections`);
    }
    expect(problems).toEqual([]);
  });

  it('documents no option a command no longer has (usage lines and option tables)', () => {
    const problems: string[] = [];
    for (const s of list) {
      const where = `## omie ${s.path}`;
      const own = covered(s, sections);
      const known = new Set([...globalFlags, '--help', ...own.flatMap((c) => c.flags.flat())]);
      for (const line of usageLines(s.body)) {
        const path = commandOfLine(line);
        if (!path) {
          problems.push(`${where}: "${line}" runs no omie command`);
          continue;
        }
        const flags = new Set([...globalFlags, '--help', ...byPath.get(path)!.flags.flat()]);
        for (const f of line.match(/(?<![\w-])--?[a-zA-Z][\w-]*/g) ?? [])
          if (!flags.has(f)) problems.push(`${where}: "${line}": omie ${path} has no option ${f}`);
      }
      // Option tables: rows whose first cell is `--flag …` (or `-f, --flag …`).
      for (const row of s.body.matchAll(/^\| *`(-[^`]*)`/gm)) {
        for (const f of row[1]!.match(/(?<![\w-])--?[a-zA-Z][\w-]*/g) ?? [])
          if (!known.has(f)) problems.push(`${where}: option table lists ${f}, which no command here has`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('is about the same commands as the real `omie --help`', async () => {
    const r = await omie(['--help']);
    expect(r.exitCode).toBe(0);
    const listed = [...r.stdout.split('Commands:')[1]!.matchAll(/^ {2}([a-z][a-z0-9-]*)/gm)]
      .map((m) => m[1]!)
      .filter((n) => n !== 'help');
    expect(listed.sort()).toEqual(
      commands
        .filter((c) => !c.path.includes(' '))
        .map((c) => c.path)
        .sort(),
    );
  });

  it("README's command table lists every command, and its links land on a section", () => {
    const readme = readFileSync(resolve(ROOT, 'README.md'), 'utf8');
    const anchors = new Set(list.map((s) => `omie-${s.path.replace(/ /g, '-')}`));
    const problems: string[] = [];
    for (const c of commands) {
      if (c.path.includes(' ')) continue;
      if (!new RegExp(`^\\| *\\[?\`omie ${c.path}\`\\]?`, 'm').test(readme))
        problems.push(`README.md: no command-table row for omie ${c.path}`);
    }
    for (const m of readme.matchAll(/docs\/commands\.md#([\w-]+)/g))
      if (!anchors.has(m[1]!))
        problems.push(`README.md links to docs/commands.md#${m[1]}, which is no section`);
    expect(problems).toEqual([]);
  });
});
