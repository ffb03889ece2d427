/**
 * The Grafana dashboard (grafana/mindoodb.json) queries only metrics and labels that a real daemon serves: two
 * daemons share a database (and one partner is listed at a wrong address, so errors are counted), one is
 * scraped, and every metric name, every label a query groups or filters by and every label a legend shows must be
 * in that scrape. Renaming a metric or a label without the dashboard (or the other way round) fails here.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'chai'
import { eventually, killAll, runCli, startDaemon, testConfig, writeJson, type DaemonProcess } from '../utils/daemon-proc.js'
import { getMetrics } from '../utils/http.js'
import { removeDir, tempDir } from '../utils/tmp.js'
import { closedPort } from '../utils/net.js'

interface Target { expr: string, legendFormat?: string, refId: string, datasource?: { uid?: string } }
interface Panel { id: number, type: string, title: string, targets?: Target[], datasource?: { uid?: string }, gridPos: { h: number, w: number, x: number, y: number } }
interface Dashboard { uid: string, title: string, panels: Panel[], templating: { list: Array<{ name: string, type: string, definition?: string }> } }
interface NodeInfo { peerId: string, addresses: string[], tenant: unknown }

const ROOT = new URL('../../../', import.meta.url)
/** Labels Prometheus adds when it scrapes, not in the daemon's output. */
const SCRAPE_LABELS = new Set(['instance', 'job'])
/** PromQL words that look like names. */
const PROMQL = new Set(['sum', 'max', 'min', 'avg', 'count', 'rate', 'irate', 'increase', 'by', 'without', 'on', 'ignoring', 'and', 'or', 'unless', 'topk', 'bottomk', 'histogram_quantile', 'label_values', 'delta', 'deriv', 'clamp_min', 'abs'])

/** Metric families in a Prometheus text exposition, with the labels seen on their samples. */
function parseExposition (text: string): Map<string, Set<string>> {
  const families = new Map<string, Set<string>>()
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)/.exec(line)
    if (type !== null) {
      families.set(type[1], families.get(type[1]) ?? new Set())
      continue
    }
    if (line.startsWith('#') || line.trim() === '') continue
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?/.exec(line)
    if (sample === null) continue
    // a histogram's samples carry _bucket, _sum and _count
    const name = families.has(sample[1]) ? sample[1] : sample[1].replace(/_(bucket|sum|count)$/, '')
    const labels = families.get(name) ?? new Set<string>()
    for (const m of (sample[3] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="/g)) labels.add(m[1])
    families.set(name, labels)
  }
  return families
}

/** The metric names a PromQL expression reads, and the labels it filters or groups by. */
function parseExpr (expr: string): { metrics: string[], labels: string[] } {
  const labels: string[] = []
  let rest = expr.replace(/"[^"]*"/g, '""')
  rest = rest.replace(/\{([^}]*)\}/g, (_m, inner: string) => {
    for (const m of inner.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)/g)) labels.push(m[1])
    return ' '
  })
  rest = rest.replace(/\b(by|without|on|ignoring)\s*\(([^)]*)\)/g, (_m, _k: string, inner: string) => {
    labels.push(...inner.split(',').map((s) => s.trim()).filter((s) => s !== ''))
    return ' '
  })
  rest = rest.replace(/\[[^\]]*\]/g, ' ').replace(/\$\w+/g, ' ')
  const metrics = [...rest.matchAll(/\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b/g)].map((m) => m[1]).filter((n) => !PROMQL.has(n) && !/^\d/.test(n))
  return { metrics, labels }
}

