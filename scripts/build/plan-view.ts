import { table } from '../cli/output.ts';
import type { Plan } from './plan.ts';

/** The plan as a person reads it: one table per partition, what goes, what comes, what changes. */
export function formatPlan(plan: Plan): string {
  const out: string[] = [
    `Plan for ${plan.product.name} ${plan.product.version}: remove ${plan.removedPackages.length} package(s), keep ${plan.keptPackages.length}, add ${plan.addedPackages.length}`,
  ];
  const mode = (m: number) => `0${m.toString(8)}`;
  for (const part of plan.partitions) {
    out.push('', `== ${part.partition} (${part.fs}, mounted at ${part.mountPoint})`);
    const rows: string[][] = [
      ...part.removals.map((r) => ['remove', r.path, r.kind, r.package ?? '', r.reason]),
      ...part.additions.map((a) => [
        'add',
        a.path,
        `${a.kind} ${mode(a.mode)} ${a.uid}:${a.gid} ${a.label ?? '(no label)'}`,
        a.package ?? '',
        a.reason,
      ]),
      ...part.xmlEdits.map((x) => [
        'edit xml',
        x.path,
        `${x.removed.length} reference(s)`,
        x.packages.join(' '),
        x.removed.map((r) => `<${r.tag} ${r.attribute}="${r.value}"> line ${r.line}`).join('; '),
      ]),
      ...part.props.flatMap((f) =>
        f.edits.map((e) => [
          e.op === 'set' ? 'set prop' : 'remove prop',
          f.path,
          e.op === 'set' ? `${e.key}=${e.value}` : e.key,
          '',
          e.reason,
        ]),
      ),
    ];
    out.push(rows.length ? table(rows, ['action', 'path', 'what', 'package', 'why']) : '(no changes)');
  }
  return out.join('\n');
}
