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
 * - document filters: all changes of documents that are readable here and currently match. A document this side
 *   cannot read is not served (fails closed). A document that stops matching leaves the set: its changes are no
 *   longer served or announced; partners keep what they already received.
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
    this.#unsubscribe.push(store.onAppend((event) => {
      void this.#mutex.run(async () => { this.#added(event.changes.map((c) => c.change)) })
    }))
    if (this.#policy.mode === 'byDoc') {
      this.#unsubscribe.push(this.#db.onDocumentsChanged(({ docIds }) => {
        void this.#mutex.run(async () => { await this.#reevaluate(docIds) }).catch((err) => {
          this.#log.error({ err: String(err) }, 'served set update failed')
        })
      }))
    }
    await this.#mutex.run(async () => {
      if (this.#policy.mode === 'byDoc') {
        const docIds: DocId[] = []
        for await (const { doc } of this.#db.iterateChangesSince(null, options)) docIds.push(doc.getId())
        await this.#reevaluate(docIds)
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

  /** True when the change is in the served set (what a partner may receive or learn the hash of). */
  includes (change: StoreChange): boolean {
    return this.#index.has(change.time, change.hash)
  }

  get size (): number {
    return this.#index.size
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

  #added (changes: StoreChange[]): void {
    const grown: ChangeHash[] = []
    for (const change of changes) {
      if (!this.#eligible(change)) continue
      const p = this.#policy
      const serve = p.mode === 'all' || (p.mode === 'byKey' && p.keyIds.has(change.keyId)) ||
        (p.mode === 'byDoc' && this.#matching.has(change.docId))
      if (serve && this.#index.insert(change.time, change.hash)) grown.push(change.hash)
    }
    this.#notify(grown)
  }

  async #reevaluate (docIds: DocId[]): Promise<void> {
    if (this.#policy.mode !== 'byDoc') return
    const store = this.#db.getStore()
    const grown: ChangeHash[] = []
    for (const docId of docIds) {
      let matches = false
      try {
        matches = this.#policy.matches(await this.#db.getDocument(docId))
      } catch (err) {
        if (!(err instanceof DocumentNotFoundError)) {
          this.#log.warn({ docId, err: String(err) }, 'filter failed on a document; not serving it')
        }
      }
      // no transition: a matching document's new changes entered the set when they were appended
      if (matches === this.#matching.has(docId)) continue
      const changes = await store.getChanges(await store.getAllChangeHashesForDoc(docId))
      if (matches) {
        this.#matching.add(docId)
        for (const c of changes) {
          if (this.#eligible(c) && this.#index.insert(c.time, c.hash)) grown.push(c.hash)
        }
      } else {
        this.#matching.delete(docId)
        for (const c of changes) this.#index.delete(c.time, c.hash)
      }
    }
    this.#notify(grown)
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
