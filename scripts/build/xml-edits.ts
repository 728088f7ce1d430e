/**
 * Removes references to packages from Android permission/sysconfig/default-permission/
 * preferred-apps XML files while keeping the rest of the file byte for byte (comments, layout):
 * a small tokenizer finds elements whose `package`, `service`, `component` or `provider`
 * attribute (or a `name` holding a component "pkg/.Class") names a removed package, and cuts the
 * whole element (with its children, and its line when it stands alone on it).
 */
import { FormatError } from '../errors.ts';

export interface XmlReference {
  tag: string;
  attribute: string;
  value: string;
  package: string;
  /** 1-based line of the element start in the original text. */
  line: number;
}

export interface XmlRefEditResult {
  text: string;
  removed: XmlReference[];
  /** Element children left under the root element. */
  remainingChildren: number;
}

const PKG_ATTRS = new Set(['package', 'service', 'component', 'provider']);

/** The package an attribute refers to, or null. */
function referencedPackage(attr: string, value: string): string | null {
  if (PKG_ATTRS.has(attr)) return value.split('/')[0].trim() || null;
  if (attr === 'name' && /^[A-Za-z][\w.]*\/[\w.$]+$/.test(value)) return value.split('/')[0];
  return null;
}

interface Tag {
  kind: 'open' | 'close' | 'self';
  name: string;
  start: number;
  end: number;
  attrs: Array<[string, string]>;
}

/** Tokenizes the element tags of an XML document (skips comments, PIs, CDATA, doctype). */
export function* xmlTags(xml: string, file?: string): Generator<Tag> {
  let i = 0;
  const fail = (reason: string, at: number): never => {
    throw new FormatError({ format: 'xml', reason, offset: at, file });
  };
  while (i < xml.length) {
    const lt = xml.indexOf('<', i);
    if (lt < 0) return;
    if (xml.startsWith('<!--', lt)) {
      const e = xml.indexOf('-->', lt + 4);
      if (e < 0) fail('unterminated comment', lt);
      i = e + 3;
      continue;
    }
    if (xml.startsWith('<![CDATA[', lt)) {
      const e = xml.indexOf(']]>', lt);
      if (e < 0) fail('unterminated CDATA', lt);
      i = e + 3;
      continue;
    }
    if (xml.startsWith('<?', lt)) {
      const e = xml.indexOf('?>', lt);
      if (e < 0) fail('unterminated processing instruction', lt);
      i = e + 2;
      continue;
    }
    if (xml.startsWith('<!', lt)) {
      const e = xml.indexOf('>', lt);
      if (e < 0) fail('unterminated declaration', lt);
      i = e + 1;
      continue;
    }
    // Element tag: find the closing '>' outside quotes.
    let j = lt + 1;
    let quote: string | null = null;
    for (; j < xml.length; j++) {
      const c = xml[j];
      if (quote) {
        if (c === quote) quote = null;
      } else if (c === '"' || c === "'") quote = c;
      else if (c === '>') break;
    }
    if (j >= xml.length) fail('unterminated tag', lt);
    const body = xml.slice(lt + 1, j);
    if (body.startsWith('/')) {
      yield { kind: 'close', name: body.slice(1).trim(), start: lt, end: j + 1, attrs: [] };
    } else {
      const self = body.endsWith('/');
      const inner = self ? body.slice(0, -1) : body;
      const m = /^([^\s/>]+)/.exec(inner);
      if (!m) fail('tag without a name', lt);
      const attrs: Array<[string, string]> = [];
      const re = /([^\s=]+)\s*=\s*("([^"]*)"|'([^']*)')/g;
      for (let a = re.exec(inner.slice(m![1].length)); a; a = re.exec(inner.slice(m![1].length)))
        attrs.push([a[1], decodeEntities(a[3] ?? a[4] ?? '')]);
      yield { kind: self ? 'self' : 'open', name: m![1], start: lt, end: j + 1, attrs };
    }
    i = j + 1;
  }
}

function decodeEntities(s: string): string {
  return s
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&amp;/g, '&');
}

