/**
 * The document cache: each materialised document's state as kept beside the store (`doc!<docId>`), how it is
 * sealed, and the in-memory LRU of recently used states.
 *
 * A state is a snapshot (bytes of `Automerge.save`, possibly empty) plus the tail: the plaintext Automerge
 * changes applied since that snapshot, in the order they were applied. Loading the document is one Automerge
 * call over snapshot and tail together; the materialiser appends to the tail and only saves a new snapshot when
 * it pays (`MATERIALISE_SNAPSHOT_AFTER_CHANGES`, `MATERIALISE_SNAPSHOT_AFTER_BYTES`), so a change costs no
 * Automerge save and no snapshot load. The record is always whole: meta, snapshot and tail are one sealed value
 * written in the same atomic batch as the materialiser's progress, so a crash loses nothing.
 *
 * The Automerge document itself (`am`) is built lazily, on the first read that needs it, and kept while the
 * state stays in the cache.
 */
import * as Automerge from '@automerge/automerge'
import {
  MATERIALISE_CACHE_DOCS, MATERIALISE_SNAPSHOT_AFTER_BYTES, MATERIALISE_SNAPSHOT_AFTER_CHANGES
} from '../limits.js'
import type { DocId } from '../store/change.js'
import type { Logger } from '../util/logger.js'
import { decodeData } from './data-codec.js'
import type { DocData, DocMeta } from './doc.js'
import type { KeyRing } from './keyring.js'
import type { KV } from './types.js'

/** One materialised document. */
export interface DocState {
  meta: DocMeta
  /** Position in the changefeed (0 before the first flush). */
  feedSeq: number
  /** `Automerge.save` bytes of the document without the tail (empty: the tail is the whole document). */
  snapshot: Uint8Array
  /** Plaintext Automerge changes applied after the snapshot, in application order. */
  tail: Uint8Array[]
  /** The Automerge document of snapshot + tail, once something needed it. */
  am?: Automerge.Doc<DocData>
  /** The content as `encodeData` text, when the materialiser made it (then reads need no Automerge load). */
  json?: string
}

/**
 * Record versions: 1 = head + saved document; 2 = head (with the lengths of the parts) + snapshot + tail + the
 * content text (when known).
 */
const RECORD_VERSION = 2
const enc = new TextEncoder()

interface Head {
  v: number
  meta: DocMeta
  feedSeq: number
  /** Version 2: byte length of the snapshot, of each tail change, and of the content text (absent: none). */
  snap?: number
  tail?: number[]
  json?: number
}

/** A document's state as stored locally: encrypted under the tenant's own key, never in the clear. */
export function sealState (keyring: KeyRing, keyId: string, state: DocState): Uint8Array {
  const json = state.json === undefined ? undefined : enc.encode(state.json)
  const head = enc.encode(JSON.stringify({
    v: RECORD_VERSION, meta: state.meta, feedSeq: state.feedSeq, snap: state.snapshot.length, tail: state.tail.map((c) => c.length), json: json?.length
  } satisfies Head))
  let size = 4 + head.length + state.snapshot.length + (json?.length ?? 0)
  for (const c of state.tail) size += c.length
  const plain = Buffer.allocUnsafe(size)
  plain.writeUInt32BE(head.length, 0)
  plain.set(head, 4)
  let at = 4 + head.length
  plain.set(state.snapshot, at)
  at += state.snapshot.length
  for (const c of state.tail) {
    plain.set(c, at)
    at += c.length
  }
  if (json !== undefined) plain.set(json, at)
  return keyring.encrypt(keyId, plain)
}

export function unsealState (keyring: KeyRing, keyId: string, sealed: Uint8Array): DocState {
  const plain = Buffer.from(keyring.decrypt(keyId, sealed))
  const headLen = plain.readUInt32BE(0)
  const head = JSON.parse(plain.toString('utf8', 4, 4 + headLen)) as Head
  const body = plain.subarray(4 + headLen)
  if (head.v < 2 || head.snap === undefined || head.tail === undefined) {
    return { meta: head.meta, feedSeq: head.feedSeq, snapshot: body, tail: [] }
  }
  const tail: Uint8Array[] = []
  let at = head.snap
  for (const len of head.tail) {
    tail.push(body.subarray(at, at + len))
    at += len
  }
  const json = head.json === undefined ? undefined : body.toString('utf8', at, at + head.json)
  return { meta: head.meta, feedSeq: head.feedSeq, snapshot: body.subarray(0, head.snap), tail, json }
}

/**
 * Applies Automerge changes to a document in one call; when Automerge refuses the batch (a trusted author sent
 * bytes it cannot read), applies them one by one and skips the unreadable ones (they stay stored and applied in
 * the database's sense: their content is simply not there).
 */
export function applyAll (am: Automerge.Doc<DocData>, changes: Uint8Array[], log: Logger, docId: DocId): Automerge.Doc<DocData> {
  if (changes.length === 0) return am
  try {
    // Automerge parses every change before it applies any: a refused batch leaves the document as it was
    return Automerge.applyChanges(am, changes)[0]
  } catch {
    let doc = am
    for (const change of changes) {
      try {
        doc = Automerge.applyChanges(doc, [change])[0]
      } catch (err) {
        log.warn({ docId, err: String(err) }, 'change content rejected by Automerge')
      }
    }
    return doc
  }
}

/**
 * The Automerge document of a snapshot and a tail: one Automerge call, change by change only if that fails.
 * `actor`: the actor id of the copy, for one that never makes a change (a materialise worker's); a copy that
 * may be changed gets a random one (drawn from the system's random source on every load).
 */
