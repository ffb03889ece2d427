/**
 * Live latency: one change, from just before `changeDoc` on A until B's database returns the new value, over
 * ~200 changes, with the long-lived session (announce/push in one round trip) and, in the same run as its bound,
 * without it (a reconciliation round per change, the path before issue 8). Both nodes run in this process on
 * 127.0.0.1, so each figure includes both sides' work on one event loop.
 *
 * Run alone: `npm run build && node dist/bench/live.js [changes]` prints the JSON.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { pathToFileURL } from 'node:url'
import { createTenantFactory, type MindooDB, type MindooTenant, type ShareConfig, type TenantFactory } from '../src/index.js'
import { createMindooNode, type MindooNode } from '../src/p2p/index.js'

export interface BenchLiveOptions {
  /** Changes measured per mode. Default 200. */
  changes?: number
  /** Changes made first and not measured. Default 20. */
  warmup?: number
  /** Modes to run. Default both: the long-lived session, and a round per change for comparison. */
  modes?: Array<'live' | 'rounds'>
}

const KDF = { N: 2 ** 14, r: 8, p: 1 }
const KEY_PASSWORD = 'bench-password'

interface Side { factory: TenantFactory, tenant: MindooTenant, db: MindooDB, node: MindooNode }

async function open (name: string, dir: string, live: boolean, keyBlob: string): Promise<Side> {
  const factory = await createTenantFactory({ dataDir: join(dir, 'tenants'), keyWrapping: KDF })
  const tenant = await factory.createTenant({ tenantId: name, tenantEncryptionKeyPassword: `${name}-pw` })
  await tenant.importNamedKey('k', keyBlob, KEY_PASSWORD)
  const db = await tenant.openDB('shared', { defaultKeyId: 'k' })
  const node = await createMindooNode({ tenant, dataDir: join(dir, 'node'), dht: false, syncIntervalMs: 0, live })
  await node.start()
  return { factory, tenant, db, node }
}

function shareWith (other: Side): ShareConfig {
  return {
    id: 'shared',
    topicSecret: 'bench-live-topic-secret-0123',
    database: 'shared',
    direction: 'both',
    filter: { kind: 'all' },
    enabled: true,
    partners: [{ peerId: other.node.peerId, tenant: other.tenant.getPublicInfo(), addresses: other.node.getMultiaddrs() }]
  }
}

const percentile = (sorted: number[], p: number): number => sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p / 100))]
const round = (x: number, digits = 2): number => Math.round(x * 10 ** digits) / 10 ** digits

