/**
 * Public types of set reconciliation: items, the served-set index, sessions and their options.
 */
import type { ChangeHash } from '../../store/change.js'
import type { Logger } from '../../util/logger.js'

/** One element of a reconciled set: a change hash and its timestamp. Items are ordered by (timestamp, id). */
export interface ReconcileItem {
  /** Milliseconds since the epoch, an integer in 0..2^53-1. */
  readonly timestamp: number
  /** 64 lower-case hex characters (upper case is accepted on input). */
  readonly id: ChangeHash
}

/** A position in the (timestamp, id) order; a missing id means "before every id at that timestamp". */
export interface ReconcileKey {
  readonly timestamp: number
  readonly id?: ChangeHash
}

/**
 * The ordered set a share serves (the "served set index"): kept up to date with insert and delete as documents
 * change, never rebuilt per session, and read by any number of sessions. Range fingerprints come from cached
 * per-chunk sums, so a session over a million items costs microseconds per range.
 */
export interface ReconcileSet {
  /** Number of items. */
  readonly size: number
  /** Adds an item; false if it was already there. */
  insert: (timestamp: number, id: ChangeHash) => boolean
  /** Removes an item; false if it was not there. */
  delete: (timestamp: number, id: ChangeHash) => boolean
  has: (timestamp: number, id: ChangeHash) => boolean
  /** Fingerprint (16 bytes) of the items with `from <= item < to`; the defaults cover the whole set. */
  fingerprint: (from?: ReconcileKey, to?: ReconcileKey) => Uint8Array
  /** The items with `from <= item < to`, in order. */
  items: (from?: ReconcileKey, to?: ReconcileKey) => IterableIterator<ReconcileItem>
  /** An independent copy. */
  clone: () => ReconcileSet
}

export type ReconcileRole = 'initiator' | 'responder'

/** Traffic of one session, as seen from its side. */
export interface ReconcileStats {
  messagesSent: number
  messagesReceived: number
  bytesSent: number
  bytesReceived: number
}

/**
 * One reconciliation between this side and one peer, over one set. Transport-free: it turns the peer's message
 * bytes into the next message bytes. When it is done, `have` and `need` hold the exact differences on both sides.
 */
export interface ReconcileSession {
  readonly role: ReconcileRole
  /** True once nothing more is to be sent or received. */
  readonly done: boolean
  /**
   * Items this side has and the peer lacks, in the order found (each once). Grows while the session runs, so
   * sending can start before the session ends.
   */
  readonly have: readonly ReconcileItem[]
  /** Items the peer has and this side lacks, in the order found (each once). */
  readonly need: readonly ReconcileItem[]
  readonly stats: Readonly<ReconcileStats>
  /** Initiator only, once: the first message. */
  initiate: () => Uint8Array
  /**
   * Handles the peer's message; returns the reply to send, or null when the message needs no reply (the session
   * is then done). Throws ReconcileProtocolError (code RECONCILE_PROTOCOL) for an invalid message, after which
   * the session is failed.
   */
  reconcile: (message: Uint8Array) => Uint8Array | null
}

export interface ReconcileComponents {
  set: ReconcileSet
  logger?: Logger
}

/** Session options. Both ends of a session must use the same `maxMessageBytes`; the rest is local. */
export interface ReconcileInit {
  /**
   * Frame limit: the most bytes of a message, sent or accepted. Work that does not fit is deferred to later
   * messages. At least MIN_MESSAGE_BYTES (256). Default: DEFAULT_MAX_MESSAGE_BYTES (65536).
   */
  maxMessageBytes?: number
  /**
   * The most sub-ranges a mismatching range is split into, 2..4096; a split uses fewer when that reaches id lists
   * in as many rounds. The peer must not use a larger one: an answer of more than `branchingFactor + 2` ranges
   * per request is refused (BUDGET). Default: DEFAULT_BRANCHING_FACTOR (48).
   */
  branchingFactor?: number
  /**
   * A mismatching range holding at most this many of our items is answered with their ids instead of being split
   * further (at least 1). Default: DEFAULT_ID_LIST_THRESHOLD (64).
   */
  idListThreshold?: number
  /** The most messages accepted from the peer before the session fails. Default: DEFAULT_MAX_MESSAGES (10000). */
  maxMessages?: number
  /**
   * Work budget: ranges of the peer's messages handled per session are at most
   * `workPerLevel * ceil(log2(set size + 2)) + workPerFound * (have + need)`; over it the session fails with
   * reason BUDGET. Defaults: RECONCILE_WORK_PER_LEVEL, RECONCILE_WORK_PER_FOUND (src/limits.ts).
   */
  workPerLevel?: number
  workPerFound?: number
  /**
   * Ranges an honest answer may hold per request of our last message; a longer message fails at once with reason
   * BUDGET. Default: branching factor + 2 (a skip, then a split into `branchingFactor` ranges). Raised only to
   * measure what an unchecked message would cost (the benchmark).
   */
  answerRangesPerRequest?: number
}
