/**
 * The persisted form of a share's served-set index, so that a restart serves again without rebuilding it.
 *
 * It lives in a key space of its own beside the database (`tenant.openIndexState(db, shareId)`) and holds:
 * - `cfg`: what the index was made for (format, filter identity, direction, own author). An index made for
 *   anything else is thrown away and rebuilt.
 * - a checkpoint: the sorted items of the set in segments (`cs!<n>`: a count, then big-endian float64
 *   timestamps, then 32-byte ids), for document filters the matching documents (`cd!<n>`, newline-separated),
 *   and `ck` (JSON: its position, the last journal record it covers, item and document counts). One atomic batch
 *   writes all of it and drops the journal records it covers.
 * - for document filters, a journal (`j!<seq>`, JSON): each update of the set after the checkpoint (items in and
 *   out, documents starting and stopping to match) with the changefeed position it reached.
 *
 * A position names what the index covers: for `all` and `keys`, the store's arrival seq (the store's own records
 * past it say what to add, and are written in the same batch as their changes); for document filters, the
 * database's changefeed seq (documents changed past it are evaluated again). An index can be behind its source
 * (a crash between the two writes), never ahead, so catching up from the position is all a restart needs.
 */
import type { IndexState } from '../core/tenant.js'
import type { KV } from '../core/db.js'
import type { DocId } from '../store/change.js'
import type { AbortOptions } from '../store/types.js'
import { ChunkedReconcileSet } from './reconcile/set.js'
import type { ReconcileSet } from './reconcile/index.js'

/** Version of the layout above; an index of another version is rebuilt. */
export const SERVED_INDEX_FORMAT = 1
/** Items per checkpoint segment (40 bytes each: about 1.3 MB a segment). */
export const CHECKPOINT_SEGMENT_ITEMS = 32_768
/** Documents per checkpoint segment of matching documents. */
export const CHECKPOINT_SEGMENT_DOCS = 16_384
/**
 * A checkpoint is written once the work a restart would redo (store records, or journaled items, past the last
 * checkpoint) reaches max(CHECKPOINT_MIN_WORK, size / CHECKPOINT_SIZE_DIVISOR): a restart then replays at most
 * about an eighth of the set, and rewriting the checkpoint costs a bounded number of bytes per change.
 */
export const CHECKPOINT_MIN_WORK = 10_000
export const CHECKPOINT_SIZE_DIVISOR = 8

const ID_BYTES = 32
/** Checkpoint segments read per LevelDB call at a restart. */
const SEGMENTS_PER_READ = 4
const SEQ_DIGITS = 16
const pad = (n: number, digits: number): string => String(n).padStart(digits, '0')
const segKey = (n: number): string => `cs!${pad(n, 6)}`
const docSegKey = (n: number): string => `cd!${pad(n, 6)}`
const journalKey = (seq: number): string => `j!${pad(seq, SEQ_DIGITS)}`
const enc = new TextEncoder()
const dec = new TextDecoder()

/** One update of a document filter's set: items in (1) or out (0), documents in (1) or out (0). */
export interface JournalRecord {
  /** The changefeed position the set reached with this update. */
  pos: number
  items: Array<[0 | 1, number, string]>
  docs: Array<[0 | 1, DocId]>
}

/** Applies a journal record's item operations (1: added, 0: removed) to `set`, as a restart replays them. */
export function replayItems (set: ReconcileSet, items: JournalRecord['items']): void {
  for (const [op, time, hash] of items) {
    if (op === 1) set.insert(time, hash)
    else set.delete(time, hash)
  }
}

interface CheckpointMeta {
  pos: number
  /** Last journal seq the checkpoint covers. */
  journal: number
  items: number
  segments: number
  docs: number
  docSegments: number
}

/** What `load` found: a checkpoint (if any) and the journal records after it, in order. */
export interface LoadedIndex {
  pos: number
  set: ReconcileSet | undefined
  docs: DocId[] | undefined
  journal: JournalRecord[]
}

