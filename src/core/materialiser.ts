/**
 * The materialiser: applies stored changes to their documents, off the receive path.
 *
 * Receiving is verifying and storing (`MindooDB.receiveChanges`); the changes stored after `appliedSeq` are the
 * backlog. The materialiser takes the backlog up in the background, in steps of `MATERIALISE_STEP_CHANGES`, in
 * arrival order: for each change it decides (from the change's header and its document's meta alone) whether it
 * applies now, waits for a dependency (`wd!<dep>!<hash>`, with a marker `wm!<dep>` so that applying a change asks
 * for its waiters with one point read, not a range scan) or for key material (`pk!<keyId>!<hash>`), or is refused
 * for good (`rj!<hash>`); an applied change is recorded (`ap!<hash>`) and its plaintext joins its document's
 * tail (doc-state.ts). All of a document's changes of one step are then one Automerge call, or none at all when
 * nothing holds the document loaded: its tail is replayed, in one call, by the next read that needs it. No change
 * costs a snapshot load or save of its own (snapshots are saved by the snapshot-cache rule of doc-state.ts).
 *
 * A read of one document does not wait for the whole backlog: while the backlog's changes are all held in
 * memory (`MATERIALISE_QUEUE_MAX` changes, `MATERIALISE_QUEUE_MAX_BYTES`), `materialiseDoc` takes up that document's queued changes at once, ahead of
 * the others (they are "taken ahead": the walker skips them when it gets there).
 *
 * Invariants (cited where they are enforced):
 * 1. A change is applied to its document at most once (the `ap!` set), and only after all its deps, which must
 *    be changes of the same document (else it is refused, invariant 4).
 * 2. Every materialised document has exactly one changefeed entry, at the position of its latest change (or of
 *    its latest change taken up and not applied: see #touch).
 * 3. Documents whose key this tenant lacks are never materialised, so never appear in reads or the changefeed.
 * 4. A document's state only ever contains changes under its own key, the first of them its creation.
 * 5. Progress (`appliedSeq`) is written in the same atomic batch as the document states, `ap!` entries and
 *    waits it produced; a change taken ahead is written with its document, and taking it again after a crash
 *    finds it applied (1). So a crash never leaves a document ahead of or behind the recorded progress, and on
 *    open the walk simply resumes.
 * 6. A walk writes its batches in order, one at a time; while one is built on the workers and written, the next
 *    is applied here and sees the unwritten one's document states, applied changes and waiters as if they were
 *    written (`#unwritten`). A full batch goes to the workers at once (its states are its own copies), but is
 *    handed off (changefeed positions, progress, `#unwritten`) only once the one before is written. A failed
 *    write ends the walk; the disk is the truth again (`#forget`).
 */
import type * as Automerge from '@automerge/automerge'
import {
  ClosedError, DecryptionError, KeyMismatchError, MalformedChangeError
} from '../errors.js'
import {
  MATERIALISE_CACHE_DOCS, MATERIALISE_DEFER_MAX_MS, MATERIALISE_DEFER_MIN_BACKLOG, MATERIALISE_DEFER_SHARE,
  MATERIALISE_DEFER_STEP_CHANGES, MATERIALISE_MAIN_BUILD_BYTES, MATERIALISE_QUEUE_MAX, MATERIALISE_QUEUE_MAX_BYTES,
  MATERIALISE_RECEIVE_QUIET_MS, MATERIALISE_STEP_CHANGES
} from '../limits.js'
import { isCreation, payloadAad, type ChangeHash, type DocId, type StoreChange } from '../store/change.js'
import type { AbortOptions, AppendEvent, AppendOnlyStore } from '../store/types.js'
import type { Logger } from '../util/logger.js'
import { Mutex } from '../util/mutex.js'
import { feedKey } from './changefeed.js'
import { materialiseMainBuildDocs, materialisePool } from './materialise-pool.js'
import type { DocData } from './doc.js'
import { applyAll, compact, copyState, loadAm, snapshotDue, stateBytes, type DocCache, type DocState } from './doc-state.js'
import type { DocumentsChangedListener, KV, MaterialiseResult, TenantContext } from './types.js'

/** LevelDB operations per atomic batch before it is written. */
const FLUSH_OPS = 4000
const EMPTY = new Uint8Array(0)
const enc = new TextEncoder()
const dec = new TextDecoder()

type Op = { type: 'put', key: string, value: Uint8Array } | { type: 'del', key: string }

interface Meta {
  appliedSeq: number
  feedSeq: number
}

