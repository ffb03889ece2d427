import type { ChangeHash, DocId } from '../store/change.js'

/** A document's JSON content: an Automerge proxy inside `changeDoc`, a read-only object elsewhere. */
export type DocData = Record<string, any> // eslint-disable-line @typescript-eslint/no-explicit-any

/** Facts about a document kept next to its content. */
export interface DocMeta {
  keyId: string
  deleted: boolean
  /** This replica's current heads: hashes of the document's latest changes. */
  heads: ChangeHash[]
  createdAt: number
  /** Author time of the latest change applied. */
  modifiedAt: number
}

/**
 * A document of a MindooDB database. Outside `changeDoc` it is a snapshot: reading `getData()` never touches
 * the database and never changes. Inside a `changeDoc` callback, `getData()` is the mutable Automerge proxy.
 */
export class MindooDoc {
  readonly #id: DocId
  readonly #data: DocData
  readonly #meta: DocMeta

  constructor (id: DocId, data: DocData, meta: DocMeta) {
    this.#id = id
    this.#data = data
    this.#meta = meta
  }

  getId (): DocId {
    return this.#id
  }

  /** The document's content. */
  getData (): DocData {
    return this.#data
  }

  /** True for a tombstone: the document was deleted. */
  isDeleted (): boolean {
    return this.#meta.deleted
  }

  /** Id of the key its changes are encrypted with. */
  getKeyId (): string {
    return this.#meta.keyId
  }

  getHeads (): readonly ChangeHash[] {
    return this.#meta.heads
  }

  getCreatedAt (): number {
    return this.#meta.createdAt
  }

  getLastModified (): number {
    return this.#meta.modifiedAt
  }
}
