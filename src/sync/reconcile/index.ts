/**
 * Range-based set reconciliation (as in Negentropy and Aljoscha Meyer's "Range-Based Set Reconciliation"),
 * transport-free: two sessions exchange opaque message bytes until both know the exact difference of their sets.
 *
 * Items are (timestamp, change hash), ordered by timestamp then id. A `ReconcileSet` is a share's served-set
 * index: it is updated with `insert`/`delete` as the served set changes and read by every session. Sessions
 * compare range fingerprints, split the ranges that differ, and exchange id lists for small ranges; an in-sync
 * pair costs one round trip of 19 bytes, one difference among 10^6 items three round trips of about 1.7 KB, and
 * the cost grows with the difference, not with the set.
 * Messages never exceed `maxMessageBytes` (work that does not fit waits for later messages), and every incoming
 * message is validated: a bad one raises ReconcileProtocolError (code RECONCILE_PROTOCOL) whose `reason` is one of
 * TRUNCATED, BAD_VERSION, BAD_VARINT, BAD_BOUND, BAD_TIMESTAMP, BOUNDS_ORDER, UNKNOWN_MODE, ITEMS_ORDER,
 * ITEM_OUT_OF_RANGE, FRAME_TOO_LARGE, TOO_MANY_MESSAGES, UNEXPECTED_MESSAGE, BUDGET (the session's work budget, see
 * `ReconcileInit.workPerLevel`). The message format is described in
 * `codec.ts`, the session's invariants in `session.ts`.
 *
 * @example
 * ```ts
 * const local = createReconcileSet(items)          // kept up to date with local.insert(ts, hash) / local.delete(ts, hash)
 * const session = createInitiator({ set: local })  // the peer runs createResponder({ set: remote })
 * let msg: Uint8Array | null = session.initiate()
 * while (msg !== null) {
 *   const reply = await transport.request(msg)     // the peer answers with responder.reconcile(msg)
 *   msg = reply === null ? null : session.reconcile(reply)
 * }
 * session.have  // items to send to the peer
 * session.need  // items to ask the peer for (the responder's have/need are the mirror image)
 * ```
 */
import { Session } from './session.js'
import { buildSet } from './set.js'
import type { ReconcileComponents, ReconcileInit, ReconcileItem, ReconcileRole, ReconcileSession, ReconcileSet } from './types.js'

export type {
  ReconcileComponents, ReconcileInit, ReconcileItem, ReconcileKey, ReconcileRole, ReconcileSession, ReconcileSet,
  ReconcileStats
} from './types.js'
export {
  DEFAULT_BRANCHING_FACTOR, DEFAULT_ID_LIST_THRESHOLD, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MAX_MESSAGES,
  FINGERPRINT_BYTES, MIN_MESSAGE_BYTES, PROTOCOL_VERSION, SHORT_FINGERPRINT_BYTES
} from './constants.js'

/**
 * A served-set index holding `items` (any order; duplicates dropped). Ids are 64-character hex change hashes;
 * timestamps are integer milliseconds. Invalid items raise InvalidArgumentError.
 */
export function createReconcileSet (items: Iterable<ReconcileItem> = []): ReconcileSet {
  return buildSet(items)
}

/** The side that sends the first message (`initiate()`), then answers with `reconcile()`. */
export function createInitiator (components: ReconcileComponents, init: ReconcileInit = {}): ReconcileSession {
  return new Session(components, { ...init, role: 'initiator' })
}

/** The side that answers: its first call is `reconcile(firstMessage)`. */
export function createResponder (components: ReconcileComponents, init: ReconcileInit = {}): ReconcileSession {
  return new Session(components, { ...init, role: 'responder' })
}

/** A session of either role: `createReconcileSession(components, 'initiator', init)` is `createInitiator(...)`. */
export function createReconcileSession (components: ReconcileComponents, role: ReconcileRole, init: ReconcileInit = {}): ReconcileSession {
  return new Session(components, { ...init, role })
}
