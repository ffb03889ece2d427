/**
 * What each partner of a receive-only share revealed, persisted: a receive-only share reconciles over the hashes
 * the partner revealed before and this side stores (session invariant I1), and without them on disk the first
 * round after a restart would cost the partner's whole id list (32 bytes per change of its served set).
 *
 * Each (share, partner) pair has a key space of its own beside the database
 * (`tenant.openIndexState(database, seenIndexName(shareId, peer))`), laid out as a served-set index
 * (served-index.ts): a checkpoint of the sorted items, and a journal of what sessions added since, every value
 * sealed under the tenant's own key. An addition large against the set (a cold sync) is written as a new
 * checkpoint; smaller ones as a journal record, folded into a checkpoint once they add up to an eighth of the set.
 *
 * The set only says what the partner has: an item missing (the write failed, or the index was unreadable and
 * dropped) costs the partner one more id in a later round, nothing else.
 */
import type { IndexState } from '../core/tenant.js'
import type { AbortOptions } from '../store/types.js'
import type { Logger } from '../util/logger.js'
import { createReconcileSet, type ReconcileItem, type ReconcileSet } from './reconcile/index.js'
import { CHECKPOINT_MIN_WORK, CHECKPOINT_SIZE_DIVISOR, packSet, replayItems, ServedIndexStore } from './served-index.js'

/** The prefix of the index names of a share's partners: `tenant.dropIndexStates` of it drops them all. */
export function seenIndexPrefix (shareId: string): string {
  return `${shareId}\0seen\0`
}

export function seenIndexName (shareId: string, peer: string): string {
  return seenIndexPrefix(shareId) + peer
}

/** One partner's set: kept in memory, every addition persisted. */
export class SeenSet {
  readonly #store: ServedIndexStore
  readonly #log: Logger
  /** Journal position of the last addition. */
  #pos: number
  /** Items written since the last checkpoint (what a restart replays). */
  #work: number
  /** Writes in order, one at a time. */
  #writing: Promise<void> = Promise.resolve()

  private constructor (readonly set: ReconcileSet, store: ServedIndexStore, pos: number, work: number, log: Logger) {
    this.#store = store
    this.#pos = pos
    this.#work = work
    this.#log = log
  }

  /** Reads the partner's set; an unreadable or foreign index is dropped and the set starts empty. */
  static async open (state: IndexState, log: Logger, options: AbortOptions = {}): Promise<SeenSet> {
    const store = new ServedIndexStore(state, { kind: 'seen' })
    const loaded = await store.load(options)
    if (loaded.reason !== undefined && loaded.reason !== 'none') log.warn({ reason: loaded.reason }, 'seen set of a receive-only share dropped')
    const set = loaded.set ?? createReconcileSet()
    let pos = loaded.pos
    let work = 0
    for (const record of loaded.journal) {
      replayItems(set, record.items)
      work += record.items.length
      pos = record.pos
    }
    return new SeenSet(set, store, pos, work, log)
  }

  /**
   * Writes items the session added to `set` (what the partner revealed and this side now stores); resolves once
   * they are written, or failed to be (logged: the partner then sends them again in a later round).
   */
  async persist (added: readonly ReconcileItem[]): Promise<void> {
    if (added.length === 0) return
    const pos = ++this.#pos
    this.#work += added.length
    const checkpoint = this.#work >= Math.max(CHECKPOINT_MIN_WORK, this.set.size / CHECKPOINT_SIZE_DIVISOR)
    // the packed copy is taken now: what is added later goes into later writes
    const packed = checkpoint ? packSet(this.set) : undefined
    if (checkpoint) this.#work = 0
    const items = packed === undefined ? added.map((item): [1, number, string] => [1, item.timestamp, item.id]) : []
    this.#writing = this.#writing.then(async () => {
      try {
        if (packed !== undefined) await this.#store.checkpoint(packed, undefined, pos)
        else await this.#store.append({ pos, items, docs: [] })
      } catch (err) {
        this.#log.warn({ err: String(err) }, 'seen set of a receive-only share not written')
      }
    })
    await this.#writing
  }

  /** Resolves once every addition so far is written. */
  async settled (): Promise<void> {
    await this.#writing
  }
}