describe('grafana/mindoodb.json against a real daemon\'s metrics', function () {
  this.timeout(90_000)
  let dir: string
  let a: DaemonProcess
  let b: DaemonProcess
  let dashboard: Dashboard
  let scraped: Map<string, Set<string>>
  /** The scrape's text. */
  let connections: string

  before(async () => {
    dashboard = JSON.parse(await readFile(new URL('grafana/mindoodb.json', ROOT), 'utf8')) as Dashboard
    dir = await tempDir('mindoodb-dashboard-')
    let c: DaemonProcess
    ;[a, b, c] = await Promise.all(['alpha', 'beta', 'gamma'].map(async (n) => await startDaemon(await writeJson(join(dir, `${n}.json`), testConfig(dir, n, { metrics: { port: 0 } })))))
    const [ia, ib, ic] = await Promise.all([a, b, c].map(async (x) => await x.client.call<NodeInfo>('node.info')))
    await c.dispose()
    const topicSecret = 'dashboard-topic-secret-0123456789'
    await b.client.call('share.add', { share: { id: 'lab', topicSecret, database: 'lab', partners: [{ peerId: ia.peerId, tenant: ia.tenant, addresses: ia.addresses }] } })
    await a.client.call('share.add', {
      share: {
        id: 'lab',
        topicSecret,
        database: 'lab',
        partners: [{ peerId: ib.peerId, tenant: ib.tenant, addresses: ib.addresses }, { peerId: ic.peerId, tenant: ic.tenant, addresses: [`/ip4/127.0.0.1/tcp/${await closedPort()}`] }]
      }
    })
    await a.client.call('doc.create', { database: 'lab', data: { n: 1 } })
    const port = a.ready.metricsPort ?? 0
    // scrape once a round moved the document to B and a round with the unreachable partner failed
    const text = await eventually(async () => {
      const t = (await getMetrics(port, { host: `127.0.0.1:${port}` })).body
      return /mindoodb_share_partner_lag_changes\{[^}]*\} 0/.test(t) && /mindoodb_share_errors_total\{/.test(t) && /mindoodb_share_changes_sent_total\{[^}]*\} [1-9]/.test(t) ? t : undefined
    }, 'a scrape after a round with B and a failed one')
    scraped = parseExposition(text)
    connections = text
  })

  after(async () => {
    await Promise.all([a?.dispose(), b?.dispose()])
    await killAll()
    await removeDir(dir)
  })

  it('should be a dashboard with unique panel ids, each query on the datasource variable', () => {
    expect(dashboard.uid).to.equal('mindoodb-mesh')
    expect(dashboard.title).to.be.a('string').and.not.equal('')
    const ids = dashboard.panels.map((p) => p.id)
    expect(new Set(ids).size).to.equal(ids.length)
    const graphs = dashboard.panels.filter((p) => p.type !== 'row')
    expect(graphs.length).to.be.at.least(15)
    for (const p of graphs) {
      expect(p.targets?.length ?? 0, p.title).to.be.greaterThan(0)
      expect(p.datasource?.uid, p.title).to.equal('${datasource}')
      for (const t of p.targets ?? []) expect(t.expr, p.title).to.be.a('string').and.not.equal('')
      expect(p.gridPos.x + p.gridPos.w, p.title).to.be.at.most(24)
    }
    expect(dashboard.templating.list.map((v) => v.name)).to.deep.equal(['datasource', 'instance', 'share'])
  })

  it('should query only metrics the daemon serves, by labels they carry', () => {
    const exprs = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr, legend: t.legendFormat ?? '' })))
    for (const v of dashboard.templating.list) if (v.definition !== undefined) exprs.push({ panel: `variable ${v.name}`, expr: v.definition, legend: '' })
    const used = new Set<string>()
    let labelChecks = 0
    for (const { panel, expr, legend } of exprs) {
      const { metrics, labels } = parseExpr(expr.replace(/^label_values\((.*), *(\w+)\)$/, 'by ($2) ($1)'))
      expect(metrics.length, `${panel}: ${expr}`).to.be.greaterThan(0)
      const legendLabels = [...legend.matchAll(/\{\{\s*(\w+)\s*\}\}/g)].map((m) => m[1])
      for (const name of metrics) {
        used.add(name)
        expect(scraped.has(name), `${panel}: ${name} is not in the daemon's /metrics`).to.equal(true)
        const carried = scraped.get(name) ?? new Set()
        // a family without samples yet (no rejection happened) has no labels to compare
        if (carried.size === 0) continue
        for (const label of [...labels, ...legendLabels]) {
          if (SCRAPE_LABELS.has(label)) continue
          labelChecks++
          expect(carried.has(label), `${panel}: ${name} has no label ${label} (it has ${[...carried].join(', ')})`).to.equal(true)
        }
      }
    }
    expect(labelChecks).to.be.greaterThan(10)
    // what the issue asks the dashboard to show
    for (const name of ['mindoodb_share_partner_lag_changes', 'mindoodb_share_rounds_total', 'mindoodb_share_bytes_sent_total', 'mindoodb_share_bytes_received_total',
      'mindoodb_share_rejected_changes_total', 'mindoodb_share_errors_total', 'mindoodb_share_connected_partners', 'mindoodb_share_served_changes',
      'libp2p_connection_manager_connections', 'mindoodb_connections', 'mindoodb_process_process_resident_memory_bytes',
      'mindoodb_materialise_backlog_changes']) {
      expect(used.has(name), `the dashboard shows ${name}`).to.equal(true)
    }
    // every metric of the daemon's own (not the process's) is on the dashboard
    const shareMetrics = [...scraped.keys()].filter((n) => n.startsWith('mindoodb_') && !n.startsWith('mindoodb_process_'))
    expect(shareMetrics.filter((n) => !used.has(n))).to.deep.equal([])
  })

  it('should count A\'s connection with B as a direct one, and no relayed ones', () => {
    // which side dialled first decides the direction
    expect(connections).to.match(/^mindoodb_connections\{direction="(inbound|outbound)",kind="direct"\} [1-9]/m)
    expect(connections).to.match(/^mindoodb_connections\{direction="outbound",kind="relayed"\} 0$/m)
    expect(connections).to.match(/^mindoodb_connections\{direction="inbound",kind="relayed"\} 0$/m)
  })

  it('should serve the materialisation backlog of the share\'s database, and show it in sync.status and mindoodb status', async () => {
    expect(connections).to.match(/^mindoodb_materialise_backlog_changes\{database="lab"\} \d+$/m)
    const { shares } = await a.client.call<{ shares: Array<{ id: string, database: string, materialiseBacklog: number }> }>('sync.status')
    expect(shares.map((s) => s.id)).to.deep.equal(['lab'])
    expect(shares[0].materialiseBacklog).to.be.a('number').and.at.least(0)
    const status = await runCli(['--socket', a.ready.rpcSocket, 'status'])
    expect(status.code, status.stderr).to.equal(0)
    expect(status.stdout).to.match(/materialisation backlog \d+ changes/)
  })

  it('should catch a query on a metric or label that does not exist', () => {
    const { metrics, labels } = parseExpr('sum by (share, reason) (increase(mindoodb_share_rejected_total{instance=~"$instance", peer="x"}[$__rate_interval]))')
    expect(metrics).to.deep.equal(['mindoodb_share_rejected_total'])
    expect(scraped.has(metrics[0])).to.equal(false)
    expect(labels).to.include('peer')
    expect(scraped.get('mindoodb_share_partner_lag_changes')?.has('peer')).to.equal(false)
  })
})
