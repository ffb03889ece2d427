import * as Automerge from '@automerge/automerge'
import type { AbstractLevel } from 'abstract-level'
import { verifySignature, type Signer } from '../crypto/index.js'
import { verifySignatures } from '../crypto/verify-pool.js'
import {
  ChangeNotFoundError, ClosedError, DecryptionError, DocumentDeletedError, DocumentNotFoundError,
  InvalidArgumentError, InvalidSignatureError, KeyMismatchError, KeyNotFoundError, MalformedChangeError, NotCreatorError,
  UntrustedAuthorError, throwIfAborted
} from '../errors.js'
import type { ChangeRejectedError } from '../errors.js'
import {
  docCreatedBy, docKeyMatches, isChangeHash, isCreation, isDocId, isValidId, newDocId, payloadAad, signChange,
  type ChangeHash, type ChangeHeader, type DocId, type StoreChange
} from '../store/change.js'
import type { AbortOptions, AppendOnlyStore, ChangeVerifier, SequencedChange } from '../store/types.js'
import { silentLogger, type Logger } from '../util/logger.js'
import { Mutex } from '../util/mutex.js'
import { MindooDoc, type DocData, type DocMeta } from './doc.js'
import type { KeyRing } from './keyring.js'

/** A key-value store with string keys and binary values (a LevelDB sublevel). */
export type KV = AbstractLevel<any, string, Uint8Array> // eslint-disable-line @typescript-eslint/no-explicit-any

/** Where `iterateChangesSince` resumes: null for the beginning, or a cursor it yielded. JSON-serialisable. */
export interface ProcessChangesCursor {
  /** Position in this replica's changefeed. */
  readonly seq: number
  /** The document yielded at that position (informational). */
  readonly docId?: DocId
}

/** What a tenant tells partners out of band so their databases can trust its authors. */
export interface TenantPublicInfo {
  tenantId: string
  /** base64url of the raw 32-byte Ed25519 public key its changes are signed with. */
  signingPublicKey: string
}

export interface CreateDocumentOptions {
  /** Key that encrypts the document's changes. Default: the database's default key. */
  keyId?: string
}

export interface OpenDBOptions {
  /**
   * Key new documents are encrypted with when createDocument gets none; persisted with the database.
   * Default: what was set before, else the tenant's own key.
   */
  defaultKeyId?: string
}

/** What one call of the materialiser did. */
export interface MaterialiseResult {
  /** Changes applied to documents. */
  applied: number
  /** Documents whose state changed. */
  documents: DocId[]
  /**
   * Stored changes the materialiser refused to apply, with the reason code (they stay stored, are never applied,
   * and changes depending on them never apply either): a change whose dependencies belong to another document,
   * or a change whose key differs from its document's.
   */
  rejected: Array<{ hash: ChangeHash, code: string }>
}

/** The parts of its tenant a database uses. */
export interface TenantContext {
  tenantId: string
  signer: Signer
  keyring: KeyRing
  /** Key id of the tenant's own key (`tenant:<tenantId>`), which also seals local snapshots. */
  localKeyId: string
}

export interface MindooDBComponents {
  store: AppendOnlyStore
  /** The database's own state (documents, changefeed, trust), beside the store. */
  state: KV
  tenant: TenantContext
  logger?: Logger
}

export interface MindooDBInit {
  name: string
  defaultKeyId?: string
}

/**
 * Listener for documents whose materialised state changed: `docIds`, and `applied`, the changes applied to them
 * in that batch (their documents are materialised with them when the listener runs).
 */
export type DocumentsChangedListener = (event: DocumentsChangedEvent) => void

export interface DocumentsChangedEvent {
  docIds: DocId[]
  applied: Array<{ hash: ChangeHash, docId: DocId, time: number }>
  /**
   * The changefeed position once this batch was written: every document changed at or before it has had its
   * event. An index of the documents that records it resumes from there (`iterateChangesSince({ seq })`).
   */
  feedSeq?: number
}

const CHUNK = 256
const FLUSH_OPS = 4000
const CACHE_MAX = 512
const SNAPSHOT_VERSION = 1
/** Most recent appends kept for the next catch-up. */
const RECENT_MAX = 20_000

interface DocState {
  am: Automerge.Doc<DocData>
  meta: DocMeta
  /** Position in the changefeed (0 before the first flush). */
  feedSeq: number
  /** Bytes Automerge.load turns into `am` when known without saving (a new document's only change). */
  raw?: Uint8Array
}

