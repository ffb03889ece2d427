/**
 * The served-set index: a sorted, chunked array of (timestamp, id) items with a cached id sum per chunk.
 *
 * - Chunks hold at most CHUNK_MAX_ITEMS items in packed typed arrays (timestamps as doubles, ids as 32-byte
 *   rows); an insert that would overflow a chunk splits it, a delete that leaves it small merges it into a
 *   neighbour, an empty chunk is removed. No chunk is ever empty.
 * - Every chunk caches the sum (mod 2^256) of its ids, updated by each insert and delete with one addition or
 *   subtraction. Chunk start indices and prefix sums of the chunk sums are rebuilt lazily (O(chunks)) after a
 *   change, so a range fingerprint costs two binary searches, one prefix subtraction and at most two partial
 *   chunk sums: O(log n + CHUNK_MAX_ITEMS), independent of the range's length.
 */
import type { ChangeHash } from '../../store/change.js'
import { CHUNK_LOAD_ITEMS, CHUNK_MAX_ITEMS, CHUNK_MERGE_ITEMS, ID_BYTES } from './constants.js'
import { INF_BOUND, MIN_BOUND, compareItemBound, compareItems } from './codec.js'
import type { Bound } from './codec.js'
import { LIMBS, LITTLE_ENDIAN, accumulate, addId, addSums, fingerprint, normalise, subSums } from './fingerprint.js'
import { bytesToId, checkTimestamp, idToBytes } from './ids.js'
import type { ReconcileItem, ReconcileKey, ReconcileSet } from './types.js'

const SCRATCH_ACC = new Float64Array(LIMBS)
const SCRATCH_SUM = new Uint32Array(LIMBS)
const SCRATCH_FP_SUM = new Uint32Array(LIMBS)
const SCRATCH_FP_PART = new Uint32Array(LIMBS)

class Chunk {
  n = 0
  ts: Float64Array
  ids: Uint8Array
  words: Uint32Array | undefined
  readonly sum = new Uint32Array(LIMBS)

  constructor (capacity: number) {
    this.ts = new Float64Array(capacity)
    this.ids = new Uint8Array(capacity * ID_BYTES)
    this.words = LITTLE_ENDIAN ? new Uint32Array(this.ids.buffer) : undefined
  }

  get capacity (): number {
    return this.ts.length
  }

  reserve (capacity: number): void {
    if (capacity <= this.capacity) return
    const ts = new Float64Array(capacity)
    ts.set(this.ts.subarray(0, this.n))
    const ids = new Uint8Array(capacity * ID_BYTES)
    ids.set(this.ids.subarray(0, this.n * ID_BYTES))
    this.ts = ts
    this.ids = ids
    this.words = LITTLE_ENDIAN ? new Uint32Array(ids.buffer) : undefined
  }

  recomputeSum (): void {
    SCRATCH_ACC.fill(0)
    accumulate(SCRATCH_ACC, this.ids, this.words, 0, this.n)
    normalise(SCRATCH_ACC, this.sum)
  }

  /** Writes the sum of items a..b into out[oo..oo+8], reading whichever side of the chunk is shorter. */
  sumRange (a: number, b: number, out: Uint32Array, oo: number): void {
    SCRATCH_ACC.fill(0)
    if ((b - a) * 2 > this.n) {
      accumulate(SCRATCH_ACC, this.ids, this.words, 0, a)
      accumulate(SCRATCH_ACC, this.ids, this.words, b, this.n)
      normalise(SCRATCH_ACC, SCRATCH_SUM)
      subSums(this.sum, 0, SCRATCH_SUM, 0, out, oo)
    } else {
      accumulate(SCRATCH_ACC, this.ids, this.words, a, b)
      normalise(SCRATCH_ACC, out, oo)
    }
  }

  /** Appends items a..b of `from`. */
  append (from: Chunk, a: number, b: number): void {
    this.reserve(this.n + b - a)
    this.ts.set(from.ts.subarray(a, b), this.n)
    this.ids.set(from.ids.subarray(a * ID_BYTES, b * ID_BYTES), this.n * ID_BYTES)
    this.n += b - a
  }

