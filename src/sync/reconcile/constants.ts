/**
 * Protocol constants, limits and defaults of range-based set reconciliation, in one place.
 * Options read `init.x ?? DEFAULT_X`.
 */

/**
 * First byte of every message: the version of this message format. Version 2 (issue 8): range heads that pack
 * the mode and a round bound into one varint, 8-byte fingerprints below the first message, wider first splits.
 */
export const PROTOCOL_VERSION = 0x02

/** Bytes of an item id (a SHA-256 change hash). */
export const ID_BYTES = 32

/**
 * Bytes of a range fingerprint (SHA-256 of the range's id sum and count, truncated): the first message's
 * fingerprint of the whole set, which alone decides that two sets are equal.
 */
export const FINGERPRINT_BYTES = 16

/**
 * Bytes of the fingerprints of every later message (sub-ranges of a range already known to differ). Two
 * different ranges get the same 64-bit fingerprint with probability 2^-64 (5.4e-20) per comparison; a session
 * over a difference d compares at most about levels * b * d such ranges (4 * 48 * 1000 ~ 2e5 at d = 1000), so an
 * accidental miss is below 1e-14 per session, and a miss is only a difference left for the next round.
 */
export const SHORT_FINGERPRINT_BYTES = 8

/**
 * Largest encoded range head with its bound: a raw head (1) + timestamp varint (8 bytes for 2^53) + prefix
 * length (1) + a full id prefix (32). The mode is part of the head.
 */
export const MAX_BOUND_BYTES = 1 + 8 + 1 + ID_BYTES

/** Most bytes of the range that folds all remaining deferred work into one fingerprint (a Skip + a Fingerprint). */
export const FOLD_BYTES = MAX_BOUND_BYTES + (MAX_BOUND_BYTES + FINGERPRINT_BYTES)

/**
 * Bytes always kept free in a message for the deferral tail (the rest of a cut range, then the fold), so that
 * work that does not fit can always be handed back to the peer.
 */
export const DEFERRAL_RESERVE_BYTES = 2 * (MAX_BOUND_BYTES + FINGERPRINT_BYTES)

/**
 * Share of a large frame kept for the deferral tail, where requests we cannot answer are handed back one by one
 * (so the peer can work on them) instead of being folded into one fingerprint that must be split again.
 */
export const DEFERRAL_SHARE = 0.25

/**
 * Smallest frame limit accepted. Worst case of the first unit of work a message must carry to make progress:
 * version (1) + Skip (42) + one range holding one item (head 42 + two counts + item 40 = 84), plus
 * the deferral reserve (116): 243 bytes, rounded up.
 */
export const MIN_MESSAGE_BYTES = 256

/** Default frame limit: the most bytes one message may have. */
export const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024

/**
 * Default branching factor: the most sub-ranges a mismatching range is split into. A split picks fewer when
 * that reaches an id list of about `idListThreshold / 5` items in as many rounds (see `splitWidth` in
 * session.ts): 10^6 items take three splits of 44, 10^5 three of 21, 10^4 two of 29.
 */
export const DEFAULT_BRANCHING_FACTOR = 48

/**
 * Split points may move by up to this share of a sub-range's item count, to land on a "round" bound (one whose
 * timestamp delta packs into a short head): sub-ranges stay within +-25 % of equal.
 */
export const SPLIT_SLACK = 0.25

/** The id lists a split aims at hold about `idListThreshold / LEAF_DIVISOR` items (4 by default). */
export const LEAF_DIVISOR = 16

/** Largest branching factor accepted. */
export const MAX_BRANCHING_FACTOR = 4096

/** Default: a mismatching range holding at most this many of our items is answered with its id list. */
export const DEFAULT_ID_LIST_THRESHOLD = 64

/** Default: the most messages a session accepts from its peer before it gives up. */
export const DEFAULT_MAX_MESSAGES = 10_000

/** Largest timestamp accepted (milliseconds; the bound encoding needs exact integers). */
export const MAX_TIMESTAMP = Number.MAX_SAFE_INTEGER

/** The set's storage: a chunk holds at most this many items, and is split in two when it would overflow. */
export const CHUNK_MAX_ITEMS = 1024

/** Items per chunk when a set is loaded in bulk (leaves room for inserts before chunks split). */
export const CHUNK_LOAD_ITEMS = 768

/** A chunk that shrinks below this many items is merged into a neighbour when they fit together. */
export const CHUNK_MERGE_ITEMS = 256
