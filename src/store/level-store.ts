import type { AbstractLevel } from 'abstract-level'
import { Level } from 'level'
import { LockedError, StoreCorruptError, throwIfAborted } from '../errors.js'
import { LEVEL_WRITE_BUFFER_BYTES } from '../limits.js'
import { BaseStore, type StoreInit } from './base.js'
import { decodeChange, type ChangeHash, type DocId, type StoreChange } from './change.js'
import type { AbortOptions, ChangeIndexEntry, SequencedChange } from './types.js'

/** A database or sublevel with string keys; values are read and written as Uint8Array whatever its defaults. */
export type LevelStoreDatabase = AbstractLevel<any, string, Uint8Array> // eslint-disable-line @typescript-eslint/no-explicit-any

export interface LevelStoreInit extends StoreInit {
  /** Where the changes live. Not owned: `close()` leaves it open. One LevelStore per database at a time. */
  db: LevelStoreDatabase
}

/**
 * A LevelDB at `location` with this project's options: a write buffer of LEVEL_WRITE_BUFFER_BYTES, so a sync's
 * writes reach the disk in fewer, larger tables (less compaction work per change received).
 */
export function newLevel (location: string): Level<string, Uint8Array> {
  return new Level<string, Uint8Array>(location, { valueEncoding: 'view', writeBufferSize: LEVEL_WRITE_BUFFER_BYTES })
}

/**
 * Closes a LevelDB after writing out what its write buffer holds (a compaction of an empty key range does that,
 * and nothing more), so the next open replays no log: a clean restart costs neither the time nor the memory of
 * replaying up to LEVEL_WRITE_BUFFER_BYTES of writes.
 */
export async function closeLevel (level: Level<string, Uint8Array>): Promise<void> {
  if (level.status === 'open') {
    try {
      // classic-level (what `level` is on Node) has it; the `level` typings do not say so
      await (level as unknown as { compactRange: (start: string, end: string) => Promise<void> }).compactRange('\x00', '\x00')
    } catch {
      // closed all the same: the next open replays the log
    }
  }
  await level.close()
}

/** Hashes read per step of a hash walk. */
const HASH_CHUNK = 500
/** Changes read per step of `iterateSince`: payloads may be large, so fewer. */
const CHANGE_CHUNK = 64
/**
 * Batches up to this many keys are read in-thread (`getSync`) where the backend can; larger ones in one
 * `getMany`/`hasMany` through the thread pool. Measured here (classic-level 3, values of about 1 KB, cached), in
 * main-thread µs per key: in-thread 2.2 per value read and 0.8-1.0 per miss at any batch size; one batched read
 * 5.5 at 1 key, about 2 at 4, 1.1 at 16 and 0.7 (values) / 0.2 (has) at 256.
 */
const IN_THREAD_BATCH = 4
/** Seqs are written fixed-width so that key order is seq order (2^53 - 1 has 16 digits). */
const SEQ_DIGITS = 16
const ENC = { keyEncoding: 'utf8', valueEncoding: 'view' } as const

// Key layout. Ids match isValidId, which excludes '!', and every id character sorts after '"', so
// [`d!<docId>!`, `d!<docId>"`) holds exactly that document's entries.
const changeKey = (hash: ChangeHash): string => `c!${hash}`
const seqKey = (seq: number): string => `s!${String(seq).padStart(SEQ_DIGITS, '0')}`
const SEQ_END = 's"'
const docPrefix = (docId: DocId): string => `d!${docId}!`
const docKey = (docId: DocId, seq: number): string => `${docPrefix(docId)}${String(seq).padStart(SEQ_DIGITS, '0')}`
const docEnd = (docId: DocId): string => `d!${docId}"`
/** Hashes are stored as their 32 raw bytes. */
const hashBytes = (hash: ChangeHash): Uint8Array => Buffer.from(hash, 'hex')
const hashOf = (bytes: Uint8Array): ChangeHash => Buffer.from(bytes.buffer, bytes.byteOffset, 32).toString('hex')
/** Bytes of a seq record before its key id: hash, time, author. */
const RECORD_FIXED = 32 + 8 + 32

/**
 * The value of `s!<seq>`: the change's hash, then what a served-set index needs without the payload: time (u64
 * BE), author (32 raw bytes) and key id (UTF-8). Stores written before this record held the hash alone.
 */