/** A change made here: its plaintext and the document it produced are known, so it is not applied again. */
export interface LocalChange {
  hash: ChangeHash
  plaintext: Uint8Array
  /** The document after the change (undefined for a tombstone). */
  am: Automerge.Doc<DocData> | undefined
}

/**
 * One work unit: the LevelDB operations and the document states it touches, flushed as one atomic batch
 * together with the new `appliedSeq` (invariant 5).
 */
class Batch {
  readonly ops: Op[] = []
  readonly dirty = new Map<DocId, DocState>()
  /** Plaintexts applied in this batch to documents whose Automerge document is loaded: applied in one call each. */
  readonly fresh = new Map<DocId, Uint8Array[]>()
  /** Each dirty document as it was before the batch: its heads, and where the batch's changes start in its tail. */
  readonly base = new Map<DocId, { heads: string, from: number }>()
  /** Changes applied in this batch, with their document and time (for the documents-changed event). */
  readonly applied = new Map<ChangeHash, { docId: DocId, time: number }>()
  readonly rejected: Array<{ hash: ChangeHash, code: string }> = []
  /** Changes waiting for a dependency, registered in this batch: dep -> waiting hashes. */
  readonly waiting = new Map<ChangeHash, ChangeHash[]>()
  /** Documents whose queued changes this batch took: reads of them wait until it is written. */
  readonly stepDocs = new Set<DocId>()
  /** The progress the batch writes, set when it is handed to #write. */
  meta: Meta | undefined
  appliedCount = 0
}

/** Bounds of the in-memory queue of received changes; beyond either, the backlog is read from the store. */
export interface MaterialiseQueueLimits {
  /** Changes. Default MATERIALISE_QUEUE_MAX. */
  changes?: number
  /** Payload bytes. Default MATERIALISE_QUEUE_MAX_BYTES. */
  bytes?: number
}

export interface MaterialiserInit {
  queue?: MaterialiseQueueLimits
}

export interface MaterialiserComponents {
  store: AppendOnlyStore
  state: KV
  tenant: TenantContext
  cache: DocCache
  logger: Logger
}

/** Counters of the materialiser since open. */
export interface MaterialiseStats {
  /** Changes stored and not yet taken up. */
  backlog: number
  /** Changes applied to documents. */
  applied: number
  /** Automerge snapshots saved (the tails they replaced were replayed once). */
  snapshots: number
  /** Document builds done on the worker threads. */
  offloaded: number
}

export class Materialiser {
  readonly #store: AppendOnlyStore
  readonly #state: KV
  readonly #tenant: TenantContext
  readonly #cache: DocCache
  readonly #log: Logger
  readonly #listeners = new Set<DocumentsChangedListener>()
  /** Everything that writes documents runs under it: steps, reads of one document, local commits, new keys. */
  readonly mutex = new Mutex()
  #meta: Meta = { appliedSeq: 0, feedSeq: 0 }
  /** False while no change is known to wait for a dependency on disk (then no waiter lookups are needed). */
  #waitersOnDisk = true
  /** The backlog in memory, by seq, while `#queueWhole`. */
  readonly #queue = new Map<number, StoreChange>()
  /** Seqs of `#queue` by document, in arrival order. */
  readonly #byDoc = new Map<DocId, number[]>()
  readonly #queueMax: number
  readonly #queueMaxBytes: number
  /** Payload bytes in `#queue`. */
  #queueBytes = 0
  /** True when `#queue` holds every backlog change that was not taken ahead. */
  #queueWhole = false
  /**
   * Documents whose changes left the queue for a batch not yet written, with the number of such batches: a read
   * must wait for them.
   */
  readonly #inStep = new Map<DocId, number>()
  /**
   * The batch being built on the workers and written while the next one is applied (catchUp's pipeline): the
   * next one sees its documents, applied changes and waiters as if they were written.
   */
  #unwritten: Batch | undefined
  /** Backlog seqs taken ahead by `materialiseDoc` (already applied and written): the walker skips them. */
  readonly #taken = new Set<number>()
  #background: Promise<void> | undefined
  /** `receiveChanges` calls in flight: the background defers to them (see #yieldToReceive). */
  #receiving = 0
  /** Wakes the background when the last receive in flight is done. */
  #receivedAll: (() => void) | undefined
  /** When the last receive in flight ended, and when receiving began (after a quiet time). */
  #receivedAt = 0
  #receivingSince = 0
  /** When the background's last step ended. */
  #lastStepAt = 0
  /** How long that step took (ms) if it was taken while deferring, else 0. */
  #lastStepMs = 0
  #offAppend: (() => void) | undefined
  #closed = false
  readonly #stats = { applied: 0, snapshots: 0, offloaded: 0 }

