import * as Automerge from '@automerge/automerge'
import {
  ChangeNotFoundError, ClosedError, DecryptionError, DocumentDeletedError, DocumentNotFoundError, InvalidArgumentError,
  KeyNotFoundError, throwIfAborted
} from '../errors.js'
import {
  isChangeHash, isValidId, newDocId, payloadAad, signChange, type ChangeHash, type ChangeHeader, type DocId,
  type StoreChange
} from '../store/change.js'
import { AFTER_DOCS_KEPT } from '../limits.js'
import type { AbortOptions, AppendManyResult, AppendOnlyStore } from '../store/types.js'
import { silentLogger, type Logger } from '../util/logger.js'
import { changefeedStep, feedChunks } from './changefeed.js'
import { MindooDoc, type DocData } from './doc.js'
import { applyAll, buildAm, dataOf, DocCache, loadAm, type DocState } from './doc-state.js'
import { Materialiser, type MaterialiseQueueLimits, type MaterialiseStats } from './materialiser.js'
import { Trust } from './trust.js'
import type {
  DocumentsChangedListener, KV, MaterialiseResult, ProcessChangesCursor, TenantContext, TenantPublicInfo
} from './types.js'

export type {
  DocumentsChangedEvent, DocumentsChangedListener, KV, MaterialiseResult, ProcessChangesCursor, TenantContext, TenantPublicInfo
} from './types.js'
export type { MaterialiseQueueLimits, MaterialiseStats } from './materialiser.js'

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
  /** Bounds of the materialiser's in-memory queue. Default: MATERIALISE_QUEUE_MAX, MATERIALISE_QUEUE_MAX_BYTES. */
  materialiseQueue?: MaterialiseQueueLimits
}

const EMPTY = new Uint8Array(0)
const enc = new TextEncoder()
const dec = new TextDecoder()
const validateHashes = (hashes: unknown): ChangeHash[] => {
  if (!Array.isArray(hashes) || !hashes.every(isChangeHash)) {
    throw new InvalidArgumentError('hashes must be an array of 64-character hex change hashes')
  }
  return hashes
}

/**
 * A MindooDB database of one tenant: documents as Automerge CRDTs, every change signed by its author,
 * encrypted under the document's key and kept in an append-only store.
 *
 * A change's path: it enters the store either locally (`createDocument`, `changeDoc`, `deleteDocument`) or from
 * outside (`receiveChanges` during sync; `getStore().append(...)`/`appendMany` in the guide's patterns), always
 * through the verifier of trust.ts (trust, signature, write rights). Stored is safe. The materialiser
 * (materialiser.ts) then applies it to its document, in the background for received changes, batched per
 * document, into the document cache (doc-state.ts), and moves the document to the end of the changefeed
 * (changefeed.ts). A read waits only for what it needs: `getDocument` takes up that document's queued changes at
 * once; the changefeed yields the documents with nothing waiting at once and the others after the backlog present
 * when it is called; `getAllDocumentIds` waits for that backlog.
 *
 * A change waits, stored, until its key is known and its dependencies are applied; a change whose dependencies
 * never arrive stays stored and invisible. The materialiser's invariants (applied at most once, one changefeed
 * entry per document, unreadable documents never materialised, a document's state only under its own key,
 * progress atomic with the states) are listed and cited in materialiser.ts.
 */
export class MindooDB {
  readonly #name: string
  readonly #store: AppendOnlyStore
  readonly #state: KV
  readonly #tenant: TenantContext
  readonly #log: Logger
  readonly #trust: Trust
  readonly #cache: DocCache
  /**
   * The documents `dataAfter` built last, least recently used first: the stored state they start from (its
   * heads), the received changes applied on top, in order, and the Automerge document (freed when dropped).
   */
  readonly #after = new Map<DocId, { base: string, applied: ChangeHash[], am: Automerge.Doc<DocData> }>()
  readonly #mat: Materialiser
  /** Key of new documents: `init.defaultKeyId` until set (and persisted) by setDefaultKeyId. */
  #defaultKeyId: string
  #open = false
  #closed = false