async function measure (mode: 'live' | 'rounds', dir: string, changes: number, warmup: number, keyBlob: string): Promise<Record<string, unknown>> {
  const a = await open('org-a', join(dir, `${mode}-a`), mode === 'live', keyBlob)
  const b = await open('org-b', join(dir, `${mode}-b`), mode === 'live', keyBlob)
  try {
    await a.node.addShare(shareWith(b))
    await b.node.addShare(shareWith(a))
    const doc = await a.db.createDocument()
    await a.db.changeDoc(doc, (d) => { d.getData().live = 0 })
    await a.node.syncNow('shared')
    const docId = doc.getId()
    if (mode === 'live') {
      const end = performance.now() + 10_000
      while (a.node.status('shared')[0].partners[0].live === undefined || b.node.status('shared')[0].partners[0].live === undefined) {
        if (performance.now() > end) throw new Error('no long-lived session within 10 s')
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
    }
    let waiting: { value: number, resolve: (t: number) => void } | undefined
    const off = b.db.onDocumentsChanged(({ docIds }) => {
      const t = performance.now()
      const w = waiting
      if (w === undefined || !docIds.includes(docId)) return
      void b.db.getDocument(docId).then((d) => {
        if (d.getData().live === w.value && waiting === w) {
          waiting = undefined
          w.resolve(t)
        }
      })
    })
    const roundsBefore = a.node.status('shared')[0].totals.rounds + b.node.status('shared')[0].totals.rounds
    const latencies: number[] = []
    const writes: number[] = []
    try {
      for (let i = 1; i <= changes + warmup; i++) {
        const readable = new Promise<number>((resolve) => { waiting = { value: i, resolve } })
        const t0 = performance.now()
        await a.db.changeDoc(docId, (d) => { d.getData().live = i })
        if (i > warmup) writes.push(performance.now() - t0)
        const t1 = await Promise.race([readable, new Promise<number>((resolve) => setTimeout(() => { resolve(-1) }, 10_000))])
        if (t1 < 0) throw new Error(`change ${i} did not reach B within 10 s`)
        if (i > warmup) latencies.push(t1 - t0)
      }
    } finally {
      off()
    }
    const sorted = [...latencies].sort((x, y) => x - y)
    const statusA = a.node.status('shared')[0]
    const statusB = b.node.status('shared')[0]
    return {
      changes,
      p50Ms: round(percentile(sorted, 50)),
      p90Ms: round(percentile(sorted, 90)),
      p99Ms: round(percentile(sorted, 99)),
      maxMs: round(sorted[sorted.length - 1]),
      meanMs: round(latencies.reduce((s, x) => s + x, 0) / latencies.length),
      // the writer's own changeDoc (store, materialise), part of every latency above
      changeDocP50Ms: round(percentile([...writes].sort((x, y) => x - y), 50)),
      roundsDuring: statusA.totals.rounds + statusB.totals.rounds - roundsBefore,
      announcementsSent: statusA.totals.live?.announcementsSent ?? 0,
      liveChangesReceivedAtB: statusB.totals.live?.changesReceived ?? 0
    }
  } finally {
    await a.node.stop()
    await b.node.stop()
    await a.factory.close()
    await b.factory.close()
  }
}

/** Live latency, changeDoc start on A to readable on B, p50/p99, with and without the long-lived session. */
export async function benchLiveOneRoundTrip (opts: BenchLiveOptions = {}): Promise<Record<string, unknown>> {
  const changes = opts.changes ?? 200
  const warmup = opts.warmup ?? 20
  const modes = opts.modes ?? ['live', 'rounds']
  const dir = await mkdtemp(join(tmpdir(), 'mindoodb-bench-live-'))
  const report: Record<string, unknown> = { loadAverageBefore: loadavg().map((x) => round(x)) }
  try {
    const keyFactory = await createTenantFactory({ dataDir: join(dir, 'key'), keyWrapping: KDF })
    const keyBlob = await keyFactory.createSymmetricEncryptedPrivateKey(KEY_PASSWORD)
    await keyFactory.close()
    for (const mode of modes) report[mode] = await measure(mode, dir, changes, warmup, keyBlob)
    const live = report.live as { p50Ms: number, p99Ms: number } | undefined
    const rounds = report.rounds as { p50Ms: number, p99Ms: number } | undefined
    if (live !== undefined && rounds !== undefined) {
      report.ratioP50 = round(live.p50Ms / rounds.p50Ms, 3)
      report.ratioP99 = round(live.p99Ms / rounds.p99Ms, 3)
    }
    report.targets = { p50Ms: 3, p99Ms: 15 }
    report.note = 'from just before changeDoc on A until B\'s database returns the new value; both nodes in one process on 127.0.0.1; ' +
      '`rounds` is the same run with live sessions off (a new stream, hello and reconciliation per change, debounced 5 ms)'
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
  report.loadAverageAfter = loadavg().map((x) => round(x))
  return report
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const n = Number(process.argv[2] ?? 200)
  benchLiveOneRoundTrip({ changes: n }).then((r) => { process.stdout.write(JSON.stringify(r, null, 2) + '\n') }, (err: unknown) => {
    process.stderr.write(`${String((err as Error)?.stack ?? err)}\n`)
    process.exitCode = 1
  })
}
