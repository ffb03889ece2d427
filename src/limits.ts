/**
 * Every limit that bounds what a peer can make this node spend (memory, CPU, time, connections), in one place.
 * Each constant says what it bounds and why its value is safe; `SECURITY.md` cites them.
 *
 * Sections: sync sessions and reconciliation (src/sync), the node and its connections (src/p2p).
 */

// ---------------------------------------------------------------- sync sessions and reconciliation (src/sync)

/**
 * Frames in a row that move nothing (a `want` with no hashes that is not `done`, a `changes` frame with no
 * changes that is not the last of its answer). They never reset the idle timer; this many end the session with
 * PROTOCOL_ERROR. An honest peer sends none (it sends each `want` with hashes, or one `want{done}`), so a small
 * number only tolerates oddities of other implementations while keeping a flood from costing more than a few frames.
 */
export const SESSION_MAX_NOOP_FRAMES = 16

/**
 * The longest a session waits for a hash another session of the same database is fetching (WantClaims), ms,
 * before it asks its own peer for it. Kept below half the idle timeout, so neither side of this session goes idle
 * meanwhile; a partner that holds a claim without answering delays other partners' rounds by at most this.
 */
export const SESSION_CLAIM_WAIT_MS = 20_000

/**
 * Reconciliation work a session accepts, in ranges of the peer's messages handled: at most
 * `RECONCILE_WORK_PER_LEVEL * ceil(log2(setSize + 2)) + RECONCILE_WORK_PER_FOUND * found + (b + 2) * mismatches`,
 * where `found` counts the differences found so far (have + need), `b` is the branching factor (32) and
 * `mismatches` the peer's fingerprints that differed from ours, capped by the size of the split tree over our set
 * (about levels * n / 64). The budget is checked before a message is worked on; over it the session fails with
 * ReconcileProtocolError reason BUDGET. Each range costs a binary search and a fingerprint (a few µs on a large
 * set), so a peer can no longer make a session cost 10,000 messages of thousands of ranges: a message with more
 * ranges than the budget allows (e.g. 3,000 fingerprints as the first reply over a 200k set) fails at once, and a
 * whole session costs O(log n + difference), at most O(n) for a peer that fakes mismatches. An honest peer
 * answers each mismatch with at most b + 1 ranges, so honest sessions stay within it at any difference.
 */
export const RECONCILE_WORK_PER_LEVEL = 128
/** See RECONCILE_WORK_PER_LEVEL: ranges allowed per difference found. */
export const RECONCILE_WORK_PER_FOUND = 64

/**
 * Refusals remembered per peer (hashes whose bytes were refused for a reason tied to them: an untrusted author,
 * a key mismatch...), so the same bad change is not fetched from that peer again. Oldest dropped first.
 */
export const REFUSALS_PER_PEER = 10_000
/** Peers whose refusals are remembered at once (least recently used dropped first). */
export const REFUSALS_MAX_PEERS = 256

// ---------------------------------------------------------------- the node and its connections (src/p2p)