  constructor (components: MindooDBComponents, init: MindooDBInit) {
    this.#name = init.name
    this.#store = components.store
    this.#state = components.state
    this.#tenant = components.tenant
    this.#log = (components.logger ?? silentLogger).child({ db: init.name })
    this.#defaultKeyId = init.defaultKeyId ?? components.tenant.localKeyId
    this.#trust = new Trust(init.name, components.state, { publicKey: components.tenant.signer.publicKey, tenantId: components.tenant.tenantId })
    this.#cache = new DocCache({ state: components.state, keyring: components.tenant.keyring, sealKeyId: components.tenant.localKeyId })
    this.#mat = new Materialiser({ store: components.store, state: components.state, tenant: components.tenant, cache: this.#cache, logger: this.#log }, { queue: init.materialiseQueue })
  }

  /**
   * Loads trust and progress and installs the verifier on the store. Stored changes not yet applied (after a
   * crash) are taken up in the background; reads wait for what they need.
   */
  async open (): Promise<void> {
    if (this.#open) return
    const settings = await this.#state.get('settings')
    if (settings !== undefined) this.#defaultKeyId = JSON.parse(dec.decode(settings)).defaultKeyId ?? this.#defaultKeyId
    await this.#trust.load()
    this.#store.setVerifier(this.#trust.verifier)
    await this.#mat.open()
    this.#open = true
    this.#mat.kick()
  }

  getName (): string {
    return this.#name
  }

  /** Changes stored but not yet taken up by the materialiser (0 when documents are up to date with the store). */
  getMaterialiseBacklog (): number {
    return this.#mat.backlog()
  }

  /** The materialiser's counters: backlog, changes applied and snapshots saved since open. */
  getMaterialiseStats (): MaterialiseStats {
    return this.#mat.stats()
  }

  /** The changefeed's last position (0 when empty): `iterateChangesSince` yields nothing after it. */
  getChangefeedPosition (): number {
    return this.#mat.feedPosition()
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
    await this.#trust.trustPartner(info)
  }

  /** Stop accepting new changes from this partner's authors. Changes already stored stay. */
  async untrustPartner (signingPublicKey: string): Promise<void> {
    this.#checkOpen()
    await this.#trust.untrustPartner(signingPublicKey)
  }

  /** The trusted authors: signing key -> tenant id (the own tenant included). */
  getTrustedAuthors (): Map<string, string> {
    return this.#trust.authors()
  }

  // ------------------------------------------------------------------ receiving

  /**
   * Receives changes from outside (sync): verifies each (trust, signature, write rights; on every core) and
   * stores those that pass in one atomic batch, exactly as `getStore().appendMany`. Resolves once they are
   * stored; applying them to their documents happens in the background (`whenMaterialised` waits for it, and
   * reads wait for what they need).
   */
  async receiveChanges (changes: readonly StoreChange[], options: AbortOptions = {}): Promise<AppendManyResult> {
    this.#checkOpen()
    const done = this.#mat.receiving()
    try {
      const result = await this.#store.appendMany(changes, options)
      if (result.added.length > 0) this.#mat.kick()
      return result
    } finally {
      done()
    }
  }

  /** Resolves when every change stored before the call is applied to its document (the backlog at call time). */
  async whenMaterialised (options: AbortOptions = {}): Promise<void> {
    this.#checkOpen()
    throwIfAborted(options.signal)
    const upTo = this.#store.getLastSeq()
    if (this.#mat.appliedSeq >= upTo || this.#mat.backlog() === 0) return
    await this.#mat.mutex.run(async () => { await this.#mat.catchUp(options, upTo) })
  }

  /**
   * Applies changes that were appended to the store from outside to their documents, and resolves when they
   * are. Changes whose key is unknown or whose dependencies are missing stay stored and are applied once those
   * arrive. Every hash must be in the store.
   */
  async syncStoreChanges (hashes: readonly ChangeHash[], options: AbortOptions = {}): Promise<MaterialiseResult> {
    this.#checkOpen()
    validateHashes(hashes)
    for (const hash of hashes) {
      if (!await this.#store.has(hash)) throw new ChangeNotFoundError(`change ${hash} is not in the store`)
    }
    return await this.#mat.mutex.run(async () => await this.#mat.catchUp(options))
  }

  /** Registers a listener for documents whose state changed; returns a function that removes it. */
  onDocumentsChanged (listener: DocumentsChangedListener): () => void {
    return this.#mat.onDocumentsChanged(listener)
  }

  /** Called by the tenant when key material was added: applies changes that waited for it. */
  async keyAdded (keyId: string): Promise<void> {
    if (!this.#open || this.#closed) return
    await this.#mat.mutex.run(async () => { await this.#mat.keyAdded(keyId) })
  }

  // ------------------------------------------------------------------ documents

  /** Creates a new, empty document (one signed change), encrypted under `keyId` or the default key. */
  async createDocument (options: CreateDocumentOptions = {}): Promise<MindooDoc> {
    this.#checkOpen()
    const keyId = options.keyId ?? this.#defaultKeyId
    if (!isValidId(keyId)) throw new InvalidArgumentError('invalid keyId')
    if (!this.#tenant.keyring.has(keyId)) throw new KeyNotFoundError(`this tenant has no key ${keyId}`)
    const docId = newDocId(this.#tenant.signer.publicKey, keyId)
    return await this.#mat.mutex.run(async () => {
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
    return await this.#mat.mutex.run(async () => {
      throwIfAborted(options.signal)
      await this.#mat.materialiseDoc(docId)
      const state = await this.#requireState(docId)
      if (state.meta.deleted) throw new DocumentDeletedError(`document ${docId} is deleted`)
      const current = loadAm(state, this.#log, docId)
      const before = Automerge.getHeads(current).join()
      let am: Automerge.Doc<DocData>
      try {
        am = Automerge.change(current, (proxy) => { fn(new MindooDoc(docId, proxy, state.meta)) })
      } catch (err) {
        this.#cache.delete(docId) // Automerge may have left the cached doc outdated
        throw err
      }
      if (Automerge.getHeads(am).join() === before) {
        state.am = am
        return this.#toDoc(docId, state)
      }
      try {
        await this.#commitLocal('change', docId, state.meta.keyId, state.meta.heads, Automerge.getLastLocalChange(am) as Uint8Array, am)
      } catch (err) {
        this.#cache.delete(docId) // the cached doc is outdated now
        throw err
      }
      return this.#toDoc(docId, await this.#requireState(docId))
    })
  }

  /**
   * The document at its current state; a deleted document comes back as a tombstone (`isDeleted()`). Changes of
   * it that are stored but not applied yet are applied first, ahead of the rest of the backlog.
   */
  async getDocument (docId: DocId): Promise<MindooDoc> {
    this.#checkOpen()
    if (!isValidId(docId)) throw new InvalidArgumentError('invalid docId')
    if (this.#mat.pendingFor(docId)) await this.#mat.mutex.run(async () => { await this.#mat.materialiseDoc(docId) })
    return this.#toDoc(docId, await this.#requireState(docId))
  }

  /**
   * The document's content as it would be with `changes` (all of `docId`, received and not stored) applied on top
   * of what is stored, without storing or applying anything: `null` when the document does not exist here and the
   * changes do not create it, `undefined` when this side cannot tell (a key it lacks, a payload no key version
   * decrypts, or a dependency that is neither stored nor among `changes`). A write policy judges a change by it.
   * Judging a frame's changes one after the other (`changes` the last call's plus one) costs one Automerge
   * change each, not a load of the document each: the last documents built here are kept (AFTER_DOCS_KEPT).
   */
  async dataAfter (docId: DocId, changes: readonly StoreChange[]): Promise<DocData | null | undefined> {
    this.#checkOpen()
    if (!isValidId(docId)) throw new InvalidArgumentError('invalid docId')
    if (changes.some((c) => c.docId !== docId)) throw new InvalidArgumentError('every change must be of the document')
    if (this.#mat.pendingFor(docId)) await this.#mat.mutex.run(async () => { await this.#mat.materialiseDoc(docId) })
    const state = await this.#cache.load(docId)
    const plaintexts: Array<Uint8Array | undefined> = []
    for (const change of changes) {
      if (change.kind === 'delete') {
        plaintexts.push(undefined)
        continue
      }
      try {
        plaintexts.push(this.#tenant.keyring.decrypt(change.keyId, change.payload, payloadAad(change)))
      } catch (err) {
        if (err instanceof DecryptionError || err instanceof KeyNotFoundError) return undefined
        throw err
      }
    }
    if (state === undefined && plaintexts.every((p) => p === undefined)) return null
    // from the copy built last when it is of the same stored state and had all but the last change applied; else
    // a copy of its own (the cached document is never touched)
    const base = state?.meta.heads.join() ?? ''
    const hashes = changes.map((c) => c.hash)
    const kept = this.#after.get(docId)
    this.#after.delete(docId)
    let am: Automerge.Doc<DocData>
    let from = 0
    const reusable = kept !== undefined && kept.base === base && kept.applied.length === hashes.length - 1 &&
      kept.applied.every((h, i) => h === hashes[i])
    if (kept !== undefined && reusable) {
      am = kept.am
      from = kept.applied.length
    } else {
      if (kept !== undefined) Automerge.free(kept.am)
      am = state === undefined ? Automerge.init<DocData>() : buildAm(state.snapshot, state.tail, this.#log, docId)
    }
    // content Automerge refuses is skipped, as the materialiser skips it
    am = applyAll(am, plaintexts.slice(from).filter((p): p is Uint8Array => p !== undefined), this.#log, docId)
    // a change whose dependencies Automerge has not seen waits inside it, unapplied: the outcome is unknown
    if (Automerge.getMissingDeps(am, []).length > 0) {
      Automerge.free(am)
      return undefined
    }
    this.#after.set(docId, { base, applied: hashes, am })
    if (this.#after.size > AFTER_DOCS_KEPT) {
      const [oldest, entry] = this.#after.entries().next().value as [DocId, { am: Automerge.Doc<DocData> }]
      this.#after.delete(oldest)
      Automerge.free(entry.am)
    }
    return Automerge.toJS(am)
  }

  /** Deletes a document: a signed tombstone change that every replica applies. */
  async deleteDocument (doc: MindooDoc | DocId): Promise<void> {
    this.#checkOpen()
    const docId = this.#docIdOf(doc)
    await this.#mat.mutex.run(async () => {
      await this.#mat.materialiseDoc(docId)
      const state = await this.#requireState(docId)
      if (state.meta.deleted) return
      await this.#commitLocal('delete', docId, state.meta.keyId, state.meta.heads, EMPTY, undefined)
    })
  }

  /** Ids of all documents this replica can read (tombstones included), in no particular order. */
  async getAllDocumentIds (): Promise<DocId[]> {
    this.#checkOpen()
    await this.whenMaterialised()
    const ids: DocId[] = []
    for await (const key of this.#state.keys({ gt: 'doc!', lt: 'doc!~' })) ids.push(key.slice(4))
    return ids
  }

  /**
   * Each document changed after `cursor`, once, at its latest state, in the order this replica committed
   * the changes. Resume from any yielded cursor: no duplicates, no gaps, also after a restart. Deleted
   * documents come out as tombstones; documents this tenant cannot decrypt never come out. Streams: holds
   * one chunk of positions at a time. Documents with no stored change waiting to be applied come out at once;
   * the others come out at their new positions as the changes stored before the call are applied, a step of
   * `CHANGEFEED_STEP_CHANGES` at a time (a document whose change turns out to wait, or is refused, moves to a new
   * position too, unchanged). While more changes wait than the materialiser's queue holds, which documents have
   * nothing waiting is not known: all come out once the backlog stored before the call is applied.
   */
  async * iterateChangesSince (cursor: ProcessChangesCursor | null, options: AbortOptions = {}): AsyncGenerator<{ doc: MindooDoc, cursor: ProcessChangesCursor }> {
    this.#checkOpen()
    if (cursor !== null && (typeof cursor !== 'object' || !Number.isSafeInteger(cursor.seq) || cursor.seq < 0)) {
      throw new InvalidArgumentError('cursor must be null or a cursor yielded by iterateChangesSince')
    }
    const at = { seq: cursor?.seq ?? 0 }
    // first what is up to date; then, after each step of the backlog stored before the walks began, what that
    // step brought up to date; once that backlog is applied, everything from where the walks got to. A document
    // with changes waiting is skipped where it is: taking them up moves it to a new position further on, where a
    // later walk meets it (also when they turn out not to apply: see Materialiser #touch)
    yield * this.#walkFeed(at, true, options)
    const upTo = this.#store.getLastSeq()
    while (this.#mat.appliedSeq < upTo && this.#mat.backlog() > 0) {
      await this.#mat.mutex.run(async () => { await this.#mat.catchUp(options, upTo, changefeedStep()) })
      yield * this.#walkFeed(at, true, options)
    }
    yield * this.#walkFeed(at, false, options)
  }

  /**
   * The changefeed after `at.seq`, moving `at` along. With `skipPending`, documents with changes waiting are skipped,
   * and the walk stops where the materialiser cannot tell which those are (its queue does not hold the whole
   * backlog): skipping every document there would skip ones that never move again.
   */
  async * #walkFeed (at: { seq: number }, skipPending: boolean, options: AbortOptions): AsyncGenerator<{ doc: MindooDoc, cursor: ProcessChangesCursor }> {
    for await (const chunk of feedChunks(this.#state, at.seq, options)) {
      if (skipPending && !this.#mat.knowsPending()) return
      const due = skipPending ? chunk.filter(({ docId }) => !this.#mat.pendingFor(docId)) : chunk
      // the records of the chunk's documents not cached, in one read, each opened when its turn comes (a reader
      // may stop early); a state cached by then is the newer one, and one cached before and dropped since is read
      const records = await this.#cache.recordsOf(due.map(({ docId }) => docId))
      for (const { seq, docId } of due) {
        const record = records.get(docId)
        const state = this.#cache.peek(docId) ?? (record !== undefined ? this.#cache.unseal(record) : await this.#cache.load(docId))
        if (state !== undefined) yield { doc: this.#toDoc(docId, state), cursor: { seq, docId } }
      }
      at.seq = chunk[chunk.length - 1].seq
    }
  }

  /** Finishes the work in flight and stops; the store and state are closed by their owner. */
  async close (): Promise<void> {
    if (this.#closed) return
    await this.#mat.mutex.run(async () => {
      this.#closed = true
      this.#mat.close()
    })
    this.#store.setVerifier(undefined)
    this.#cache.clear()
    for (const { am } of this.#after.values()) Automerge.free(am)
    this.#after.clear()
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
    return new MindooDoc(docId, dataOf(state, this.#log, docId), { ...state.meta, heads: [...state.meta.heads] })
  }

  async #requireState (docId: DocId): Promise<DocState> {
    const state = await this.#cache.load(docId)
    if (state === undefined) throw new DocumentNotFoundError(`no document ${docId} in database ${this.#name}`)
    return state
  }

  /** Signs, encrypts and stores a local change, then materialises its document (must run under the mutex). */
  async #commitLocal (kind: 'change' | 'delete', docId: DocId, keyId: string, heads: readonly ChangeHash[],
    amChange: Uint8Array, am: Automerge.Doc<DocData> | undefined): Promise<void> {
    const header: ChangeHeader = {
      kind, docId, keyId, deps: [...heads].sort(), author: this.#tenant.signer.publicKey, time: Date.now()
    }
    const payload = this.#tenant.keyring.encrypt(keyId, amChange, payloadAad(header))
    const change = signChange(header, payload, (signed) => this.#tenant.signer.sign(signed))
    await this.#store.append(change)
    await this.#mat.materialiseDoc(docId, { hash: change.hash, plaintext: amChange, am })
  }
}
