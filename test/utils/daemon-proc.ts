/**
 * Real `mindoodb daemon` processes for end-to-end tests, and the `mindoodb` CLI run as a process.
 *
 * `startDaemon` spawns `node dist/src/cli/main.js daemon --config <file>`, collects its JSON log lines (stdout)
 * and stderr, waits (bounded) for the log line with msg "ready" and parses peer id, addresses, tenant, RPC socket
 * and ports from it. `stop` sends a signal and waits (bounded) for the exit; `dispose` does the same and falls
 * back to SIGKILL, so a test's teardown never leaves a process behind. Every wait has a timeout.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import { request } from 'node:http'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { RpcClient, RpcError } from '../../src/daemon/rpc-client.js'
import type { TenantPublicInfo } from '../../src/index.js'

/** dist/src/cli/main.js, next to this file's compiled copy (dist/test/utils/). */
export const CLI = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'src', 'cli', 'main.js')

export interface LogLine {
  level: string
  msg: string
  [key: string]: unknown
}

/** What the "ready" log line tells. */
export interface ReadyInfo {
  peerId: string
  addresses: string[]
  tenant: TenantPublicInfo
  rpcSocket: string
  rpcHttpPort?: number
  metricsPort?: number
}

export interface Exit { code: number | null, signal: NodeJS.Signals | null }

export interface StartOptions {
  /** Bound on the wait for the ready line. Default 20 s. */
  timeoutMs?: number
  env?: NodeJS.ProcessEnv
  /** The Node binary that runs `dist/src/cli/main.js`. Default: the one running the tests. */
  node?: string
}

/** Every process started here that has not exited yet: `killAll` is the last-resort teardown. */
const live = new Set<DaemonProcess>()

/** A spawned daemon (ready or not) and everything it printed. */
export class DaemonProcess {
  readonly configFile: string
  readonly child: ChildProcess
  /** Parsed JSON lines of stdout (the log). */
  readonly lines: LogLine[] = []
  /** stdout lines that were not JSON. */
  readonly otherStdout: string[] = []
  stderr = ''
  exited: Exit | undefined
  readonly exit: Promise<Exit>
  #ready: ReadyInfo | undefined
  #client: RpcClient | undefined
  readonly #waiters = new Set<() => void>()

