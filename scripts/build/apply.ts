/**
 * Applies a Plan to raw partition images, in place: ext4 through one debugfs session, erofs by
 * extract → edit → rebuild (see scripts/fs). Removed paths go first, then directories, then files;
 * edited XMLs and property files keep the mode, owner and label of the file they replace, added
 * files get the ones the plan computed. Every image is fsck'ed afterwards.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { InputError } from '../errors.ts';
import { applyEdits, openFilesystem } from '../fs/index.ts';
import type { FsEdit, FsReader } from '../fs/types.ts';
import type { ProgressFn } from '../progress.ts';
import type { PartitionPlan, Plan } from './plan.ts';
import { packageMatcher } from './plan.ts';
import { applyPropEdits } from './props.ts';
import { removePackageReferences } from './xml-edits.ts';

export interface ApplyOptions {
  /** Timestamp for touched inodes (default SOURCE_DATE_EPOCH or 0). */
  epoch?: number;
  /** Shrink ext4 images to their minimum afterwards (default true). */
  shrink?: boolean;
  onProgress?: ProgressFn;
}

/** Applies the plan to `images` (partition name → raw image path), editing them in place. */
export async function applyPlan(
  plan: Plan,
  images: Record<string, string>,
  opts: ApplyOptions = {},
): Promise<void> {
  for (const [i, part] of plan.partitions.entries()) {
    const image = images[part.partition];
    if (!image)
      throw new InputError(`no image given for partition ${part.partition}`, {
        code: 'APPLY_NO_IMAGE',
        context: { partition: part.partition, have: Object.keys(images) },
      });
    opts.onProgress?.({
      stage: `apply ${part.partition}`,
      done: i,
      total: plan.partitions.length,
      unit: 'items',
    });
    const work = await mkdtemp(join(tmpdir(), `omie-apply-${part.partition}-`));
    const fs = await openFilesystem(image);
    try {
      const edits = await partitionEdits(part, fs, work);
      await fs.close();
      // Nothing to change (a kernel-module partition already release-keys): leave its bytes.
      if (!edits.length) continue;
      await applyEdits(image, edits, {
        epoch: opts.epoch,
        shrink: opts.shrink ?? true,
        onProgress: opts.onProgress,
      });
    } finally {
      await fs.close();
      await rm(work, { recursive: true, force: true });
    }
  }
  opts.onProgress?.({
    stage: 'apply',
    done: plan.partitions.length,
    total: plan.partitions.length,
    unit: 'items',
  });
}

/** The FsEdit list for one partition (exported for tests and for the lead's pipeline). */
export async function partitionEdits(part: PartitionPlan, fs: FsReader, work: string): Promise<FsEdit[]> {
  const edits: FsEdit[] = [];
  let n = 0;
  const tmpFile = async (content: string | Buffer) => {
    const f = join(work, `f${n++}`);
    await writeFile(f, content);
    return f;
  };
  const removedPaths = part.removals.map((r) => r.path);
  const isGone = (p: string) => removedPaths.some((r) => p === r || p.startsWith(`${r}/`));
  // Outermost removals only (a removed folder takes its content with it).
  for (const r of part.removals)
    if (!removedPaths.some((o) => o !== r.path && r.path.startsWith(`${o}/`)))
      edits.push({ op: 'remove', path: r.path });
  const replaceKeepingMeta = async (path: string, content: string) => {
    const e = await fs.stat(path);
    if (!e)
      throw new InputError(`${part.partition}:${path} vanished between plan and apply`, {
        code: 'APPLY_STALE_PLAN',
      });
    edits.push({
      op: 'write',
      path,
      source: await tmpFile(content),
      mode: e.mode,
      uid: e.uid,
      gid: e.gid,
      label: e.label ?? null,
      capabilities: e.capabilities ?? null,
    });
  };
  for (const x of part.xmlEdits) {
    if (isGone(x.path)) continue;
    const text = (await fs.readFile(x.path)).toString('utf8');
    const cut = packageMatcher(x.packages);
    const r = removePackageReferences(text, cut, x.path, cut);
    await replaceKeepingMeta(x.path, r.text);
  }
  for (const p of part.props) {
    if (isGone(p.path)) continue;
    const text = (await fs.readFile(p.path)).toString('utf8');
    await replaceKeepingMeta(p.path, applyPropEdits(text, p.edits));
  }
  const dirs = part.additions
    .filter((a) => a.kind === 'dir')
    .sort((a, b) => a.path.split('/').length - b.path.split('/').length);
  for (const d of dirs)
    edits.push({ op: 'mkdir', path: d.path, mode: d.mode, uid: d.uid, gid: d.gid, label: d.label });
  for (const a of part.additions) {
    if (a.kind !== 'file') continue;
    const source = a.source ?? (a.content !== undefined ? await tmpFile(a.content) : null);
    if (!source)
      throw new InputError(`${part.partition}:${a.path}: addition without source or content`, {
        code: 'APPLY_BAD_PLAN',
      });
    edits.push({ op: 'write', path: a.path, source, mode: a.mode, uid: a.uid, gid: a.gid, label: a.label });
  }
  return edits;
}
