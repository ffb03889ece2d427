/**
 * Prometheus metrics on 127.0.0.1: per share, changes and bytes in and out, rounds, errors by code, rejected
 * changes by reason, lag (changes a partner lacks), connected partners; per shared database the materialisation
 * backlog; open connections by direction and kind (direct, relayed); plus the process's and libp2p's own.
 * Share figures are read from the node's status when Prometheus scrapes.
 */
import { timingSafeEqual } from 'node:crypto'
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { collectDefaultMetrics, Counter, Gauge, Registry } from 'prom-client'
import { materialiseWorkerFailures } from '../core/materialise-pool.js'
import { verifyWorkerFailures } from '../crypto/verify-pool.js'
import type { MindooNode } from '../p2p/index.js'
import { LOCAL_HOST } from './constants.js'

export interface MetricsInit {
  /** Port on 127.0.0.1 (0: any free port). */
  port: number
  /** Registry to serve (libp2p's metrics go into it too). Default: a new one. */
  registry?: Registry
  /** The RPC bearer token: a request that carries it is served whatever its Host header. Default: none. */
  token?: string
}

/**
 * Whether a request may read the metrics. A page in a browser can make the browser send requests to
 * 127.0.0.1:<port> under its own name (DNS rebinding: evil.example resolves to 127.0.0.1); the browser then sends
 * `Host: evil.example:<port>`. So only the loopback names with this port are served (127.0.0.1, localhost, [::1]),
 * or a request that carries the RPC bearer token, which no web page has.
 */
export function metricsAccess (req: Pick<IncomingMessage, 'headers'>, port: number, token?: string): 'ok' | 'bad-host' | 'bad-token' {
  const auth = req.headers.authorization
  if (auth !== undefined) {
    if (token === undefined) return 'bad-token'
    const expected = Buffer.from(`Bearer ${token}`)
    const given = Buffer.from(auth)
    return given.length === expected.length && timingSafeEqual(given, expected) ? 'ok' : 'bad-token'
  }
  const host = (req.headers.host ?? '').toLowerCase()
  const names = ['127.0.0.1', 'localhost', '[::1]']
  const allowed = new Set(names.map((n) => `${n}:${port}`))
  if (port === 80) for (const n of names) allowed.add(n)
  return allowed.has(host) ? 'ok' : 'bad-host'
}

/** Per database, changes stored but not yet materialised (see Daemon.materialiseBacklog). */
export type BacklogSource = () => Array<{ database: string, backlog: number }>

