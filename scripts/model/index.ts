import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { InputError } from '../errors.ts';
import type { AppYaml, DeviceYaml, ModelKind, OverlayYaml, ProductYaml } from './schemas.ts';
import { guessKind, issueAt, ModelValidationError, parseAs, type ValidationIssue } from './validate.ts';
import { loadYaml, type SourcedYaml } from './yaml-source.ts';

export type { AppYaml, DeviceYaml, OverlayYaml, ProductYaml } from './schemas.ts';
export { formatIssue, ModelValidationError, type ValidationIssue } from './validate.ts';

interface Located {
  /** Absolute path of the YAML file. */
  file: string;
  dir: string;
}

export type DeviceProfile = DeviceYaml & Located;
export type ResolvedApp = AppYaml &
  Located & {
    /** folder name under prebuilt-apps/ */ name: string;
    apkPath: string;
    /** An APK, or an APEX (a platform module: `apk.file` is a .apex or .capex). */
    kind?: 'apk' | 'apex';
  };

/** Whether an app's file is an APEX (.apex, or a compressed .capex) rather than an APK. */
export const isApexFile = (file: string) => /\.c?apex$/.test(file);
export type ResolvedOverlay = OverlayYaml & Located & { name: string };
export interface ResolvedProduct extends Located {
  product: ProductYaml;
  device: DeviceProfile;
  apps: ResolvedApp[];
  overlays: ResolvedOverlay[];
  /** Folder holding prebuilt-apps/ and overlays/. */
  repoRoot: string;
}

function located(file: string): Located {
  return { file, dir: dirname(file) };
}

function throwIf(issues: ValidationIssue[]): void {
  if (issues.length > 0) throw new ModelValidationError(issues);
}

export function deviceIssues(src: SourcedYaml, d: DeviceYaml): ValidationIssue[] {
  const issues: ValidationIssue[] = [];
  const names = new Map<string, number>();
  d.partitions.forEach((p, i) => {
    if (names.has(p.name))
      issues.push(issueAt(src, ['partitions', i, 'name'], `partition "${p.name}" is listed twice`));
    names.set(p.name, i);
  });
  const logical = d.partitions.filter((p) => p.location === 'super');
  if (logical.length > 0 && !d.super) {
    issues.push(
      issueAt(src, [], 'partitions with location: super need a `super:` layout', 'a super: section', 'none'),
    );
  }
  if (d.super) {
    const grouped = new Map<string, string>();
    const superSize = d.super.blockDevices.reduce((a, b) => a + b.size, 0);
    d.super.groups.forEach((g, gi) => {
      if (g.maxSize > superSize) {
        issues.push(
          issueAt(
            src,
            ['super', 'groups', gi, 'maxSize'],
            'group is larger than the super block devices',
            `<= ${superSize}`,
            String(g.maxSize),
          ),
        );
      }
      g.partitions.forEach((p, pi) => {
        const i = names.get(p);
        if (i === undefined)
          issues.push(
            issueAt(
              src,
              ['super', 'groups', gi, 'partitions', pi],
              `no partition named "${p}" in partitions:`,
            ),
          );
        else if (d.partitions[i].location !== 'super') {
          issues.push(
            issueAt(
              src,
              ['super', 'groups', gi, 'partitions', pi],
              `partition "${p}" is in a group but its location is physical`,
              'location: super',
              'physical',
            ),
          );
        }
        if (grouped.has(p))
          issues.push(
            issueAt(
              src,
              ['super', 'groups', gi, 'partitions', pi],
              `partition "${p}" is already in group ${grouped.get(p)}`,
            ),
          );
        grouped.set(p, g.name);
      });
    });
    for (const p of logical) {
      if (!grouped.has(p.name))
        issues.push(
          issueAt(
            src,
            ['partitions', names.get(p.name)!, 'location'],
            `logical partition "${p.name}" is in no super group`,
          ),
        );
    }
  }
  d.avb.footers.forEach((f, i) => {
    if (!names.has(f.partition))
      issues.push(issueAt(src, ['avb', 'footers', i, 'partition'], `no partition named "${f.partition}"`));
  });
  d.avb.chained.forEach((c, i) => {
    if (!names.has(c.partition))
      issues.push(
        issueAt(
          src,
          ['avb', 'chained', i, 'partition'],
          `no partition named "${c.partition}" for the chained vbmeta`,
        ),
      );
    c.partitions.forEach((p, pi) => {
      if (!names.has(p))
        issues.push(issueAt(src, ['avb', 'chained', i, 'partitions', pi], `no partition named "${p}"`));
    });
  });
  return issues;
}

