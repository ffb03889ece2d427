/**
 * Live latency: with A (in its child process) and B (in this process) connected and synced after the cold part,
 * `liveChanges` changes on A one after another; each is timed from just before `changeDoc` on A until B's database
 * returns the new value. Both ends read `performance.timeOrigin + performance.now()`, a clock the two processes
 * share on this machine (sub-millisecond resolution).
 */
import { percentile, now, round, sleep, wall } from './common.js'
import type { ColdContext } from './cold.js'

/** Issue 8's floors for one change, changeDoc start on A until readable on B (a floor: a figure must be at most this). */
export const LIVE_FLOORS = { p50Ms: 3, p99Ms: 15 } as const

export async function benchLive (ctx: ColdContext, count: number): Promise<object> {
  const { server, b, meta } = ctx
  const docs = meta.liveDocs
  let waiting: { docId: string, value: number, resolve: (t: number) => void } | undefined
  const check = async (docId: string, t: number): Promise<void> => {
    const w = waiting
    if (w === undefined || w.docId !== docId) return
    const doc = await b.db.getDocument(docId)
    if (doc.getData().live === w.value && waiting === w) {
      waiting = undefined
      w.resolve(t)
    }
  }
  const off = b.db.onDocumentsChanged(({ docIds }) => {
    const t = wall()
    for (const id of docIds) void check(id, t)
  })
  const warmup = Math.min(20, Math.ceil(count / 10))
  const latencies: number[] = []
  const started = now()
  try {
    for (let i = 0; i < count + warmup; i++) {
      const docId = docs[i % docs.length]
      const value = 1_000_000 + i
      const readable = new Promise<number>((resolve) => { waiting = { docId, value, resolve } })
      const { t0 } = await server.change(docId, value)
      const changedAt = wall()
      const t1 = await Promise.race([readable, sleep(10_000).then(() => -1)])
      if (t1 < 0) {
        const statusA = await server.status()
        const statusB = b.node.status('shared')
        throw new Error(`change ${i} did not reach B in 10 s (changeDoc on A took ${round(changedAt - t0)} ms); ` +
          `A: ${JSON.stringify(statusA)}; B: ${JSON.stringify(statusB)}; B's value: ${String((await b.db.getDocument(docId)).getData().live)}`)
      }
      if (i >= warmup) latencies.push(t1 - t0)
    }
  } finally {
    off()
  }
  const totalMs = now() - started
  const sorted = [...latencies].sort((x, y) => x - y)
  const statusA = await server.status()
  const p50 = percentile(sorted, 50)
  const p99 = percentile(sorted, 99)
  return {
    changes: count,
    warmup,
    p50Ms: round(p50, 2),
    p90Ms: round(percentile(sorted, 90), 2),
    p99Ms: round(p99, 2),
    maxMs: round(sorted[sorted.length - 1], 2),
    minMs: round(sorted[0], 2),
    meanMs: round(latencies.reduce((s, x) => s + x, 0) / latencies.length, 2),
    totalMs: Math.round(totalMs),
    storeSize: await b.db.getStore().count(),
    roundsA: statusA[0]?.totals.rounds,
    roundsB: b.node.status('shared')[0].totals.rounds,
    serverA: server.where,
    clock: 'performance.timeOrigin + performance.now() in both processes (A takes t0, B the time it read the value)',
    note: 'from just before changeDoc on A until B\'s database returns the new value (B\'s documents-changed event, then a read); ' +
      'live rounds start after the node\'s liveDebounceMs (default 5 ms)',
    floors: [
      { rule: `p50 <= ${LIVE_FLOORS.p50Ms} ms`, value: round(p50, 2), floor: LIVE_FLOORS.p50Ms, ratio: round(p50 / LIVE_FLOORS.p50Ms, 2), pass: p50 <= LIVE_FLOORS.p50Ms },
      { rule: `p99 <= ${LIVE_FLOORS.p99Ms} ms`, value: round(p99, 2), floor: LIVE_FLOORS.p99Ms, ratio: round(p99 / LIVE_FLOORS.p99Ms, 2), pass: p99 <= LIVE_FLOORS.p99Ms }
    ]
  }
}