/** Builds the registry with the share metrics, reading `node` (and `backlog`) at each scrape. */
export function createShareMetrics (node: () => MindooNode | undefined, registry: Registry = new Registry(), backlog: BacklogSource = () => []): Registry {
  collectDefaultMetrics({ register: registry, prefix: 'mindoodb_process_' })
  const status = (): ReturnType<MindooNode['status']> => node()?.status() ?? []
  const counter = (name: string, help: string, pick: (t: ReturnType<MindooNode['status']>[number]['totals']) => number): void => {
    // the node keeps the running totals; each scrape publishes them as they are
    new Counter({
      name, help, labelNames: ['share'], registers: [registry],
      collect () {
        this.reset()
        for (const s of status()) this.inc({ share: s.id }, pick(s.totals))
      }
    })
  }
  counter('mindoodb_share_changes_sent_total', 'Changes sent to partners.', (t) => t.changesSent)
  counter('mindoodb_share_changes_received_total', 'Changes received from partners and stored.', (t) => t.changesReceived)
  counter('mindoodb_share_bytes_sent_total', 'Bytes of changes sent.', (t) => t.bytesSent)
  counter('mindoodb_share_bytes_received_total', 'Bytes of changes received.', (t) => t.bytesReceived)
  counter('mindoodb_share_reconcile_bytes_total', 'Bytes of reconciliation messages sent and received.', (t) => t.reconcileBytes)
  counter('mindoodb_share_rounds_total', 'Sync rounds started by this node.', (t) => t.rounds)
  new Counter({
    name: 'mindoodb_share_errors_total', help: 'Failed rounds and sessions, by error code.', labelNames: ['share', 'code'], registers: [registry],
    collect () {
      this.reset()
      for (const s of status()) for (const [code, n] of Object.entries(s.totals.errors)) this.inc({ share: s.id, code }, n)
    }
  })
  new Counter({
    name: 'mindoodb_share_rejected_changes_total', help: 'Received changes rejected, by reason.', labelNames: ['share', 'reason'], registers: [registry],
    collect () {
      this.reset()
      for (const s of status()) for (const [reason, n] of Object.entries(s.totals.rejected)) this.inc({ share: s.id, reason }, n)
    }
  })
  new Gauge({
    name: 'mindoodb_share_partner_lag_changes', help: 'Changes of our served set the partner lacked at the last reconciliation.', labelNames: ['share', 'partner'], registers: [registry],
    collect () {
      this.reset()
      for (const s of status()) for (const p of s.partners) if (p.lag !== undefined) this.set({ share: s.id, partner: p.tenantId }, p.lag)
    }
  })
  new Gauge({
    name: 'mindoodb_share_connected_partners', help: 'Partners connected now.', labelNames: ['share'], registers: [registry],
    collect () {
      this.reset()
      for (const s of status()) this.set({ share: s.id }, s.partners.filter((p) => p.connected).length)
    }
  })
  new Gauge({
    name: 'mindoodb_share_served_changes', help: 'Changes in the share\'s served set.', labelNames: ['share'], registers: [registry],
    collect () {
      this.reset()
      for (const s of status()) this.set({ share: s.id }, s.servedSetSize)
    }
  })
  new Gauge({
    name: 'mindoodb_share_enabled', help: '1 when the share is enabled.', labelNames: ['share'], registers: [registry],
    collect () {
      this.reset()
      for (const s of status()) this.set({ share: s.id }, s.enabled ? 1 : 0)
    }
  })
  new Gauge({
    name: 'mindoodb_materialise_backlog_changes', help: 'Changes stored but not yet materialised (readable), per database of a share.', labelNames: ['database'], registers: [registry],
    collect () {
      this.reset()
      for (const b of backlog()) this.set({ database: b.database }, b.backlog)
    }
  })
  new Counter({
    name: 'mindoodb_worker_failures_total',
    help: 'Worker threads that could not start or failed, by pool (verify, materialise); each is replaced after a delay, its work done on the main thread meanwhile.',
    labelNames: ['pool'],
    registers: [registry],
    collect () {
      this.reset()
      this.inc({ pool: 'verify' }, verifyWorkerFailures())
      this.inc({ pool: 'materialise' }, materialiseWorkerFailures())
    }
  })
  new Gauge({
    name: 'mindoodb_connections', help: 'Open libp2p connections, by direction (inbound, outbound) and kind (direct, relayed).', labelNames: ['direction', 'kind'], registers: [registry],
    collect () {
      this.reset()
      const n = node()
      if (n === undefined) return
      // every combination, so a panel shows 0 rather than nothing
      for (const direction of ['inbound', 'outbound']) for (const kind of ['direct', 'relayed']) this.set({ direction, kind }, 0)
      let connections: ReturnType<MindooNode['libp2p']['getConnections']>
      try {
        connections = n.libp2p.getConnections()
      } catch {
        return // not started (or stopping)
      }
      for (const c of connections) {
        if (c.status !== 'open') continue
        this.inc({ direction: c.direction, kind: c.remoteAddr.toString().includes('/p2p-circuit') ? 'relayed' : 'direct' })
      }
    }
  })
  return registry
}

/** Serves a registry at http://127.0.0.1:<port>/metrics. */
export class MetricsServer {
  readonly #registry: Registry
  readonly #port: number
  readonly #token: string | undefined
  #server: Server | undefined

  constructor (init: MetricsInit) {
    this.#registry = init.registry ?? new Registry()
    this.#port = init.port
    this.#token = init.token
  }

  get port (): number | undefined {
    return (this.#server?.address() as AddressInfo | null)?.port
  }

  async start (): Promise<void> {
    const server = createServer((req, res) => {
      // nothing, not even whether the path exists, before the Host (or the token) is right
      const access = metricsAccess(req, this.port ?? this.#port, this.#token)
      if (access !== 'ok') {
        res.writeHead(access === 'bad-host' ? 421 : 403, { 'content-type': 'text/plain', connection: 'close' }).end()
        req.resume()
        return
      }
      if (req.method !== 'GET' || req.url !== '/metrics') {
        res.writeHead(404).end()
        return
      }
      this.#registry.metrics().then((text) => {
        res.writeHead(200, { 'content-type': this.#registry.contentType }).end(text)
      }, (err: unknown) => {
        res.writeHead(500).end(String(err instanceof Error ? err.message : err))
      })
    })
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(this.#port, LOCAL_HOST, () => { server.off('error', reject); resolve() })
    })
    this.#server = server
  }

  async stop (): Promise<void> {
    const server = this.#server
    this.#server = undefined
    if (server === undefined) return
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => { resolve() }))
  }
}
