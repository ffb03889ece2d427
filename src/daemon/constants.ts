/** Defaults of the daemon; every config key's default lives here. */
export const DEFAULT_DATA_DIR = 'data/node'
export const DEFAULT_TENANT = 'local'
export const DEFAULT_LOG_LEVEL = 'info'
/** Name of the RPC socket inside the data directory when `rpc.socket` is not set. */
export const DEFAULT_SOCKET_NAME = 'rpc.sock'
/** Largest JSON-RPC request body accepted: 1 MiB. */
export const MAX_RPC_BODY_BYTES = 1024 * 1024
/** Lock file that keeps a second daemon off the same data directory. */
export const LOCK_FILE = 'daemon.lock'
/** The tenant encryption key password of a tenant created on embedded defaults lives here (mode 0600). */
export const GENERATED_PASSWORD_FILE = 'tenant-password'
/** The HTTP RPC and the metrics endpoint only ever listen here. */
export const LOCAL_HOST = '127.0.0.1'
/**
 * Shortest topic secret the config and the RPC accept: 22 characters. The DHT key and the session's topic id are
 * derived from the secret, so a guessable secret lets anyone find and join the topic's announcements offline;
 * 22 base64url characters carry 132 bits, above the 128 a random secret needs (`mindoodb share secret` prints 43).
 */
export const MIN_TOPIC_SECRET_CHARS = 22
/** Bytes of randomness in a secret printed by `mindoodb share secret`: 256 bits (43 base64url characters). */
export const TOPIC_SECRET_BYTES = 32
/** The daemon keeps the list of revoked partners here, in the data directory (mode 0600). */
export const REVOKED_FILE = 'revoked.json'
/** Events the daemon keeps for `events.since`: a cursor older than the oldest of them is stale. */
export const EVENTS_BUFFER_SIZE = 1024
/** Most events one `events.since` answer carries (`more: true` says there are others). */
export const EVENTS_MAX_PER_CALL = 500
/** `events.since` waits at most this long for an event, ms (below the RPC client's default timeout of 60 s). */
export const EVENTS_MAX_TIMEOUT_MS = 50_000
/** `events.since` waits this long when `timeoutMs` is not given, ms. */
export const EVENTS_DEFAULT_TIMEOUT_MS = 30_000
/** Document ids one `documents.changed` event lists (its `count` has them all). */
export const EVENTS_MAX_DOC_IDS = 100
/** The audit trail lives in this directory of the data directory (mode 0700, files 0600). */
export const AUDIT_DIR = 'audit'
/** An audit file is closed and a new one started when the next line would make it larger than this: 4 MiB. */
export const AUDIT_MAX_FILE_BYTES = 4 * 1024 * 1024
/**
 * Sessions accepted and refused are written to the audit trail once per window and key (peer, share, direction,
 * code): the first at once, the rest counted and written as one line at the window's end. 60 s.
 */
export const AUDIT_SESSION_WINDOW_MS = 60_000
/** Distinct (peer, share, direction, code) keys counted at once; the rest are counted under peer `*`. */
export const AUDIT_MAX_SESSION_KEYS = 256
/** Most audit records one `audit.show` answer carries. */
export const AUDIT_MAX_SHOW = 10_000
/** How often the daemon looks at each shared database's materialisation backlog (an event when it changed enough), ms. */
export const EVENTS_BACKLOG_POLL_MS = 5_000
/**
 * A `materialise.backlog` event is sent when a database's backlog (changes stored, not yet materialised) starts
 * (from 0), drains (to 0), or moved from the last value sent by at least this many changes and
 * EVENTS_BACKLOG_MIN_RATIO of that value: 1,000 changes.
 */
export const EVENTS_BACKLOG_MIN_DELTA = 1_000
/** See EVENTS_BACKLOG_MIN_DELTA: 0.5 (the backlog halved, or grew by half). */
export const EVENTS_BACKLOG_MIN_RATIO = 0.5