function seqRecord (change: StoreChange, hash: Uint8Array): Uint8Array {
  const keyId = Buffer.from(change.keyId, 'utf8')
  const out = Buffer.allocUnsafe(RECORD_FIXED + keyId.length)
  out.set(hash, 0)
  out.writeBigUInt64BE(BigInt(change.time), 32)
  out.set(Buffer.from(change.author, 'base64url'), 40)
  out.set(keyId, RECORD_FIXED)
  return out
}

/** The index entry in a seq record, or undefined for a record of the older form (the hash alone). */
function entryOf (seq: number, value: Uint8Array): ChangeIndexEntry | undefined {
  if (value.byteLength <= RECORD_FIXED) return undefined
  const buf = Buffer.from(value.buffer, value.byteOffset, value.byteLength)
  return {
    seq,
    hash: buf.toString('hex', 0, 32),
    time: Number(buf.readBigUInt64BE(32)),
    author: buf.toString('base64url', 40, RECORD_FIXED),
    keyId: buf.toString('utf8', RECORD_FIXED)
  }
}
const seqOf = (key: string): number => Number(key.slice(key.length - SEQ_DIGITS))

/**
 * The AppendOnlyStore on LevelDB (`level`/`classic-level`), or on a sublevel of one.
 *
 * Layout: `c!<hash>` the change's canonical bytes; `s!<seq>` the hash stored at that seq, with the change's time,
 * author and key id (so an index of the store is rebuilt or caught up without reading payloads:
 * `iterateIndexSince`); `d!<docId>!<seq>` the hash, indexed by document. Each append (and each appendMany) is one `batch()`, so a crash leaves the store
 * before or after it; the last seq is recovered from the highest `s!` key when the store opens.
 *
 * @example
 * ```ts
 * const store = await LevelStore.open('/var/lib/mindoodb/acme/changes')
 * // or, beside other data in one database:
 * const store = new LevelStore({ db: level.sublevel<string, Uint8Array>('changes', { valueEncoding: 'view' }) })
 * await store.open()
 * ```
 */
export class LevelStore extends BaseStore {
  readonly #db: LevelStoreDatabase
  /** The backend answers getSync() (classic-level and its sublevels do). */
  readonly #getSync: boolean
  #owned = false

  constructor (init: LevelStoreInit) {
    super(init)
    if (init?.db == null || typeof init.db.batch !== 'function') throw new TypeError('init.db must be an abstract-level database')
    this.#db = init.db
    this.#getSync = (init.db.supports as { getSync?: boolean }).getSync === true
  }

  /**
   * Opens (creating if needed) a LevelDB at `location` that the store owns and closes with itself.
   * Throws LockedError when another process holds the database.
   */
  static async open (location: string, init: StoreInit = {}): Promise<LevelStore> {
    const db = newLevel(location)
    try {
      await db.open()
    } catch (err) {
      const code = (err as { cause?: { code?: unknown } }).cause?.code
      if (code === 'LEVEL_LOCKED') throw new LockedError(`database ${location} is in use`, { cause: err })
      throw err
    }
    const store = new LevelStore({ ...init, db })
    store.#owned = true
    try {
      await store.open()
    } catch (err) {
      await db.close()
      throw err
    }
    return store
  }

  protected async _open (): Promise<number> {
    const [last] = await this.#db.keys({ gte: seqKey(0), lt: SEQ_END, reverse: true, limit: 1, ...ENC }).all()
    return last === undefined ? 0 : seqOf(last)
  }

