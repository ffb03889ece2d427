/**
 * What every CLI command receives: a way to reach the daemon and a way to print. Tests hand in stubs.
 */
import { readFile } from 'node:fs/promises'
import { loadConfig } from '../daemon/config.js'
import { RpcClient } from '../daemon/rpc-client.js'
import { MindooError, RpcError, RpcUnavailableError, UsageError } from '../errors.js'
import { cleanJson, cleanText } from './sanitize.js'

/** Exit codes: stable, documented in the README. */
export const EXIT = {
  OK: 0,
  /** The daemon answered with an error (not found, wrong password...), or a sync round failed. */
  FAILED: 1,
  /** Bad usage or bad parameters. */
  USAGE: 2,
  /** The daemon could not be reached. */
  UNAVAILABLE: 3,
  /** The config file is invalid. */
  CONFIG: 4
} as const

export interface GlobalOptions {
  config?: string
  socket?: string
  url?: string
  tokenFile?: string
  json?: boolean
}

/** What a command needs of the RPC client (a stub in tests). */
export type CliClient = Pick<RpcClient, 'call'>

export interface ClientOptions {
  /** Per-call timeout, ms; 0 waits as long as it takes. Default: the client's (60 s). */
  timeoutMs?: number
}

export interface CliContext {
  /** A client for the daemon chosen by the global options. */
  client: (options?: ClientOptions) => Promise<CliClient>
  /** Prints for people, or the raw value with --json. */
  print: (value: unknown, human: (value: any) => string) => void // eslint-disable-line @typescript-eslint/no-explicit-any
  /** Progress and notes go to stderr, so stdout stays parseable. */
  note: (text: string) => void
  /** Reads all of stdin (`--password-file -`). */
  readStdin: () => Promise<string>
  /** Where a progress bar draws when `isTTY` (stderr). */
  progressStream: NodeJS.WritableStream
  json: boolean
  /** Whether stderr is a terminal (progress bar) or not (plain progress lines). */
  isTTY: boolean
}

export { UsageError }

async function readAll (stream: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = []
  for await (const chunk of stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk))
  return Buffer.concat(chunks).toString('utf8')
}

export function defaultContext (options: GlobalOptions): CliContext {
  const json = options.json === true
  return {
    json,
    isTTY: process.stderr.isTTY === true,
    progressStream: process.stderr,
    client: async (clientOptions = {}) => {
      if (options.url !== undefined) {
        const token = options.tokenFile === undefined
          ? undefined
          : (await readFile(options.tokenFile, 'utf8').catch((err: NodeJS.ErrnoException) => {
              throw new UsageError(`cannot read token file ${options.tokenFile ?? ''}: ${err.code ?? String(err)}`, { cause: err })
            })).trim()
        return new RpcClient({ url: options.url, token, ...clientOptions })
      }
      const socketPath = options.socket ?? (await loadConfig(options.config)).rpc.socket
      return new RpcClient({ socketPath, ...clientOptions })
    },
    print: (value, human) => {
      process.stdout.write((json ? cleanJson(value) : human(value)) + '\n')
    },
    note: (text) => { process.stderr.write(text + '\n') },
    readStdin: async () => await readAll(process.stdin)
  }
}

/**
 * The context commands get: human output, notes and progress lines pass through `cleanText` (remote and daemon
 * text never reaches the terminal with control characters or escape sequences); `--json` output is written by the
 * context's own `print` (the default one escapes what JSON.stringify leaves raw, see `cleanJson`).
 */
export function safeContext (c: CliContext): CliContext {
  return {
    ...c,
    print: (value, human) => { c.print(value, (v) => cleanText(human(v))) },
    note: (text) => { c.note(cleanText(text)) }
  }
}

/** Maps an error to a message and an exit code. */
export function exitFor (err: unknown): { code: number, message: string } {
  if (err instanceof RpcUnavailableError) return { code: EXIT.UNAVAILABLE, message: err.message }
  if (err instanceof RpcError) {
    const code = err.rpcCode === -32602 || err.rpcCode === -32601 ? EXIT.USAGE : EXIT.FAILED
    return { code, message: `${err.dataCode ?? err.rpcCode}: ${err.message}` }
  }
  if (err instanceof UsageError) return { code: EXIT.USAGE, message: err.message }
  if (err instanceof MindooError && err.code === 'INVALID_CONFIG') return { code: EXIT.CONFIG, message: err.message }
  if (err instanceof MindooError) return { code: EXIT.FAILED, message: `${err.code}: ${err.message}` }
  return { code: EXIT.FAILED, message: String((err as Error)?.message ?? err) }
}
