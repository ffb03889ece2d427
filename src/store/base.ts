import { ChangeNotFoundError, ChangeRejectedError, ClosedError, InvalidArgumentError, NotStartedError, throwIfAborted } from '../errors.js'
import { silentLogger, type Logger } from '../util/logger.js'
import { Mutex } from '../util/mutex.js'
import { STORE_RECENT_BYTES, STORE_RECENT_CHANGES } from '../limits.js'
import { checkChange, copyChange, encodeChange, encodeWithSignedPart, isChangeHash, isValidId, type ChangeHash, type DocId, type StoreChange } from './change.js'
import type {
  AbortOptions, AppendEvent, ChangeIndexEntry, AppendManyResult, AppendOnlyStore, ChangeVerifier, SequencedChange
} from './types.js'

/** Options every store takes. */
export interface StoreInit {
  /** Decides whether a change may enter (signature, trust). Default: none, only the hash is checked. */
  verifier?: ChangeVerifier
  /** Where failures of `onAppend` listeners are reported. Default: silent. */
  logger?: Logger
}

type AppendListener = (event: AppendEvent) => void

/**
 * The public half of every AppendOnlyStore: validates input, checks and verifies changes, drops duplicates,
 * allocates arrival sequence numbers under a mutex, and notifies listeners. Subclasses implement the
 * `_xxx` methods, which receive validated input, run after `_open()` and never see a closed store.
 *
 * Invariants:
 * 1. Seqs are 1, 2, 3... without gaps: they are allocated and written under one mutex, and `#lastSeq` moves
 *    only after `_write` has committed.
 * 2. A change enters only whole and only after `checkChange` and the verifier accepted it.
 * 3. A hash is stored at most once: the duplicate check runs under the same mutex as the write.
 */
export abstract class BaseStore implements AppendOnlyStore {
  readonly #mutex = new Mutex()
  readonly #listeners = new Set<AppendListener>()
  /** Signed parts of the private copies this store accepted (never mutated), so writing need not redo them. */
  readonly #signedParts = new WeakMap<StoreChange, Uint8Array>()
  /** The changes committed last, oldest first (STORE_RECENT_CHANGES, STORE_RECENT_BYTES); never changed. */
  readonly #recent = new Map<ChangeHash, StoreChange>()
  #recentBytes = 0
  readonly #log: Logger
  #verifier: ChangeVerifier | undefined
  /** Undefined until `_open()` has reported it. */
  #lastSeq: number | undefined
  #opening: Promise<void> | undefined
  /** close() was called: new calls are refused. */
  #closed = false
  /** close() has reached the backend: appends still queued behind it are refused too. */
  #released = false
  #closing: Promise<void> | undefined

  /** `lastSeq`, when given, marks the store as open from the start (nothing to recover). */
  protected constructor (init: StoreInit = {}, lastSeq?: number) {
    this.#verifier = init.verifier
    this.#log = init.logger ?? silentLogger
    this.#lastSeq = lastSeq
  }

  /** Prepares the store (a disk store recovers its last seq). Idempotent; every async method calls it. */
  async open (options?: AbortOptions): Promise<void> {
    this.#check(options)
    await this.#ensureOpen()
  }

