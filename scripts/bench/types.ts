/** One side-by-side measurement: our time and the reference tool's, from the same run. */
export interface BenchResult {
  name: string;
  /** Seconds (or the unit the goal names). */
  ours: number;
  reference: number;
  referenceName: string;
  /** ours / reference, unless the goal defines it otherwise (e.g. throughput share). */
  ratio: number;
  /** The goal in words, e.g. "<= 1.0x" or ">= 20x faster". */
  goal: string;
  /**
   * ours / the least work any implementation must do, measured in the same run (the build's
   * floor): how far from physically required, beside the ratio to the reference tool.
   */
  floorRatio?: number;
  /** Optional extra figures (peak RSS, throughput). */
  notes?: string;
}

export interface BenchOptions {
  sizeMiB: number;
  workDir: string;
  log: (line: string) => void;
}

export type BenchFn = (opts: BenchOptions) => Promise<BenchResult[]>;
