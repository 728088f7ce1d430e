/**
 * Dynamic partitions: `super.img` / `super_empty.img` (LP metadata). See format.ts for the
 * on-disk structures, read.ts for parsing and extraction, build.ts for lpmake-style writing.
 */
export * from './build.ts';
export * from './format.ts';
export * from './read.ts';
