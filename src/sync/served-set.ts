import type { DocumentsChangedEvent, MindooDB, MindooDoc } from '../core/index.js'
import type { IndexState } from '../core/tenant.js'
import { DocumentNotFoundError } from '../errors.js'
import type { ChangeHash, DocId, StoreChange } from '../store/change.js'
import type { AbortOptions, ChangeIndexEntry } from '../store/types.js'
import { silentLogger, type Logger } from '../util/logger.js'
import { Mutex } from '../util/mutex.js'
import type { ReconcileSet } from './reconcile/index.js'
import {
  CHECKPOINT_MIN_WORK, CHECKPOINT_SIZE_DIVISOR, ServedIndexStore, packSet, replayItems, type JournalRecord
} from './served-index.js'
import type { FilterPolicy, ShareDirection } from './share.js'

export interface ServedSetComponents {
  db: MindooDB
  /**
   * The set to keep up to date, empty (owned by the served set from then on). When a persisted index is restored
   * at start, a set loaded from it takes its place: read the set through `index`.
   */
  index: ReconcileSet
  /**
   * Where the index is persisted (a key space of the share's own: `tenant.openIndexState(database, shareId)`),
   * so a restart reads it back instead of rebuilding it. Used only together with `init.identity`.
   */
  state?: IndexState
  logger?: Logger
}

export interface ServedSetInit {
  policy: FilterPolicy
  direction: ShareDirection
  /** This tenant's signing key: with direction `receive`, its own changes are not part of the set. */
  ownAuthor: string
  /**
   * What the filter is, stably (e.g. the JSON of the share's filter): a persisted index made for another
   * identity, direction or author is rebuilt. Without it nothing is persisted (a predicate function has none).
   */
  identity?: string
  /**
   * Work a restart may have to redo before a checkpoint is written: store records (filters `all`, `keys`) or
   * journaled items (document filters). Default: max(CHECKPOINT_MIN_WORK, size / CHECKPOINT_SIZE_DIVISOR).
   */
  checkpointEvery?: number
}

/** How the last `start()` got the set ready. */
export interface ServedSetStartInfo {
  /** A persisted checkpoint was read (else the set was built from nothing). */
  restored: boolean
  /** Why no checkpoint was used (`none`, `configuration changed`, `unreadable: ...`), when none was. */
  rebuildReason?: string
  /** Store records (`all`, `keys`) or journal records (document filters) replayed after the checkpoint. */
  replayed: number
  /** Documents evaluated again (document filters: changed after the persisted position). */
  reevaluated: number
  /** Milliseconds from the call until the set was ready. */
  ms: number
}

/** Listener for changes that entered the served set. */
export type ServedSetListener = (hashes: ChangeHash[]) => void

/**
 * The served set of a share: the changes of its database that the share's filter lets this side serve,
 * kept as an ordered index that is updated as changes arrive and documents change, never recomputed per session.
 *
 * - filter `all`: every stored change (including ones this side cannot decrypt: relays forward them).
 * - filter `keys`: changes under the listed key ids, decided from the key id alone.
 * - document filters: the applied changes of documents that are readable here and currently match. A document
 *   this side cannot read is not served (fails closed). Evaluate before insert: a change enters the set only
 *   after its document has been materialised with it and re-evaluated as still matching (the database's
 *   documents-changed event, with the changes it applied), so the change that makes a document leave the filter is
 *   never inserted, served or announced. A document that stops matching leaves the set: its changes are no longer
 *   served or announced; partners keep what they already received.
 *
 * With `components.state` and `init.identity`, the index is persisted (served-index.ts) and maintained as it
 * changes: a restart reads the last checkpoint and catches up from its position, reading no payload and loading
 * no document that did not change since (`all`/`keys`: the store's records past the position; document filters:
 * the journal, then the documents the changefeed lists past the journal's position). An index behind its source
 * after a crash is caught up the same way; one made for another filter, or unreadable, is rebuilt.
 */