/** The set's items in order, packed: what a checkpoint writes. */
export function packSet (set: ReconcileSet): { timestamps: Float64Array, ids: Uint8Array } {
  const n = set.size
  const timestamps = new Float64Array(n)
  const ids = new Uint8Array(n * ID_BYTES)
  if (set instanceof ChunkedReconcileSet) {
    if (n === 0) return { timestamps, ids }
    const c = set.cursor(0)
    for (let k = 0; k < n; k++, c.next()) {
      timestamps[k] = c.ts
      ids.set(c.ids.subarray(c.off, c.off + ID_BYTES), k * ID_BYTES)
    }
  } else {
    let k = 0
    for (const item of set.items()) {
      timestamps[k] = item.timestamp
      ids.set(Buffer.from(item.id, 'hex'), k * ID_BYTES)
      k++
    }
  }
  return { timestamps, ids }
}

/** The persisted index of one share (see the module comment). Not safe for concurrent use: callers serialise. */
export class ServedIndexStore {
  readonly #kv: KV
  readonly #seal: (plain: Uint8Array) => Uint8Array
  readonly #unseal: (sealed: Uint8Array) => Uint8Array
  readonly #cfg: string
  /** Last journal seq written. */
  #journal = 0
  /** What the last checkpoint covers. */
  #ckJournal = 0
  #ckPos = 0

  constructor (state: IndexState, description: Record<string, unknown>) {
    this.#kv = state.kv
    this.#seal = state.seal
    this.#unseal = state.unseal
    this.#cfg = JSON.stringify({ format: SERVED_INDEX_FORMAT, ...description })
  }

  /** Position of the last checkpoint (0 without one). */
  get checkpointPos (): number {
    return this.#ckPos
  }

  /**
   * Reads the checkpoint and the journal after it. An index made for another configuration, or one whose parts
   * do not add up, is cleared and reported as empty (the caller rebuilds).
   */
  async load (options: AbortOptions = {}): Promise<LoadedIndex & { reason?: string }> {
    const empty: LoadedIndex = { pos: 0, set: undefined, docs: undefined, journal: [] }
    const cfg = await this.#kv.get('cfg')
    if (cfg === undefined || dec.decode(cfg) !== this.#cfg) {
      await this.clear()
      return { ...empty, reason: cfg === undefined ? 'none' : 'configuration changed' }
    }
    try {
      const loaded = await this.#read(options)
      this.#ckPos = loaded.ckPos
      return loaded
    } catch (err) {
      if ((err as { name?: string }).name === 'AbortError') throw err
      await this.clear()
      return { ...empty, reason: `unreadable: ${String(err)}` }
    }
  }

