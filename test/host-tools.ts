/**
 * Host tools and files the tests run, as scripts/host/tools.json lists them. scripts/setup.sh
 * installs every entry of that table, required or not, so CI has them all: a test that needs one
 * says so (`it.skipIf(!BAKSMALI.present)(\`… ${BAKSMALI.reason}\`)`); without it the test is
 * skipped with the reason in its name, and under `CI=true` the import fails (test/oracles.ts).
 * A tool the table does not list cannot be asked for here: list it (setup then installs it),
 * or give the test a plain skip that says why CI may lack it.
 */
import { existsSync } from 'node:fs';
import { hostFiles, hostTools, installHint, which } from '../scripts/host/tools.ts';
import { needed, type Oracle } from './oracles.ts';

/** A command from scripts/host/tools.json, found on PATH as the kit finds it (`which`). */
export function hostTool(name: string): Oracle {
  const t = hostTools.find((x) => x.name === name);
  if (!t)
    throw new Error(`${name} is not in scripts/host/tools.json: list it there, so that setup installs it`);
  const path = which(name);
  return needed(
    path ?? name,
    path !== null,
    `${name} not on PATH (Debian package ${t.debianPackage})`,
    installHint([t.debianPackage]),
  );
}

/** A file from scripts/host/tools.json (`files`), by its path there ($MULTIARCH resolved). */
export function hostFile(path: string): Oracle {
  const f = hostFiles.find((x) => x.path === path);
  if (!f)
    throw new Error(`${path} is not in scripts/host/tools.json: list it there, so that setup installs it`);
  return needed(
    path,
    existsSync(path),
    `${path} not found (Debian package ${f.debianPackage})`,
    installHint([f.debianPackage]),
  );
}
