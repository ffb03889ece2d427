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
 * Answer frames one session verifies and stores at once (4): the next frames are decoded and sent to the verify
 * pool while those before are still being checked or written, also across wants (a want of up to 256 changes is
 * most often answered in one frame). A session's memory for answers is this many frames, each below the frame
 * limit both sides agreed on (at most 4 × 4 MiB). Two instead of four: 8–10 % fewer documents stored per second
 * in the benchmark's cold sync.
 */
export const ANSWER_FRAMES_IN_FLIGHT = 4

/** Wants one session keeps outstanding (4): the partner reads and sends the next answers while these are stored. */
export const WANTS_IN_FLIGHT = 4

/** Hashes one want asks for (256): one batched read of the store on each side. */
export const WANT_HASHES = 256

/**
 * The longest a session waits for a hash another session of the same database is fetching (WantClaims), ms,
 * before it asks its own peer for it. Kept below half the idle timeout, so neither side of this session goes idle
 * meanwhile; a partner that holds a claim without answering delays other partners' rounds by at most this.
 */
export const SESSION_CLAIM_WAIT_MS = 20_000

/**
 * Reconciliation work a session accepts, in ranges of the peer's messages handled: at most
 * `RECONCILE_WORK_PER_LEVEL * ceil(log2(setSize + 2)) + RECONCILE_WORK_PER_FOUND * found + (b + 2) * mismatches`,
 * where `found` counts the differences found so far (have + need), `b` is the branching factor (48) and
 * `mismatches` the peer's fingerprints that differed from ours, capped by the size of the split tree over our set
 * (about levels * n / 64, with the default id-list threshold). The budget is charged range by range as the peer's ranges are handled; over it the
 * session fails with ReconcileProtocolError reason BUDGET. Before any of that, a message with more ranges than
 * an honest answer to our last message could have (b + 2 per request we sent) is refused at once. Each range costs a binary search and a fingerprint (a few µs on a large
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

// ---------------------------------------------------------------- live sessions (src/sync/live-phase.ts)
//
// After its first reconciliation with a partner a session may stay open (the live phase): each side announces
// what enters its served set and may push small changes with the announcement. A pushed change is checked like
// the answer to a want (participants, write policy, hash and signature, refusals); these bound what a partner
// can make this side read, verify and hold without being asked.

/** Hashes in one `announce` frame (1,024): the sender splits larger batches; more is PROTOCOL_ERROR. */
export const LIVE_MAX_ANNOUNCE_HASHES = 1024

/**
 * Largest change pushed with an announcement (16 KiB); larger changes are announced by hash only and fetched
 * with a want. A larger push is refused with PushLimitError (PUSH_LIMIT) and the session ends.
 */
export const LIVE_MAX_PUSH_CHANGE_BYTES = 16 * 1024

/**
 * Pushed bytes in one `announce` frame (256 KiB); the rest of a burst is announced by hash. More is PUSH_LIMIT.
 * With one announcement unacknowledged at a time, this bounds what a partner's pushes make this side hold.
 */
export const LIVE_MAX_PUSH_BYTES = 256 * 1024

/**
 * Unsolicited changes a partner may waste, as a token bucket: a pushed change that is refused (or not announced)
 * takes a token; the bucket holds 256 and refills at `LIVE_WASTE_REFILL_PER_S` (64 per second). An empty bucket
 * ends the session with PushFloodError (PUSH_FLOOD). A pushed change this side already has (it came another
 * way first, through a relay that announced it sooner) is skipped before it is verified and costs no token; nor
 * do announcements of hashes this side has: in a mesh every relay announces each change, and each such hash
 * costs one lookup, as a want for it would.
 */
export const LIVE_WASTE_BURST = 256
/** See LIVE_WASTE_BURST. */
export const LIVE_WASTE_REFILL_PER_S = 64

/**
 * Changes waiting to be announced on one live session (65,536). A backlog beyond it (a bulk import) ends the
 * live phase gracefully: the node resumes with a reconciliation round, which moves a large difference cheaper.
 */
export const LIVE_MAX_PENDING = 65_536

/** Hashes remembered per partner and share as known to the partner, so they are not announced back (65,536). */
export const LIVE_PEER_HAS_MAX = 65_536

