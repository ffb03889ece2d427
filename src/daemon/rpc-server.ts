/**
 * The JSON-RPC 2.0 control API over HTTP: on a Unix socket (mode 0600: access by file permission) and,
 * optionally, on 127.0.0.1 with a bearer token. HTTP gives the framing and the size limit; json-rpc-2.0 gives
 * the protocol (batches, notifications, -32700/-32600/-32601).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { chmod, rm } from 'node:fs/promises'
import { timingSafeEqual } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { JSONRPCErrorException, JSONRPCServer, type JSONRPCErrorResponse, type JSONRPCID } from 'json-rpc-2.0'
import { InvalidArgumentError, MindooError } from '../errors.js'
import { silentLogger, type Logger } from '../util/logger.js'
import { LOCAL_HOST, MAX_RPC_BODY_BYTES } from './constants.js'
import { checkParams, METHODS, openRpcDocument, type RpcContext } from './rpc-methods.js'

/** JSON-RPC error codes used besides the standard ones. */
export const RPC_INVALID_PARAMS = -32602
export const RPC_APPLICATION_ERROR = -32000
export const RPC_UNAUTHORIZED = -32001
export const RPC_INTERNAL_ERROR = -32603
export const RPC_INVALID_REQUEST = -32600

export interface RpcServerInit {
  socketPath: string
  http?: { port: number, token: string }
  maxBodyBytes?: number
  logger?: Logger
}

/** Maps a thrown error to its JSON-RPC error: bad parameters -32602, our typed errors -32000 with data.code. */
function toErrorResponse (id: JSONRPCID, err: unknown, log: Logger): JSONRPCErrorResponse {
  const error = (code: number, message: string, data?: unknown): JSONRPCErrorResponse =>
    ({ jsonrpc: '2.0', id, error: data === undefined ? { code, message } : { code, message, data } })
  if (err instanceof JSONRPCErrorException) return error(err.code, err.message, err.data)
  if (err instanceof InvalidArgumentError) return error(RPC_INVALID_PARAMS, err.message, { code: err.code })
  // an error that says where (an audit file and line) sends it along in data.location
  if (err instanceof MindooError) return error(RPC_APPLICATION_ERROR, err.message, { code: err.code, ...locationOf(err) })
  log.error({ err: String(err) }, 'rpc method failed')
  return error(RPC_INTERNAL_ERROR, 'internal error', { code: 'INTERNAL' })
}

function locationOf (err: MindooError): { location?: unknown } {
  const location = (err as { location?: unknown }).location
  return location === undefined ? {} : { location }
}

export class RpcServer {
  readonly #rpc = new JSONRPCServer()
  readonly #init: RpcServerInit
  readonly #log: Logger
  readonly #servers: Server[] = []
  #httpPort: number | undefined

  constructor (ctx: RpcContext, init: RpcServerInit) {
    this.#init = init
    this.#log = (init.logger ?? silentLogger).child({ component: 'rpc' })
    this.#rpc.mapErrorToJSONRPCErrorResponse = (id, err) => toErrorResponse(id, err, this.#log)
    for (const [name, method] of Object.entries(METHODS)) {
      this.#rpc.addMethod(name, async (params) => await method.handler(checkParams(name, params), ctx))
    }
    this.#rpc.addMethod('rpc.discover', () => openRpcDocument(ctx.version))
  }

  /** Port of the HTTP endpoint on 127.0.0.1, when enabled. */
  get httpPort (): number | undefined {
    return this.#httpPort
  }

  async start (): Promise<void> {
    // a socket file left by a daemon that died is stale: the data directory lock proves no daemon runs here
    await rm(this.#init.socketPath, { force: true })
    const unix = createServer((req, res) => { void this.#handle(req, res, false) })
    await listen(unix, () => unix.listen(this.#init.socketPath))
    await chmod(this.#init.socketPath, 0o600)
    this.#servers.push(unix)
    if (this.#init.http !== undefined) {
      const tcp = createServer((req, res) => { void this.#handle(req, res, true) })
      await listen(tcp, () => tcp.listen(this.#init.http?.port, LOCAL_HOST))
      this.#httpPort = (tcp.address() as AddressInfo).port
      this.#servers.push(tcp)
    }
  }

  async stop (): Promise<void> {
    for (const server of this.#servers.splice(0)) {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => { resolve() }))
    }
    await rm(this.#init.socketPath, { force: true })
  }

  #authorised (req: IncomingMessage): boolean {
    const expected = Buffer.from(`Bearer ${this.#init.http?.token ?? ''}`)
    const given = Buffer.from(req.headers.authorization ?? '')
    return given.length === expected.length && timingSafeEqual(given, expected)
  }

  async #handle (req: IncomingMessage, res: ServerResponse, needsToken: boolean): Promise<void> {
    const reply = (status: number, body?: unknown, headers: Record<string, string> = {}): void => {
      res.writeHead(status, { 'content-type': 'application/json', ...headers })
      res.end(body === undefined ? undefined : JSON.stringify(body))
    }
    const rpcError = (code: number, message: string): unknown => ({ jsonrpc: '2.0', id: null, error: { code, message } })
    if (needsToken && !this.#authorised(req)) {
      reply(401, rpcError(RPC_UNAUTHORIZED, 'unauthorized'), { 'www-authenticate': 'Bearer' })
      req.resume()
      return
    }
    if (req.method !== 'POST') {
      reply(405, rpcError(RPC_INVALID_REQUEST, 'use POST'), { allow: 'POST' })
      req.resume()
      return
    }
    const max = this.#init.maxBodyBytes ?? MAX_RPC_BODY_BYTES
    if (Number(req.headers['content-length'] ?? 0) > max) {
      reply(413, rpcError(RPC_INVALID_REQUEST, `request larger than ${max} bytes`), { connection: 'close' })
      req.destroy()
      return
    }
    const chunks: Buffer[] = []
    let size = 0
    try {
      for await (const chunk of req) {
        size += (chunk as Buffer).length
        if (size > max) {
          reply(413, rpcError(RPC_INVALID_REQUEST, `request larger than ${max} bytes`), { connection: 'close' })
          req.destroy()
          return
        }
        chunks.push(chunk as Buffer)
      }
      const response = await this.#rpc.receiveJSON(Buffer.concat(chunks).toString('utf8'))
      if (response === null) reply(204)
      else reply(200, response)
    } catch (err) {
      this.#log.error({ err: String(err) }, 'rpc request failed')
      if (!res.headersSent) reply(500, rpcError(RPC_INTERNAL_ERROR, 'internal error'))
    }
  }
}

async function listen (server: Server, start: () => void): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.once('listening', () => {
      server.off('error', reject)
      resolve()
    })
    start()
  })
}