export class ServedSet {
  readonly #db: MindooDB
  #index: ReconcileSet
  readonly #persist: ServedIndexStore | undefined
  readonly #checkpointEvery: number | undefined
  /** Position reached: the store's seq (`all`, `keys`) or the changefeed's (document filters). */
  #pos = 0
  /** Work since the last checkpoint: store records or journaled items. */
  #work = 0
  #startInfo: ServedSetStartInfo | undefined
  readonly #policy: FilterPolicy
  readonly #direction: ShareDirection
  readonly #ownAuthor: string
  readonly #log: Logger
  readonly #mutex = new Mutex()
  readonly #listeners = new Set<ServedSetListener>()
  /** For document filters: the documents currently matching. */
  readonly #matching = new Set<DocId>()
  #unsubscribe: Array<() => void> = []
  #started = false
  #stopped = false

  constructor (components: ServedSetComponents, init: ServedSetInit) {
    this.#db = components.db
    this.#index = components.index
    this.#log = components.logger ?? silentLogger
    this.#policy = init.policy
    this.#direction = init.direction
    this.#ownAuthor = init.ownAuthor
    this.#checkpointEvery = init.checkpointEvery
    if (components.state !== undefined && init.identity !== undefined) {
      this.#persist = new ServedIndexStore(components.state, {
        identity: init.identity, mode: init.policy.mode, direction: init.direction, ownAuthor: init.ownAuthor
      })
    }
  }

  get index (): ReconcileSet {
    return this.#index
  }

  /** How the last start got the set ready (undefined before it finished). */
  get startInfo (): ServedSetStartInfo | undefined {
    return this.#startInfo
  }

  /**
   * Makes the index ready (restored from its persisted form and caught up, or built from the database) and
   * follows the database's changes from then on.
   */
  async start (options: AbortOptions = {}): Promise<void> {
    if (this.#started) return
    this.#started = true
    const began = performance.now()
    const store = this.#db.getStore()
    if (this.#policy.mode === 'byDoc') {
      // evaluate before insert: changes enter only once applied and their document re-evaluated
      this.#unsubscribe.push(this.#db.onDocumentsChanged((event) => {
        void this.#mutex.run(async () => { await this.#onDocumentsChanged(event) }).catch((err) => {
          this.#log.error({ err: String(err) }, 'served set update failed')
        })
      }))
    } else {
      // `all` and `keys` decide from the change alone: it enters when stored
      this.#unsubscribe.push(store.onAppend((event) => {
        void this.#mutex.run(async () => {
          this.#added(event.changes.map((c) => c.change))
          this.#pos = Math.max(this.#pos, event.changes[event.changes.length - 1].seq)
          this.#work += event.changes.length
          await this.#maybeCheckpoint()
        }).catch((err) => {
          this.#log.error({ err: String(err) }, 'served set update failed')
        })
      }))
    }
    await this.#mutex.run(async () => {
      const info = this.#policy.mode === 'byDoc' ? await this.#startByDoc(options) : await this.#startByChange(options)
      this.#startInfo = { ...info, ms: Math.round(performance.now() - began) }
    })
    // a checkpoint of what the start replayed is written after the set is ready, not before
    void this.#mutex.run(async () => { await this.#maybeCheckpoint() })
  }

  /** `all` and `keys`: the checkpoint, then the store's records past its position (no payloads read). */
  async #startByChange (options: AbortOptions): Promise<Omit<ServedSetStartInfo, 'ms'>> {
    const store = this.#db.getStore()
    const info: Omit<ServedSetStartInfo, 'ms'> = { restored: false, replayed: 0, reevaluated: 0 }
    if (this.#persist !== undefined) {
      const loaded = await this.#persist.load(options)
      if (loaded.set !== undefined && loaded.pos <= store.getLastSeq()) {
        this.#index = loaded.set
        this.#pos = loaded.pos
        info.restored = true
      } else {
        // a checkpoint ahead of the store belongs to other data: never trust it
        if (loaded.set !== undefined) await this.#persist.clear()
        info.rebuildReason = loaded.set !== undefined ? 'checkpoint ahead of the store' : loaded.reason
      }
    }
    const batch: ChangeIndexEntry[] = []
    const take = (): void => {
      this.#addedEntries(batch.splice(0))
    }
    if (store.iterateIndexSince !== undefined) {
      for await (const entry of store.iterateIndexSince(this.#pos, options)) {
        batch.push(entry)
        this.#pos = entry.seq
        info.replayed++
        if (batch.length >= 1000) take()
      }
    } else {
      for await (const { seq, change } of store.iterateSince(this.#pos, options)) {
        batch.push({ seq, hash: change.hash, time: change.time, author: change.author, keyId: change.keyId })
        this.#pos = seq
        info.replayed++
        if (batch.length >= 1000) take()
      }
    }
    take()
    this.#work += info.replayed
    return info
  }

  /**
   * Document filters: the checkpoint and the journal, then every document the changefeed lists past the
   * journal's position, evaluated again (all of them when nothing was persisted).
   */
  async #startByDoc (options: AbortOptions): Promise<Omit<ServedSetStartInfo, 'ms'>> {
    const info: Omit<ServedSetStartInfo, 'ms'> = { restored: false, replayed: 0, reevaluated: 0 }
    if (this.#persist !== undefined) {
      const loaded = await this.#persist.load(options)
      const ahead = Math.max(loaded.pos, ...loaded.journal.map((r) => r.pos)) > this.#db.getChangefeedPosition()
      if (ahead) {
        // an index past the end of the changefeed belongs to other data: never trust it
        await this.#persist.clear()
        info.rebuildReason = 'index ahead of the changefeed'
      } else {
        if (loaded.set !== undefined) {
          this.#index = loaded.set
          for (const docId of loaded.docs ?? []) this.#matching.add(docId)
          info.restored = true
        } else {
          info.rebuildReason = loaded.reason
        }
        this.#pos = loaded.pos
        for (const record of loaded.journal) {
          this.#replay(record)
          info.replayed++
        }
      }
    }
    const journal: JournalRecord = { pos: this.#pos, items: [], docs: [] }
    const grown: ChangeHash[] = []
    for await (const { doc, cursor } of this.#db.iterateChangesSince(this.#pos === 0 ? null : { seq: this.#pos }, options)) {
      await this.#evaluate(doc.getId(), doc, undefined, journal, grown)
      info.reevaluated++
      journal.pos = cursor.seq
      if (journal.items.length + journal.docs.length >= 10_000) {
        await this.#record(journal, journal.pos)
        journal.items = []
        journal.docs = []
      }
    }
    await this.#record(journal, journal.pos)
    this.#notify(grown)
    return info
  }

  /** Applies a journal record to the set (restart). */
  #replay (record: JournalRecord): void {
    replayItems(this.#index, record.items)
    for (const [op, docId] of record.docs) {
      if (op === 1) this.#matching.add(docId)
      else this.#matching.delete(docId)
    }
    this.#pos = Math.max(this.#pos, record.pos)
    this.#work += record.items.length
  }

  /** Persists an update of a document filter's set (when persisted) and moves the position. */
  async #record (journal: JournalRecord, pos: number): Promise<void> {
    const moved = pos > this.#pos
    this.#pos = Math.max(this.#pos, pos)
    if (this.#persist === undefined || this.#stopped || (!moved && journal.items.length === 0 && journal.docs.length === 0)) return
    await this.#persist.append({ ...journal, pos: this.#pos })
    this.#work += journal.items.length
  }

  /** Writes a checkpoint when the work a restart would redo has grown past the threshold (under the mutex). */
  async #maybeCheckpoint (): Promise<void> {
    if (this.#persist === undefined || this.#stopped) return
    const every = this.#checkpointEvery ?? Math.max(CHECKPOINT_MIN_WORK, Math.floor(this.#index.size / CHECKPOINT_SIZE_DIVISOR))
    if (this.#work < every && this.#persist.checkpointPos > 0) return
    if (this.#work === 0) return
    try {
      await this.#persist.checkpoint(packSet(this.#index), this.#policy.mode === 'byDoc' ? this.#matching : undefined, this.#pos)
      this.#work = 0
    } catch (err) {
      // the journal and the store still hold everything: a later checkpoint, or a restart, catches up
      this.#log.warn({ err: String(err) }, 'served-set checkpoint failed')
    }
  }

  /**
   * Stops following the database. Persisted writes not yet begun are dropped (a restart catches up from the
   * position persisted last); `idle()` resolves once a write under way has ended.
   */
  stop (): void {
    this.#stopped = true
    for (const off of this.#unsubscribe) off()
    this.#unsubscribe = []
    this.#listeners.clear()
  }

  /** Resolves when no update is under way (after `stop()`: when nothing more will be written to the state). */
  async idle (): Promise<void> {
    await this.#mutex.run(async () => {})
  }

  /**
   * True when the change is in the served set (what a partner may receive or learn the hash of). Only its time and
   * hash are needed: serving asks with the hash it read and the time from the stored bytes, decoding nothing.
   */
  includes (change: Pick<StoreChange, 'time' | 'hash'>): boolean {
    return this.#index.has(change.time, change.hash)
  }

  get size (): number {
    return this.#index.size
  }

  /**
   * True when this side serves the document by its filter: document filters, when it currently matches; `all`:
   * always; `keys`: never (that filter decides by key, see `servesKey`). Used by the write policy.
   */
  servesDoc (docId: DocId): boolean {
    const p = this.#policy
    return p.mode === 'all' || (p.mode === 'byDoc' && this.#matching.has(docId))
  }

  /** True when this side serves changes under `keyId` by its filter: `keys`, when listed; `all`: always. */
  servesKey (keyId: string): boolean {
    const p = this.#policy
    return p.mode === 'all' || (p.mode === 'byKey' && p.keyIds.has(keyId))
  }

  /** Waits until events received so far are reflected in the index. */
  async settled (): Promise<void> {
    await this.#mutex.run(async () => {})
  }

  onGrow (listener: ServedSetListener): () => void {
    this.#listeners.add(listener)
    return () => { this.#listeners.delete(listener) }
  }

  #eligible (change: StoreChange): boolean {
    return !(this.#direction === 'receive' && change.author === this.#ownAuthor)
  }

  /** `all` and `keys` filters: stored changes enter by the change alone. */
  #added (changes: StoreChange[]): void {
    this.#addedEntries(changes)
  }

  #addedEntries (changes: ReadonlyArray<Pick<ChangeIndexEntry, 'hash' | 'time' | 'author' | 'keyId'>>): void {
    const grown: ChangeHash[] = []
    const p = this.#policy
    for (const change of changes) {
      if (this.#direction === 'receive' && change.author === this.#ownAuthor) continue
      const serve = p.mode === 'all' || (p.mode === 'byKey' && p.keyIds.has(change.keyId))
      if (serve && this.#index.insert(change.time, change.hash)) grown.push(change.hash)
    }
    this.#notify(grown)
  }

  /** Document filters: a batch the database materialised. */
  async #onDocumentsChanged ({ docIds, applied, feedSeq }: DocumentsChangedEvent): Promise<void> {
    if (this.#policy.mode !== 'byDoc') return
    const appliedByDoc = new Map<DocId, Array<{ hash: ChangeHash, time: number }>>()
    for (const a of applied) {
      const list = appliedByDoc.get(a.docId) ?? []
      list.push(a)
      appliedByDoc.set(a.docId, list)
    }
    const journal: JournalRecord = { pos: this.#pos, items: [], docs: [] }
    const grown: ChangeHash[] = []
    for (const docId of new Set([...docIds, ...appliedByDoc.keys()])) {
      await this.#evaluate(docId, undefined, appliedByDoc.get(docId) ?? [], journal, grown)
    }
    // without a position in the event the persisted one stays: a restart evaluates these documents again
    await this.#record(journal, feedSeq ?? this.#pos)
    this.#notify(grown)
    await this.#maybeCheckpoint()
  }

  /**
   * Document filters: evaluates a document at its current state (materialised with every change in `fresh`),
   * then inserts the fresh changes if it still matches, inserts its applied history if it starts matching, and
   * removes its changes if it stops matching. `fresh` undefined (a restart catching up): what changed since the
   * last evaluation is unknown, so a matching document gets its whole applied history checked.
   */
  async #evaluate (docId: DocId, given: MindooDoc | undefined, fresh: ReadonlyArray<{ hash: ChangeHash, time: number }> | undefined,
    journal: JournalRecord, grown: ChangeHash[]): Promise<void> {
    if (this.#policy.mode !== 'byDoc') return
    const store = this.#db.getStore()
    const insert = (time: number, hash: ChangeHash): void => {
      if (!this.#index.insert(time, hash)) return
      grown.push(hash)
      journal.items.push([1, time, hash])
    }
    let matches = false
    let heads: readonly ChangeHash[] = []
    try {
      const doc = given ?? await this.#db.getDocument(docId)
      matches = this.#policy.matches(doc)
      heads = doc.getHeads()
    } catch (err) {
      if (!(err instanceof DocumentNotFoundError)) {
        this.#log.warn({ docId, err: String(err) }, 'filter failed on a document; not serving it')
      }
    }
    if (matches && this.#matching.has(docId) && fresh !== undefined) {
      // still matching: the changes just applied enter (their document was evaluated with them)
      let entering: ReadonlyArray<{ hash: ChangeHash, time: number }> = fresh
      // direction `receive` leaves this side's own changes out: that needs their authors
      if (this.#direction === 'receive' && entering.length > 0) entering = (await store.getChanges(entering.map((a) => a.hash))).filter((c) => this.#eligible(c))
      for (const a of entering) insert(a.time, a.hash)
      return
    }
    if (matches) {
      // starts matching (or a restart checks it): its applied history (every ancestor of its heads) enters
      if (!this.#matching.has(docId)) {
        this.#matching.add(docId)
        journal.docs.push([1, docId])
      }
      const byHash = await this.#changesByHash(docId)
      const stack = [...heads]
      const visited = new Set<ChangeHash>()
      while (stack.length > 0) {
        const h = stack.pop() as ChangeHash
        if (visited.has(h)) continue
        visited.add(h)
        const c = byHash.get(h)
        if (c === undefined) continue
        stack.push(...c.deps)
        if (this.#eligible(c)) insert(c.time, c.hash)
      }
    } else if (this.#matching.delete(docId)) {
      // stops matching (or can no longer be read): every change of it leaves
      journal.docs.push([0, docId])
      const changes = await store.getChanges(await store.getAllChangeHashesForDoc(docId))
      for (const c of changes) {
        if (this.#index.delete(c.time, c.hash)) journal.items.push([0, c.time, c.hash])
      }
    }
  }

  async #changesByHash (docId: DocId): Promise<Map<ChangeHash, StoreChange>> {
    const store = this.#db.getStore()
    const changes = await store.getChanges(await store.getAllChangeHashesForDoc(docId))
    return new Map(changes.map((c) => [c.hash, c]))
  }

  #notify (grown: ChangeHash[]): void {
    if (grown.length === 0) return
    for (const listener of this.#listeners) {
      try {
        listener(grown)
      } catch (err) {
        this.#log.error({ err: String(err) }, 'served-set listener failed')
      }
    }
  }
}
