/**
 * A small XML element reader for the platform's text configuration files (etc/permissions,
 * etc/sysconfig, etc/default-permissions, etc/preferred-apps). They are plain XML without DTDs;
 * we only need elements and attributes. Malformed input yields an InputError with the file name.
 */
import { FormatError } from '../errors.ts';

export interface XmlElement {
  name: string;
  attrs: Record<string, string>;
  children: XmlElement[];
  /** 1-based line of the start tag. */
  line: number;
}

const ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'" };

function decode(s: string): string {
  return s.replace(/&(#x[0-9a-fA-F]+|#\d+|\w+);/g, (m, e: string) => {
    if (e.startsWith('#x')) return String.fromCodePoint(Number.parseInt(e.slice(2), 16));
    if (e.startsWith('#')) return String.fromCodePoint(Number.parseInt(e.slice(1), 10));
    return ENTITIES[e] ?? m;
  });
}

/** Parses XML text into its root element(s). */
export function parseXml(text: string, file?: string): XmlElement[] {
  const roots: XmlElement[] = [];
  const stack: XmlElement[] = [];
  const tag =
    /<!--[\s\S]*?-->|<!\[CDATA\[[\s\S]*?\]\]>|<![^>]*>|<\?[\s\S]*?\?>|<(\/?)([A-Za-z_][\w:.-]*)([^>]*?)(\/?)>/g;
  const attr = /([A-Za-z_][\w:.-]*)\s*=\s*("([^"]*)"|'([^']*)')/g;
  let m: RegExpExecArray | null;
  for (;;) {
    m = tag.exec(text);
    if (!m) break;
    if (!m[2]) continue; // comment, CDATA, doctype, processing instruction
    const line = text.slice(0, m.index).split('\n').length;
    if (m[1] === '/') {
      const open = stack.pop();
      if (!open || open.name !== m[2])
        throw new FormatError({
          format: 'xml',
          reason: `unexpected </${m[2]}>`,
          file,
          offset: m.index,
          expected: open ? `</${open.name}>` : 'no end tag',
          found: `</${m[2]}>`,
        });
      continue;
    }
    const el: XmlElement = { name: m[2], attrs: {}, children: [], line };
    for (const a of m[3].matchAll(attr)) el.attrs[a[1]] = decode(a[3] ?? a[4] ?? '');
    (stack.length ? stack[stack.length - 1].children : roots).push(el);
    if (m[4] !== '/') stack.push(el);
  }
  if (stack.length)
    throw new FormatError({
      format: 'xml',
      reason: `<${stack[stack.length - 1].name}> is never closed`,
      file,
      expected: `</${stack[stack.length - 1].name}>`,
      found: 'end of file',
    });
  return roots;
}

/** Every element in the tree (pre-order). */
export function allElements(roots: XmlElement[]): XmlElement[] {
  const out: XmlElement[] = [];
  const visit = (e: XmlElement) => {
    out.push(e);
    for (const c of e.children) visit(c);
  };
  for (const r of roots) visit(r);
  return out;
}
