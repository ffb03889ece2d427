/**
 * `mindoodb`: the command line of a MindooDB mesh node. `mindoodb daemon` runs the node; every other command
 * talks to a running daemon over its JSON-RPC API.
 */
import { Command, CommanderError } from 'commander'
import { registerCommands } from './commands/index.js'
import { defaultContext, EXIT, exitFor, type GlobalOptions } from './context.js'

export function buildProgram (): Command {
  const program = new Command('mindoodb')
    .description('MindooDB mesh: an end-to-end encrypted document database that organisations sync peer to peer')
    .option('-c, --config <file>', 'config file (to find the daemon\'s socket)')
    .option('-s, --socket <path>', 'the daemon\'s JSON-RPC socket')
    .option('--url <url>', 'the daemon\'s HTTP JSON-RPC endpoint (http://127.0.0.1:<port>/)')
    .option('--token-file <file>', 'bearer token for --url')
    .option('--json', 'print JSON for scripts')
    .showHelpAfterError()
    .exitOverride()
  registerCommands(program, () => defaultContext(program.opts<GlobalOptions>()))
  return program
}

/** Runs the CLI on `argv`; sets process.exitCode (see EXIT). */
export async function main (argv: string[] = process.argv): Promise<void> {
  const program = buildProgram()
  try {
    await program.parseAsync(argv)
  } catch (err) {
    if (err instanceof CommanderError) {
      process.exitCode = err.exitCode === 0 ? EXIT.OK : EXIT.USAGE
      return
    }
    const { code, message } = exitFor(err)
    process.stderr.write(`mindoodb: ${message}\n`)
    process.exitCode = code
  }
}