export async function loadDevice(path: string): Promise<DeviceProfile> {
  const src = await loadYaml(path);
  const { value } = parseAs('device', src);
  throwIf(deviceIssues(src, value));
  return { ...value, ...located(src.file) };
}

export function appIssues(src: SourcedYaml, a: AppYaml): ValidationIssue[] {
  const issues: ValidationIssue[] = [];
  const apk = resolve(dirname(src.file), a.apk.file);
  if (!('generated' in a.apk) && !existsSync(apk)) {
    issues.push(issueAt(src, ['apk', 'file'], `APK not found: ${apk}`, 'an existing file', 'missing'));
  }
  if (isApexFile(a.apk.file)) {
    // An APEX is mounted by apexd, not installed as an app: no priv-app, allowlist or grants.
    if (a.privileged) issues.push(issueAt(src, ['privileged'], 'an APEX is not a priv-app', 'false', 'true'));
    for (const f of ['privilegedPermissions', 'defaultPermissions'] as const)
      if (a[f].length) issues.push(issueAt(src, [f], `an APEX has no ${f}`, 'none', a[f].join(', ')));
    if (a.role !== 'system')
      issues.push(issueAt(src, ['role'], 'an APEX is a platform module', 'system', a.role));
  }
  return issues;
}

export async function loadApp(path: string): Promise<ResolvedApp> {
  const src = await loadYaml(path);
  const { value } = parseAs('app', src);
  throwIf(appIssues(src, value));
  const loc = located(src.file);
  return {
    ...value,
    ...loc,
    name: loc.dir.split('/').pop()!,
    apkPath: resolve(loc.dir, value.apk.file),
    kind: isApexFile(value.apk.file) ? 'apex' : 'apk',
  };
}

export async function loadOverlay(path: string): Promise<ResolvedOverlay> {
  const src = await loadYaml(path);
  const { value } = parseAs('overlay', src);
  const loc = located(src.file);
  throwIf(
    value.xml.flatMap((x, i) =>
      existsSync(resolve(loc.dir, x.file))
        ? []
        : [
            issueAt(
              src,
              ['xml', i, 'file'],
              `XML resource not found: ${resolve(loc.dir, x.file)}`,
              'an existing file',
              'missing',
            ),
          ],
    ),
  );
  return { ...value, ...loc, name: loc.dir.split('/').pop()! };
}

/** The folder above `from` that holds prebuilt-apps/ (the repo, or a partner's copy of the layout). */
export function findRepoRoot(from: string): string {
  let d = resolve(from);
  for (;;) {
    if (existsSync(join(d, 'prebuilt-apps')) && existsSync(join(d, 'device'))) return d;
    const up = dirname(d);
    if (up === d) {
      throw new InputError(`no prebuilt-apps/ and device/ folders above ${from}`, {
        code: 'REPO_ROOT_NOT_FOUND',
        context: { from },
        hint: 'keep products under device/<vendor>/<codename>/ of a tree that has prebuilt-apps/ and overlays/ (see `omie init`)',
      });
    }
    d = up;
  }
}

async function collect<T>(issues: ValidationIssue[], f: () => Promise<T>): Promise<T | undefined> {
  try {
    return await f();
  } catch (e) {
    if (e instanceof ModelValidationError) {
      issues.push(...e.issues);
      return undefined;
    }
    throw e;
  }
}

