import type { Command } from 'commander';
import { registerDoctor } from './doctor.ts';
import { registerInspect } from './inspect.ts';

/** Every `omie` command, one line each. Each file parses arguments, calls a library module, and prints. */
export const commands: Array<(program: Command) => void> = [registerDoctor, registerInspect];