  copy (): Chunk {
    const c = new Chunk(Math.max(this.n, 16))
    c.append(this, 0, this.n)
    c.sum.set(this.sum)
    return c
  }

  /** Index of the first item >= key (n if none). */
  lowerBound (key: Bound): number {
    let lo = 0
    let hi = this.n
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (compareItemBound(this.ts[mid], this.ids, mid * ID_BYTES, key) < 0) lo = mid + 1
      else hi = mid
    }
    return lo
  }
}

/** A read position in the set: walks items in order across chunks. */
export class ItemCursor {
  readonly #chunks: readonly Chunk[]
  #ci: number
  #o: number

  constructor (chunks: readonly Chunk[], ci: number, o: number) {
    this.#chunks = chunks
    this.#ci = ci
    this.#o = o
  }

  get ts (): number {
    return this.#chunks[this.#ci].ts[this.#o]
  }

  /** The packed id array holding the current item, at byte offset `off`. */
  get ids (): Uint8Array {
    return this.#chunks[this.#ci].ids
  }

  get off (): number {
    return this.#o * ID_BYTES
  }

  /** A 32-byte view of the current id (valid until the set changes). */
  id (): Uint8Array {
    return this.#chunks[this.#ci].ids.subarray(this.#o * ID_BYTES, (this.#o + 1) * ID_BYTES)
  }

  next (): void {
    if (++this.#o >= this.#chunks[this.#ci].n) {
      this.#ci++
      this.#o = 0
    }
  }
}

/** A bound from a public key: a missing id means the start of its timestamp. */
function keyToBound (key: ReconcileKey | undefined, dflt: Bound): Bound {
  if (key === undefined) return dflt
  checkTimestamp(key.timestamp)
  return { ts: key.timestamp, id: key.id === undefined ? new Uint8Array(0) : idToBytes(key.id) }
}

export class ChunkedReconcileSet implements ReconcileSet {
  #chunks: Chunk[] = []
  #size = 0
  #indexed = false
  /** starts[c]: global index of chunk c's first item; starts[chunks] = size. */
  #starts = new Float64Array(1)
  /** prefix[c*8..]: sum of the ids of chunks 0..c-1. */
  #prefix = new Uint32Array(LIMBS)

  /**
   * A set holding `count` items given as parallel packed arrays (any order, duplicates dropped). Sorted input
   * is detected and loaded in O(n); other input is sorted first.
   */
  static fromPacked (timestamps: ArrayLike<number>, ids: Uint8Array): ChunkedReconcileSet {
    const count = timestamps.length
    if (ids.length !== count * ID_BYTES) throw new TypeError('ids must hold 32 bytes per timestamp')
    for (let k = 0; k < count; k++) checkTimestamp(timestamps[k])
    let sorted = true
    for (let k = 1; k < count && sorted; k++) {
      if (compareItems(timestamps[k - 1], ids, (k - 1) * ID_BYTES, timestamps[k], ids, k * ID_BYTES) >= 0) sorted = false
    }
    const set = new ChunkedReconcileSet()
    if (sorted) {
      set.#loadSorted(timestamps, ids, null)
    } else {
      const order = new Uint32Array(count)
      for (let k = 0; k < count; k++) order[k] = k
      order.sort((a, b) => compareItems(timestamps[a], ids, a * ID_BYTES, timestamps[b], ids, b * ID_BYTES))
      set.#loadSorted(timestamps, ids, order)
    }
    return set
  }