  async #ensureOpen (): Promise<void> {
    if (this.#lastSeq !== undefined) return
    this.#opening ??= this._open().then(
      (seq) => { this.#lastSeq = seq },
      (err: unknown) => { this.#opening = undefined; throw err }
    )
    await this.#opening
  }

  async append (change: StoreChange, options?: AbortOptions): Promise<boolean> {
    this.#check(options)
    const accepted = this.#accept(change)
    return await this.#mutex.run(async () => {
      this.#checkQueued(options)
      await this.#ensureOpen()
      if (await this._has(accepted.hash)) return false
      await this.#commit([{ seq: this.#nextSeq(), change: accepted }])
      return true
    })
  }

  /**
   * Every input ends up in exactly one of `added`, `duplicates` (already stored, or given earlier in the same
   * call) and `rejected`, so their lengths add up to `changes.length`.
   */
  async appendMany (changes: readonly StoreChange[], options?: AbortOptions): Promise<AppendManyResult> {
    this.#check(options)
    if (!Array.isArray(changes)) throw new TypeError('changes must be an array')
    const { accepted, rejected } = await this.#acceptMany(changes)
    return await this.#mutex.run(async () => {
      this.#checkQueued(options)
      await this.#ensureOpen()
      const stored = await this._hasMany(accepted.map((c) => c.hash))
      const seen = new Set<ChangeHash>()
      const added: ChangeHash[] = []
      const duplicates: ChangeHash[] = []
      const fresh: StoreChange[] = []
      accepted.forEach((change, i) => {
        if (stored[i] || seen.has(change.hash)) {
          duplicates.push(change.hash)
        } else {
          seen.add(change.hash)
          fresh.push(change)
        }
      })
      let seq = this.#nextSeq()
      const entries: SequencedChange[] = dependenciesFirst(fresh).map((change) => {
        added.push(change.hash)
        return { seq: seq++, change }
      })
      if (entries.length > 0) await this.#commit(entries)
      return { added, duplicates, rejected }
    })
  }

  async has (hash: ChangeHash): Promise<boolean> {
    this.#check()
    if (typeof hash !== 'string') throw new TypeError('hash must be a string')
    await this.#ensureOpen()
    return isChangeHash(hash) && await this.#read(this._has(hash))
  }

  async hasMany (hashes: readonly ChangeHash[], options?: AbortOptions): Promise<boolean[]> {
    this.#check(options)
    if (!Array.isArray(hashes)) throw new TypeError('hashes must be an array')
    if (hashes.some((h) => typeof h !== 'string')) throw new TypeError('hashes must be strings')
    if (hashes.length === 0) return []
    await this.#ensureOpen()
    // only valid hashes reach the backend; any other string is simply not stored
    const valid = hashes.every(isChangeHash)
    const asked = valid ? hashes as ChangeHash[] : hashes.filter(isChangeHash)
    const found = asked.length === 0 ? [] : await this.#read(this._hasMany(asked))
    this.#check(options)
    if (valid) return found
    let i = 0
    return hashes.map((h) => isChangeHash(h) && found[i++])
  }

  async getAllChangeHashes (options?: AbortOptions): Promise<ChangeHash[]> {
    return await this.findNewChanges([], options)
  }

  async findNewChanges (haveHashes: Iterable<ChangeHash>, options?: AbortOptions): Promise<ChangeHash[]> {
    this.#check(options)
    if (typeof (haveHashes as Partial<Iterable<ChangeHash>>)?.[Symbol.iterator] !== 'function') {
      throw new TypeError('haveHashes must be iterable')
    }
    const have = haveHashes instanceof Set ? haveHashes as ReadonlySet<ChangeHash> : new Set(haveHashes)
    await this.#ensureOpen()
    const out: ChangeHash[] = []
    for await (const hash of this.#guard(this._hashes(options), options)) {
      if (!have.has(hash)) out.push(hash)
    }
    return out
  }

  async getChanges (hashes: readonly ChangeHash[], options?: AbortOptions): Promise<StoreChange[]> {
    this.#check(options)
    if (!Array.isArray(hashes)) throw new TypeError('hashes must be an array')
    const bad = hashes.find((h) => !isChangeHash(h))
    if (bad !== undefined) throw new InvalidArgumentError(`not a change hash: ${String(bad).slice(0, 80)}`)
    await this.#ensureOpen()
    const recent = this.#fromRecent(hashes)
    if (recent !== undefined) return recent.map(copyChange)
    const changes = await this.#read(this._getChanges(hashes))
    this.#check(options)
    return changes.map((change, i) => {
      if (change === undefined) throw new ChangeNotFoundError(`change ${hashes[i]} is not in the store`)
      return change
    })
  }

  async getEncodedMany (hashes: readonly ChangeHash[], options?: AbortOptions): Promise<Array<Uint8Array | undefined>> {
    this.#check(options)
    if (!Array.isArray(hashes)) throw new TypeError('hashes must be an array')
    const bad = hashes.find((h) => !isChangeHash(h))
    if (bad !== undefined) throw new InvalidArgumentError(`not a change hash: ${String(bad).slice(0, 80)}`)
    if (hashes.length === 0) return []
    await this.#ensureOpen()
    const recent = this.#fromRecent(hashes)
    if (recent !== undefined) return recent.map((change) => this._encode(change))
    const encoded = await this.#read(this._getEncodedMany(hashes))
    this.#check(options)
    return encoded
  }

  async getAllChangeHashesForDoc (docId: DocId, options?: AbortOptions): Promise<ChangeHash[]> {
    this.#check(options)
    if (typeof docId !== 'string') throw new TypeError('docId must be a string')
    if (!isValidId(docId)) throw new InvalidArgumentError('invalid docId')
    await this.#ensureOpen()
    const out: ChangeHash[] = []
    for await (const hash of this.#guard(this._docHashes(docId, options), options)) out.push(hash)
    return out
  }

  /**
   * Arguments are checked on the call; the walk starts with the first `next()` (closed and aborted are reported
   * from there) and sees the store as it was then: changes appended meanwhile are left to the next walk.
   */
  iterateSince (afterSeq: number, options?: AbortOptions): AsyncIterable<SequencedChange> {
    checkAfterSeq(afterSeq)
    const walk = async function * (this: BaseStore): AsyncGenerator<SequencedChange> {
      await this.open(options)
      yield * this.#guard(this._iterateSince(afterSeq, options), options)
    }
    return walk.call(this)
  }

  /** As `iterateSince` (arguments checked on the call, the walk from the first `next()`), without payloads. */
  iterateIndexSince (afterSeq: number, options?: AbortOptions): AsyncIterable<ChangeIndexEntry> {
    checkAfterSeq(afterSeq)
    const walk = async function * (this: BaseStore): AsyncGenerator<ChangeIndexEntry> {
      await this.open(options)
      yield * this.#guard(this._iterateIndexSince(afterSeq, options), options)
    }
    return walk.call(this)
  }

  getLastSeq (): number {
    this.#check()
    if (this.#lastSeq === undefined) throw new ClosedError('store is not open yet: await store.open() first')
    return this.#lastSeq
  }

  /** Append-only without deletes: the number of changes is the last seq. */
  async count (): Promise<number> {
    this.#check()
    await this.#ensureOpen()
    return this.getLastSeq()
  }

  onAppend (listener: AppendListener): () => void {
    if (typeof listener !== 'function') throw new TypeError('listener must be a function')
    const entry: AppendListener = (event) => { listener(event) } // a listener added twice is called twice
    this.#listeners.add(entry)
    return () => { this.#listeners.delete(entry) }
  }

  setVerifier (verifier: ChangeVerifier | undefined): void {
    if (verifier !== undefined && typeof verifier?.verify !== 'function') {
      throw new TypeError('verifier must have a verify function')
    }
    this.#verifier = verifier
  }

  /** Refuses new calls at once, lets appends already queued finish, then releases the backend. Idempotent. */
  async close (): Promise<void> {
    this.#closed = true
    this.#closing ??= this.#mutex.run(async () => {
      this.#released = true
      if (this.#opening !== undefined) await this.#opening.catch(() => undefined)
      await this._close()
    })
    await this.#closing
  }

  /** Recovers the backend's state; resolves with the last seq used (0 when empty). */
  protected abstract _open (): Promise<number>
  protected abstract _has (hash: ChangeHash): Promise<boolean>
  /** Whether each (valid) hash is stored, in the order asked. */
  protected abstract _hasMany (hashes: readonly ChangeHash[]): Promise<boolean[]>
  /** Stores these entries (consecutive seqs after the last one, new hashes) in one atomic write. */
  protected abstract _write (entries: SequencedChange[]): Promise<void>
  /** The stored changes, undefined for unknown hashes, in the order asked. */
  protected abstract _getChanges (hashes: readonly ChangeHash[]): Promise<Array<StoreChange | undefined>>
  /**
   * The stored canonical bytes of each (valid) hash, undefined when not stored, in the order asked; copies no
   * caller can use to alter the store.
   */
  protected abstract _getEncodedMany (hashes: readonly ChangeHash[]): Promise<Array<Uint8Array | undefined>>
  /** All hashes in arrival order. */
  protected abstract _hashes (options?: AbortOptions): AsyncIterable<ChangeHash>
  /** One document's hashes in arrival order. */
  protected abstract _docHashes (docId: DocId, options?: AbortOptions): AsyncIterable<ChangeHash>
  /** Changes with seq > afterSeq in arrival order, read in bounded chunks. */
  protected abstract _iterateSince (afterSeq: number, options?: AbortOptions): AsyncIterable<SequencedChange>
  /** Index entries of the changes with seq > afterSeq in arrival order, without reading payloads where it can. */
  protected abstract _iterateIndexSince (afterSeq: number, options?: AbortOptions): AsyncIterable<ChangeIndexEntry>
  protected abstract _close (): Promise<void>

  #check (options?: AbortOptions): void {
    if (this.#closed) throw new ClosedError('store is closed')
    throwIfAborted(options?.signal)
  }

  /** For work that waited in the mutex queue. */
  #checkQueued (options?: AbortOptions): void {
    if (this.#released) throw new ClosedError('store is closed')
    throwIfAborted(options?.signal)
  }

  /**
   * Checks a copy of the change, which is what gets stored: edits the caller makes to its object while the
   * append waits for the mutex cannot reach the store (invariant 2).
   * Throws MalformedChangeError, HashMismatchError or whatever the verifier throws.
   */
  #accept (change: StoreChange): StoreChange {
    const copy = copyChange(change)
    const signedPart = checkChange(copy)
    this.#verifier?.verify(copy, signedPart)
    this.#signedParts.set(copy, signedPart)
    return copy
  }

  /** The canonical bytes of an accepted change, reusing the signed part its check computed. */
  protected _encode (change: StoreChange): Uint8Array {
    const signed = this.#signedParts.get(change)
    return signed === undefined ? encodeChange(change) : encodeWithSignedPart(signed, change)
  }

  /** Checks a batch; signatures go to the verifier's batch form when it has one (invariant 2 as in #accept). */
  async #acceptMany (changes: readonly StoreChange[]): Promise<{ accepted: StoreChange[], rejected: AppendManyResult['rejected'] }> {
    const accepted: StoreChange[] = []
    const rejected: AppendManyResult['rejected'] = []
    const reject = (change: StoreChange, err: unknown): void => {
      if (!(err instanceof ChangeRejectedError)) throw err
      rejected.push({ hash: typeof change?.hash === 'string' ? change.hash : '', error: err })
    }
    const verifyMany = this.#verifier?.verifyMany
    if (verifyMany === undefined) {
      for (const change of changes) {
        try {
          accepted.push(this.#accept(change))
        } catch (err) {
          reject(change, err)
        }
      }
      return { accepted, rejected }
    }
    const checked: Array<{ change: StoreChange, signedPart: Uint8Array }> = []
    for (const change of changes) {
      try {
        const copy = copyChange(change)
        checked.push({ change: copy, signedPart: checkChange(copy) })
      } catch (err) {
        reject(change, err)
      }
    }
    const verdicts = checked.length === 0 ? [] : await verifyMany.call(this.#verifier, checked)
    checked.forEach(({ change, signedPart }, i) => {
      const err = verdicts[i]
      if (err === undefined) {
        this.#signedParts.set(change, signedPart)
        accepted.push(change)
      } else {
        reject(change, err)
      }
    })
    return { accepted, rejected }
  }

  #nextSeq (): number {
    if (this.#lastSeq === undefined) throw new NotStartedError('store used before open') // unreachable: callers open first
    return this.#lastSeq + 1
  }

  /** Writes under the mutex (invariant 1), then tells the listeners. */
  async #commit (entries: SequencedChange[]): Promise<void> {
    await this._write(entries)
    this.#lastSeq = entries[entries.length - 1].seq
    this.#remember(entries)
    const event: AppendEvent = { changes: entries }
    for (const listener of this.#listeners) {
      try {
        listener(event)
      } catch (err) {
        this.#log.warn({ err }, 'onAppend listener failed')
      }
    }
  }

  #remember (entries: SequencedChange[]): void {
    for (const { change } of entries.slice(-STORE_RECENT_CHANGES)) {
      if (change.payload.length > STORE_RECENT_BYTES / 4) continue
      this.#recent.set(change.hash, change)
      this.#recentBytes += change.payload.length
    }
    for (const [hash, change] of this.#recent) {
      if (this.#recent.size <= STORE_RECENT_CHANGES && this.#recentBytes <= STORE_RECENT_BYTES) break
      this.#recent.delete(hash)
      this.#recentBytes -= change.payload.length
    }
  }

  /** The changes asked for when every one of them is among the recent ones (a live fetch), else undefined. */
  #fromRecent (hashes: readonly ChangeHash[]): StoreChange[] | undefined {
    if (hashes.length === 0 || hashes.length > this.#recent.size) return undefined
    const out: StoreChange[] = []
    for (const hash of hashes) {
      const change = this.#recent.get(hash)
      if (change === undefined) return undefined
      out.push(change)
    }
    return out
  }

  /** A read that fails because close() released the backend under it is CLOSED. */
  async #read<T> (pending: Promise<T>): Promise<T> {
    try {
      return await pending
    } catch (err) {
      throw this.#closedOr(err)
    }
  }

  #closedOr (err: unknown): unknown {
    return this.#released && !(err instanceof ClosedError) ? new ClosedError('store was closed', { cause: err }) : err
  }

  /** Re-checks closed and aborted between items of a walk; a backend failing because of close() is CLOSED. */
  async * #guard<T> (source: AsyncIterable<T>, options?: AbortOptions): AsyncGenerator<T> {
    try {
      for await (const item of source) {
        this.#check(options)
        yield item
      }
    } catch (err) {
      throw this.#closedOr(err)
    }
  }
}

