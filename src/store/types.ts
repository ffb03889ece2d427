import type { ChangeHash, DocId, StoreChange } from './change.js'
import type { ChangeRejectedError } from '../errors.js'

export interface AbortOptions {
  signal?: AbortSignal
}

/**
 * Decides whether a change may enter a store, beyond its hash (which the store checks itself).
 * The core's implementation verifies the Ed25519 signature and that the author is trusted by the database.
 * Throws a ChangeRejectedError subclass (InvalidSignatureError, UntrustedAuthorError...) to refuse.
 */
export interface ChangeVerifier {
  verify: (change: StoreChange, signedPart: Uint8Array) => void
  /**
   * Optional batch form used by appendMany (it may spread signature checks over several cores): for each item,
   * undefined when it passes, else the error saying why it is refused.
   */
  verifyMany?: (items: Array<{ change: StoreChange, signedPart: Uint8Array }>) => Promise<Array<ChangeRejectedError | undefined>>
}

/** Outcome of appendMany: what was stored, what was already there, what was refused and why. */
export interface AppendManyResult {
  /** Hashes newly stored, in the order given. */
  added: ChangeHash[]
  /** Hashes that were already in the store. */
  duplicates: ChangeHash[]
  /** Changes refused, with the typed error saying why (nothing of them was stored). */
  rejected: Array<{ hash: string, error: ChangeRejectedError }>
}

/** A stored change and its position in this replica's arrival order (1, 2, 3...). */
export interface SequencedChange {
  seq: number
  change: StoreChange
}

/**
 * What a store knows of a stored change without reading its payload: enough to place it in a share's served set
 * (`time`, `hash`) and to decide filters that need no document (`keyId`, `author`).
 */
export interface ChangeIndexEntry {
  seq: number
  hash: ChangeHash
  time: number
  author: string
  keyId: string
}

/** What an 'append' listener receives: the changes just committed, in arrival order. */
export interface AppendEvent {
  changes: SequencedChange[]
}

/**
 * An append-only, content-addressed store of signed, encrypted changes (MindooDB's `AppendOnlyStore`).
 *
 * - `append` checks the change's hash and asks the store's ChangeVerifier (signature, trust); a refused change
 *   raises a typed error and nothing is stored. Appending a change that is already there is a no-op.
 * - Every append is one atomic write: after a crash the store holds the change whole or not at all.
 * - Each stored change gets the next arrival sequence number; `iterateSince` walks that order.
 *
 * @example
 * ```ts
 * const missing = await source.findNewChanges(await target.getAllChangeHashes())
 * for (const change of await source.getChanges(missing)) await target.append(change)
 * ```
 */
export interface AppendOnlyStore {
  /** Stores one change after checking it. Resolves true if it was new, false if it was already stored. */
  append: (change: StoreChange, options?: AbortOptions) => Promise<boolean>
  /**
   * Checks each change; stores all that pass in one atomic batch; reports the rest individually. Within the batch
   * a change is stored after those of the batch it depends on (so a reader in arrival order meets dependencies
   * first), otherwise in the order given.
   */
  appendMany: (changes: readonly StoreChange[], options?: AbortOptions) => Promise<AppendManyResult>
  has: (hash: ChangeHash) => Promise<boolean>
  /**
   * For each hash, in the order asked, whether it is stored (false for a string that is not a change hash): one
   * batched read for the lot, where `has` per hash would pay a read each.
   */
  hasMany: (hashes: readonly ChangeHash[], options?: AbortOptions) => Promise<boolean[]>
  /** All hashes in the store, in arrival order. */
  getAllChangeHashes: (options?: AbortOptions) => Promise<ChangeHash[]>
  /** Hashes this store has that `haveHashes` lacks, in arrival order. */
  findNewChanges: (haveHashes: Iterable<ChangeHash>, options?: AbortOptions) => Promise<ChangeHash[]>
  /** The changes with these hashes, in the order asked. An unknown hash raises ChangeNotFoundError. */
  getChanges: (hashes: readonly ChangeHash[], options?: AbortOptions) => Promise<StoreChange[]>
  /**
   * The canonical bytes of the changes with these hashes, as stored (what `encodeChange` gives for each), in the
   * order asked, undefined for a hash not stored: one batched read, nothing decoded or re-encoded (the bytes were
   * checked when they entered). Each call returns fresh copies. A string that is not a change hash raises
   * InvalidArgumentError. `readChangeTime` reads a change's time from these bytes without decoding it.
   */
  getEncodedMany: (hashes: readonly ChangeHash[], options?: AbortOptions) => Promise<Array<Uint8Array | undefined>>
  /** Hashes of one document's changes, in arrival order. */
  getAllChangeHashesForDoc: (docId: DocId, options?: AbortOptions) => Promise<ChangeHash[]>
  /** Stored changes with seq > `afterSeq`, in arrival order, read in bounded chunks. */
  iterateSince: (afterSeq: number, options?: AbortOptions) => AsyncIterable<SequencedChange>
  /**
   * Like `iterateSince`, but only what the store indexes beside each change (no payload is read or decoded):
   * the cheap way to rebuild or catch up an index of the store. Optional for other implementations.
   */
  iterateIndexSince?: (afterSeq: number, options?: AbortOptions) => AsyncIterable<ChangeIndexEntry>
  /** The highest arrival sequence number used so far (0 when empty). */
  getLastSeq: () => number
  /** Number of changes stored. */
  count: () => Promise<number>
  /** Registers a listener called after each committed append; returns a function that removes it. */
  onAppend: (listener: (event: AppendEvent) => void) => () => void
  /** Replaces the verifier (the database installs its trust policy). */
  setVerifier: (verifier: ChangeVerifier | undefined) => void
  close: () => Promise<void>
}