  constructor (components: MaterialiserComponents, init: MaterialiserInit = {}) {
    this.#queueMax = init.queue?.changes ?? MATERIALISE_QUEUE_MAX
    this.#queueMaxBytes = init.queue?.bytes ?? MATERIALISE_QUEUE_MAX_BYTES
    this.#store = components.store
    this.#state = components.state
    this.#tenant = components.tenant
    this.#cache = components.cache
    this.#log = components.logger
  }

  /** Reads the progress, follows appends, and holds the backlog in memory when it is small enough. */
  async open (): Promise<void> {
    const meta = await this.#state.get('meta')
    if (meta !== undefined) this.#meta = JSON.parse(dec.decode(meta))
    this.#waitersOnDisk = await this.#hasWaiters()
    if (this.#waitersOnDisk) await this.#markWaitedDeps()
    this.#offAppend = this.#store.onAppend((event) => { this.#enqueue(event) })
    const last = this.#store.getLastSeq()
    if (last - this.#meta.appliedSeq <= this.#queueMax) {
      const backlog: StoreChange[] = []
      let bytes = 0
      for await (const { seq, change } of this.#store.iterateSince(this.#meta.appliedSeq)) {
        if (seq > last || (bytes += change.payload.length) > this.#queueMaxBytes) break
        backlog.push(change)
      }
      if (this.#store.getLastSeq() === last && backlog.length === last - this.#meta.appliedSeq) {
        this.#queueWhole = true
        backlog.forEach((change, i) => { this.#put(this.#meta.appliedSeq + 1 + i, change) })
      }
    }
  }

  close (): void {
    this.#closed = true
    this.#receivedAll?.()
    this.#offAppend?.()
    this.#dropQueue()
    this.#listeners.clear()
  }

  get appliedSeq (): number {
    return this.#meta.appliedSeq
  }

  /** Changes stored but not yet taken up. */
  /** The changefeed's last position (0 when empty). */
  feedPosition (): number {
    return this.#meta.feedSeq
  }

  backlog (): number {
    return Math.max(0, this.#store.getLastSeq() - this.#meta.appliedSeq - this.#taken.size)
  }

  /** True when a read of this document must first take up stored changes (its own, or the whole backlog). */
  pendingFor (docId: DocId): boolean {
    if (this.backlog() === 0 && this.#inStep.size === 0) return false
    return !this.#queueWhole || this.#byDoc.has(docId) || this.#inStep.has(docId)
  }

  /**
   * True when `pendingFor` tells documents apart: nothing waits, or every waiting change is in the queue. Else it
   * says every document is pending, those with nothing waiting too.
   */
  knowsPending (): boolean {
    return this.#queueWhole || (this.backlog() === 0 && this.#inStep.size === 0)
  }

  stats (): MaterialiseStats {
    return { backlog: this.backlog(), ...this.#stats }
  }

  onDocumentsChanged (listener: DocumentsChangedListener): () => void {
    this.#listeners.add(listener)
    return () => { this.#listeners.delete(listener) }
  }

  /**
   * Marks a receive in flight until the returned function is called. While changes are being received and more
   * than MATERIALISE_DEFER_MIN_BACKLOG wait (a sync, not a live change), the background takes small steps
   * (MATERIALISE_DEFER_STEP_CHANGES), the first MATERIALISE_DEFER_MAX_MS after receiving began and then one per
   * MATERIALISE_DEFER_MAX_MS or less often, so that they take at most MATERIALISE_DEFER_SHARE of the time: the
   * receive path (verify and store) gets the cores, and the backlog is taken up in larger, cheaper steps once the
   * sync is done. Reads of a document and the changefeed do not wait for that: they take up what they need at once.
   */
  receiving (): () => void {
    if (this.#receiving++ === 0 && !this.#receiveActive()) this.#receivingSince = Date.now()
    let done = false
    return () => {
      if (done) return
      done = true
      if (--this.#receiving === 0) {
        this.#receivedAt = Date.now()
        this.#receivedAll?.()
        this.#receivedAll = undefined
      }
    }
  }

  /**
   * True while changes are being received: a receive is in flight, or one ended less than
   * MATERIALISE_RECEIVE_QUIET_MS ago (a sync session's frames come one after the other, with gaps between them).
   */
  #receiveActive (): boolean {
    return this.#receiving > 0 || Date.now() - this.#receivedAt < MATERIALISE_RECEIVE_QUIET_MS
  }

  /** True while the background defers to the receive path: changes are being received, and many wait. */
  #deferring (): boolean {
    return this.backlog() > MATERIALISE_DEFER_MIN_BACKLOG && this.#receiveActive()
  }

  /** Waits while the background defers to the receive path, until its next step is due. */
  async #yieldToReceive (): Promise<void> {
    while (!this.#closed && this.#deferring()) {
      const now = Date.now()
      const pause = Math.max(MATERIALISE_DEFER_MAX_MS, this.#lastStepMs * (1 / MATERIALISE_DEFER_SHARE - 1))
      const due = Math.max(this.#lastStepAt, this.#receivingSince) + pause - now
      if (due <= 0) return
      const wait = this.#receiving > 0 ? due : Math.min(due, this.#receivedAt + MATERIALISE_RECEIVE_QUIET_MS - now)
      let timer: NodeJS.Timeout | undefined
      await new Promise<void>((resolve) => {
        this.#receivedAll = resolve
        timer = setTimeout(resolve, Math.max(1, wait))
      })
      clearTimeout(timer)
      this.#receivedAll = undefined
    }
  }

  /** Starts taking up the backlog in the background (no-op while it runs or when there is none). */
  kick (): void {
    if (this.#background !== undefined || this.#closed || this.backlog() === 0) return
    this.#background = (async () => {
      try {
        // the caller (the receive path) goes on first
        await new Promise((resolve) => setImmediate(resolve))
        while (!this.#closed && this.backlog() > 0) {
          await this.#yieldToReceive()
          if (this.#closed || this.backlog() === 0) break
          // a step taken while deferring is small, and the next one waits from its end, longer after a long one
          // (its own time: not the wait for the mutex, and not a step taken while not deferring)
          const deferred = this.#deferring()
          await this.mutex.run(async () => {
            if (this.#closed) return
            const started = Date.now()
            await this.catchUp({}, this.#store.getLastSeq(), deferred ? MATERIALISE_DEFER_STEP_CHANGES : MATERIALISE_STEP_CHANGES)
            this.#lastStepMs = deferred ? Date.now() - started : 0
          })
          this.#lastStepAt = Date.now()
          // let reads, local writes and the receive path in between steps
          await new Promise((resolve) => setImmediate(resolve))
        }
      } catch (err) {
        if (!this.#closed) this.#log.error({ err: String(err) }, 'background materialisation failed')
      } finally {
        this.#background = undefined
      }
    })()
  }

  /**
   * Applies stored changes after `appliedSeq` up to seq `upTo`, at most `max` of them (must run under the
   * mutex). `local` is a change just made here (see LocalChange).
   */
  async catchUp (options: AbortOptions = {}, upTo = this.#store.getLastSeq(), max = Infinity, local?: LocalChange): Promise<MaterialiseResult> {
    if (this.#closed) throw new ClosedError('database is closed')
    const result: MaterialiseResult = { applied: 0, documents: [], rejected: [] }
    let batch = new Batch()
    let seq = this.#meta.appliedSeq
    let taken = 0
    /** The write of the batch before, running while `batch` is applied. */
    let writing: Promise<Batch> | undefined
    const step = async (next: number, change: StoreChange | undefined): Promise<void> => {
      if (change !== undefined) {
        await this.#applyWithWaiters(batch, change, local)
        taken++
      }
      seq = next
      if (batch.ops.length >= FLUSH_OPS || batch.dirty.size >= MATERIALISE_CACHE_DOCS) {
        // a full batch is built on the workers and written while the next one is applied here; the one before
        // is written first (writes stay in order, and one batch at a time is unwritten), while the workers
        // already build this one
        const built = this.#build(batch)
        built.catch(() => {}) // awaited by #write
        if (writing !== undefined) this.#collect(result, await writing)
        writing = this.#write(this.#handOff(batch, seq), built)
        writing.catch(() => {}) // awaited above or below
        batch = new Batch()
      }
    }
    try {
      while (seq < upTo && taken < max) {
        if (this.#taken.delete(seq + 1)) {
          await step(seq + 1, undefined)
          continue
        }
        const queued = this.#queueWhole ? this.#dequeue(seq + 1) : undefined
        if (queued !== undefined) {
          this.#enterStep(batch, queued.docId)
          await step(seq + 1, queued)
          continue
        }
        // the backlog is not (or no longer wholly) in memory: read it from the store in arrival order
        this.#dropQueue()
        for await (const entry of this.#store.iterateSince(seq, options)) {
          if (entry.seq > upTo || taken >= max) break
          await step(entry.seq, this.#taken.delete(entry.seq) ? undefined : entry.change)
        }
        break
      }
      if (writing !== undefined) this.#collect(result, await writing)
      writing = undefined
      this.#collect(result, await this.#flush(batch, seq))
    } catch (err) {
      // nothing of this step may still be writing once the mutex is released
      await writing?.catch(() => {})
      this.#forget()
      throw err
    }
    if (!this.#queueWhole && this.#meta.appliedSeq === this.#store.getLastSeq()) {
      // nothing waits: the (empty) queue is whole again and follows appends from here
      this.#taken.clear()
      this.#queueWhole = true
    }
    return result
  }

  /**
   * Takes up one document's queued changes at once, ahead of the rest of the backlog (must run under the mutex).
   * Without the backlog in memory, takes up the whole backlog instead.
   */
  async materialiseDoc (docId: DocId, local?: LocalChange): Promise<void> {
    if (this.#closed) throw new ClosedError('database is closed')
    if (!this.#queueWhole) {
      await this.catchUp({}, this.#store.getLastSeq(), Infinity, local)
      return
    }
    const seqs = this.#byDoc.get(docId)
    if (seqs === undefined) return
    this.#byDoc.delete(docId)
    const batch = new Batch()
    this.#enterStep(batch, docId)
    try {
      for (const seq of seqs) {
        const change = this.#queue.get(seq) as StoreChange
        this.#queue.delete(seq)
        this.#queueBytes -= change.payload.length
        this.#taken.add(seq)
        await this.#applyWithWaiters(batch, change, local)
      }
      // the taken changes right after appliedSeq are simply progress (invariant 5)
      let seq = this.#meta.appliedSeq
      while (this.#taken.delete(seq + 1)) seq++
      await this.#flush(batch, seq)
    } catch (err) {
      for (const seq of seqs) this.#taken.delete(seq)
      this.#forget()
      throw err
    }
  }

  /** Applies the changes that waited for key material `keyId` (must run under the mutex). */
  async keyAdded (keyId: string): Promise<void> {
    const prefix = `pk!${keyId}!`
    const keys = await this.#state.keys({ gt: prefix, lt: prefix + '~' }).all()
    if (keys.length === 0) return
    let batch = new Batch()
    try {
      for (const key of keys) {
        batch.ops.push({ type: 'del', key })
        const [change] = await this.#store.getChanges([key.slice(prefix.length)])
        await this.#applyWithWaiters(batch, change)
        if (batch.ops.length >= FLUSH_OPS) {
          await this.#flush(batch, this.#meta.appliedSeq)
          batch = new Batch()
        }
      }
      await this.#flush(batch, this.#meta.appliedSeq)
    } catch (err) {
      this.#forget()
      throw err
    }
  }

  // ------------------------------------------------------------------ the queue

  #enqueue ({ changes }: AppendEvent): void {
    if (!this.#queueWhole) return
    let bytes = 0
    for (const { change } of changes) bytes += change.payload.length
    if (this.#queue.size + changes.length > this.#queueMax || this.#queueBytes + bytes > this.#queueMaxBytes) {
      this.#dropQueue()
      return
    }
    for (const { seq, change } of changes) this.#put(seq, change)
  }

  #put (seq: number, change: StoreChange): void {
    this.#queue.set(seq, change)
    this.#queueBytes += change.payload.length
    const seqs = this.#byDoc.get(change.docId)
    if (seqs === undefined) this.#byDoc.set(change.docId, [seq])
    else seqs.push(seq)
  }

  #dequeue (seq: number): StoreChange | undefined {
    const change = this.#queue.get(seq)
    if (change === undefined) return undefined
    this.#queue.delete(seq)
    this.#queueBytes -= change.payload.length
    const seqs = this.#byDoc.get(change.docId)
    if (seqs !== undefined) {
      const at = seqs.indexOf(seq)
      if (at >= 0) seqs.splice(at, 1)
      if (seqs.length === 0) this.#byDoc.delete(change.docId)
    }
    return change
  }

  #dropQueue (): void {
    this.#queueWhole = false
    this.#queueBytes = 0
    this.#queue.clear()
    this.#byDoc.clear()
  }

  /** After a failed step: states and the queue may hold work that was not written; the disk is the truth. */
  #forget (): void {
    this.#inStep.clear()
    this.#unwritten = undefined
    this.#cache.clear()
    this.#dropQueue()
  }

  // ------------------------------------------------------------------ applying

  #collect (result: MaterialiseResult, batch: Batch): void {
    result.applied += batch.appliedCount
    result.documents.push(...batch.dirty.keys())
    result.rejected.push(...batch.rejected)
  }

  /** Applies a change, then every change that was waiting for it (transitively). */
  async #applyWithWaiters (batch: Batch, change: StoreChange, local?: LocalChange): Promise<void> {
    const queue = [change]
    while (queue.length > 0) {
      const next = queue.shift() as StoreChange
      if (!await this.#apply(batch, next, local)) continue
      const prefix = `wd!${next.hash}!`
      const waiting = batch.waiting.get(next.hash) ?? []
      batch.waiting.delete(next.hash)
      // waiters the unwritten batch registered: their records are written with it, and deleted with this one
      const earlier = this.#unwritten?.waiting.get(next.hash)
      if (earlier !== undefined) {
        this.#unwritten?.waiting.delete(next.hash)
        waiting.push(...earlier)
      }
      for (const hash of waiting) batch.ops.push({ type: 'del', key: prefix + hash })
      // the common case, nothing waiting anywhere, costs no lookup; else a point read of the marker decides
      // whether the range is worth a scan
      const marked = this.#waitersOnDisk && await this.#cache.read('wm!' + next.hash) !== undefined
      const stored = marked ? await this.#state.keys({ gt: prefix, lt: prefix + '~' }).all() : []
      if (marked || waiting.length > 0) batch.ops.push({ type: 'del', key: 'wm!' + next.hash })
      for (const key of stored) {
        batch.ops.push({ type: 'del', key })
        waiting.push(key.slice(prefix.length))
      }
      if (waiting.length > 0) queue.push(...await this.#store.getChanges(waiting))
    }
  }

  /** The document an applied change belongs to, or undefined when the change is not applied. */
  async #appliedTo (batch: Batch, hash: ChangeHash): Promise<DocId | undefined> {
    const docId = batch.applied.get(hash)?.docId ?? this.#unwritten?.applied.get(hash)?.docId
    if (docId !== undefined) return docId
    const value = await this.#cache.read('ap!' + hash)
    return value === undefined ? undefined : dec.decode(value)
  }

  /** Refuses a stored change for good (invariant 4): it is never applied, and is reported once. */
  async #refuse (batch: Batch, change: StoreChange, code: string, why: string): Promise<false> {
    batch.ops.push({ type: 'put', key: 'rj!' + change.hash, value: enc.encode(code) })
    batch.rejected.push({ hash: change.hash, code })
    this.#log.warn({ hash: change.hash, docId: change.docId, code }, why)
    await this.#touch(batch, change.docId)
    return false
  }

  /**
   * A change of a materialised document was taken up and not applied (it waits, or is refused): the document
   * still moves to the end of the changefeed, as if it had changed (invariant 2 stands: one entry, moved). A walk
   * of the changefeed skips a document with queued changes, expecting it further on once they are taken up; without
   * the move, one whose change turns out not to apply would never be met again.
   */
  async #touch (batch: Batch, docId: DocId): Promise<void> {
    if (batch.dirty.has(docId)) return
    const state = copyState(this.#unwritten?.dirty.get(docId) ?? await this.#cache.load(docId))
    if (state === undefined) return
    batch.base.set(docId, { heads: state.meta.heads.join(), from: state.tail.length })
    batch.dirty.set(docId, state)
  }

  async #hasWaiters (): Promise<boolean> {
    return (await this.#state.keys({ gt: 'wd!', lt: 'wd!~', limit: 1 }).all()).length > 0
  }

  /** Writes the `wm!` marker of every dependency that changes wait for (states written before markers existed). */
  async #markWaitedDeps (): Promise<void> {
    const deps = new Set<string>()
    for await (const key of this.#state.keys({ gt: 'wd!', lt: 'wd!~' })) deps.add(key.slice(3, key.indexOf('!', 3)))
    await this.#state.batch([...deps].map((dep) => ({ type: 'put' as const, key: 'wm!' + dep, value: EMPTY })))
  }

  /**
   * Applies one change to its document if it can be (invariant 1); returns whether it was applied now. Decides
   * from the change's header and its document's meta; Automerge work is left to the flush or to the next read.
   */
  async #apply (batch: Batch, change: StoreChange, local?: LocalChange): Promise<boolean> {
    if (await this.#appliedTo(batch, change.hash) !== undefined) return false
    // invariant 3: a document without its key waits, stored
    if (!this.#tenant.keyring.has(change.keyId)) {
      batch.ops.push({ type: 'put', key: `pk!${change.keyId}!${change.hash}`, value: EMPTY })
      await this.#touch(batch, change.docId)
      return false
    }
    const missing: ChangeHash[] = []
    for (const dep of change.deps) {
      const depDoc = await this.#appliedTo(batch, dep)
      if (depDoc === undefined) missing.push(dep)
      else if (depDoc !== change.docId) return await this.#refuse(batch, change, MalformedChangeError.code, 'change depends on a change of another document')
    }
    for (const dep of missing) {
      this.#waitersOnDisk = true
      batch.ops.push({ type: 'put', key: `wd!${dep}!${change.hash}`, value: EMPTY }, { type: 'put', key: 'wm!' + dep, value: EMPTY })
      const list = batch.waiting.get(dep) ?? []
      list.push(change.hash)
      batch.waiting.set(dep, list)
    }
    if (missing.length > 0) {
      await this.#touch(batch, change.docId)
      return false
    }
    // copy on write: readers outside the mutex keep seeing the cached state until the batch is written
    let existing = batch.dirty.get(change.docId)
    if (existing === undefined) {
      existing = copyState(this.#unwritten?.dirty.get(change.docId) ?? await this.#cache.load(change.docId))
      batch.base.set(change.docId, { heads: existing?.meta.heads.join() ?? '', from: existing?.tail.length ?? 0 })
    }
    // invariant 4: the verifier checked the key against the id and the creator of a creation; this keeps the
    // state whole also for changes stored before those checks, or by a store without the verifier
    if (existing === undefined && !isCreation(change)) {
      return await this.#refuse(batch, change, MalformedChangeError.code, 'change of a document that was never created')
    }
    if (existing !== undefined && existing.meta.keyId !== change.keyId) {
      return await this.#refuse(batch, change, KeyMismatchError.code, 'change under another key than its document')
    }
    const isLocal = local?.hash === change.hash
    let plaintext: Uint8Array
    try {
      plaintext = isLocal ? local.plaintext : this.#tenant.keyring.decrypt(change.keyId, change.payload, payloadAad(change))
    } catch (err) {
      if (!(err instanceof DecryptionError)) throw err
      // a key version this tenant does not have yet: wait for it like for an unknown key (a payload that no
      // version will ever decrypt, e.g. lifted from another header, waits for good and is never applied)
      batch.ops.push({ type: 'put', key: `pk!${change.keyId}!${change.hash}`, value: EMPTY })
      await this.#touch(batch, change.docId)
      return false
    }
    const state: DocState = existing ?? {
      meta: { keyId: change.keyId, deleted: false, heads: [], createdAt: change.time, modifiedAt: change.time },
      feedSeq: 0,
      snapshot: EMPTY,
      tail: []
    }
    if (change.kind === 'delete') {
      state.meta.deleted = true
    } else {
      state.tail.push(plaintext)
      state.json = undefined
      if (isLocal) {
        state.am = local.am
      } else if (state.am !== undefined) {
        const fresh = batch.fresh.get(change.docId)
        if (fresh === undefined) batch.fresh.set(change.docId, [plaintext])
        else fresh.push(plaintext)
      }
    }
    const deps = new Set(change.deps)
    state.meta.heads = [...state.meta.heads.filter((h) => !deps.has(h)), change.hash].sort()
    state.meta.modifiedAt = Math.max(state.meta.modifiedAt, change.time)
    state.meta.createdAt = Math.min(state.meta.createdAt, change.time)
    batch.dirty.set(change.docId, state)
    batch.applied.set(change.hash, { docId: change.docId, time: change.time })
    batch.ops.push({ type: 'put', key: 'ap!' + change.hash, value: enc.encode(change.docId) })
    batch.appliedCount++
    return true
  }

  /**
   * The Automerge work of a batch, one call per document: a document loaded here gets its new changes applied
   * (and a snapshot saved when due); the others are built on the workers, which return their content text (so
   * reads need no Automerge load) and the snapshot when due. Without workers they stay as they are until a
   * read loads them.
   */
  async #build (batch: Batch): Promise<void> {
    const offload: Array<{ docId: DocId, state: DocState }> = []
    const pool = materialisePool()
    // a step of a few documents (a live change) builds small ones here: no round trip to a worker, and the
    // document stays loaded, so its next change is applied incrementally
    const few = batch.dirty.size <= materialiseMainBuildDocs()
    for (const [docId, state] of batch.dirty) {
      const fresh = batch.fresh.get(docId)
      if (fresh !== undefined && state.am !== undefined) state.am = applyAll(state.am, fresh, this.#log, docId)
      if (state.am === undefined && state.json === undefined && few && stateBytes(state) <= MATERIALISE_MAIN_BUILD_BYTES) {
        loadAm(state, this.#log, docId)
      }
      if (state.am === undefined && state.json === undefined && pool.usable) {
        offload.push({ docId, state })
      } else if (snapshotDue(state)) {
        compact(state, this.#log, docId)
        this.#stats.snapshots++
      }
    }
    if (offload.length === 0) return
    const outcomes = await pool.run(offload.map(({ docId, state }) => {
      const base = batch.base.get(docId) ?? { heads: '', from: 0 }
      return {
        docId, base: base.heads, head: state.meta.heads.join(), snapshot: state.snapshot, tail: state.tail, from: base.from, save: snapshotDue(state)
      }
    }))
    outcomes.forEach((outcome, i) => {
      const { docId, state } = offload[i]
      if (outcome === undefined) {
        // the pool gave up: the document is loaded on the main thread when read
        if (snapshotDue(state)) {
          compact(state, this.#log, docId)
          this.#stats.snapshots++
        }
        return
      }
      state.json = outcome.json
      if (outcome.snapshot !== undefined) {
        state.snapshot = outcome.snapshot
        state.tail = []
        this.#stats.snapshots++
      }
      this.#stats.offloaded++
    })
  }

  /**
   * Brings loaded documents up to date (one Automerge call each), saves the snapshots that are due, and writes
   * the batch with the new progress atomically (invariants 2 and 5); then updates the cache and notifies.
   */
  async #flush (batch: Batch, appliedSeq: number): Promise<Batch> {
    if (batch.ops.length === 0 && appliedSeq === this.#meta.appliedSeq) {
      this.#leaveStep(batch)
      return batch
    }
    await this.#write(this.#handOff(batch, appliedSeq))
    // no batch is being applied now: whether changes still wait on disk can be asked again
    if (this.#waitersOnDisk) this.#waitersOnDisk = await this.#hasWaiters()
    return batch
  }

  /**
   * Gives the batch its changefeed positions (invariant 2) and its progress, and makes it the unwritten batch:
   * the next batch, applied while this one is written, builds on its states. Runs after the batch before was
   * written, so `#meta` is current.
   */
  #handOff (batch: Batch, appliedSeq: number): Batch {
    let feedSeq = this.#meta.feedSeq
    for (const [docId, state] of batch.dirty) {
      if (state.feedSeq > 0) batch.ops.push({ type: 'del', key: feedKey(state.feedSeq) })
      state.feedSeq = ++feedSeq
      batch.ops.push({ type: 'put', key: feedKey(feedSeq), value: enc.encode(docId) })
    }
    batch.meta = { appliedSeq, feedSeq }
    this.#unwritten = batch
    return batch
  }

  /**
   * Brings the batch's documents up to date (loaded ones here, the others on the workers), saves the snapshots
   * that are due, and writes it with its progress atomically (invariant 5); then updates the cache and notifies.
   */
  async #write (batch: Batch, built?: Promise<void>): Promise<Batch> {
    const meta = batch.meta as Meta
    try {
      await (built ?? this.#build(batch))
      const ops = batch.ops
      for (const [docId, state] of batch.dirty) ops.push({ type: 'put', key: 'doc!' + docId, value: this.#cache.seal(state) })
      ops.push({ type: 'put', key: 'meta', value: enc.encode(JSON.stringify(meta)) })
      await this.#state.batch(ops)
      this.#meta = meta
      // the batch's documents go into the cache before anything else runs: reads need not wait any more
      for (const [docId, state] of batch.dirty) this.#cache.set(docId, state)
    } finally {
      if (this.#unwritten === batch) this.#unwritten = undefined
    }
    this.#leaveStep(batch)
    this.#stats.applied += batch.appliedCount
    if (batch.dirty.size > 0) {
      const docIds = [...batch.dirty.keys()]
      const applied = [...batch.applied].map(([hash, { docId, time }]) => ({ hash, docId, time }))
      for (const listener of this.#listeners) {
        try {
          listener({ docIds, applied, feedSeq: meta.feedSeq })
        } catch (err) {
          this.#log.error({ err: String(err) }, 'documents-changed listener failed')
        }
      }
    }
    return batch
  }

  #enterStep (batch: Batch, docId: DocId): void {
    if (batch.stepDocs.has(docId)) return
    batch.stepDocs.add(docId)
    this.#inStep.set(docId, (this.#inStep.get(docId) ?? 0) + 1)
  }

  #leaveStep (batch: Batch): void {
    for (const docId of batch.stepDocs) {
      const n = (this.#inStep.get(docId) ?? 1) - 1
      if (n > 0) this.#inStep.set(docId, n)
      else this.#inStep.delete(docId)
    }
    batch.stepDocs.clear()
  }
}
