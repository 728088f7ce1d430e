import type { Detector } from './detect.ts';

/**
 * Every artifact kind `omie inspect` knows, most specific first. Format modules add one line
 * each; the `inspect` command only walks this list.
 */
export const detectors: Detector[] = [];