  /**
   * Fills a new set straight into its chunks from `total` items in strictly ascending order, given a part at a
   * time as parallel packed arrays (what a persisted checkpoint holds): no copy of the whole set is made on the
   * way. `add` throws TypeError on an item not above the one before; `finish` throws it unless exactly `total`
   * items were added.
   */
  static sortedLoader (total: number): { add: (timestamps: ArrayLike<number>, ids: Uint8Array) => void, finish: () => ChunkedReconcileSet } {
    if (!Number.isSafeInteger(total) || total < 0) throw new TypeError('total must be a non-negative integer')
    const set = new ChunkedReconcileSet()
    return {
      add: (timestamps, ids) => {
        const count = timestamps.length
        if (ids.length !== count * ID_BYTES) throw new TypeError('ids must hold 32 bytes per timestamp')
        if (set.#size + count > total) throw new TypeError('more items than announced')
        for (let k = 0; k < count; k++) {
          checkTimestamp(timestamps[k])
          const last = set.#chunks[set.#chunks.length - 1]
          if (last !== undefined && last.n > 0 &&
            compareItems(last.ts[last.n - 1], last.ids, (last.n - 1) * ID_BYTES, timestamps[k], ids, k * ID_BYTES) >= 0) {
            throw new TypeError('items out of order')
          }
          set.#append(timestamps[k], ids, k, total - set.#size)
        }
      },
      finish: () => {
        if (set.#size !== total) throw new TypeError(`${set.#size} items of ${total}`)
        set.#loaded()
        return set
      }
    }
  }

  #loadSorted (timestamps: ArrayLike<number>, ids: Uint8Array, order: Uint32Array | null): void {
    const count = timestamps.length
    let prev = -1
    for (let k = 0; k < count; k++) {
      const src = order === null ? k : order[k]
      if (prev >= 0 && compareItems(timestamps[prev], ids, prev * ID_BYTES, timestamps[src], ids, src * ID_BYTES) === 0) continue
      this.#append(timestamps[src], ids, src, count - k)
      prev = src
    }
    this.#loaded()
  }

  /**
   * Appends item `k` of packed `ids` after the last item of a set being loaded in order, opening a chunk when the
   * last is full (sized for at most `remaining` more items).
   */
  #append (timestamp: number, ids: Uint8Array, k: number, remaining: number): void {
    let chunk = this.#chunks[this.#chunks.length - 1]
    if (chunk === undefined || chunk.n === CHUNK_LOAD_ITEMS) {
      chunk = new Chunk(Math.min(CHUNK_LOAD_ITEMS, remaining))
      this.#chunks.push(chunk)
    }
    chunk.ts[chunk.n] = timestamp
    chunk.ids.set(ids.subarray(k * ID_BYTES, (k + 1) * ID_BYTES), chunk.n * ID_BYTES)
    chunk.n++
    this.#size++
  }

  /** Ends a load: the chunks' sums, and the index rebuilt on first use. */
  #loaded (): void {
    for (const c of this.#chunks) c.recomputeSum()
    this.#indexed = false
  }

  get size (): number {
    return this.#size
  }

  // ---- public: check, convert, then work ----

  insert (timestamp: number, id: ChangeHash): boolean {
    checkTimestamp(timestamp)
    return this.insertRaw(timestamp, idToBytes(id), 0)
  }

  delete (timestamp: number, id: ChangeHash): boolean {
    checkTimestamp(timestamp)
    return this.deleteRaw(timestamp, idToBytes(id), 0)
  }

  has (timestamp: number, id: ChangeHash): boolean {
    checkTimestamp(timestamp)
    return this.hasRaw(timestamp, idToBytes(id), 0)
  }

  fingerprint (from?: ReconcileKey, to?: ReconcileKey): Uint8Array {
    const i = this.lowerBound(keyToBound(from, MIN_BOUND))
    const j = this.lowerBound(keyToBound(to, INF_BOUND))
    return this.fingerprintAt(i, Math.max(i, j))
  }

  * items (from?: ReconcileKey, to?: ReconcileKey): IterableIterator<ReconcileItem> {
    const i = this.lowerBound(keyToBound(from, MIN_BOUND))
    const j = this.lowerBound(keyToBound(to, INF_BOUND))
    if (j <= i) return
    const c = this.cursor(i)
    for (let k = i; k < j; k++, c.next()) yield { timestamp: c.ts, id: bytesToId(c.ids, c.off) }
  }

  clone (): ChunkedReconcileSet {
    const set = new ChunkedReconcileSet()
    set.#chunks = this.#chunks.map((c) => c.copy())
    set.#size = this.#size
    return set
  }

