/**
 * A JSON-RPC client for the daemon: over its Unix socket, or over HTTP on 127.0.0.1 with a bearer token.
 * Errors come back as RpcError with the JSON-RPC `code` and, for our typed errors, `dataCode` (e.g. DOCUMENT_NOT_FOUND).
 */
import { request } from 'node:http'
import { JSONRPCClient, JSONRPCErrorException } from 'json-rpc-2.0'
import { MindooError, RpcError, RpcUnavailableError } from '../errors.js'

export interface RpcClientOptions {
  /** The daemon's Unix socket. */
  socketPath?: string
  /** `http://127.0.0.1:<port>/` of the HTTP endpoint (needs `token`). */
  url?: string
  token?: string
  /** Per-call timeout, ms. Default 60 000. */
  timeoutMs?: number
}

export { RpcError, RpcUnavailableError }

export class RpcClient {
  readonly #options: RpcClientOptions
  /** Per call, `failure` keeps a transport error: json-rpc-2.0 would turn it into an error answer with code 0. */
  readonly #client: JSONRPCClient<{ failure?: unknown }>

  constructor (options: RpcClientOptions) {
    if (options.socketPath === undefined && options.url === undefined) throw new TypeError('socketPath or url is required')
    this.#options = options
    this.#client = new JSONRPCClient(async (payload, call) => {
      let response: string
      try {
        response = await this.#post(JSON.stringify(payload))
      } catch (err) {
        call.failure = err
        throw err
      }
      if (response === '') return
      let parsed: unknown
      try {
        parsed = JSON.parse(response)
      } catch (err) {
        call.failure = new RpcUnavailableError('the daemon\'s answer is not JSON-RPC (is this the MindooDB daemon?)', { cause: err })
        throw call.failure
      }
      this.#client.receive(parsed as Parameters<JSONRPCClient['receive']>[0])
    })
  }

  /** Calls a method with by-name params. Throws RpcError for an error answer, RpcUnavailableError when unreachable. */
  async call<T = any> (method: string, params: Record<string, unknown> = {}): Promise<T> { // eslint-disable-line @typescript-eslint/no-explicit-any
    const call: { failure?: unknown } = {}
    try {
      return await this.#client.request(method, params, call)
    } catch (err) {
      if (call.failure !== undefined) throw call.failure
      if (err instanceof JSONRPCErrorException) {
        const data = err.data as { code?: string } | undefined
        throw new RpcError(err.code, err.message, data?.code)
      }
      throw err
    }
  }

  async #post (body: string): Promise<string> {
    const { socketPath, url, token } = this.#options
    const target = url === undefined ? undefined : new URL(url)
    return await new Promise((resolve, reject) => {
      const req = request({
        socketPath,
        host: target?.hostname,
        port: target?.port,
        path: target?.pathname ?? '/',
        method: 'POST',
        timeout: this.#options.timeoutMs ?? 60_000,
        headers: {
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(body),
          ...(token === undefined ? {} : { authorization: `Bearer ${token}` })
        }
      }, (res) => {
        const chunks: Buffer[] = []
        res.on('data', (c: Buffer) => chunks.push(c))
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8')
          if (res.statusCode === 401 || res.statusCode === 403) reject(new RpcUnavailableError('unauthorized: wrong or missing token'))
          else if (res.statusCode === 413) reject(new RpcError(-32600, 'request too large'))
          else resolve(text)
        })
        res.on('error', reject)
      })
      req.on('timeout', () => { req.destroy(new RpcUnavailableError('the daemon did not answer in time')) })
      req.on('error', (err: NodeJS.ErrnoException) => {
        if (err instanceof MindooError) reject(err)
        else reject(new RpcUnavailableError(`cannot reach the daemon at ${socketPath ?? url ?? ''}: ${err.code ?? err.message}`, { cause: err }))
      })
      req.end(body)
    })
  }
}