interface Meta {
  appliedSeq: number
  feedSeq: number
}

type Op = { type: 'put', key: string, value: Uint8Array } | { type: 'del', key: string }

const EMPTY = new Uint8Array(0)
const enc = new TextEncoder()
const dec = new TextDecoder()
const pad = (n: number): string => n.toString(16).padStart(13, '0')
const validateHashes = (hashes: unknown): ChangeHash[] => {
  if (!Array.isArray(hashes) || !hashes.every(isChangeHash)) {
    throw new InvalidArgumentError('hashes must be an array of 64-character hex change hashes')
  }
  return hashes
}

/**
 * One work unit of the materialiser: collects the LevelDB operations and the document states it touches,
 * and is flushed as one atomic batch together with the new `appliedSeq`.
 */
class Batch {
  readonly ops: Op[] = []
  readonly dirty = new Map<DocId, DocState>()
  /** Changes applied in this batch, with their document and time (for the documents-changed event). */
  readonly applied = new Map<ChangeHash, { docId: DocId, time: number }>()
  readonly rejected: Array<{ hash: ChangeHash, code: string }> = []
  /** Changes waiting for a dependency, registered in this batch: dep -> waiting hashes. */
  readonly waiting = new Map<ChangeHash, ChangeHash[]>()
  appliedCount = 0
}

/**
 * A MindooDB database of one tenant: documents as Automerge CRDTs, every change signed by its author,
 * encrypted under the document's key and kept in an append-only store.
 *
 * Changes enter the store either locally (`createDocument`, `changeDoc`, `deleteDocument`) or from outside
 * (`getStore().append(...)` during sync). The materialiser applies stored changes to documents in arrival order:
 * a change waits, stored, until its key is known and its dependencies are applied. Its progress (`appliedSeq`)
 * is written in the same atomic batch as the document states it produced, so a crash never leaves a document
 * ahead of or behind the recorded progress; on open it simply resumes.
 *
 * Write rights (every path into the database: local writes, `append`, `appendMany`, sync): the verifier accepts
 * a change only if its author is trusted, its signature verifies, its key is the one its document id commits to
 * (else KEY_MISMATCH), and, when it creates a document, its author is the creator the id names (else
 * NOT_CREATOR). Payloads are authenticated with their header (kind, docId, keyId, author) as associated data, so
 * only a holder of the document's key can write or delete it.
 *
 * Changes that arrive before the creation (or any other change) they depend on are verified like any other
 * (everything the verifier needs is in the change itself), stored, and wait unapplied until their dependencies
 * are applied; a change whose dependencies never arrive stays stored and invisible.
 *
 * Invariants:
 * 1. A change is applied to its document at most once (the `ap!` set), and only after all its deps, which must
 *    be changes of the same document (else the change is rejected, invariant 4).
 * 2. Every materialised document has exactly one changefeed entry, at the position of its latest change.
 * 3. Documents whose key this tenant lacks are never materialised, so never appear in reads or the changefeed.
 * 4. A document's state only ever contains changes under its own key, the first of them its creation.
 */
export class MindooDB {
  readonly #name: string
  readonly #store: AppendOnlyStore
  readonly #state: KV
  readonly #tenant: TenantContext
  readonly #log: Logger
  readonly #mutex = new Mutex()
  readonly #cache = new Map<DocId, DocState>()
  readonly #trusted = new Map<string, string>()
  readonly #listeners = new Set<DocumentsChangedListener>()
  /** Key of new documents: `init.defaultKeyId` until set (and persisted) by setDefaultKeyId. */
  #defaultKeyId: string
  #meta: Meta = { appliedSeq: 0, feedSeq: 0 }
  /** False while no change is known to wait for a dependency on disk (then no waiter lookups are needed). */
  #waitersOnDisk = true
  readonly #syncReads: boolean
  /** Changes appended since the last catch-up, by seq, so it need not read back what was just written. */
  #recent = new Map<number, StoreChange>()
  #offAppend: (() => void) | undefined
  #open = false
  #closed = false

  constructor (components: MindooDBComponents, init: MindooDBInit) {
    this.#name = init.name
    this.#store = components.store
    this.#state = components.state
    this.#tenant = components.tenant
    this.#log = (components.logger ?? silentLogger).child({ db: init.name })
    this.#defaultKeyId = init.defaultKeyId ?? components.tenant.localKeyId
    this.#syncReads = (this.#state.supports as { getSync?: boolean }).getSync === true
  }

