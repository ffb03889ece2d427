import { BaseStore, type StoreInit } from './base.js'
import { decodeChange, type ChangeHash, type DocId, type StoreChange } from './change.js'
import type { ChangeIndexEntry, SequencedChange } from './types.js'

/**
 * An AppendOnlyStore in memory, with the same semantics as LevelStore: for tests and for databases that live
 * only as long as their process. Changes are kept in their canonical bytes, so what comes out is a fresh copy
 * that no caller can alter inside the store.
 */
export class MemoryStore extends BaseStore {
  readonly #bytes = new Map<ChangeHash, Uint8Array>()
  /** Hashes by seq - 1. */
  readonly #bySeq: ChangeHash[] = []
  readonly #byDoc = new Map<DocId, ChangeHash[]>()
  /** Index entries by seq - 1. */
  readonly #index: ChangeIndexEntry[] = []

  constructor (init: StoreInit = {}) {
    super(init, 0)
  }

  protected async _open (): Promise<number> {
    return this.#bySeq.length
  }

  protected async _has (hash: ChangeHash): Promise<boolean> {
    return this.#bytes.has(hash)
  }

  protected async _hasMany (hashes: readonly ChangeHash[]): Promise<boolean[]> {
    return hashes.map((h) => this.#bytes.has(h))
  }

  protected async _write (entries: SequencedChange[]): Promise<void> {
    const encoded = entries.map(({ change }) => this._encode(change)) // may throw: before anything changes
    entries.forEach(({ change }, i) => {
      this.#bytes.set(change.hash, encoded[i])
      this.#bySeq.push(change.hash)
      this.#index.push({ seq: this.#bySeq.length, hash: change.hash, time: change.time, author: change.author, keyId: change.keyId })
      const doc = this.#byDoc.get(change.docId)
      if (doc === undefined) this.#byDoc.set(change.docId, [change.hash])
      else doc.push(change.hash)
    })
  }

  protected async _getChanges (hashes: readonly ChangeHash[]): Promise<Array<StoreChange | undefined>> {
    return hashes.map((h) => {
      const bytes = this.#bytes.get(h)
      return bytes === undefined ? undefined : decodeChange(bytes)
    })
  }

  protected async _getEncodedMany (hashes: readonly ChangeHash[]): Promise<Array<Uint8Array | undefined>> {
    return hashes.map((h) => {
      const bytes = this.#bytes.get(h)
      return bytes === undefined ? undefined : new Uint8Array(bytes) // a copy (a Buffer's slice() would be a view)
    })
  }

  protected async * _hashes (): AsyncGenerator<ChangeHash> {
    yield * this.#bySeq.slice()
  }

  protected async * _docHashes (docId: DocId): AsyncGenerator<ChangeHash> {
    yield * (this.#byDoc.get(docId) ?? []).slice()
  }

  protected async * _iterateSince (afterSeq: number): AsyncGenerator<SequencedChange> {
    const end = this.#bySeq.length
    for (let seq = afterSeq + 1; seq <= end; seq++) {
      yield { seq, change: decodeChange(this.#bytes.get(this.#bySeq[seq - 1]) as Uint8Array) }
    }
  }

  protected async * _iterateIndexSince (afterSeq: number): AsyncGenerator<ChangeIndexEntry> {
    for (const entry of this.#index.slice(afterSeq)) yield { ...entry }
  }

  protected async _close (): Promise<void> {}
}
