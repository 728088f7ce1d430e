/**
 * What real devices print for the adb commands the kit runs, parsed without guessing:
 *
 * - `getprop` (toolbox/toybox, system/core/toolbox/getprop.cpp): one `[name]: [value]` record per
 *   property, sorted; a value may span several lines (it is printed as is, newlines included) and
 *   may contain `]`. A record therefore ends only where the next `[name]: [` line starts.
 * - `pm list packages [-f] [-U] [-i] [--show-versioncode]` (PackageManagerShellCommand):
 *   `package:` (or `apex:`), then `<sourceDir>=` with -f, the package name, then
 *   ` versionCode:N`, `  installer=X`, ` uid:N[,N…]`. Since Android 11 the sourceDir is
 *   `/data/app/~~<base64>==/<pkg>-<base64>==/base.apk`: '=' inside the path, so the name is what
 *   follows the *last* '=' once the suffixes are removed.
 * - `adb devices` states (adb's ConnectionStateToString): device, unauthorized, offline, recovery,
 *   rescue, sideload, bootloader, host, authorizing, connecting, and "no permissions (…); see […]".
 */

/** `getprop` output → name → value (multi-line values kept, CRLF from a v1 pty normalised). */
export function parseGetprop(text: string): Record<string, string> {
  const t = text.replace(/\r\n/g, '\n');
  const props: Record<string, string> = {};
  const starts = [...t.matchAll(/^\[([^[\]\s]+)\]: \[/gm)];
  starts.forEach((m, i) => {
    const from = (m.index as number) + m[0].length;
    const to = i + 1 < starts.length ? (starts[i + 1].index as number) : t.length;
    let v = t.slice(from, to);
    if (v.endsWith('\n')) v = v.slice(0, -1);
    // The closing bracket; a record cut short (no bracket) keeps what was printed.
    if (v.endsWith(']')) v = v.slice(0, -1);
    props[m[1]] = v;
  });
  return props;
}

export interface PmPackage {
  /** Package name. */
  name: string;
  /** APK path (with -f), '' without. */
  path: string;
  /** Linux uid(s) with -U (several with --user all). */
  uid?: number[];
  versionCode?: number;
  /** Installer package with -i ("null" when none). */
  installer?: string;
  /** An APEX rather than a package (`--apex-only` / `--show-apex`). */
  apex?: boolean;
}

/** Android package names: dot-separated Java identifiers. */
const PACKAGE_NAME = /^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$/;

/** `pm list packages` output → packages; lines that are not a package line are ignored. */
export function parsePmList(text: string): PmPackage[] {
  const out: PmPackage[] = [];
  for (const raw of text.split('\n')) {
    const m = /^(package|apex):(.*)$/.exec(raw.replace(/\r$/, '').trim());
    if (!m) continue;
    let rest = m[2];
    const pkg: Partial<PmPackage> = m[1] === 'apex' ? { apex: true } : {};
    // Suffixes come after the name, separated by spaces; paths and names have none.
    for (;;) {
      const s = /\s+(versionCode:(\d+)|installer=(\S*)|uid:([\d,]+))$/.exec(rest);
      if (!s) break;
      if (s[2] !== undefined) pkg.versionCode = Number(s[2]);
      if (s[3] !== undefined) pkg.installer = s[3];
      if (s[4] !== undefined) pkg.uid = s[4].split(',').filter(Boolean).map(Number);
      rest = rest.slice(0, s.index);
    }
    const eq = rest.lastIndexOf('=');
    const name = eq >= 0 ? rest.slice(eq + 1) : rest;
    if (!PACKAGE_NAME.test(name)) continue;
    out.push({ name, path: eq >= 0 ? rest.slice(0, eq) : '', ...pkg });
  }
  return out;
}

/** The states `adb devices` reports, one word each ("no permissions" keeps its two). */
export function normalizeAdbState(state: string): string {
  const s = state.trim();
  if (/^no permissions/i.test(s)) return 'no permissions';
  return (s.split(/\s+/)[0] ?? '').toLowerCase() || 'unknown';
}