  /** Loads trust and progress, installs the verifier on the store, and catches up with stored changes. */
  async open (): Promise<void> {
    if (this.#open) return
    const meta = await this.#state.get('meta')
    if (meta !== undefined) this.#meta = JSON.parse(dec.decode(meta))
    const settings = await this.#state.get('settings')
    if (settings !== undefined) this.#defaultKeyId = JSON.parse(dec.decode(settings)).defaultKeyId ?? this.#defaultKeyId
    for await (const [key, value] of this.#state.iterator({ gt: 'trust!', lt: 'trust!~' })) {
      this.#trusted.set(key.slice('trust!'.length), dec.decode(value))
    }
    this.#trusted.set(this.#tenant.signer.publicKey, this.#tenant.tenantId)
    this.#store.setVerifier(this.#verifier)
    this.#waitersOnDisk = await this.#hasWaiters()
    this.#offAppend = this.#store.onAppend(({ changes }) => {
      if (this.#recent.size + changes.length > RECENT_MAX) {
        this.#recent.clear() // a catch-up far behind reads from the store instead
        return
      }
      for (const { seq, change } of changes) this.#recent.set(seq, change)
    })
    this.#open = true
    await this.#mutex.run(async () => { await this.#catchUp() })
  }

  getName (): string {
    return this.#name
  }

  /** Changes stored but not yet taken up by the materialiser (0 when documents are up to date with the store). */
  getMaterialiseBacklog (): number {
    return Math.max(0, this.#store.getLastSeq() - this.#meta.appliedSeq)
  }

  /** The changefeed's last position (0 when empty): `iterateChangesSince` yields nothing after it. */
  getChangefeedPosition (): number {
    return this.#meta.feedSeq
  }

  /** The database's append-only store of signed, encrypted changes. */
  getStore (): AppendOnlyStore {
    return this.#store
  }

  getDefaultKeyId (): string {
    return this.#defaultKeyId
  }

  /** Sets (and persists) the key new documents are encrypted with when createDocument names none. */
  async setDefaultKeyId (keyId: string): Promise<void> {
    this.#checkOpen()
    if (!isValidId(keyId)) throw new InvalidArgumentError('invalid keyId')
    if (keyId === this.#defaultKeyId) return
    await this.#state.put('settings', enc.encode(JSON.stringify({ defaultKeyId: keyId })))
    this.#defaultKeyId = keyId
  }

  // ------------------------------------------------------------------ trust

  /** Accept changes signed by this partner tenant's authors (persisted). */
  async trustPartner (info: TenantPublicInfo): Promise<void> {
    this.#checkOpen()
    if (info == null || !isValidId(info.tenantId) || typeof info.signingPublicKey !== 'string' ||
        Buffer.from(info.signingPublicKey, 'base64url').length !== 32) {
      throw new InvalidArgumentError('info must be { tenantId, signingPublicKey } of a tenant')
    }
    await this.#state.put('trust!' + info.signingPublicKey, enc.encode(info.tenantId))
    this.#trusted.set(info.signingPublicKey, info.tenantId)
  }

  /** Stop accepting new changes from this partner's authors. Changes already stored stay. */
  async untrustPartner (signingPublicKey: string): Promise<void> {
    this.#checkOpen()
    if (signingPublicKey === this.#tenant.signer.publicKey) throw new InvalidArgumentError('cannot untrust the own tenant')
    await this.#state.del('trust!' + signingPublicKey)
    this.#trusted.delete(signingPublicKey)
  }

  /** The trusted authors: signing key -> tenant id (the own tenant included). */
  getTrustedAuthors (): Map<string, string> {
    return new Map(this.#trusted)
  }

  readonly #verifier: ChangeVerifier = {
    verify: (change: StoreChange, signedPart: Uint8Array): void => {
      const verdict = this.#checkRights(change)
      if (verdict !== undefined) throw verdict
      if (!verifySignature(change.author, signedPart, change.signature)) throw this.#badSignature(change)
    },
    verifyMany: async (items) => {
      const verdicts: Array<ChangeRejectedError | undefined> = items.map(({ change }) => this.#checkRights(change))
      const trusted = items.filter((_, i) => verdicts[i] === undefined)
      const ok = await verifySignatures(trusted.map(({ change, signedPart }) => ({ publicKey: change.author, data: signedPart, signature: change.signature })))
      let k = 0
      items.forEach((item, i) => {
        if (verdicts[i] === undefined && !ok[k++]) verdicts[i] = this.#badSignature(item.change)
      })
      return verdicts
    }
  }

  /**
   * The checks that need no signature work, from the change alone: a trusted author, a version-2 document id,
   * the document's key, the creator for a creation, and a tombstone that follows something.
   */
  #checkRights (change: StoreChange): ChangeRejectedError | undefined {
    if (!this.#trusted.has(change.author)) return this.#untrusted(change)
    if (!isDocId(change.docId)) return new MalformedChangeError(`document id ${change.docId} is not a self-certifying id`)
    if (!docKeyMatches(change.docId, change.keyId)) {
      return new KeyMismatchError(`change ${change.hash} is under key ${change.keyId}, not its document's key`)
    }
    if (isCreation(change) && !docCreatedBy(change.docId, change.author)) {
      return new NotCreatorError(`change ${change.hash} creates document ${change.docId} but its author did not create it`)
    }
    if (change.kind === 'delete' && change.deps.length === 0) {
      return new MalformedChangeError(`tombstone ${change.hash} follows no change of its document`)
    }
    return undefined
  }

  #untrusted (change: StoreChange): UntrustedAuthorError {
    return new UntrustedAuthorError(`author ${change.author} is not trusted by database ${this.#name}`)
  }

  #badSignature (change: StoreChange): InvalidSignatureError {
    return new InvalidSignatureError(`signature of change ${change.hash} does not verify`)
  }

  // ------------------------------------------------------------------ documents

  /** Creates a new, empty document (one signed change), encrypted under `keyId` or the default key. */
  async createDocument (options: CreateDocumentOptions = {}): Promise<MindooDoc> {
    this.#checkOpen()
    const keyId = options.keyId ?? this.#defaultKeyId
    if (!isValidId(keyId)) throw new InvalidArgumentError('invalid keyId')
    if (!this.#tenant.keyring.has(keyId)) throw new KeyNotFoundError(`this tenant has no key ${keyId}`)
    const docId = newDocId(this.#tenant.signer.publicKey, keyId)
    return await this.#mutex.run(async () => {
      const am = Automerge.emptyChange(Automerge.init<DocData>())
      await this.#commitLocal('change', docId, keyId, [], Automerge.getLastLocalChange(am) ?? EMPTY, am)
      return this.#toDoc(docId, await this.#requireState(docId))
    })
  }

  /**
   * Changes a document: `fn` receives a MindooDoc whose `getData()` is the mutable Automerge proxy.
   * Produces one signed, encrypted change (none if `fn` changed nothing).
   */
  async changeDoc (doc: MindooDoc | DocId, fn: (doc: MindooDoc) => void, options: AbortOptions = {}): Promise<MindooDoc> {
    this.#checkOpen()
    if (typeof fn !== 'function') throw new TypeError('fn must be a function')
    const docId = this.#docIdOf(doc)
    return await this.#mutex.run(async () => {
      throwIfAborted(options.signal)
      await this.#catchUp()
      const state = await this.#requireState(docId)
      if (state.meta.deleted) throw new DocumentDeletedError(`document ${docId} is deleted`)
      const before = Automerge.getHeads(state.am).join()
      let am: Automerge.Doc<DocData>
      try {
        am = Automerge.change(state.am, (proxy) => { fn(new MindooDoc(docId, proxy, state.meta)) })
      } catch (err) {
        this.#cache.delete(docId) // Automerge may have left the cached doc outdated
        throw err
      }
      if (Automerge.getHeads(am).join() === before) {
        state.am = am
        return this.#toDoc(docId, state)
      }
      this.#cache.delete(docId) // the cached doc is outdated now; the commit below puts the new one in
      await this.#commitLocal('change', docId, state.meta.keyId, state.meta.heads, Automerge.getLastLocalChange(am) as Uint8Array, am)
      return this.#toDoc(docId, await this.#requireState(docId))
    })
  }

  /** The document at its current state; a deleted document comes back as a tombstone (`isDeleted()`). */
  async getDocument (docId: DocId): Promise<MindooDoc> {
    this.#checkOpen()
    if (!isValidId(docId)) throw new InvalidArgumentError('invalid docId')
    await this.#catchUpIfBehind()
    return this.#toDoc(docId, await this.#requireState(docId))
  }

  /** Deletes a document: a signed tombstone change that every replica applies. */
  async deleteDocument (doc: MindooDoc | DocId): Promise<void> {
    this.#checkOpen()
    const docId = this.#docIdOf(doc)
    await this.#mutex.run(async () => {
      await this.#catchUp()
      const state = await this.#requireState(docId)
      if (state.meta.deleted) return
      await this.#commitLocal('delete', docId, state.meta.keyId, state.meta.heads, EMPTY, undefined)
    })
  }

  /** Ids of all documents this replica can read (tombstones included), in no particular order. */
  async getAllDocumentIds (): Promise<DocId[]> {
    this.#checkOpen()
    await this.#catchUpIfBehind()
    const ids: DocId[] = []
    for await (const key of this.#state.keys({ gt: 'doc!', lt: 'doc!~' })) ids.push(key.slice(4))
    return ids
  }

  /**
   * Applies changes that were appended to the store from outside (sync) to their documents. Changes whose
   * key is unknown or whose dependencies are missing stay stored and are applied once those arrive.
   * Every hash must be in the store.
   */
  async syncStoreChanges (hashes: readonly ChangeHash[], options: AbortOptions = {}): Promise<MaterialiseResult> {
    this.#checkOpen()
    validateHashes(hashes)
    for (const hash of hashes) {
      if (!await this.#store.has(hash)) throw new ChangeNotFoundError(`change ${hash} is not in the store`)
    }
    return await this.#mutex.run(async () => await this.#catchUp(options))
  }

  /**
   * Each document changed after `cursor`, once, at its latest state, in the order this replica committed
   * the changes. Resume from any yielded cursor: no duplicates, no gaps, also after a restart. Deleted
   * documents come out as tombstones; documents this tenant cannot decrypt never come out. Streams: holds
   * one chunk of positions at a time.
   */
  async * iterateChangesSince (cursor: ProcessChangesCursor | null, options: AbortOptions = {}): AsyncGenerator<{ doc: MindooDoc, cursor: ProcessChangesCursor }> {
    this.#checkOpen()
    if (cursor !== null && (typeof cursor !== 'object' || !Number.isSafeInteger(cursor.seq) || cursor.seq < 0)) {
      throw new InvalidArgumentError('cursor must be null or a cursor yielded by iterateChangesSince')
    }
    await this.#catchUpIfBehind()
    let after = cursor?.seq ?? 0
    while (true) {
      throwIfAborted(options.signal)
      const entries = await this.#state.iterator({ gt: 'feed!' + pad(after), lt: 'feed!~', limit: CHUNK }).all()
      for (const [key, value] of entries) {
        const seq = parseInt(key.slice(5), 16)
        const docId = dec.decode(value)
        const state = await this.#loadState(docId)
        after = seq
        if (state === undefined) continue
        yield { doc: this.#toDoc(docId, state), cursor: { seq, docId } }
      }
      if (entries.length < CHUNK) return
    }
  }

  /** Registers a listener for documents whose state changed; returns a function that removes it. */
  onDocumentsChanged (listener: DocumentsChangedListener): () => void {
    this.#listeners.add(listener)
    return () => { this.#listeners.delete(listener) }
  }

  /** Called by the tenant when key material was added: applies changes that waited for it. */
  async keyAdded (keyId: string): Promise<void> {
    if (!this.#open || this.#closed) return
    await this.#mutex.run(async () => {
      const prefix = `pk!${keyId}!`
      const hashes = await this.#state.keys({ gt: prefix, lt: prefix + '~' }).all()
      if (hashes.length === 0) return
      const batch = new Batch()
      for (const key of hashes) {
        batch.ops.push({ type: 'del', key })
        const [change] = await this.#store.getChanges([key.slice(prefix.length)])
        await this.#applyWithWaiters(batch, change)
        if (batch.ops.length >= FLUSH_OPS) await this.#flush(batch, this.#meta.appliedSeq)
      }
      await this.#flush(batch, this.#meta.appliedSeq)
    })
  }

  /** Finishes the work in flight and stops; the store and state are closed by their owner. */
  async close (): Promise<void> {
    if (this.#closed) return
    await this.#mutex.run(async () => { this.#closed = true })
    this.#store.setVerifier(undefined)
    this.#offAppend?.()
    this.#recent.clear()
    this.#cache.clear()
    this.#listeners.clear()
  }

  // ------------------------------------------------------------------ internals

  #checkOpen (): void {
    if (this.#closed) throw new ClosedError(`database ${this.#name} is closed`)
    if (!this.#open) throw new ClosedError(`database ${this.#name} is not open`)
  }

  #docIdOf (doc: MindooDoc | DocId): DocId {
    const docId = doc instanceof MindooDoc ? doc.getId() : doc
    if (!isValidId(docId)) throw new InvalidArgumentError('invalid document or docId')
    return docId
  }

  #toDoc (docId: DocId, state: DocState): MindooDoc {
    return new MindooDoc(docId, state.am, { ...state.meta, heads: [...state.meta.heads] })
  }

  async #requireState (docId: DocId): Promise<DocState> {
    const state = await this.#loadState(docId)
    if (state === undefined) throw new DocumentNotFoundError(`no document ${docId} in database ${this.#name}`)
    return state
  }

  /** Signs, encrypts and stores a local change, then materialises it (reusing the already-changed `am`). */
  async #commitLocal (kind: 'change' | 'delete', docId: DocId, keyId: string, heads: readonly ChangeHash[],
    amChange: Uint8Array, am: Automerge.Doc<DocData> | undefined): Promise<void> {
    const header: ChangeHeader = {
      kind, docId, keyId, deps: [...heads].sort(), author: this.#tenant.signer.publicKey, time: Date.now()
    }
    const payload = this.#tenant.keyring.encrypt(keyId, amChange, payloadAad(header))
    const change = signChange(header, payload, (signed) => this.#tenant.signer.sign(signed))
    await this.#store.append(change)
    await this.#catchUp({}, am === undefined ? undefined : { hash: change.hash, am })
  }

  async #catchUpIfBehind (): Promise<void> {
    if (this.#store.getLastSeq() > this.#meta.appliedSeq) {
      await this.#mutex.run(async () => { await this.#catchUp() })
    }
  }

  /**
   * Applies every stored change after `appliedSeq` (must run under the mutex). `local` is a change just made
   * here, whose resulting document is already known and is used instead of applying the change again.
   */
  async #catchUp (options: AbortOptions = {}, local?: { hash: ChangeHash, am: Automerge.Doc<DocData> }): Promise<MaterialiseResult> {
    if (this.#closed) throw new ClosedError(`database ${this.#name} is closed`)
    const result: MaterialiseResult = { applied: 0, documents: [], rejected: [] }
    let batch = new Batch()
    let seq = this.#meta.appliedSeq
    try {
      for await (const entry of this.#pending(options)) {
        await this.#applyWithWaiters(batch, entry.change, local)
        seq = entry.seq
        if (batch.ops.length >= FLUSH_OPS || batch.dirty.size >= CACHE_MAX) {
          this.#collect(result, await this.#flush(batch, seq))
          batch = new Batch()
        }
      }
      this.#collect(result, await this.#flush(batch, seq))
    } catch (err) {
      // states in the cache may hold work that was not written: forget them, the disk is the truth
      this.#cache.clear()
      throw err
    }
    return result
  }

  /** Stored changes after appliedSeq, in arrival order: from the recent appends while they are contiguous. */
  async * #pending (options: AbortOptions): AsyncGenerator<SequencedChange> {
    let seq = this.#meta.appliedSeq
    const last = this.#store.getLastSeq()
    while (seq < last) {
      const change = this.#recent.get(seq + 1)
      if (change === undefined) break
      this.#recent.delete(++seq)
      yield { seq, change }
    }
    for (const key of this.#recent.keys()) if (key <= seq) this.#recent.delete(key)
    if (seq < last) yield * this.#store.iterateSince(seq, options)
  }

  #collect (result: MaterialiseResult, batch: Batch): void {
    result.applied += batch.appliedCount
    result.documents.push(...batch.dirty.keys())
    result.rejected.push(...batch.rejected)
  }

  /** Applies a change, then every change that was waiting for it (transitively). */
  async #applyWithWaiters (batch: Batch, change: StoreChange, local?: { hash: ChangeHash, am: Automerge.Doc<DocData> }): Promise<void> {
    const queue = [change]
    while (queue.length > 0) {
      const next = queue.shift() as StoreChange
      if (!await this.#apply(batch, next, local)) continue
      const prefix = `wd!${next.hash}!`
      const waiting = batch.waiting.get(next.hash) ?? []
      batch.waiting.delete(next.hash)
      for (const hash of waiting) batch.ops.push({ type: 'del', key: prefix + hash })
      // the common case, nothing waiting anywhere, costs no lookup
      const stored = this.#waitersOnDisk ? await this.#state.keys({ gt: prefix, lt: prefix + '~' }).all() : []
      for (const key of stored) {
        batch.ops.push({ type: 'del', key })
        waiting.push(key.slice(prefix.length))
      }
      if (waiting.length > 0) queue.push(...await this.#store.getChanges(waiting))
    }
  }

  /** The document an applied change belongs to, or undefined when the change is not applied. */
  async #appliedTo (batch: Batch, hash: ChangeHash): Promise<DocId | undefined> {
    const docId = batch.applied.get(hash)?.docId
    if (docId !== undefined) return docId
    const value = await this.#read('ap!' + hash)
    return value === undefined ? undefined : dec.decode(value)
  }

  /** Refuses a stored change for good (invariant 4): it is never applied, and is reported once. */
  #refuse (batch: Batch, change: StoreChange, code: string, why: string): false {
    batch.ops.push({ type: 'put', key: 'rj!' + change.hash, value: enc.encode(code) })
    batch.rejected.push({ hash: change.hash, code })
    this.#log.warn({ hash: change.hash, docId: change.docId, code }, why)
    return false
  }

  /**
   * A point read of the state: in-thread where the backend can (classic-level: memtable, block cache and bloom
   * filters answer most reads without I/O), which is much cheaper than a trip through the thread pool.
   */
  async #read (key: string): Promise<Uint8Array | undefined> {
    return this.#syncReads ? this.#state.getSync(key) : await this.#state.get(key)
  }

  async #hasWaiters (): Promise<boolean> {
    return (await this.#state.keys({ gt: 'wd!', lt: 'wd!~', limit: 1 }).all()).length > 0
  }

  /** Applies one change to its document if it can be (invariant 1); returns whether it was applied now. */
  async #apply (batch: Batch, change: StoreChange, local?: { hash: ChangeHash, am: Automerge.Doc<DocData> }): Promise<boolean> {
    if (await this.#appliedTo(batch, change.hash) !== undefined) return false
    if (!this.#tenant.keyring.has(change.keyId)) {
      batch.ops.push({ type: 'put', key: `pk!${change.keyId}!${change.hash}`, value: EMPTY })
      return false
    }
    const missing: ChangeHash[] = []
    for (const dep of change.deps) {
      const depDoc = await this.#appliedTo(batch, dep)
      if (depDoc === undefined) missing.push(dep)
      else if (depDoc !== change.docId) return this.#refuse(batch, change, MalformedChangeError.code, 'change depends on a change of another document')
    }
    for (const dep of missing) {
      this.#waitersOnDisk = true
      batch.ops.push({ type: 'put', key: `wd!${dep}!${change.hash}`, value: EMPTY })
      const list = batch.waiting.get(dep) ?? []
      list.push(change.hash)
      batch.waiting.set(dep, list)
    }
    if (missing.length > 0) return false
    const existing = batch.dirty.get(change.docId) ?? await this.#loadState(change.docId)
    // the verifier checked the key against the id and the creator of a creation; this keeps the state whole
    // (invariant 4) also for changes stored before those checks, or by a store without the verifier
    if (existing === undefined && !isCreation(change)) {
      return this.#refuse(batch, change, MalformedChangeError.code, 'change of a document that was never created')
    }
    if (existing !== undefined && existing.meta.keyId !== change.keyId) {
      return this.#refuse(batch, change, KeyMismatchError.code, 'change under another key than its document')
    }
    let plaintext: Uint8Array
    try {
      plaintext = local?.hash === change.hash ? EMPTY : this.#tenant.keyring.decrypt(change.keyId, change.payload, payloadAad(change))
    } catch (err) {
      if (!(err instanceof DecryptionError)) throw err
      // a key version this tenant does not have yet: wait for it like for an unknown key (a payload that no
      // version will ever decrypt, e.g. lifted from another header, waits for good and is never applied)
      batch.ops.push({ type: 'put', key: `pk!${change.keyId}!${change.hash}`, value: EMPTY })
      return false
    }
    const state = existing ?? {
      am: Automerge.init<DocData>(),
      meta: { keyId: change.keyId, deleted: false, heads: [], createdAt: change.time, modifiedAt: change.time },
      feedSeq: 0
    }
    state.raw = undefined
    if (change.kind === 'delete') {
      state.meta.deleted = true
    } else if (local?.hash === change.hash) {
      state.am = local.am
    } else {
      try {
        if (existing === undefined && change.deps.length === 0) {
          // a new document: its one change loads as a document, and is its own snapshot (no save needed)
          state.am = Automerge.load<DocData>(plaintext)
          state.raw = plaintext
        } else {
          state.am = Automerge.applyChanges(state.am, [plaintext])[0]
        }
      } catch (err) {
        // a trusted author sent bytes Automerge cannot read: keep the change stored, skip its content
        this.#log.warn({ hash: change.hash, docId: change.docId, err: String(err) }, 'change content rejected by Automerge')
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

  /** Writes a batch and the new progress atomically (invariant 2), then updates the cache and notifies. */
  async #flush (batch: Batch, appliedSeq: number): Promise<Batch> {
    if (batch.ops.length === 0 && appliedSeq === this.#meta.appliedSeq) return batch
    let feedSeq = this.#meta.feedSeq
    const ops = batch.ops
    for (const [docId, state] of batch.dirty) {
      if (state.feedSeq > 0) ops.push({ type: 'del', key: 'feed!' + pad(state.feedSeq) })
      state.feedSeq = ++feedSeq
      ops.push({ type: 'put', key: 'feed!' + pad(feedSeq), value: enc.encode(docId) })
      ops.push({ type: 'put', key: 'doc!' + docId, value: this.#seal(state) })
    }
    const meta: Meta = { appliedSeq, feedSeq }
    ops.push({ type: 'put', key: 'meta', value: enc.encode(JSON.stringify(meta)) })
    await this.#state.batch(ops)
    this.#meta = meta
    if (this.#waitersOnDisk) this.#waitersOnDisk = await this.#hasWaiters()
    for (const [docId, state] of batch.dirty) this.#remember(docId, state)
    if (batch.dirty.size > 0) {
      const docIds = [...batch.dirty.keys()]
      const applied = [...batch.applied].map(([hash, { docId, time }]) => ({ hash, docId, time }))
      for (const listener of this.#listeners) {
        try {
          listener({ docIds, applied, feedSeq })
        } catch (err) {
          this.#log.error({ err: String(err) }, 'documents-changed listener failed')
        }
      }
    }
    return batch
  }

  #remember (docId: DocId, state: DocState): void {
    this.#cache.delete(docId)
    this.#cache.set(docId, state)
    if (this.#cache.size > CACHE_MAX) this.#cache.delete(this.#cache.keys().next().value as DocId)
  }

  async #loadState (docId: DocId): Promise<DocState | undefined> {
    const cached = this.#cache.get(docId)
    if (cached !== undefined) return cached
    const sealed = await this.#read('doc!' + docId)
    if (sealed === undefined) return undefined
    const state = this.#unseal(sealed)
    this.#remember(docId, state)
    return state
  }

  /** A document's state as stored locally: encrypted under the tenant's own key, never in the clear. */
  #seal (state: DocState): Uint8Array {
    const head = enc.encode(JSON.stringify({ v: SNAPSHOT_VERSION, meta: state.meta, feedSeq: state.feedSeq }))
    const body = state.raw ?? Automerge.save(state.am)
    const plain = Buffer.allocUnsafe(4 + head.length + body.length)
    plain.writeUInt32BE(head.length, 0)
    plain.set(head, 4)
    plain.set(body, 4 + head.length)
    return this.#tenant.keyring.encrypt(this.#tenant.localKeyId, plain)
  }

  #unseal (sealed: Uint8Array): DocState {
    const plain = Buffer.from(this.#tenant.keyring.decrypt(this.#tenant.localKeyId, sealed))
    const headLen = plain.readUInt32BE(0)
    const head = JSON.parse(plain.toString('utf8', 4, 4 + headLen)) as { meta: DocMeta, feedSeq: number }
    return { am: Automerge.load<DocData>(plain.subarray(4 + headLen)), meta: head.meta, feedSeq: head.feedSeq }
  }
}