  // ---- internal: raw ids (32 bytes at `off`), global indices ----

  insertRaw (ts: number, id: Uint8Array, off: number): boolean {
    const key: Bound = { ts, id: id.subarray(off, off + ID_BYTES) }
    let ci = this.#chunkFor(key)
    let o: number
    if (this.#chunks.length === 0) {
      this.#chunks.push(new Chunk(16))
      o = 0
    } else if (ci === this.#chunks.length) {
      ci--
      o = this.#chunks[ci].n
    } else {
      const c = this.#chunks[ci]
      o = c.lowerBound(key)
      if (o < c.n && compareItemBound(c.ts[o], c.ids, o * ID_BYTES, key) === 0) return false
    }
    let c = this.#chunks[ci]
    if (c.n === CHUNK_MAX_ITEMS) {
      const right = this.#split(ci)
      if (o > c.n) {
        o -= c.n
        c = right
      }
    }
    if (c.n === c.capacity) c.reserve(Math.min(CHUNK_MAX_ITEMS, Math.max(16, c.capacity * 2)))
    c.ts.copyWithin(o + 1, o, c.n)
    c.ids.copyWithin((o + 1) * ID_BYTES, o * ID_BYTES, c.n * ID_BYTES)
    c.ts[o] = ts
    c.ids.set(key.id, o * ID_BYTES)
    c.n++
    addId(c.sum, c.ids, o, 1)
    this.#size++
    this.#indexed = false
    return true
  }