function checkAfterSeq (afterSeq: number): void {
  if (typeof afterSeq !== 'number') throw new TypeError('afterSeq must be a number')
  if (!Number.isSafeInteger(afterSeq) || afterSeq < 0) {
    throw new InvalidArgumentError('afterSeq must be a non-negative integer')
  }
}

/**
 * The changes in the order given, except that a change comes after those of the list it depends on
 * (transitively): a reader in arrival order then never meets a change before a dependency stored with it. Stable,
 * linear in the changes and their dependencies; no recursion, so a long chain cannot overflow the stack.
 */
export function dependenciesFirst (changes: readonly StoreChange[]): StoreChange[] {
  const byHash = new Map<ChangeHash, StoreChange>()
  for (const c of changes) byHash.set(c.hash, c)
  // the common case: every dependency in the list comes before its dependent already
  const before = new Set<ChangeHash>()
  let ordered = true
  for (const c of changes) {
    if (c.deps.some((d) => byHash.has(d) && !before.has(d))) {
      ordered = false
      break
    }
    before.add(c.hash)
  }
  if (ordered) return [...changes]
  const out: StoreChange[] = []
  const placed = new Set<ChangeHash>()
  for (const root of changes) {
    if (placed.has(root.hash)) continue
    // depth first: a change is placed once every dependency of it in the list is
    const stack: Array<{ change: StoreChange, next: number }> = [{ change: root, next: 0 }]
    const onStack = new Set<ChangeHash>([root.hash])
    while (stack.length > 0) {
      const top = stack[stack.length - 1]
      const deps = top.change.deps
      let pushed = false
      while (top.next < deps.length) {
        const dep = byHash.get(deps[top.next++])
        // a cycle cannot be signed (a hash covers its dependencies), but a list may hold anything: break it
        if (dep === undefined || placed.has(dep.hash) || onStack.has(dep.hash)) continue
        stack.push({ change: dep, next: 0 })
        onStack.add(dep.hash)
        pushed = true
        break
      }
      if (pushed) continue
      stack.pop()
      onStack.delete(top.change.hash)
      placed.add(top.change.hash)
      out.push(top.change)
    }
  }
  return out
}