/** Elements that declare a feature by name (SystemConfig: available and unavailable features). */
const FEATURE_TAGS = new Set(['feature', 'unavailable-feature']);

/**
 * Removes every element that references a package for which `isRemoved` is true, and every
 * `<feature>` / `<unavailable-feature>` whose name `isRemovedFeature` is true for (reported with
 * the feature name as its package).
 */
export function removePackageReferences(
  xml: string,
  isRemoved: (pkg: string) => boolean,
  file?: string,
  isRemovedFeature: (name: string) => boolean = () => false,
): XmlRefEditResult {
  const stack: Array<{ tag: Tag; ref: XmlReference | null }> = [];
  const cuts: Array<[number, number]> = [];
  const removed: XmlReference[] = [];
  const lineAt = (pos: number) => xml.slice(0, pos).split('\n').length;
  const refOf = (t: Tag): XmlReference | null => {
    if (FEATURE_TAGS.has(t.name)) {
      const name = t.attrs.find(([a]) => a === 'name')?.[1];
      if (name && isRemovedFeature(name))
        return { tag: t.name, attribute: 'name', value: name, package: name, line: lineAt(t.start) };
    }
    for (const [attr, value] of t.attrs) {
      const pkg = referencedPackage(attr, value);
      if (pkg && isRemoved(pkg))
        return { tag: t.name, attribute: attr, value, package: pkg, line: lineAt(t.start) };
    }
    return null;
  };
  const insideCut = () => stack.some((s) => s.ref);
  for (const t of xmlTags(xml, file)) {
    if (t.kind === 'open') stack.push({ tag: t, ref: insideCut() ? null : refOf(t) });
    else if (t.kind === 'self') {
      if (!insideCut()) {
        const ref = refOf(t);
        if (ref) {
          removed.push(ref);
          cuts.push([t.start, t.end]);
        }
      }
    } else {
      const open = stack.pop();
      if (!open || open.tag.name !== t.name)
        throw new FormatError({
          format: 'xml',
          reason: 'mismatched closing tag',
          offset: t.start,
          expected: open?.tag.name,
          found: t.name,
          file,
        });
      if (open.ref) {
        removed.push(open.ref);
        cuts.push([open.tag.start, t.end]);
      }
    }
  }
  if (stack.length)
    throw new FormatError({
      format: 'xml',
      reason: 'unclosed element',
      found: stack[stack.length - 1].tag.name,
      file,
    });
  let text = xml;
  for (const [s0, e0] of cuts.sort((a, b) => b[0] - a[0])) {
    let s = s0;
    let e = e0;
    // Take the whole line when the element stands alone on it.
    const ls = text.lastIndexOf('\n', s - 1) + 1;
    let le = text.indexOf('\n', e);
    if (le < 0) le = text.length;
    if (/^[ \t]*$/.test(text.slice(ls, s)) && /^[ \t\r]*$/.test(text.slice(e, le))) {
      s = ls;
      e = Math.min(le + 1, text.length);
    }
    text = text.slice(0, s) + text.slice(e);
  }
  return { text, removed, remainingChildren: rootChildren(text, file) };
}

/** Number of element children of the root element. */
export function rootChildren(xml: string, file?: string): number {
  let depth = 0;
  let n = 0;
  for (const t of xmlTags(xml, file)) {
    if (t.kind === 'open') {
      if (depth === 1) n++;
      depth++;
    } else if (t.kind === 'self') {
      if (depth === 1) n++;
    } else depth--;
  }
  return n;
}

/** Does the document declare a shared library (`<library name=...>`) matching `test`? */
export function declaredLibraries(xml: string, file?: string): string[] {
  const out: string[] = [];
  for (const t of xmlTags(xml, file)) {
    if (t.kind === 'close' || t.name !== 'library') continue;
    const name = t.attrs.find(([k]) => k === 'name')?.[1];
    if (name) out.push(name);
  }
  return out;
}

/** XML-escapes an attribute value. */
export function xmlAttr(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}