/**
 * Long-lived sessions this node keeps with one peer, over all shares (4): half of MAX_INBOUND_STREAMS, so that
 * rounds (and the other side's long-lived sessions) always find a free stream on the connection. Shares beyond
 * it sync with a round per change, as before.
 */
export const LIVE_SESSIONS_PER_PEER = 4

// ---------------------------------------------------------------- the node and its connections (src/p2p)
//
// A node admits connections only from peers it has a reason to talk to (the connection gater: partners of some
// share, bootstrap peers, `allowPeers`); every bound below applies to those admitted peers too, since a partner
// of one share is not trusted on another and may misbehave within what its keys allow.

/**
 * Largest frame read from an inbound sync stream before its hello is authorised (4 KiB). A hello is a 32-byte
 * topic, a version, at most 32 short capability names and a frame limit: well under 1 KiB. Until the hello is
 * checked the peer is unknown on the topic, so it may make this node buffer no more than this (plus
 * `HELLO_READ_SLACK_BYTES`), instead of the session's 4 MiB frame limit.
 */
export const MAX_HELLO_FRAME_BYTES = 4 * 1024

/**
 * Bytes a stream may have buffered beyond the current frame limit before it is reset (1 KiB): room for the
 * length prefix and a small frame right behind the one being read. An honest initiator sends nothing after its
 * hello until it gets the welcome, so before authorisation this never binds an honest peer.
 */
export const HELLO_READ_SLACK_BYTES = 1024

/**
 * Largest Yamux receive window per stream (2 MiB; Yamux's default grows to 16 MiB). While a stream is paused the
 * peer can still send what its window allows, into the stream's own read buffer (4 MiB at most before libp2p
 * resets the stream), so the window must stay below that buffer.
 */
export const MAX_STREAM_WINDOW_BYTES = 2 * 1024 * 1024

/**
 * Bytes beyond a frame that an honest peer may get a paused sync stream to hold (4 MiB + 64 KiB). A channel pauses
 * its stream once it holds a whole frame's worth of unread bytes and resumes it when its reader catches up, so a
 * slow receiver slows the sender (Yamux stops granting window) instead of buffering without bound. But Yamux grants
 * window after every message it receives, so after a pause the peer may still send what its window allows
 * (`MAX_STREAM_WINDOW_BYTES`), and a resume hands that out at once while Yamux grants a whole window again before
 * the channel can pause anew: two windows in all. An honest sender answering a want at full speed reaches that
 * (seen with a receiver of 64 KiB frames); a smaller margin would reset its stream. One muxer message on top is slack.
 */
export const READ_PAUSE_MARGIN_BYTES = 2 * MAX_STREAM_WINDOW_BYTES + 64 * 1024

/**
 * A peer must send its hello within this time (10 s), or the stream is closed. Bounds how long an
 * unauthorised stream holds one of the slots below.
 */
export const HELLO_TIMEOUT_MS = 10_000

/**
 * Inbound sync streams not yet authorised (hello not yet received and checked), over every peer (64). Over the
 * cap a new stream is reset at once, before a byte of it is read. 64 × (4 KiB + slack) bounds the memory held
 * for unauthenticated peers at about 320 KiB; honest partners open one stream per share per round, and rounds
 * that this node initiates are not counted, so they go on even while the cap is full.
 */
export const MAX_PENDING_SESSIONS = 64

/**
 * Inbound sync streams not yet authorised from one peer (4). An honest partner has at most one session per
 * share being opened at a time, and pairs rarely share more than a few shares; one peer alone can take at most
 * 4 of the `MAX_PENDING_SESSIONS` slots.
 */
export const MAX_PENDING_SESSIONS_PER_PEER = 4

/**
 * Sync streams a peer may have open to this node at once, per connection (8; libp2p's default is 32). One
 * session per share in each direction is what an honest partner uses; more only multiplies the memory a
 * partner can hold (each authorised stream may buffer up to a frame).
 */
export const MAX_INBOUND_STREAMS = 8

/** Sync streams this node opens at once on one connection (32): one per share and round. */
export const MAX_OUTBOUND_STREAMS = 32

/**
 * Streams of any protocol a peer may open on one connection (yamux, 256; yamux's default is 1000): sync,
 * Kad-DHT (32 inbound per protocol by its own default), identify and ping together stay well below it.
 */
