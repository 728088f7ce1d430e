/** Path of the bundle in `dir` (default .omie/cli) when it matches the sources, else null. */
export function freshBundle(dir?: string): string | null;
/** Bundles the CLI into `dir` (default .omie/cli); returns its entry module's path. */
export function buildBundle(dir?: string): Promise<string>;
export const DEFAULT_BUNDLE_DIR: string;
