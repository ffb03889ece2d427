/**
 * Benchmark of range-based set reconciliation against the naive exchange (sending the whole hash list).
 *
 * For each set size n and difference d it builds a set of n items (bulk-loaded, sorted), copies it, applies d
 * differences to the copy (alternately an item removed from the copy and a new item added to it), runs an
 * initiator and a responder in-process until both are done, checks that both found exactly the difference, and
 * reports bytes, messages, round trips and wall time next to the naive n * 32 bytes.
 *
 * Run alone: `npx node dist/bench/reconcile.js` prints the JSON report.
 */
import { randomBytes } from 'node:crypto'
import { pathToFileURL } from 'node:url'
import { performance } from 'node:perf_hooks'
import { createInitiator, createResponder } from '../src/sync/reconcile/index.js'
import type { ReconcileInit, ReconcileSession, ReconcileSet } from '../src/sync/reconcile/index.js'
import { INF_BOUND, MessageWriter } from '../src/sync/reconcile/codec.js'
import { ChunkedReconcileSet } from '../src/sync/reconcile/set.js'
import { prng, sameItems, sortedItems, withDifferences } from './util.js'

export interface BenchReconcileOptions extends ReconcileInit {
  /** Set sizes. Default [1e4, 1e5, 1e6]. */
  sizes?: number[]
  /** Differences. Default [0, 1, 10, 1000]. */
  diffs?: number[]
  /** PRNG seed, for reproducible sets. Default 1. */
  seed?: number
}

export interface BenchReconcileRow {
  n: number
  d: number
  /** Bytes of all messages, both directions. */
  bytes: number
  bytesInitiatorToResponder: number
  bytesResponderToInitiator: number
  messages: number
  /** Initiator messages (each with the responder's reply, if any). */
  roundTrips: number
  /** Wall time of the session alone (both sides, in one process), milliseconds. */
  ms: number
  /** The naive exchange: the full hash list, n * 32 bytes, in one message. */
  naiveBytes: number
  naiveRoundTrips: number
  /** bytes / naiveBytes. */
  ratio: number
  /** Both sides found exactly the true difference. */
  correct: boolean
}

export interface BenchReconcileReport {
  benchmark: 'reconcile'
  node: string
  options: { maxMessageBytes: number | 'default', branchingFactor: number | 'default', idListThreshold: number | 'default', seed: number }
  /** Time to bulk-load the base set of each size, milliseconds. */
  buildMs: Record<string, number>
  results: BenchReconcileRow[]
  /** A hostile peer's cost: see HostileRow. */
  hostile?: HostileRow
  /** The same with short fingerprints in 1-byte heads: about twice the ranges in the same bytes. */
  hostileShort?: HostileRow
  /** Issue 8's bounds at the largest n run: d = 1 in at most 3 round trips and 2 KB, d = 0 in at most 21 B. */
  bounds?: ReconcileBounds
}

export interface ReconcileBounds {
  n: number
  oneDiffBytes: number
  oneDiffRoundTrips: number
  equalBytes: number
  /** oneDiffBytes <= 2048, oneDiffRoundTrips <= 3, equalBytes <= 21 (format 1's figure), and every row correct. */
  ok: boolean
}

/** Issue 8's bounds over the rows of the largest set size that has rows for d = 0 and d = 1. */
export function reconcileBounds (rows: readonly BenchReconcileRow[]): ReconcileBounds | undefined {
  const n = Math.max(...rows.map((r) => r.n))
  const one = rows.find((r) => r.n === n && r.d === 1)
  const zero = rows.find((r) => r.n === n && r.d === 0)
  if (one === undefined || zero === undefined) return undefined
  return {
    n,
    oneDiffBytes: one.bytes,
    oneDiffRoundTrips: one.roundTrips,
    equalBytes: zero.bytes,
    ok: one.bytes <= 2048 && one.roundTrips <= 3 && zero.bytes <= 21 && rows.every((r) => r.correct)
  }
}

/**
 * A hostile reconcile message (about 62 KB: thousands of fingerprint ranges that all mismatch) sent to a
 * responder over a set of `n` items, the way a peer would try to make a session expensive.
 */
export interface HostileRow {
  n: number
  ranges: number
  bytes: number
  /** Without a work budget (as before issue 7): one message, and the projection over 10,000 messages. */
  unboundedMsPerMessage: number
  unboundedProjectedSessionMs: number
  /** With the budget: the message is refused (BUDGET) after decoding, before any work; ms until refused. */
  budgetedMs: number
  budgetedReason: string
}

/**
 * A message of `count` fingerprint ranges with random fingerprints of `fingerprintBytes` (16, or 8: the short ones
 * of format 2, with round bounds in one-byte heads, so that about 7,000 ranges fit in 64 KiB).
 */
export function hostileMessage (count: number, fingerprintBytes: 16 | 8 = 16): Uint8Array {
  const w = new MessageWriter(count * 24)
  const step = fingerprintBytes === 8 ? 32 : 1000
  for (let i = 1; i < count; i++) w.fingerprint({ ts: i * step, id: new Uint8Array(0) }, randomBytes(fingerprintBytes))
  w.fingerprint(INF_BOUND, randomBytes(fingerprintBytes))
  return w.finish()
}

