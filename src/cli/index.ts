/**
 * `mindoodb`: the command line of a MindooDB mesh node. `mindoodb daemon` runs the node, `mindoodb init` sets one
 * up; every other command talks to a running daemon over its JSON-RPC API.
 *
 * @example
 * ```ts
 * // a test drives the CLI with a stub context and captured output
 * const code = await runCli(['doc', 'get', 'orders', 'o-1'], { context: () => stub, output: { writeOut, writeErr } })
 * ```
 */
import { Command, CommanderError, type OutputConfiguration } from 'commander'
import { registerCommands } from './commands/index.js'
import { defaultContext, EXIT, exitFor, safeContext, type CliContext, type GlobalOptions } from './context.js'
import { cleanText } from './sanitize.js'

export { EXIT, exitFor, safeContext, UsageError } from './context.js'
export { cleanJson, cleanText } from './sanitize.js'
export type { CliClient, CliContext, ClientOptions, GlobalOptions } from './context.js'

export interface ProgramOptions {
  /** Makes the commands' context from the parsed global options. Default: `defaultContext` (the real daemon, stdout, stderr). */
  context?: (options: GlobalOptions) => CliContext
  /** Where commander writes help and usage errors, and where `runCli` writes errors. Default: stdout and stderr. */
  output?: Pick<OutputConfiguration, 'writeOut' | 'writeErr'>
}

/**
 * Ids this CLI prints may begin with '-', which base64url uses (a document id does for one tenant in 64, a signing
 * key for one in 64): commander would take such an argument for an option, or for a short option and its value.
 * A word of exactly the length of a document id (54) or of a raw public key (43) in base64url characters is no
 * option of this program, so `runCli` quotes it before parsing, and the command gets it back as typed (arguments
 * and option values alike).
 */
const ID_QUOTE = '\u0001'
const DASHED_ID = /^-[A-Za-z0-9_-]{42}(?:[A-Za-z0-9_-]{11})?$/

function quoteIds (argv: string[]): string[] {
  return argv.map((arg) => DASHED_ID.test(arg) ? ID_QUOTE + arg : arg)
}

function unquoteId (value: unknown): unknown {
  if (typeof value === 'string') return value.startsWith(ID_QUOTE) ? value.slice(ID_QUOTE.length) : value
  return Array.isArray(value) ? value.map(unquoteId) : value
}

/** Gives the command about to run (and its parents) the ids `quoteIds` quoted, as typed. */
function unquoteIds (command: Command): void {
  command.processedArgs.forEach((value, i, args) => { args[i] = unquoteId(value) })
  for (let c: Command | null = command; c !== null; c = c.parent) {
    for (const [key, value] of Object.entries(c.opts())) {
      const typed = unquoteId(value)
      if (typed !== value) c.setOptionValueWithSource(key, typed, c.getOptionValueSource(key))
    }
  }
}

export function buildProgram (options: ProgramOptions = {}): Command {
  const makeContext = options.context ?? defaultContext
  const program = new Command('mindoodb')
    .description('MindooDB mesh: an end-to-end encrypted document database that organisations sync peer to peer')
    .option('-c, --config <file>', 'config file (to find the daemon\'s socket; where `init` writes)')
    .option('-s, --socket <path>', 'the daemon\'s JSON-RPC socket')
    .option('--url <url>', 'the daemon\'s HTTP JSON-RPC endpoint (http://127.0.0.1:<port>/)')
    .option('--token-file <file>', 'bearer token for --url')
    .option('--json', 'print the raw result as JSON, for scripts')
    .addHelpText('after', `
Exit codes: ${EXIT.OK} ok, ${EXIT.FAILED} the daemon refused (or a sync round failed), ${EXIT.USAGE} bad usage or parameters,
            ${EXIT.UNAVAILABLE} daemon unreachable, ${EXIT.CONFIG} invalid config.`)
    .configureHelp({ showGlobalOptions: true })
    .showHelpAfterError('(add --help for usage)')
    .exitOverride()
    .hook('preAction', (_, action) => { unquoteIds(action) })
  if (options.output !== undefined) program.configureOutput(options.output)
  let context: CliContext | undefined
  registerCommands(program, () => (context ??= safeContext(makeContext(program.opts<GlobalOptions>()))))
  return program
}

/**
 * Runs the CLI on `argv` (node-style: `[node, script, ...args]`, unless `from: 'user'`) and returns the exit code
 * (see EXIT). Errors are written as one line to stderr (or `output.writeErr`).
 */
export async function runCli (argv: string[], options: ProgramOptions & { from?: 'node' | 'user' } = {}): Promise<number> {
  const program = buildProgram(options)
  const writeErr = options.output?.writeErr ?? ((text: string) => { process.stderr.write(text) })
  try {
    await program.parseAsync(quoteIds(argv), { from: options.from ?? 'node' })
    return EXIT.OK
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT.OK : EXIT.USAGE
    const { code, message } = exitFor(err)
    writeErr(`mindoodb: ${cleanText(message)}\n`)
    return code
  }
}

/** The `mindoodb` executable: runs the CLI on process.argv and sets process.exitCode. */
export async function main (argv: string[] = process.argv): Promise<void> {
  process.exitCode = await runCli(argv)
}