  protected async _has (hash: ChangeHash): Promise<boolean> {
    // A point lookup in-thread: misses, the common case on append, are answered by the memtable and LevelDB's
    // bloom filters, so this is far cheaper than an async has() and its round trip through the thread pool.
    if (this.#getSync) return this.#db.getSync(changeKey(hash), ENC) !== undefined
    return await this.#db.has(changeKey(hash), ENC)
  }

  protected async _hasMany (hashes: readonly ChangeHash[]): Promise<boolean[]> {
    if (hashes.length === 0) return []
    if (this.#getSync && hashes.length <= IN_THREAD_BATCH) return hashes.map((h) => this.#db.getSync(changeKey(h), ENC) !== undefined)
    return await this.#db.hasMany(hashes.map(changeKey), ENC)
  }

  protected async _write (entries: SequencedChange[]): Promise<void> {
    await this.#db.batch(entries.flatMap(({ seq, change }) => {
      const hash = hashBytes(change.hash)
      return [
        { type: 'put' as const, key: changeKey(change.hash), value: this._encode(change) },
        { type: 'put' as const, key: seqKey(seq), value: seqRecord(change, hash) },
        { type: 'put' as const, key: docKey(change.docId, seq), value: hash }
      ]
    }), ENC)
  }

  protected async _getChanges (hashes: readonly ChangeHash[]): Promise<Array<StoreChange | undefined>> {
    if (hashes.length === 0) return []
    const values = await this.#db.getMany<string, Uint8Array>(hashes.map(changeKey), ENC)
    return values.map((bytes) => bytes === undefined ? undefined : decodeChange(bytes))
  }

  protected async _getEncodedMany (hashes: readonly ChangeHash[]): Promise<Array<Uint8Array | undefined>> {
    // LevelDB hands out copies of its values: no caller can alter the store through them
    if (this.#getSync && hashes.length <= IN_THREAD_BATCH) return hashes.map((h) => this.#db.getSync(changeKey(h), ENC))
    return await this.#db.getMany<string, Uint8Array>(hashes.map(changeKey), ENC)
  }

  protected async * _hashes (options?: AbortOptions): AsyncGenerator<ChangeHash> {
    const range = { gt: seqKey(0), lt: SEQ_END, ...ENC }
    for await (const chunk of chunks(this.#db.values(range), HASH_CHUNK, options)) yield * chunk.map(hashOf)
  }

  protected async * _docHashes (docId: DocId, options?: AbortOptions): AsyncGenerator<ChangeHash> {
    const range = { gte: docPrefix(docId), lt: docEnd(docId), ...ENC }
    for await (const chunk of chunks(this.#db.values(range), HASH_CHUNK, options)) yield * chunk.map(hashOf)
  }

  protected async * _iterateSince (afterSeq: number, options?: AbortOptions): AsyncGenerator<SequencedChange> {
    const range = { gt: seqKey(afterSeq), lt: SEQ_END, ...ENC }
    for await (const chunk of chunks(this.#db.iterator(range), CHANGE_CHUNK, options)) {
      const bytes = await this.#db.getMany<string, Uint8Array>(chunk.map(([, hash]) => changeKey(hashOf(hash))), ENC)
      for (let i = 0; i < chunk.length; i++) {
        const value = bytes[i]
        if (value === undefined) throw new StoreCorruptError(`store is corrupt: no change for seq ${seqOf(chunk[i][0])}`)
        yield { seq: seqOf(chunk[i][0]), change: decodeChange(value) }
      }
    }
  }

  protected async * _iterateIndexSince (afterSeq: number, options?: AbortOptions): AsyncGenerator<ChangeIndexEntry> {
    const range = { gt: seqKey(afterSeq), lt: SEQ_END, ...ENC }
    for await (const chunk of chunks(this.#db.iterator(range), HASH_CHUNK, options)) {
      const entries = chunk.map(([key, value]) => entryOf(seqOf(key), value))
      // records of the older form: the change itself says what the record does not
      const old = entries.flatMap((e, i) => e === undefined ? [i] : [])
      if (old.length > 0) {
        const changes = await this._getChanges(old.map((i) => hashOf(chunk[i][1])))
        old.forEach((i, k) => {
          const c = changes[k]
          if (c === undefined) throw new StoreCorruptError(`store is corrupt: no change for seq ${seqOf(chunk[i][0])}`)
          entries[i] = { seq: seqOf(chunk[i][0]), hash: c.hash, time: c.time, author: c.author, keyId: c.keyId }
        })
      }
      yield * entries as ChangeIndexEntry[]
    }
  }

  protected async _close (): Promise<void> {
    if (this.#owned) await closeLevel(this.#db as Level<string, Uint8Array>)
  }
}

/** Reads an iterator `size` entries at a time and closes it however the walk ends. */
async function * chunks<T> (
  it: { nextv: (size: number) => Promise<T[]>, close: () => Promise<void> }, size: number, options?: AbortOptions
): AsyncGenerator<T[]> {
  try {
    while (true) {
      throwIfAborted(options?.signal)
      const entries = await it.nextv(size)
      if (entries.length === 0) return
      yield entries
    }
  } finally {
    await it.close()
  }
}
