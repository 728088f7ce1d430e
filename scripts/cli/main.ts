import { Command, CommanderError } from 'commander';
import pkg from '../../package.json' with { type: 'json' };
import { asOmieError, ExitCode } from '../errors.ts';
import { commands } from './commands/index.ts';
import { printError } from './output.ts';

export function buildProgram(): Command {
  const program = new Command('omie')
    .description("Omie Kit: build, check and flash Omie images (de-Googled Android on its owner's side)")
    .version(pkg.version)
    .option('--json', 'machine-readable JSON output on stdout')
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText(
      'after',
      '\nExit codes: 0 ok, 1 check failed, 2 usage or input error, 3 environment error (missing tool, device).',
    );
  for (const register of commands) register(program);
  program.exitOverride();
  for (const c of program.commands) c.exitOverride();
  return program;
}

/** Runs the CLI and returns the process exit code. */
export async function main(argv: string[]): Promise<number> {
  // `omie … | head` closes the pipe early: that is the reader's choice, not an error.
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
    throw e;
  });
  const program = buildProgram();
  const json = argv.includes('--json');
  try {
    await program.parseAsync(argv);
    return (process.exitCode as number | undefined) ?? ExitCode.ok;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (
        e.code === 'commander.helpDisplayed' ||
        e.code === 'commander.version' ||
        e.code === 'commander.help'
      ) {
        return ExitCode.ok;
      }
      return ExitCode.input;
    }
    const err = asOmieError(e);
    printError(err, json);
    return err.exitCode;
  }
}

/** Global options (like --json) as seen from inside a command action. */
export function globalOpts(cmd: Command): { json: boolean } {
  const o = cmd.optsWithGlobals() as { json?: boolean };
  return { json: Boolean(o.json) };
}