  constructor (configFile: string, env?: NodeJS.ProcessEnv, node: string = process.execPath) {
    this.configFile = configFile
    this.child = spawn(node, [CLI, 'daemon', '--config', configFile], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, NOTIFY_SOCKET: undefined, ...env }
    })
    live.add(this)
    let buffered = ''
    this.child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      buffered += chunk
      const parts = buffered.split('\n')
      buffered = parts.pop() ?? ''
      for (const line of parts) this.#line(line)
    })
    this.child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      this.stderr += chunk
      this.#wake()
    })
    this.exit = new Promise<Exit>((resolve) => {
      this.child.on('close', (code, signal) => {
        if (buffered !== '') this.#line(buffered)
        buffered = ''
        this.exited = { code, signal }
        live.delete(this)
        this.#wake()
        resolve(this.exited)
      })
    })
  }

  #line (line: string): void {
    if (line.trim() === '') return
    try {
      const parsed = JSON.parse(line) as LogLine
      if (parsed !== null && typeof parsed === 'object' && typeof parsed.msg === 'string') this.lines.push(parsed)
      else this.otherStdout.push(line)
    } catch {
      this.otherStdout.push(line)
    }
    this.#wake()
  }

  #wake (): void {
    for (const w of [...this.#waiters]) w()
  }

  /** Resolves at the next output or exit, or after `ms`. */
  async #tick (ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer)
        this.#waiters.delete(done)
        resolve()
      }
      const timer = setTimeout(done, ms)
      this.#waiters.add(done)
    })
  }

  get ready (): ReadyInfo {
    if (this.#ready === undefined) throw new Error('daemon is not ready')
    return this.#ready
  }

  get pid (): number {
    return this.child.pid as number
  }

  /** An RPC client over the daemon's Unix socket (from the ready line). */
  get client (): RpcClient {
    this.#client ??= new RpcClient({ socketPath: this.ready.rpcSocket, timeoutMs: 30_000 })
    return this.#client
  }

  /** Waits for a log line that matches (lines already printed count); fails when the process exits first. */
  async waitForLog (match: (line: LogLine) => boolean, what: string, timeoutMs = 15_000, from = 0): Promise<LogLine> {
    const end = Date.now() + timeoutMs
    while (true) {
      const line = this.lines.slice(from).find(match)
      if (line !== undefined) return line
      if (this.exited !== undefined) throw new Error(`daemon exited (${JSON.stringify(this.exited)}) before ${what}; stderr: ${this.stderr}`)
      if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; stderr: ${this.stderr}`)
      await this.#tick(Math.min(200, Math.max(1, end - Date.now())))
    }
  }

  /** Waits for the ready line and parses it. */
  async waitReady (timeoutMs = 20_000): Promise<ReadyInfo> {
    const line = await this.waitForLog((l) => l.msg === 'ready', 'the ready log line', timeoutMs)
    this.#ready = {
      peerId: line.peerId as string,
      addresses: line.addresses as string[],
      tenant: line.tenant as TenantPublicInfo,
      rpcSocket: line.rpcSocket as string,
      rpcHttpPort: line.rpcHttpPort as number | undefined,
      metricsPort: line.metricsPort as number | undefined
    }
    return this.#ready
  }

  /** Waits for the process to exit, at most `timeoutMs`; throws when it is still running then. */
  async waitExit (timeoutMs = 15_000): Promise<Exit> {
    let timer: NodeJS.Timeout | undefined
    try {
      return await Promise.race([
        this.exit,
        new Promise<never>((_resolve, reject) => {
          timer = setTimeout(() => { reject(new Error(`daemon ${this.pid} did not exit within ${timeoutMs} ms`)) }, timeoutMs)
        })
      ])
    } finally {
      clearTimeout(timer)
    }
  }

  /** Sends a signal (if still running). */
  signal (signal: NodeJS.Signals): void {
    if (this.exited === undefined) this.child.kill(signal)
  }

  /** Sends `signal` (default SIGTERM) and waits for the exit, at most `timeoutMs`. */
  async stop (signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 15_000): Promise<Exit> {
    this.signal(signal)
    return await this.waitExit(timeoutMs)
  }

  /** Teardown: SIGTERM, and SIGKILL when it has not exited after `graceMs`. Never throws. */
  async dispose (graceMs = 5_000): Promise<void> {
    if (this.exited !== undefined) return
    this.signal('SIGTERM')
    try {
      await this.waitExit(graceMs)
    } catch {
      this.signal('SIGKILL')
      await this.waitExit(5_000).catch(() => {})
    }
  }

  /** The log lines at level error or above. */
  errors (): LogLine[] {
    return this.lines.filter((l) => l.level === 'error' || l.level === 'fatal')
  }
}

/** Spawns a daemon on `configFile` and waits until it is ready; kills it when it does not get there. */
export async function startDaemon (configFile: string, options: StartOptions = {}): Promise<DaemonProcess> {
  const proc = new DaemonProcess(configFile, options.env, options.node)
  try {
    await proc.waitReady(options.timeoutMs)
  } catch (err) {
    await proc.dispose(1_000)
    throw err
  }
  return proc
}

/** Spawns a daemon that is expected to refuse to start; returns its exit and output (kills it after `timeoutMs`). */
export async function startDaemonExpectingFailure (configFile: string, timeoutMs = 15_000): Promise<{ exit: Exit, stderr: string, lines: LogLine[], ms: number }> {
  const started = Date.now()
  const proc = new DaemonProcess(configFile)
  try {
    const exit = await proc.waitExit(timeoutMs)
    return { exit, stderr: proc.stderr, lines: proc.lines, ms: Date.now() - started }
  } finally {
    await proc.dispose(1_000)
  }
}

/** SIGKILLs every daemon started here that is still running (an `after` hook's safety net). */
export async function killAll (): Promise<void> {
  await Promise.all([...live].map(async (p) => { await p.dispose(2_000) }))
}

export interface CliResult {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs `mindoodb <args>` as a process (with `node`, default the tests' own), at most `timeoutMs` (then SIGKILL and a failed result). */
export async function runCli (args: string[], timeoutMs = 30_000, node: string = process.execPath): Promise<CliResult> {
  const child = spawn(node, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NO_COLOR: '1' } })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (c: string) => { stdout += c })
  child.stderr.setEncoding('utf8').on('data', (c: string) => { stderr += c })
  const timer = setTimeout(() => {
    stderr += `\n[test] mindoodb ${args.join(' ')} killed after ${timeoutMs} ms`
    child.kill('SIGKILL')
  }, timeoutMs)
  return await new Promise<CliResult>((resolve, reject) => {
    child.on('error', (err) => { clearTimeout(timer); reject(err) })
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

/** A config for a test organisation: 127.0.0.1 on a random port, no DHT, quick retries; `extra` overrides. */
export function testConfig (dir: string, tenant: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    dataDir: join(dir, tenant),
    tenant,
    listen: ['/ip4/127.0.0.1/tcp/0'],
    dht: false,
    logLevel: 'info',
    sync: { intervalSeconds: 1, backoffBaseSeconds: 0.2, backoffMaxSeconds: 1 },
    ...extra
  }
}

export async function writeJson (file: string, value: unknown): Promise<string> {
  await writeFile(file, JSON.stringify(value, null, 2))
  return file
}

/** Polls `fn` until it returns a value that is not undefined, at most `timeoutMs`. */
export async function eventually<T> (fn: () => Promise<T | undefined>, what: string, timeoutMs = 20_000, intervalMs = 100): Promise<T> {
  const end = Date.now() + timeoutMs
  let last: unknown
  while (Date.now() < end) {
    try {
      const value = await fn()
      if (value !== undefined) return value
    } catch (err) {
      last = err
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last === undefined ? '' : ` (last error: ${String(last)})`}`)
}

export interface RawResponse {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

export interface RawRequest {
  /** The daemon's Unix socket, or `port` on 127.0.0.1. */
  socketPath?: string
  port?: number
  method?: string
  body?: string | Buffer
  headers?: Record<string, string | number>
  /** Default 15 s. */
  timeoutMs?: number
}

/** One HTTP request to the RPC endpoint, with full control of method, headers and body (for bad input). */
export async function rawRequest (r: RawRequest): Promise<RawResponse> {
  return await new Promise<RawResponse>((resolve, reject) => {
    const body = r.body ?? ''
    const req = request({
      socketPath: r.socketPath,
      host: r.socketPath === undefined ? '127.0.0.1' : undefined,
      port: r.port,
      path: '/',
      method: r.method ?? 'POST',
      timeout: r.timeoutMs ?? 15_000,
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...r.headers }
    }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => { resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }) })
      res.on('error', reject)
    })
    req.on('timeout', () => { req.destroy(new Error('request timed out')) })
    req.on('error', reject)
    req.end(body)
  })
}

/** A JSON-RPC batch (one request, many calls) over the Unix socket; returns the results in call order. */
export async function rpcBatch (socketPath: string, calls: Array<{ method: string, params: Record<string, unknown> }>): Promise<unknown[]> {
  const res = await rawRequest({
    socketPath,
    timeoutMs: 60_000,
    body: JSON.stringify(calls.map((c, id) => ({ jsonrpc: '2.0', id, method: c.method, params: c.params })))
  })
  if (res.status !== 200) throw new Error(`batch failed: HTTP ${res.status} ${res.body}`)
  const answers = JSON.parse(res.body) as Array<{ id: number, result?: unknown, error?: { code: number, message: string } }>
  const results: unknown[] = new Array(calls.length)
  for (const a of answers) {
    if (a.error !== undefined) throw new Error(`batch call ${a.id} (${calls[a.id].method}) failed: ${a.error.code} ${a.error.message}`)
    results[a.id] = a.result
  }
  return results
}

/** The JSON-RPC error of a call that must fail. */
export async function rpcError (p: Promise<unknown>): Promise<RpcError> {
  try {
    await p
  } catch (err) {
    if (err instanceof RpcError) return err
    throw err
  }
  throw new Error('the call succeeded')
}
