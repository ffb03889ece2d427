/**
 * The materialisation backlog as the operator sees it: which readings become `materialise.backlog` events (it
 * started, drained, or moved by enough: never one per change, none for a steady backlog), and the per-database
 * gauge a scrape serves. The daemon end of both (a real daemon's scrape, `sync.status`, `mindoodb status`) is in
 * dashboard.spec.ts.
 */
import { expect } from 'chai'
import { Registry } from 'prom-client'
import { BacklogWatch, backlogChangedEnough } from '../../src/daemon/backlog.js'
import { EVENTS_BACKLOG_MIN_DELTA } from '../../src/daemon/constants.js'
import { materialiseWorkerFailures } from '../../src/core/materialise-pool.js'
import { verifyWorkerFailures } from '../../src/crypto/verify-pool.js'
import { createShareMetrics } from '../../src/daemon/metrics.js'

describe('daemon: materialisation backlog events and gauge', () => {
  it('should send an event when the backlog starts and drains, whatever its size', () => {
    expect(backlogChangedEnough(0, 1)).to.equal(true)
    expect(backlogChangedEnough(3, 0)).to.equal(true)
    expect(backlogChangedEnough(0, 0)).to.equal(false)
    expect(backlogChangedEnough(7, 7)).to.equal(false)
  })

  it('should send none for small moves, and one when it moved by both the minimum and half of the last value sent', () => {
    expect(backlogChangedEnough(10, 10 + EVENTS_BACKLOG_MIN_DELTA - 1)).to.equal(false)
    expect(backlogChangedEnough(10, 10 + EVENTS_BACKLOG_MIN_DELTA)).to.equal(true)
    expect(backlogChangedEnough(100_000, 60_000)).to.equal(false) // 40 % down
    expect(backlogChangedEnough(100_000, 50_000)).to.equal(true)
    expect(backlogChangedEnough(100_000, 149_999)).to.equal(false)
    expect(backlogChangedEnough(100_000, 150_000)).to.equal(true)
    expect(backlogChangedEnough(10, 20, { minDelta: 5, minRatio: 0.5 })).to.equal(true)
  })

  it('should turn a draining backlog polled every few seconds into a handful of events per database', () => {
    const watch = new BacklogWatch()
    // a cold sync: 40,000 changes stored at once, materialised at 1,500 per poll, another database steady at 0
    const sent: Array<{ database: string, backlog: number }> = []
    for (let backlog = 40_000; ; backlog = Math.max(0, backlog - 1_500)) {
      sent.push(...watch.look([{ database: 'orders', backlog }, { database: 'notes', backlog: 0 }]))
      if (backlog === 0) break
    }
    expect(sent.every((e) => e.database === 'orders')).to.equal(true)
    expect(sent[0]).to.deep.equal({ database: 'orders', backlog: 40_000 })
    expect(sent[sent.length - 1]).to.deep.equal({ database: 'orders', backlog: 0 })
    // 28 polls, and each event at least halves the one before it
    expect(sent.length).to.be.within(3, 8)
    for (let i = 1; i < sent.length - 1; i++) expect(sent[i].backlog).to.be.at.most(sent[i - 1].backlog / 2)
    // the same reading again sends nothing; after clear() the next non-zero one is news
    expect(watch.look([{ database: 'orders', backlog: 0 }])).to.deep.equal([])
    watch.clear()
    expect(watch.look([{ database: 'orders', backlog: 5 }])).to.deep.equal([{ database: 'orders', backlog: 5 }])
  })

  it('should serve the backlog per database as a gauge, read at each scrape', async () => {
    let readings = [{ database: 'orders', backlog: 42 }, { database: 'notes', backlog: 0 }]
    const registry = createShareMetrics(() => undefined, new Registry(), () => readings)
    let text = await registry.metrics()
    expect(text).to.match(/^# TYPE mindoodb_materialise_backlog_changes gauge$/m)
    expect(text).to.match(/^mindoodb_materialise_backlog_changes\{database="orders"\} 42$/m)
    expect(text).to.match(/^mindoodb_materialise_backlog_changes\{database="notes"\} 0$/m)
    readings = [{ database: 'orders', backlog: 0 }]
    text = await registry.metrics()
    expect(text).to.match(/^mindoodb_materialise_backlog_changes\{database="orders"\} 0$/m)
    expect(text).to.not.include('database="notes"')
  })

  it('should serve the worker failures of this process by pool, as counters', async () => {
    const text = await createShareMetrics(() => undefined, new Registry()).metrics()
    expect(text).to.match(/^# TYPE mindoodb_worker_failures_total counter$/m)
    for (const [pool, failures] of [['verify', verifyWorkerFailures()], ['materialise', materialiseWorkerFailures()]]) {
      expect(text).to.match(new RegExp(`^mindoodb_worker_failures_total\\{pool="${pool}"\\} ${failures}$`, 'm'))
    }
  })
})
