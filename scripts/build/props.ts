/**
 * build.prop / prop.default editing that keeps the file as written (comments, order, imports) and
 * only touches the lines it must. Format as read by Android init (property_service.cpp
 * LoadProperties): one `key=value` per line, `#` comments, `import <file>` lines; whitespace
 * around the key is trimmed and the value runs to the end of the line.
 */

export interface PropEdit {
  op: 'set' | 'remove';
  key: string;
  /** For `set`. */
  value?: string;
  /** Why (shown in the plan). */
  reason: string;
}

export interface PropEntry {
  key: string;
  value: string;
  line: number;
}

/** Properties of a file in order (duplicates kept, as init reads them). */
export function parseProps(text: string): PropEntry[] {
  const out: PropEntry[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/\r$/, '').trim();
    if (!line || line.startsWith('#') || line.startsWith('import ')) return;
    const eq = line.indexOf('=');
    if (eq <= 0) return;
    out.push({ key: line.slice(0, eq).trim(), value: line.slice(eq + 1).trim(), line: i + 1 });
  });
  return out;
}

/** The effective value (last definition in the file), or undefined. */
export function getProp(text: string, key: string): string | undefined {
  let v: string | undefined;
  for (const p of parseProps(text)) if (p.key === key) v = p.value;
  return v;
}

/** Glob match for property patterns: `*` matches any run of characters ("ro.com.google.*"). */
export function propPatternMatches(pattern: string, key: string): boolean {
  if (!pattern.includes('*')) return pattern === key;
  const re = new RegExp(`^${pattern.split('*').map(escapeRe).join('.*')}$`);
  return re.test(key);
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/**
 * Applies edits: `set` rewrites every definition of the key in place (the first keeps its
 * position, later duplicates get the same value) or appends it when absent; `remove` drops every
 * definition. Appended keys go at the end under one "# Omie" comment.
 */
export function applyPropEdits(text: string, edits: PropEdit[]): string {
  const lines = text.split('\n');
  const trailingNewline = text.endsWith('\n');
  if (trailingNewline) lines.pop();
  const keyOf = (raw: string): string | null => {
    const line = raw.replace(/\r$/, '').trim();
    if (!line || line.startsWith('#') || line.startsWith('import ')) return null;
    const eq = line.indexOf('=');
    return eq > 0 ? line.slice(0, eq).trim() : null;
  };
  const appended: string[] = [];
  let cur = lines;
  for (const e of edits) {
    if (e.op === 'remove') cur = cur.filter((l) => keyOf(l) !== e.key);
    else {
      let found = false;
      cur = cur.map((l) => {
        if (keyOf(l) !== e.key) return l;
        found = true;
        return `${e.key}=${e.value ?? ''}`;
      });
      if (!found) {
        const i = appended.findIndex((l) => l.startsWith(`${e.key}=`));
        if (i >= 0) appended[i] = `${e.key}=${e.value ?? ''}`;
        else appended.push(`${e.key}=${e.value ?? ''}`);
      }
    }
  }
  if (appended.length) {
    if (cur.length && cur[cur.length - 1].trim() !== '') cur.push('');
    cur.push('# Omie', ...appended);
  }
  return cur.join('\n') + (trailingNewline || appended.length ? '\n' : '');
}

export interface BuildIdentity {
  brand: string;
  manufacturer: string;
  model: string;
  device: string;
  name: string;
}

/** Android build fingerprint: $(BRAND)/$(PRODUCT)/$(DEVICE):$(RELEASE)/$(ID)/$(INCREMENTAL):$(TYPE)/$(TAGS). */
export function buildFingerprint(
  id: BuildIdentity,
  release: string,
  buildId: string,
  incremental: string,
): string {
  return `${id.brand}/${id.name}/${id.device}:${release}/${buildId}/${incremental}:user/release-keys`;
}

/** ro.build.description: "$(PRODUCT)-$(TYPE) $(RELEASE) $(ID) $(INCREMENTAL) $(TAGS)". */
export function buildDescription(
  id: BuildIdentity,
  release: string,
  buildId: string,
  incremental: string,
): string {
  return `${id.name}-user ${release} ${buildId} ${incremental} release-keys`;
}

/**
 * The tags of a release build in place of a test build's, as AOSP's sign_target_files_apks
 * EditTags does to the last `sep`-separated piece of a value (ro.build.thumbprint
 * "…:user/test-keys"): test-keys and dev-keys go, release-keys comes, the others stay (sorted).
 */
export function releaseTags(value: string, sep: string): string {
  const at = value.lastIndexOf(sep);
  const tags = new Set(value.slice(at + 1).split(','));
  tags.delete('test-keys');
  tags.delete('dev-keys');
  tags.delete('');
  tags.add('release-keys');
  return `${value.slice(0, at + 1)}${[...tags].sort().join(',')}`;
}