export function buildAm (snapshot: Uint8Array, tail: Uint8Array[], log: Logger, docId: DocId, actor?: string): Automerge.Doc<DocData> {
  if (snapshot.length + tail.length > 0) {
    try {
      return Automerge.load<DocData>(tail.length === 0 ? snapshot : Buffer.concat([snapshot, ...tail]), actor)
    } catch {
      // some part is unreadable: the snapshot alone (Automerge wrote it), then the tail change by change
    }
  }
  let base = Automerge.init<DocData>(actor)
  if (snapshot.length > 0) {
    try {
      base = Automerge.load<DocData>(snapshot, actor)
    } catch (err) {
      log.error({ docId, err: String(err) }, 'document snapshot unreadable')
    }
  }
  return applyAll(base, tail, log, docId)
}

/** The state's Automerge document, built on first use and kept on the state. */
export function loadAm (state: DocState, log: Logger, docId: DocId): Automerge.Doc<DocData> {
  state.am ??= buildAm(state.snapshot, state.tail, log, docId)
  return state.am
}

/**
 * The document's content for a reader: the loaded Automerge document, else a fresh copy of the content text
 * the materialiser kept (no Automerge load), else the Automerge document loaded now.
 */
export function dataOf (state: DocState, log: Logger, docId: DocId): DocData {
  if (state.am !== undefined) return state.am
  if (state.json !== undefined) return decodeData(state.json)
  return loadAm(state, log, docId)
}

/** A copy the materialiser may change without changing what readers of the original see. */
export function copyState (state: DocState | undefined): DocState | undefined {
  if (state === undefined) return undefined
  return {
    meta: { ...state.meta, heads: [...state.meta.heads] }, feedSeq: state.feedSeq, snapshot: state.snapshot, tail: [...state.tail], am: state.am, json: state.json
  }
}

/** Bytes of the tail's changes. */
function tailBytes (state: DocState): number {
  let bytes = 0
  for (const c of state.tail) bytes += c.length
  return bytes
}

/** Bytes an Automerge load of the state reads (snapshot and tail). */
export function stateBytes (state: DocState): number {
  return state.snapshot.length + tailBytes(state)
}

/** True when the tail has grown enough that saving a snapshot pays (the snapshot-cache rule). */
export function snapshotDue (state: DocState): boolean {
  if (state.tail.length >= MATERIALISE_SNAPSHOT_AFTER_CHANGES) return true
  const bytes = tailBytes(state)
  return bytes >= MATERIALISE_SNAPSHOT_AFTER_BYTES && bytes > state.snapshot.length
}

/** Replaces snapshot + tail by one saved snapshot. */
export function compact (state: DocState, log: Logger, docId: DocId): void {
  state.snapshot = Automerge.save(loadAm(state, log, docId))
  state.tail = []
}

export interface DocCacheComponents {
  /** The database's state, where `doc!<docId>` records live. */
  state: KV
  keyring: KeyRing
  /** The key records are sealed with (the tenant's own). */
  sealKeyId: string
}

/**
 * The states of documents: read from `doc!<docId>` and unsealed on first use, then kept, least recently used
 * out first, up to `MATERIALISE_CACHE_DOCS`.
 */
export class DocCache {
  readonly #states = new Map<DocId, DocState>()
  readonly #c: DocCacheComponents
  readonly #syncReads: boolean

  constructor (components: DocCacheComponents) {
    this.#c = components
    this.#syncReads = (components.state.supports as { getSync?: boolean }).getSync === true
  }

  /** The document's state, or undefined when it was never materialised. */
  async load (docId: DocId): Promise<DocState | undefined> {
    const cached = this.#states.get(docId)
    if (cached !== undefined) return cached
    const sealed = await this.read('doc!' + docId)
    if (sealed === undefined) return undefined
    const state = this.unseal(sealed)
    this.set(docId, state)
    return state
  }

  /**
   * The sealed records of the documents not cached now (those never materialised left out), read with one batched
   * read: for a walk of the changefeed, a chunk at a time. `unseal` opens one when it is needed.
   */
  async recordsOf (docIds: DocId[]): Promise<Map<DocId, Uint8Array>> {
    const missing = docIds.filter((docId) => !this.#states.has(docId))
    const out = new Map<DocId, Uint8Array>()
    if (missing.length === 0) return out
    const sealed = await this.#c.state.getMany(missing.map((docId) => 'doc!' + docId))
    missing.forEach((docId, i) => {
      const record = sealed[i]
      if (record !== undefined) out.set(docId, record)
    })
    return out
  }

  unseal (record: Uint8Array): DocState {
    return unsealState(this.#c.keyring, this.#c.sealKeyId, record)
  }

  /** The record to write for a state. */
  seal (state: DocState): Uint8Array {
    return sealState(this.#c.keyring, this.#c.sealKeyId, state)
  }

  /**
   * A point read of the state: in-thread where the backend can (classic-level: memtable, block cache and bloom
   * filters answer most reads without I/O), which is much cheaper than a trip through the thread pool.
   */
  async read (key: string): Promise<Uint8Array | undefined> {
    return this.#syncReads ? this.#c.state.getSync(key) : await this.#c.state.get(key)
  }

  /** The cached state, if any, without making it the most recently used. */
  peek (docId: DocId): DocState | undefined {
    return this.#states.get(docId)
  }

  set (docId: DocId, state: DocState): void {
    this.#states.delete(docId)
    this.#states.set(docId, state)
    if (this.#states.size > MATERIALISE_CACHE_DOCS) this.#states.delete(this.#states.keys().next().value as DocId)
  }

  delete (docId: DocId): void {
    this.#states.delete(docId)
  }

  clear (): void {
    this.#states.clear()
  }
}