/** Loads a product with its device profile, apps and overlays, checking every reference. */
export async function loadProduct(path: string): Promise<ResolvedProduct> {
  const src = await loadYaml(path);
  const { value: product } = parseAs('product', src);
  const loc = located(src.file);
  const repoRoot = findRepoRoot(loc.dir);
  const issues: ValidationIssue[] = [];

  const devicePath = resolve(loc.dir, product.device);
  let device: DeviceProfile | undefined;
  if (!existsSync(devicePath))
    issues.push(
      issueAt(
        src,
        ['device'],
        `device profile not found: ${devicePath}`,
        'an existing device.yaml',
        'missing',
      ),
    );
  else device = await collect(issues, () => loadDevice(devicePath));

  const apps: ResolvedApp[] = [];
  for (const [i, name] of product.apps.entries()) {
    const p = join(repoRoot, 'prebuilt-apps', name, 'app.yaml');
    if (!existsSync(p)) {
      issues.push(
        issueAt(
          src,
          ['apps', i],
          `no prebuilt-apps/${name}/app.yaml`,
          'an app folder under prebuilt-apps/',
          name,
        ),
      );
      continue;
    }
    const app = await collect(issues, () => loadApp(p));
    if (app) apps.push(app);
  }
  const clouds = apps.filter((a) => a.role === 'personal-cloud');
  if (clouds.length !== 1) {
    issues.push(
      issueAt(
        src,
        ['apps'],
        'a product names exactly one personal-cloud app',
        'exactly 1 app with role: personal-cloud',
        `${clouds.length}${clouds.length ? ` (${clouds.map((c) => c.name).join(', ')})` : ''}`,
      ),
    );
  }
  if (
    product.personalCloud &&
    !apps.some((a) => a.name === product.personalCloud?.app && a.role === 'personal-cloud')
  ) {
    issues.push(
      issueAt(
        src,
        ['personalCloud', 'app'],
        'personalCloud.app must be one of apps: with role personal-cloud',
        clouds.map((c) => c.name).join(' | ') || 'a personal-cloud app',
        product.personalCloud.app,
      ),
    );
  }
  const packages = new Map<string, string>();
  for (const a of apps) {
    if (packages.has(a.package))
      issues.push(
        issueAt(
          src,
          ['apps'],
          `apps ${packages.get(a.package)} and ${a.name} declare the same package ${a.package}`,
        ),
      );
    packages.set(a.package, a.name);
  }

  const overlays: ResolvedOverlay[] = [];
  for (const [i, name] of product.overlays.entries()) {
    const p = join(repoRoot, 'overlays', name, 'overlay.yaml');
    if (!existsSync(p)) {
      issues.push(
        issueAt(
          src,
          ['overlays', i],
          `no overlays/${name}/overlay.yaml`,
          'an overlay folder under overlays/',
          name,
        ),
      );
      continue;
    }
    const o = await collect(issues, () => loadOverlay(p));
    if (o) overlays.push(o);
  }
  for (const [i, w] of product.waivers.entries()) {
    if (Number.isNaN(Date.parse(w.expires)))
      issues.push(issueAt(src, ['waivers', i, 'expires'], 'not a real date', 'YYYY-MM-DD', w.expires));
  }
  throwIf(issues);
  return { ...loc, product, device: device!, apps, overlays, repoRoot };
}

/** Validates any model file (kind from its name or keys); returns every issue instead of throwing. */
export async function validateFile(
  path: string,
  kind?: ModelKind,
): Promise<{ kind: ModelKind | undefined; issues: ValidationIssue[] }> {
  const src = await loadYaml(path).catch((e) => {
    if (e instanceof InputError && typeof e.context.line === 'number') {
      return {
        issue: {
          file: String(e.context.file),
          line: e.context.line as number,
          col: Number(e.context.col),
          path: '',
          message: e.message,
        },
      };
    }
    throw e;
  });
  if ('issue' in src) return { kind, issues: [src.issue] };
  const k = kind ?? guessKind(src.file, src.data);
  if (!k) {
    return {
      kind: undefined,
      issues: [
        issueAt(
          src,
          [],
          'cannot tell which kind of file this is',
          'device.yaml, app.yaml, overlay.yaml or products/<name>.yaml (or pass --kind)',
          'none',
        ),
      ],
    };
  }
  const loaders = { device: loadDevice, product: loadProduct, app: loadApp, overlay: loadOverlay } as const;
  const issues: ValidationIssue[] = [];
  await collect<unknown>(issues, () => loaders[k](path));
  return { kind: k, issues };
}