export const MAX_MUXED_STREAMS = 256

/**
 * Connections this node keeps open before libp2p prunes the least useful ones (128). A node talks to its
 * partners, bootstrap and DHT peers only (the gater admits no one else), which is tens, not hundreds.
 */
export const MAX_CONNECTIONS = 128

/**
 * Inbound connections still being upgraded (Noise handshake, muxer negotiation) at once (16; libp2p's default
 * is 10). The gater can only decide once Noise has proven the remote peer id, so this bounds the CPU and memory
 * strangers can take before they are turned away.
 */
export const MAX_PENDING_INBOUND_CONNECTIONS = 16

/**
 * New inbound connections accepted per second from one IP address (libp2p's rate limiter; its default is 5); more
 * are refused before any handshake. Partners behind one NAT share this budget, and a stranger dialling from their
 * address spends it, so it is set above what a few partners' dials and retries take in one second while still
 * bounding the handshakes one host can make this node do.
 */
export const INBOUND_CONNECTIONS_PER_HOST_PER_SECOND = 16

/**
 * Time an inbound connection has to finish its upgrade (5 s; libp2p's default is 10 s), so the slots above
 * free quickly when a stranger stalls the handshake.
 */
export const INBOUND_UPGRADE_TIMEOUT_MS = 5_000

/** Rejected changes remembered per share for status (20): enough to see what goes wrong, bounded memory. */
export const MAX_RECENT_REJECTIONS = 20

// ---------------------------------------------------------------- relays this node serves (src/p2p/nat.ts)

/**
 * Relay reservations this node holds for others at once when it serves as a circuit relay (`relay.serve`), 32.
 * Only partners of this node's shares get one (the connection gater refuses everyone else), so this bounds what
 * a misbehaving partner set can make the relay keep: one reservation and its keep-alive connection each.
 */
export const RELAY_MAX_RESERVATIONS = 32

/**
 * Bytes one relayed connection through this node may carry, both directions together, before the relay resets
 * it: 64 MiB. libp2p's own default is 128 KiB (meant for a short hop before hole punching); a relay we run for
 * our participants carries whole sync rounds, so the default is raised, while still bounding the bandwidth one
 * pair of partners can take from the relay per connection. A session cut by it fails with RELAY_LIMIT and is
 * retried over a fresh relayed connection (what it stored before the cut is kept).
 */
export const RELAY_DATA_LIMIT_BYTES = 64 * 1024 * 1024

/** How long one relayed connection through this node may stay open before the relay resets it: 30 min. */
export const RELAY_DURATION_LIMIT_MS = 30 * 60_000

/**
 * Inbound hop streams (reservation and connect requests) the relay handles at once, 32: each is a short
 * request/response with libp2p's 30 s hop timeout.
 */
export const RELAY_MAX_INBOUND_HOP_STREAMS = 32

/**
 * The frame limit a session declares over a connection with a data limit (a relayed one), 64 KiB (the smallest a
 * node accepts as `maxFrameBytes`): a relay with libp2p's default limit (128 KiB per relayed connection) lets a
 * frame or two through before it cuts the connection, and each frame received is stored at once, so every retry
 * moves on from where the last one was cut instead of resending a 4 MiB frame that can never arrive.
 */
export const RELAY_LIMITED_FRAME_BYTES = 64 * 1024

// ---------------------------------------------------------------- materialiser (src/core)

/**
 * Received changes the materialiser keeps in memory, by document, while they wait to be applied (20,000, about
 * the size of the changes themselves: a few MB). Beyond it the queue is dropped and read back from the store in
 * arrival order; a read of one document then waits for the whole backlog instead of only for its own changes.
 */
export const MATERIALISE_QUEUE_MAX = 20_000

/** ... and at most this many payload bytes (64 MiB): a few large changes cannot make the queue hold gigabytes. */
export const MATERIALISE_QUEUE_MAX_BYTES = 64 * 1024 * 1024

/** Changes the background materialiser takes up per step before it lets reads and writes in (2,048). */
export const MATERIALISE_STEP_CHANGES = 2_048

/**
 * A walk of the changefeed that meets a backlog takes it up this many changes at a time (8,192), yielding what each
 * step brought up to date before the next: a reader sees documents while a long backlog is being applied.
 */