/** Measures what one hostile message costs a responder over `set`, with and without the work budget. */
export function benchHostile (set: ReconcileSet, n: number, ranges = 3269, repeat = 20, fingerprintBytes: 16 | 8 = 16): HostileRow {
  const message = hostileMessage(ranges, fingerprintBytes)
  let unbounded = 0
  for (let i = 0; i < repeat; i++) {
    const session = createResponder({ set }, { workPerLevel: 2 ** 30, answerRangesPerRequest: 2 ** 30 })
    const started = performance.now()
    session.reconcile(message)
    unbounded += performance.now() - started
  }
  let budgeted = 0
  let reason = 'none'
  for (let i = 0; i < repeat; i++) {
    const session = createResponder({ set })
    const started = performance.now()
    try {
      session.reconcile(message)
    } catch (err) {
      reason = (err as { reason?: string }).reason ?? String(err)
    }
    budgeted += performance.now() - started
  }
  const per = unbounded / repeat
  return {
    n,
    ranges,
    bytes: message.length,
    unboundedMsPerMessage: Math.round(per * 100) / 100,
    unboundedProjectedSessionMs: Math.round(per * 10_000),
    budgetedMs: Math.round(budgeted / repeat * 100) / 100,
    budgetedReason: reason
  }
}

type SessionRun = Pick<BenchReconcileRow, 'bytes' | 'bytesInitiatorToResponder' | 'bytesResponderToInitiator' | 'messages' | 'roundTrips' | 'ms'> & {
  initiator: ReconcileSession
  responder: ReconcileSession
}

/** Runs an initiator over `a` and a responder over `b` until both are done, counting what crosses between them. */
function runSession (a: ReconcileSet, b: ReconcileSet, init: ReconcileInit): SessionRun {
  const started = performance.now()
  const initiator = createInitiator({ set: a }, init)
  const responder = createResponder({ set: b }, init)
  let toResponder = 0
  let toInitiator = 0
  let messages = 0
  let roundTrips = 0
  let msg: Uint8Array | null = initiator.initiate()
  while (msg !== null) {
    messages++
    roundTrips++
    toResponder += msg.length
    const reply = responder.reconcile(msg)
    if (reply === null) break
    messages++
    toInitiator += reply.length
    msg = initiator.reconcile(reply)
  }
  const ms = performance.now() - started
  return {
    bytes: toResponder + toInitiator,
    bytesInitiatorToResponder: toResponder,
    bytesResponderToInitiator: toInitiator,
    messages,
    roundTrips,
    ms: Math.round(ms * 100) / 100,
    initiator,
    responder
  }
}

/** Runs the benchmark; returns a JSON-able report. */
export async function benchReconcile (opts: BenchReconcileOptions = {}): Promise<BenchReconcileReport> {
  const sizes = opts.sizes ?? [1e4, 1e5, 1e6]
  const diffs = opts.diffs ?? [0, 1, 10, 1000]
  const seed = opts.seed ?? 1
  const init: ReconcileInit = {
    maxMessageBytes: opts.maxMessageBytes,
    branchingFactor: opts.branchingFactor,
    idListThreshold: opts.idListThreshold,
    maxMessages: opts.maxMessages
  }
  const report: BenchReconcileReport = {
    benchmark: 'reconcile',
    node: process.version,
    options: {
      maxMessageBytes: opts.maxMessageBytes ?? 'default',
      branchingFactor: opts.branchingFactor ?? 'default',
      idListThreshold: opts.idListThreshold ?? 'default',
      seed
    },
    buildMs: {},
    results: []
  }
  for (const n of sizes) {
    const next = prng(seed + n)
    const started = performance.now()
    const { timestamps, ids } = sortedItems(n, next)
    const base = ChunkedReconcileSet.fromPacked(timestamps, ids)
    report.buildMs[String(n)] = Math.round(performance.now() - started)
    for (const d of diffs) {
      // a = base; b = a copy with d differences: even k removes one of a's items, odd k adds a new item
      const { set: b, onlyBase: onlyA, onlyCopy: onlyB } = withDifferences(base, timestamps, ids, d, next)
      const run = runSession(base, b, init)
      const { initiator, responder } = run
      const correct = sameItems(initiator.have, onlyA) && sameItems(initiator.need, onlyB) &&
        sameItems(responder.have, onlyB) && sameItems(responder.need, onlyA) && initiator.done && responder.done
      report.results.push({
        n,
        d,
        bytes: run.bytes,
        bytesInitiatorToResponder: run.bytesInitiatorToResponder,
        bytesResponderToInitiator: run.bytesResponderToInitiator,
        messages: run.messages,
        roundTrips: run.roundTrips,
        ms: run.ms,
        naiveBytes: n * 32,
        naiveRoundTrips: 1,
        ratio: Number((run.bytes / (n * 32)).toPrecision(3)),
        correct
      })
      // let the event loop breathe between runs (the caller may be reporting progress)
      await new Promise((resolve) => setImmediate(resolve))
    }
  }
  report.bounds = reconcileBounds(report.results)
  {
    const n = 200_000
    const { timestamps, ids } = sortedItems(n, prng(seed + 7))
    const set = ChunkedReconcileSet.fromPacked(timestamps, ids)
    report.hostile = benchHostile(set, n)
    report.hostileShort = benchHostile(set, n, 7000, 20, 8)
  }
  return report
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  benchReconcile().then(
    (report) => { console.log(JSON.stringify(report, null, 2)) },
    (err: unknown) => {
      console.error(err)
      process.exitCode = 1
    }
  )
}
