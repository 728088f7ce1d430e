export function checkFecRounds(job: {
  path: string;
  dataSize: number;
  fecOffset: number;
  roots: number;
  rounds: number;
  startRound: number;
  endRound: number;
  onRounds?: (n: number) => void;
}): Promise<{ round: number; byte: number } | null>;
