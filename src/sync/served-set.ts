import type { MindooDB } from '../core/index.js'
import { DocumentNotFoundError } from '../errors.js'
import type { ChangeHash, DocId, StoreChange } from '../store/change.js'
import type { AbortOptions } from '../store/types.js'
import { silentLogger, type Logger } from '../util/logger.js'
import { Mutex } from '../util/mutex.js'
import type { ReconcileSet } from './reconcile/index.js'
import type { FilterPolicy, ShareDirection } from './share.js'

export interface ServedSetComponents {
  db: MindooDB
  /** The set to keep up to date (owned by the served set from then on). */
  index: ReconcileSet
  logger?: Logger
}

export interface ServedSetInit {
  policy: FilterPolicy
  direction: ShareDirection
  /** This tenant's signing key: with direction `receive`, its own changes are not part of the set. */
  ownAuthor: string
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
 */
export class ServedSet {
  readonly #db: MindooDB
  readonly #index: ReconcileSet
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

  constructor (components: ServedSetComponents, init: ServedSetInit) {
    this.#db = components.db
    this.#index = components.index
    this.#log = components.logger ?? silentLogger
    this.#policy = init.policy
    this.#direction = init.direction
    this.#ownAuthor = init.ownAuthor
  }

  get index (): ReconcileSet {
    return this.#index
  }

  /** Builds the index from the database and follows its changes from then on. */
  async start (options: AbortOptions = {}): Promise<void> {
    if (this.#started) return
    this.#started = true
    const store = this.#db.getStore()
    if (this.#policy.mode === 'byDoc') {
      // evaluate before insert: changes enter only once applied and their document re-evaluated
      this.#unsubscribe.push(this.#db.onDocumentsChanged(({ docIds, applied }) => {
        void this.#mutex.run(async () => { await this.#reevaluate(docIds, applied) }).catch((err) => {
          this.#log.error({ err: String(err) }, 'served set update failed')
        })
      }))
    } else {
      // `all` and `keys` decide from the change alone: it enters when stored
      this.#unsubscribe.push(store.onAppend((event) => {
        void this.#mutex.run(async () => { this.#added(event.changes.map((c) => c.change)) })
      }))
    }
    await this.#mutex.run(async () => {
      if (this.#policy.mode === 'byDoc') {
        const docIds: DocId[] = []
        for await (const { doc } of this.#db.iterateChangesSince(null, options)) docIds.push(doc.getId())
        await this.#reevaluate(docIds, [])
      } else {
        const batch: StoreChange[] = []
        for await (const { change } of store.iterateSince(0, options)) {
          batch.push(change)
          if (batch.length >= 1000) this.#added(batch.splice(0))
        }
        this.#added(batch)
      }
    })
  }

  stop (): void {
    for (const off of this.#unsubscribe) off()
    this.#unsubscribe = []
    this.#listeners.clear()
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
    const grown: ChangeHash[] = []
    for (const change of changes) {
      if (!this.#eligible(change)) continue
      const p = this.#policy
      const serve = p.mode === 'all' || (p.mode === 'byKey' && p.keyIds.has(change.keyId))
      if (serve && this.#index.insert(change.time, change.hash)) grown.push(change.hash)
    }
    this.#notify(grown)
  }

  /**
   * Document filters: re-evaluates the documents at their current state (materialised with every change in
   * `applied`), then inserts the applied changes of those still matching, inserts the applied history of those
   * that start matching, and removes those that stop matching.
   */
  async #reevaluate (docIds: DocId[], applied: ReadonlyArray<{ hash: ChangeHash, docId: DocId, time: number }>): Promise<void> {
    if (this.#policy.mode !== 'byDoc') return
    const store = this.#db.getStore()
    const grown: ChangeHash[] = []
    const appliedByDoc = new Map<DocId, Array<{ hash: ChangeHash, time: number }>>()
    for (const a of applied) {
      const list = appliedByDoc.get(a.docId) ?? []
      list.push(a)
      appliedByDoc.set(a.docId, list)
    }
    for (const docId of new Set([...docIds, ...appliedByDoc.keys()])) {
      let matches = false
      let heads: readonly ChangeHash[] = []
      try {
        const doc = await this.#db.getDocument(docId)
        matches = this.#policy.matches(doc)
        heads = doc.getHeads()
      } catch (err) {
        if (!(err instanceof DocumentNotFoundError)) {
          this.#log.warn({ docId, err: String(err) }, 'filter failed on a document; not serving it')
        }
      }
      if (matches && this.#matching.has(docId)) {
        // still matching: the changes just applied enter (their document was evaluated with them)
        let fresh: ReadonlyArray<{ hash: ChangeHash, time: number }> = appliedByDoc.get(docId) ?? []
        // direction `receive` leaves this side's own changes out: that needs their authors
        if (this.#direction === 'receive' && fresh.length > 0) fresh = (await store.getChanges(fresh.map((a) => a.hash))).filter((c) => this.#eligible(c))
        for (const a of fresh) {
          if (this.#index.insert(a.time, a.hash)) grown.push(a.hash)
        }
        continue
      }
      if (matches) {
        // starts matching: its applied history (every ancestor of its heads) enters
        this.#matching.add(docId)
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
          if (this.#eligible(c) && this.#index.insert(c.time, c.hash)) grown.push(c.hash)
        }
      } else if (this.#matching.delete(docId)) {
        // stops matching (or can no longer be read): every change of it leaves
        const changes = await store.getChanges(await store.getAllChangeHashesForDoc(docId))
        for (const c of changes) this.#index.delete(c.time, c.hash)
      }
    }
    this.#notify(grown)
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