  deleteRaw (ts: number, id: Uint8Array, off: number): boolean {
    const key: Bound = { ts, id: id.subarray(off, off + ID_BYTES) }
    const ci = this.#chunkFor(key)
    if (ci === this.#chunks.length) return false
    const c = this.#chunks[ci]
    const o = c.lowerBound(key)
    if (o >= c.n || compareItemBound(c.ts[o], c.ids, o * ID_BYTES, key) !== 0) return false
    addId(c.sum, c.ids, o, -1)
    c.ts.copyWithin(o, o + 1, c.n)
    c.ids.copyWithin(o * ID_BYTES, (o + 1) * ID_BYTES, c.n * ID_BYTES)
    c.n--
    if (c.n === 0) this.#chunks.splice(ci, 1)
    else if (c.n < CHUNK_MERGE_ITEMS) this.#maybeMerge(ci)
    this.#size--
    this.#indexed = false
    return true
  }

  hasRaw (ts: number, id: Uint8Array, off: number): boolean {
    const key: Bound = { ts, id: id.subarray(off, off + ID_BYTES) }
    const ci = this.#chunkFor(key)
    if (ci === this.#chunks.length) return false
    const c = this.#chunks[ci]
    const o = c.lowerBound(key)
    return o < c.n && compareItemBound(c.ts[o], c.ids, o * ID_BYTES, key) === 0
  }

  /** Global index of the first item >= bound (size if none). */
  lowerBound (bound: Bound): number {
    const ci = this.#chunkFor(bound)
    if (ci === this.#chunks.length) return this.#size
    this.#index()
    return this.#starts[ci] + this.#chunks[ci].lowerBound(bound)
  }

  /** Fingerprint of the items with global indices i..j (i <= j). */
  fingerprintAt (i: number, j: number): Uint8Array {
    const sum = SCRATCH_FP_SUM.fill(0)
    if (j > i) {
      this.#index()
      const ci = this.#locate(i)
      const cj = this.#locate(j)
      const oi = i - this.#starts[ci]
      const oj = j - this.#starts[cj]
      if (ci === cj) {
        this.#chunks[ci].sumRange(oi, oj, sum, 0)
      } else {
        const part = SCRATCH_FP_PART
        this.#chunks[ci].sumRange(oi, this.#chunks[ci].n, sum, 0)
        subSums(this.#prefix, cj * LIMBS, this.#prefix, (ci + 1) * LIMBS, part, 0)
        addSums(sum, 0, part, 0, sum, 0)
        if (oj > 0) {
          this.#chunks[cj].sumRange(0, oj, part, 0)
          addSums(sum, 0, part, 0, sum, 0)
        }
      }
    }
    return fingerprint(sum, 0, Math.max(0, j - i))
  }

  /** A cursor at global index i (i < size). */
  cursor (i: number): ItemCursor {
    this.#index()
    const ci = this.#locate(i)
    return new ItemCursor(this.#chunks, ci, i - this.#starts[ci])
  }

  // ---- private ----

  /** Index of the first chunk whose last item is >= key (chunks.length if none). */
  #chunkFor (key: Bound): number {
    const chunks = this.#chunks
    let lo = 0
    let hi = chunks.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      const c = chunks[mid]
      const last = c.n - 1
      if (compareItemBound(c.ts[last], c.ids, last * ID_BYTES, key) < 0) lo = mid + 1
      else hi = mid
    }
    return lo
  }

  /** The chunk holding global index i (chunks.length for i = size). Needs the index. */
  #locate (i: number): number {
    const starts = this.#starts
    let lo = 0
    let hi = this.#chunks.length
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1
      if (starts[mid] <= i) lo = mid
      else hi = mid - 1
    }
    return lo
  }

  #index (): void {
    if (this.#indexed) return
    const m = this.#chunks.length
    if (this.#starts.length < m + 1) this.#starts = new Float64Array(m + 1 + (m >>> 3))
    if (this.#prefix.length < (m + 1) * LIMBS) this.#prefix = new Uint32Array((m + 1 + (m >>> 3)) * LIMBS)
    const starts = this.#starts
    const prefix = this.#prefix
    starts[0] = 0
    prefix.fill(0, 0, LIMBS)
    for (let c = 0; c < m; c++) {
      const chunk = this.#chunks[c]
      starts[c + 1] = starts[c] + chunk.n
      addSums(prefix, c * LIMBS, chunk.sum, 0, prefix, (c + 1) * LIMBS)
    }
    this.#indexed = true
  }

  /** Moves the upper half of chunk ci into a new chunk after it; returns the new chunk. */
  #split (ci: number): Chunk {
    const c = this.#chunks[ci]
    const half = c.n >>> 1
    const right = new Chunk(CHUNK_MAX_ITEMS)
    right.append(c, half, c.n)
    c.n = half
    right.recomputeSum()
    subSums(c.sum, 0, right.sum, 0, c.sum, 0)
    this.#chunks.splice(ci + 1, 0, right)
    return right
  }

  /** Merges small chunk ci into a neighbour when both fit in a loaded chunk. */
  #maybeMerge (ci: number): void {
    const chunks = this.#chunks
    const c = chunks[ci]
    const next = chunks[ci + 1]
    if (next !== undefined && c.n + next.n <= CHUNK_LOAD_ITEMS) {
      c.append(next, 0, next.n)
      addSums(c.sum, 0, next.sum, 0, c.sum, 0)
      chunks.splice(ci + 1, 1)
      return
    }
    const prev = chunks[ci - 1]
    if (prev !== undefined && prev.n + c.n <= CHUNK_LOAD_ITEMS) {
      prev.append(c, 0, c.n)
      addSums(prev.sum, 0, c.sum, 0, prev.sum, 0)
      chunks.splice(ci, 1)
    }
  }
}

/** Builds a set from public items (any order; duplicates dropped). */
export function buildSet (items: Iterable<ReconcileItem>): ChunkedReconcileSet {
  const ts: number[] = []
  const parts: Uint8Array[] = []
  for (const item of items) {
    if (item === null || typeof item !== 'object') throw new TypeError('items must be { timestamp, id } objects')
    checkTimestamp(item.timestamp)
    ts.push(item.timestamp)
    parts.push(idToBytes(item.id))
  }
  const ids = new Uint8Array(parts.length * ID_BYTES)
  parts.forEach((p, k) => ids.set(p, k * ID_BYTES))
  return ChunkedReconcileSet.fromPacked(ts, ids)
}
