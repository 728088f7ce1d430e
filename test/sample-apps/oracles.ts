/**
 * What the real tools say about an APK, read without the kit's own parsers: the manifest and
 * XML resources as `aapt dump xmltree` prints them, and the classes of classes.dex as `baksmali`
 * disassembles them.
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';

export interface XmlNode {
  name: string;
  /** Attribute name (without namespace prefix) → value: the string, the integer, or `@0x7f…`. */
  attrs: Record<string, string>;
  children: XmlNode[];
}

/** Parses `aapt dump xmltree` output: `E: name (line=…)` elements, `A: ns:name(0x…)=value` attributes. */
export function parseXmltree(text: string): XmlNode {
  const root: XmlNode = { name: '#document', attrs: {}, children: [] };
  const stack: Array<{ depth: number; node: XmlNode }> = [{ depth: -1, node: root }];
  for (const line of text.split('\n')) {
    const m = /^( *)(E|A): (.*)$/.exec(line);
    if (!m) continue;
    const depth = m[1]!.length;
    if (m[2] === 'E') {
      while (stack.at(-1)!.depth >= depth) stack.pop();
      const node: XmlNode = { name: m[3]!.replace(/ \(line=\d+\)$/, ''), attrs: {}, children: [] };
      stack.at(-1)!.node.children.push(node);
      stack.push({ depth, node });
    } else {
      const a = /^(?:[\w-]+:)?([\w-]+)(?:\(0x[0-9a-f]+\))?=(.*)$/.exec(m[3]!);
      if (!a) continue;
      const raw = a[2]!;
      const value =
        /^"(.*)" \(Raw: /.exec(raw)?.[1] ?? /^\(type 0x[0-9a-f]+\)(0x[0-9a-f]+)$/.exec(raw)?.[1] ?? raw;
      stack.at(-1)!.node.attrs[a[1]!] = value;
    }
  }
  return root;
}

export async function xmltree(apk: string, file: string): Promise<XmlNode> {
  return parseXmltree((await execa('aapt', ['dump', 'xmltree', apk, file])).stdout);
}

export function find(node: XmlNode, name: string): XmlNode[] {
  return [...(node.name === name ? [node] : []), ...node.children.flatMap((c) => find(c, name))];
}

export interface SmaliMethod {
  /** `name(args)ret`, e.g. `onBind(Landroid/content/Intent;)Landroid/os/IBinder;`. */
  signature: string;
  modifiers: string[];
  body: string;
}

export interface SmaliClassInfo {
  /** `Lorg/omie/x/Foo;`. */
  descriptor: string;
  superClass: string;
  modifiers: string[];
  methods: Map<string, SmaliMethod>;
}

/** Disassembles a classes.dex with `baksmali d` and reads every class it wrote. */
export async function disassemble(dex: string): Promise<Map<string, SmaliClassInfo>> {
  const out = await mkdtemp(join(tmpdir(), 'omie-baksmali-'));
  try {
    await execa('baksmali', ['d', dex, '-o', out]);
    const classes = new Map<string, SmaliClassInfo>();
    for (const f of await readdir(out, { recursive: true })) {
      if (!f.endsWith('.smali')) continue;
      const c = parseSmali(await readFile(join(out, f), 'utf8'));
      classes.set(c.descriptor, c);
    }
    return classes;
  } finally {
    await rm(out, { recursive: true, force: true });
  }
}

function parseSmali(text: string): SmaliClassInfo {
  const head = /^\.class (.*?)(L[^;\s]+;)$/m.exec(text);
  const sup = /^\.super (L[^;\s]+;)$/m.exec(text);
  if (!head || !sup) throw new Error(`not a baksmali class:\n${text.slice(0, 200)}`);
  const methods = new Map<string, SmaliMethod>();
  for (const m of text.matchAll(/^\.method (.*?)(\S+\(.*)$\n([\s\S]*?)^\.end method$/gm)) {
    methods.set(m[2]!, {
      signature: m[2]!,
      modifiers: m[1]!.trim().split(/\s+/).filter(Boolean),
      body: m[3]!,
    });
  }
  return {
    descriptor: head[2]!,
    superClass: sup[1]!,
    modifiers: head[1]!.trim().split(/\s+/).filter(Boolean),
    methods,
  };
}
