/** Small helpers the benchmarks share. */
import type { ReconcileItem, ReconcileSet } from '../src/sync/reconcile/index.js'
import { readdirSync, readFileSync } from 'node:fs'
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

/** A forced GC when the flag can be set at run time, so phases start from similar heaps. */
export const gc: () => void = (() => {
  try {
    setFlagsFromString('--expose-gc')
    const fn = runInNewContext('gc') as unknown
    if (typeof fn === 'function') return fn as () => void
  } catch {
    // not available: phases simply run one after the other
  }
  return () => {}
})()

/** xorshift32: a small deterministic PRNG, so that runs are comparable. */
export function prng (seed: number): () => number {
  let x = (seed | 0) === 0 ? 0x9e3779b9 : seed | 0
  return () => {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    return x >>> 0
  }
}

/** Timestamp of the first synthetic item. */
export const T0 = Date.UTC(2024, 0, 1)

/** n items sorted by (timestamp, id): about one item a minute, with runs of equal timestamps. */
export function sortedItems (n: number, next: () => number): { timestamps: Float64Array, ids: Uint8Array } {
  const timestamps = new Float64Array(n)
  const ids = new Uint8Array(n * 32)
  const words = new Uint32Array(ids.buffer)
  for (let k = 0; k < words.length; k++) words[k] = next()
  let t = T0
  for (let k = 0; k < n; k++) {
    const r = next()
    if (r % 10 !== 0) t += r % 120_000 // one in ten shares the previous item's timestamp
    timestamps[k] = t
  }
  // sort ids inside each run of equal timestamps
  for (let start = 0; start < n;) {
    let end = start + 1
    while (end < n && timestamps[end] === timestamps[start]) end++
    if (end - start > 1) {
      const run = Array.from({ length: end - start }, (_, k) => Buffer.from(ids.slice((start + k) * 32, (start + k + 1) * 32)))
      run.sort(Buffer.compare)
      run.forEach((id, k) => ids.set(id, (start + k) * 32))
    }
    start = end
  }
  return { timestamps, ids }
}

/** True when `got` holds exactly the ids of `want`. */
export function sameItems (got: readonly ReconcileItem[], want: Set<string>): boolean {
  if (got.length !== want.size) return false
  return got.every((item) => want.has(item.id))
}

/**
 * A copy of `base` (which holds the items `timestamps`/`ids`) with `d` differences: even k removes one of the base's
 * items, odd k adds a random item the base lacks. Returns the copy and the ids only in the base / only in the copy.
 */
export function withDifferences (base: ReconcileSet, timestamps: Float64Array, ids: Uint8Array, d: number, next: () => number):
{ set: ReconcileSet, onlyBase: Set<string>, onlyCopy: Set<string> } {
  const n = timestamps.length
  const set = base.clone()
  const onlyBase = new Set<string>()
  const onlyCopy = new Set<string>()
  const extra = new Uint8Array(32)
  const extraWords = new Uint32Array(extra.buffer)
  for (let k = 0; k < d; k++) {
    if (k % 2 === 0) {
      for (;;) {
        const i = next() % n
        const id = Buffer.from(ids.buffer, ids.byteOffset + i * 32, 32).toString('hex')
        if (onlyBase.has(id)) continue
        set.delete(timestamps[i], id)
        onlyBase.add(id)
        break
      }
    } else {
      for (let w = 0; w < 8; w++) extraWords[w] = next()
      const id = Buffer.from(extra).toString('hex')
      set.insert(T0 + (next() % Math.max(1, timestamps[n - 1] - T0 + 1)), id)
      onlyCopy.add(id)
    }
  }
  return { set, onlyBase, onlyCopy }
}

/**
 * CPU time (ms) of this process's threads by kind, read from /proc (Linux; empty elsewhere): `MainThread`,
 * `WorkerThread` (worker_threads: verify and materialise pools), `libuv-worker` (LevelDB and other thread-pool
 * work), `V8Worker` (V8's platform threads: GC helpers, compilation), and the rest by their names. Subtract two
 * readings to see where a phase's CPU went.
 */
export function threadCpuByKind (): Record<string, number> {
  const out: Record<string, number> = {}
  let tids: string[]
  try {
    tids = readdirSync('/proc/self/task')
  } catch {
    return out
  }
  for (const tid of tids) {
    try {
      const kind = readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim()
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8')
      // fields after the command name: utime and stime are the 12th and 13th, in clock ticks (100 per second)
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      out[kind] = (out[kind] ?? 0) + (Number(fields[11]) + Number(fields[12])) * 10
    } catch {
      // the thread ended meanwhile
    }
  }
  return out
}

/** `after - before` of two threadCpuByKind readings, per kind; a thread that ended in between is not counted. */
export function threadCpuSince (before: Record<string, number>): Record<string, number> {
  const after = threadCpuByKind()
  const out: Record<string, number> = {}
  for (const [kind, ms] of Object.entries(after)) {
    const d = ms - (before[kind] ?? 0)
    if (d > 0) out[kind] = d
  }
  return out
}