export const CHANGEFEED_STEP_CHANGES = 8_192

/** Document states kept in memory, least recently used out first (512). */
export const MATERIALISE_CACHE_DOCS = 512

/**
 * A materialise step of at most this many documents (a live change) builds those of at most this many bytes
 * (snapshot and tail) on the main thread, and keeps them loaded: their next change is applied incrementally,
 * without a round trip to a worker. Larger steps and larger documents are built on the workers.
 */
export const MATERIALISE_MAIN_BUILD_DOCS = 4

/**
 * While changes are being received and more than MATERIALISE_DEFER_MIN_BACKLOG wait to be materialised (a sync;
 * a live change is taken up at once), the background materialiser defers to the receive path: it takes steps of
 * at most MATERIALISE_DEFER_STEP_CHANGES changes, the first MATERIALISE_DEFER_MAX_MS (ms) after receiving began,
 * then one per MATERIALISE_DEFER_MAX_MS from the end of the step before, or less often, so that its steps take
 * at most MATERIALISE_DEFER_SHARE of the time. The receive path gets the cores, and the changefeed still moves
 * during a long sync. (Measured here: a step of 2,048 collaborative-text changes took about half a second of
 * both cores, which the receive path then lost.)
 */
export const MATERIALISE_DEFER_MIN_BACKLOG = 64
export const MATERIALISE_DEFER_MAX_MS = 1000
export const MATERIALISE_DEFER_SHARE = 0.1
export const MATERIALISE_DEFER_STEP_CHANGES = 256
/** Changes count as being received until this long (ms) after the last receive ended: the gap between two frames. */
export const MATERIALISE_RECEIVE_QUIET_MS = 50
export const MATERIALISE_MAIN_BUILD_BYTES = 64 * 1024

/**
 * A document's snapshot is saved again once this many changes were applied since the last one (32): loading
 * replays at most this many changes, and a change never costs an Automerge save of its own.
 */
export const MATERIALISE_SNAPSHOT_AFTER_CHANGES = 32

/** ... or once the changes since the last snapshot are this large (256 KiB) and larger than the snapshot. */
export const MATERIALISE_SNAPSHOT_AFTER_BYTES = 256 * 1024

/** Worker threads of the materialiser (4, and never more than the machine's cores): Automerge work off the main thread. */
export const MATERIALISE_WORKERS_MAX = 4

/**
 * A worker of the verify or materialise pool that failed is replaced on a later job, no sooner than this long
 * after it failed (1 s), doubled for each failure in a row up to WORKER_RESTART_MAX_MS (60 s); until then its
 * jobs are done on the calling thread. Input that crashes a worker again and again costs a worker start a minute.
 */
export const WORKER_RESTART_BASE_MS = 1_000
export const WORKER_RESTART_MAX_MS = 60_000

/**
 * Documents each materialise worker keeps built (256), least recently used out first: a document that gets a few
 * changes at a time is then not loaded again on every batch. Only documents that existed before their batch are
 * kept (see materialise-worker.ts).
 */
export const MATERIALISE_WORKER_CACHE_DOCS = 256

/**
 * A store keeps its last appended changes in memory, up to this many and this many payload bytes: a live
 * announcement and a partner's want for what just arrived are answered without a read of the disk.
 */
export const STORE_RECENT_CHANGES = 256
export const STORE_RECENT_BYTES = 4 * 1024 * 1024

/**
 * Documents `MindooDB.dataAfter` keeps built (8), least recently used out first: a `types` write rule judges a
 * frame's changes of one document one after the other, each on the document with the ones before it, and then
 * pays one Automerge change per change instead of a load of the document per change.
 */
export const AFTER_DOCS_KEPT = 8

/**
 * LevelDB's write buffer (memtable), 32 MiB against LevelDB's 4 MiB: a sync's writes reach the disk in fewer,
 * larger tables. Measured here on the cold sync of 100,000 changes: B's CPU per change 512 -> 431 us, and the
 * LevelDB threads' CPU per document received 100 -> 37 us. It costs up to twice this much memory while writing
 * (the buffer, and the one being written out), and after a crash (not after a clean close, which writes the
 * buffer out) the next open replays up to this much log.
 */
export const LEVEL_WRITE_BUFFER_BYTES = 32 * 1024 * 1024
