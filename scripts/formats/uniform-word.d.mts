/** The 32-bit little-endian word the block at `off` repeats, or -1 when its words differ. */
export function uniformWord(buf: Buffer, off: number, blockSize: number): number;
/** Appends a run of uniform blocks to flat `start, count, value` triples, extending the last one. */
export function addUniformRun(runs: number[], start: number, count: number, value: number): void;