  async #read (options: AbortOptions): Promise<LoadedIndex & { ckPos: number }> {
    const ckBytes = await this.#kv.get('ck')
    let set: ReconcileSet | undefined
    let docs: DocId[] | undefined
    let pos = 0
    if (ckBytes !== undefined) {
      const ck = JSON.parse(dec.decode(this.#unseal(ckBytes))) as CheckpointMeta
      if (!Number.isSafeInteger(ck.pos) || !Number.isSafeInteger(ck.items) || !Number.isSafeInteger(ck.segments)) {
        throw new TypeError('checkpoint meta is malformed')
      }
      // a few segments at a time, each straight into the set's chunks: neither the sealed bytes nor a packed
      // copy of the set are ever all in memory beside it
      const loader = ChunkedReconcileSet.sortedLoader(ck.items)
      for (let first = 0; first < ck.segments; first += SEGMENTS_PER_READ) {
        options.signal?.throwIfAborted()
        const keys = Array.from({ length: Math.min(SEGMENTS_PER_READ, ck.segments - first) }, (_, i) => segKey(first + i))
        for (const sealed of await this.#kv.getMany(keys)) {
          if (sealed === undefined) throw new TypeError('checkpoint segment missing')
          const seg = this.#unseal(sealed)
          const view = new DataView(seg.buffer, seg.byteOffset, seg.byteLength)
          const count = view.getUint32(0)
          if (seg.byteLength !== 4 + count * (8 + ID_BYTES)) throw new TypeError('checkpoint segment malformed')
          const timestamps = new Float64Array(count)
          for (let i = 0; i < count; i++) timestamps[i] = view.getFloat64(4 + i * 8)
          loader.add(timestamps, seg.subarray(4 + count * 8))
        }
      }
      set = loader.finish()
      if (ck.docSegments > 0) {
        const parts = await this.#kv.getMany(Array.from({ length: ck.docSegments }, (_, n) => docSegKey(n)))
        docs = []
        for (const sealed of parts) {
          if (sealed === undefined) throw new TypeError('checkpoint document segment missing')
          const part = this.#unseal(sealed)
          if (part.byteLength > 0) docs.push(...dec.decode(part).split('\n'))
        }
        if (docs.length !== ck.docs) throw new TypeError('checkpoint is short of documents')
      } else if (ck.docs === 0) {
        docs = []
      }
      pos = ck.pos
      this.#ckJournal = ck.journal
    }
    const journal: JournalRecord[] = []
    this.#journal = this.#ckJournal
    const it = this.#kv.iterator({ gt: journalKey(this.#ckJournal), lt: 'j"' })
    try {
      while (true) {
        options.signal?.throwIfAborted()
        const entries = await it.nextv(256)
        if (entries.length === 0) break
        for (const [key, value] of entries) {
          const seq = Number(key.slice(2))
          if (seq !== this.#journal + 1) throw new TypeError('journal has a gap')
          this.#journal = seq
          journal.push(JSON.parse(dec.decode(this.#unseal(value))) as JournalRecord)
        }
      }
    } finally {
      await it.close()
    }
    return { pos, set, docs, journal, ckPos: pos }
  }

  /** Appends a journal record (document filters). */
  async append (record: JournalRecord): Promise<void> {
    const seq = this.#journal + 1
    await this.#kv.batch([
      { type: 'put', key: 'cfg', value: enc.encode(this.#cfg) },
      { type: 'put', key: journalKey(seq), value: this.#seal(enc.encode(JSON.stringify(record))) }
    ])
    this.#journal = seq
  }

  /**
   * Writes a checkpoint of `set` (and the matching documents) at `pos`, covering every journal record written so
   * far, in one batch that also drops those records. The caller holds off other updates until it settles.
   */
  async checkpoint (packed: { timestamps: Float64Array, ids: Uint8Array }, docs: Iterable<DocId> | undefined, pos: number): Promise<void> {
    const n = packed.timestamps.length
    const ops: Array<{ type: 'put', key: string, value: Uint8Array } | { type: 'del', key: string }> = []
    let segments = 0
    for (let start = 0; start < n; start += CHECKPOINT_SEGMENT_ITEMS) {
      const count = Math.min(CHECKPOINT_SEGMENT_ITEMS, n - start)
      const seg = new Uint8Array(4 + count * (8 + ID_BYTES))
      const view = new DataView(seg.buffer)
      view.setUint32(0, count)
      for (let i = 0; i < count; i++) view.setFloat64(4 + i * 8, packed.timestamps[start + i])
      seg.set(packed.ids.subarray(start * ID_BYTES, (start + count) * ID_BYTES), 4 + count * 8)
      ops.push({ type: 'put', key: segKey(segments++), value: this.#seal(seg) })
    }
    let docCount = 0
    let docSegments = 0
    if (docs !== undefined) {
      let part: string[] = []
      const flush = (): void => {
        ops.push({ type: 'put', key: docSegKey(docSegments++), value: this.#seal(enc.encode(part.join('\n'))) })
        part = []
      }
      for (const docId of docs) {
        part.push(docId)
        docCount++
        if (part.length === CHECKPOINT_SEGMENT_DOCS) flush()
      }
      if (part.length > 0) flush()
    }
    // segments of a larger earlier checkpoint go (reading the keys is cheap: the values are not read)
    for (const key of await this.#kv.keys({ gte: segKey(segments), lt: 'cs"' }).all()) ops.push({ type: 'del', key })
    for (const key of await this.#kv.keys({ gte: docSegKey(docSegments), lt: 'cd"' }).all()) ops.push({ type: 'del', key })
    for (let seq = this.#ckJournal + 1; seq <= this.#journal; seq++) ops.push({ type: 'del', key: journalKey(seq) })
    const meta: CheckpointMeta = { pos, journal: this.#journal, items: n, segments, docs: docCount, docSegments }
    ops.push({ type: 'put', key: 'ck', value: this.#seal(enc.encode(JSON.stringify(meta))) })
    ops.push({ type: 'put', key: 'cfg', value: enc.encode(this.#cfg) })
    await this.#kv.batch(ops)
    this.#ckJournal = meta.journal
    this.#ckPos = pos
  }

  /** Removes everything (the index is then rebuilt). */
  async clear (): Promise<void> {
    await this.#kv.clear()
    this.#journal = 0
    this.#ckJournal = 0
    this.#ckPos = 0
  }
}
