/**
 * Typed errors. Every kind of failure has its own class with a stable `name` and a stable upper-case
 * `code`; messages may change, codes never do. The codes are listed in the README and are the same ones
 * that cross the JSON-RPC boundary.
 */

/** Base class of every error this project throws on purpose. */
export class MindooError extends Error {
  static readonly code: string = 'MINDOO_ERROR'
  readonly code: string

  constructor (message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = new.target.name
    this.code = (new.target as typeof MindooError).code
  }
}

// ---- changes rejected on append (the store stays as it was) ----

/** A change was refused; `code` says why. Base class of the individual reasons below. */
export class ChangeRejectedError extends MindooError {
  static override readonly code: string = 'CHANGE_REJECTED'
}

/** The bytes or fields of a change do not form a valid change (truncated, garbage, bad field). */
export class MalformedChangeError extends ChangeRejectedError {
  static override readonly code: string = 'MALFORMED_CHANGE'
}

/** The change's stated hash is not the SHA-256 of its canonical signed bytes. */
export class HashMismatchError extends ChangeRejectedError {
  static override readonly code: string = 'HASH_MISMATCH'
}

/** The Ed25519 signature does not verify against the change's author key. */
export class InvalidSignatureError extends ChangeRejectedError {
  static override readonly code: string = 'INVALID_SIGNATURE'
}

/** The change is signed by an author this database does not trust. */
export class UntrustedAuthorError extends ChangeRejectedError {
  static override readonly code: string = 'UNTRUSTED_AUTHOR'
}

/** A change is not under its document's key (the document id commits to the key, see `docKeyMatches`). */
export class KeyMismatchError extends ChangeRejectedError {
  static override readonly code: string = 'KEY_MISMATCH'
}

/** A change that creates a document is signed by someone other than the creator its document id names. */
export class NotCreatorError extends ChangeRejectedError {
  static override readonly code: string = 'NOT_CREATOR'
}

/** The share's write policy does not let this author change this document. */
export class WriteDeniedError extends ChangeRejectedError {
  static override readonly code: string = 'WRITE_DENIED'
}

/**
 * A write policy could not judge the change yet (its document's outcome depends on a change this side does not
 * have): it is not stored now and is asked for again by a later round.
 */
export class WriteUndecidedError extends ChangeRejectedError {
  static override readonly code: string = 'WRITE_UNDECIDED'
}

// ---- keys and crypto ----

/** A password did not unwrap a key (or the wrapped blob was altered). */
export class WrongPasswordError extends MindooError {
  static override readonly code: string = 'WRONG_PASSWORD'
}

/** A wrapped key blob or key file is not in a format this version understands. */
export class InvalidKeyFormatError extends MindooError {
  static override readonly code: string = 'INVALID_KEY_FORMAT'
}

/** A key with that id exists already (rotate it instead). */
export class KeyExistsError extends MindooError {
  static override readonly code: string = 'KEY_EXISTS'
}

/** No key with that id is known to this tenant. */
export class KeyNotFoundError extends MindooError {
  static override readonly code: string = 'KEY_NOT_FOUND'
}

/** A payload could not be decrypted with any version of its key. */
export class DecryptionError extends MindooError {
  static override readonly code: string = 'DECRYPTION_FAILED'
}

// ---- tenants, databases, documents, store ----

export class TenantExistsError extends MindooError {
  static override readonly code: string = 'TENANT_EXISTS'
}

export class TenantNotFoundError extends MindooError {
  static override readonly code: string = 'TENANT_NOT_FOUND'
}

export class DocumentNotFoundError extends MindooError {
  static override readonly code: string = 'DOCUMENT_NOT_FOUND'
}

export class DocumentDeletedError extends MindooError {
  static override readonly code: string = 'DOCUMENT_DELETED'
}

/** A change hash asked for is not in the store. */
export class ChangeNotFoundError extends MindooError {
  static override readonly code: string = 'CHANGE_NOT_FOUND'
}

/** An invalid value was given for a named parameter (an id, a name, an option). */
export class InvalidArgumentError extends MindooError {
  static override readonly code: string = 'INVALID_ARGUMENT'
}

/**
 * A text edit (`spliceText`, RPC `doc.text.splice`) names a path that is not collaborative text: a scalar string
 * (as the RPC writes strings), a number, an object, a list, or a path through a missing field.
 */
export class NotTextError extends InvalidArgumentError {
  static override readonly code: string = 'NOT_TEXT'
}

/** The store, database or tenant was used after close(). */
export class ClosedError extends MindooError {
  static override readonly code: string = 'CLOSED'
}

/** The data directory is in use by another process. */
export class LockedError extends MindooError {
  static override readonly code: string = 'LOCKED'
}

/** The operation was aborted through its AbortSignal. */
export class AbortError extends MindooError {
  static override readonly code: string = 'ABORTED'
}

/**
 * A set-reconciliation peer sent a message that breaks the protocol: truncated, garbage, bounds out of order,
 * an unknown mode, too large, too many, or a message after the session ended. `reason` names the rule that was
 * broken with a stable upper-case word (TRUNCATED, BAD_VERSION, BOUNDS_ORDER, UNKNOWN_MODE...).
 */
export class ReconcileProtocolError extends MindooError {
  static override readonly code = 'RECONCILE_PROTOCOL'
  readonly reason: string

  constructor (message: string, options?: ErrorOptions & { reason?: string }) {
    super(message, options)
    this.reason = options?.reason ?? 'INVALID'
  }
}

/** A change sent by a peer that was not asked for. */
export class UnrequestedChangeError extends ChangeRejectedError {
  static override readonly code: string = 'UNREQUESTED'
}

/** A selector is not valid; `path` names where in it. */
export class InvalidFilterError extends InvalidArgumentError {
  static override readonly code: string = 'INVALID_FILTER'
  readonly path: string

  constructor (path: string, message: string) {
    super(`invalid selector at ${path}: ${message}`)
    this.path = path
  }
}

/** A sync frame broke the protocol: malformed, oversized, or not expected at this point. */
export class SyncProtocolError extends MindooError {
  static override readonly code: string = 'PROTOCOL_ERROR'
}

/** A live push broke a limit: too large a change, too many bytes in one announcement (LIVE_MAX_PUSH_*). */
export class PushLimitError extends SyncProtocolError {
  static override readonly code: string = 'PUSH_LIMIT'
}

/** A partner pushed more refused changes on a live session than LIVE_WASTE_BURST allows: the session is cut off. */
export class PushFloodError extends SyncProtocolError {
  static override readonly code: string = 'PUSH_FLOOD'
}

/** The peer answered with an error frame; `remoteCode` is its code (NOT_AUTHORIZED, SHARE_DISABLED...). */
export class SyncRemoteError extends MindooError {
  static override readonly code: string = 'REMOTE_ERROR'
  readonly remoteCode: string

  constructor (remoteCode: string, message: string) {
    super(`peer refused: ${remoteCode}: ${message}`)
    this.remoteCode = remoteCode
  }
}

/** The share was disabled while a session ran (the peer is told SHARE_DISABLED). */
export class ShareDisabledError extends MindooError {
  static override readonly code: string = 'SHARE_DISABLED'
}

/** A sync peer sent nothing for longer than the idle timeout. */
export class SessionIdleError extends MindooError {
  static override readonly code: string = 'SESSION_IDLE'
}

// ---- the node (src/p2p) ----

/** The node is stopping: its rounds, dials and lookups are aborted with this reason. */
export class NodeStoppingError extends MindooError {
  static override readonly code: string = 'NODE_STOPPING'
}

/** A network step (a hello, a goodbye, a dial) took longer than its deadline. */
export class TimeoutError extends MindooError {
  static override readonly code: string = 'TIMEOUT'
}

/**
 * An inbound sync stream was reset before it was read: too many streams not yet authorised, from this peer or
 * from all peers (see MAX_PENDING_SESSIONS in src/limits.ts).
 */
export class TooManySessionsError extends MindooError {
  static override readonly code: string = 'TOO_MANY_SESSIONS'
}

/** An inbound sync stream was refused (not authorised, share disabled, bad hello); `reason` is the code sent. */
export class SessionRefusedError extends MindooError {
  static override readonly code: string = 'SESSION_REFUSED'
}

/**
 * This node could not open a sync stream to a partner: no known address, connection refused, the connection was
 * closed by a simultaneous dial, protocol negotiation failed. The message names libp2p's error; the round is
 * retried with backoff.
 */
export class DialFailedError extends MindooError {
  static override readonly code: string = 'DIAL_FAILED'
}

/**
 * A circuit relay refused this node: a reservation to listen through it, or a hop through it to a partner.
 * `status` is the relay's answer (`PERMISSION_DENIED` when the relay does not serve this node,
 * `RESERVATION_REFUSED` when it is full, `NO_RESERVATION` when the partner holds no reservation on it, ...).
 */
export class RelayRefusedError extends MindooError {
  static override readonly code: string = 'RELAY_REFUSED'
  readonly status: string

  constructor (status: string, message: string, options?: ErrorOptions) {
    super(message, options)
    this.status = status
  }
}

/**
 * A session ran over a relayed connection with limits (data or time, set by the relay) and that connection was
 * cut: the relay's limit was reached. What was stored before the cut is kept; the round is retried.
 */
export class RelayLimitError extends MindooError {
  static override readonly code: string = 'RELAY_LIMIT'
}

/** A sync stream failed below the protocol: the peer reset it, the connection closed; `cause` has libp2p's error. */
export class StreamError extends MindooError {
  static override readonly code: string = 'STREAM_ERROR'
}

/**
 * No round was run with a partner: it is not connected and is not to be dialled (`dial: false`) or has no known
 * address. Not a failure: such a partner syncs when it connects.
 */
export class PeerNotDialledError extends MindooError {
  static override readonly code: string = 'PEER_NOT_DIALLED'
}

// ---- the daemon, its JSON-RPC API and the CLI ----

/** A config file that cannot be used; `key` is the JSON pointer of the offending key ('' for the whole file). */
export class ConfigError extends MindooError {
  static override readonly code: string = 'INVALID_CONFIG'
  readonly key: string

  constructor (key: string, message: string, options?: ErrorOptions) {
    super(`config ${key === '' ? '(file)' : key}: ${message}`, options)
    this.key = key
  }
}

/** A bad RPC parameter; becomes JSON-RPC error -32602 with this message (which names the parameter). */
export class InvalidParamsError extends InvalidArgumentError {
  static override readonly code: string = 'INVALID_PARAMS'
}

/** A component (the daemon, a store) was used before it was started or opened, or after it stopped. */
export class NotStartedError extends MindooError {
  static override readonly code: string = 'NOT_STARTED'
}

/** `partner revoke` named a peer id, tenant id or signing key that no share lists (and that was never revoked). */
export class PartnerNotFoundError extends MindooError {
  static override readonly code: string = 'PARTNER_NOT_FOUND'
}

/** A JSON-RPC error answer: `rpcCode` is the JSON-RPC code, `dataCode` our stable code when there is one. */
export class RpcError extends MindooError {
  static override readonly code: string = 'RPC_ERROR'
  readonly rpcCode: number
  readonly dataCode?: string

  constructor (rpcCode: number, message: string, dataCode?: string) {
    super(message)
    this.rpcCode = rpcCode
    this.dataCode = dataCode
  }
}

/** The daemon could not be reached (no socket, refused, unauthorised, timeout). */
export class RpcUnavailableError extends MindooError {
  static override readonly code: string = 'DAEMON_UNAVAILABLE'
}

/** Bad usage found by a CLI command itself (an unreadable file, a malformed JSON argument): exit code 2. */
export class UsageError extends MindooError {
  static override readonly code: string = 'USAGE'
}

/** `sync now --wait` saw at least one failed round: exit code 1, after the results are printed. */
export class RoundsFailedError extends MindooError {
  static override readonly code: string = 'SYNC_ROUNDS_FAILED'
}

/** The store's own records contradict each other (an index entry without its change): the data directory is damaged. */
export class StoreCorruptError extends MindooError {
  static override readonly code: string = 'STORE_CORRUPT'
}

// ---- event stream and audit trail ----

/**
 * An `events.since` cursor that no longer resumes: its events fell out of the daemon's bounded buffer, or it comes
 * from a previous run of the daemon. Resync: read the state you need (status, documents) and call again without a
 * cursor.
 */
export class EventsCursorStaleError extends MindooError {
  static override readonly code: string = 'EVENTS_CURSOR_STALE'
}

/** Where in the audit trail a check failed: the file (name in the audit directory), its 1-based line, the sequence number. */
export interface AuditLocation {
  file: string
  line: number
  seq?: number
}

/**
 * The audit trail's hash chain is broken: a line was edited, removed, inserted or reordered (or a file is missing);
 * `location` says where the chain first breaks.
 */
export class AuditTamperedError extends MindooError {
  static override readonly code: string = 'AUDIT_TAMPERED'
  readonly location: AuditLocation

  constructor (location: AuditLocation, message: string) {
    super(`${location.file} line ${location.line}: ${message}`)
    this.location = location
  }
}

/**
 * The last line of the newest audit file is incomplete (a crash during its append): every line before it verifies.
 * The daemon cuts it off at its next start and records that in the chain.
 */
export class AuditTornError extends MindooError {
  static override readonly code: string = 'AUDIT_TORN'
  readonly location: AuditLocation

  constructor (location: AuditLocation, message: string) {
    super(`${location.file} line ${location.line}: ${message}`)
    this.location = location
  }
}

/** A backup file is not one, or is truncated or altered (its SHA-256 does not match, or its records do not parse). */
export class BackupCorruptError extends MindooError {
  static override readonly code: string = 'BACKUP_CORRUPT'
}

/** A backup file of a format version this build does not read (written by a newer one). */
export class BackupVersionError extends MindooError {
  static override readonly code: string = 'BACKUP_VERSION_UNSUPPORTED'
}

/** `mindoodb restore` was pointed at a data directory that is not empty (it never overwrites). */
export class RestoreTargetNotEmptyError extends MindooError {
  static override readonly code: string = 'RESTORE_TARGET_NOT_EMPTY'
}

export type ErrorClass = (abstract new (...args: any[]) => MindooError) & { readonly code: string } // eslint-disable-line @typescript-eslint/no-explicit-any

/**
 * Builds a table of error classes by code. Two classes with the same code are a programming mistake that would
 * make one of them unreachable over RPC and in the README: it throws (at load, for ERROR_CODES).
 */
export function errorTable (classes: readonly ErrorClass[]): Readonly<Record<string, ErrorClass>> {
  const table: Record<string, ErrorClass> = {}
  for (const c of classes) {
    const existing = table[c.code]
    if (existing !== undefined) throw new TypeError(`error code ${c.code} is used by ${existing.name} and ${c.name}`)
    table[c.code] = c
  }
  return Object.freeze(table)
}

/**
 * An internal invariant broke: a bug in this project, never caused by input. The operation stops and nothing is
 * stored half-way; please report it with the log line.
 */
export class InternalError extends MindooError {
  static override readonly code: string = 'INTERNAL'
}

/** A part the project needs does not load on this machine (libsodium's prebuilt binary, for this platform). */
export class PlatformUnsupportedError extends MindooError {
  static override readonly code: string = 'PLATFORM_UNSUPPORTED'
}

/** Every error class, by code; used to document codes and to map them over RPC. A duplicate code throws at load. */
export const ERROR_CODES: Readonly<Record<string, ErrorClass>> = errorTable([
  MalformedChangeError, HashMismatchError, InvalidSignatureError, UntrustedAuthorError, WrongPasswordError,
  InvalidKeyFormatError, KeyNotFoundError, KeyExistsError, DecryptionError, TenantExistsError, TenantNotFoundError,
  DocumentNotFoundError, DocumentDeletedError, ChangeNotFoundError, InvalidArgumentError, ClosedError,
  LockedError, AbortError, ChangeRejectedError, UnrequestedChangeError, InvalidFilterError, SyncProtocolError, PushLimitError, PushFloodError,
  SyncRemoteError, ShareDisabledError, SessionIdleError, ReconcileProtocolError, KeyMismatchError, NotCreatorError,
  WriteDeniedError,
  WriteUndecidedError,
  ConfigError, InvalidParamsError, NotStartedError, PartnerNotFoundError, RpcError, RpcUnavailableError, UsageError,
  RoundsFailedError, StoreCorruptError, BackupCorruptError, BackupVersionError, RestoreTargetNotEmptyError,
  NodeStoppingError, TimeoutError, TooManySessionsError, SessionRefusedError, PeerNotDialledError, StreamError,
  InternalError, EventsCursorStaleError, AuditTamperedError, AuditTornError, DialFailedError, RelayRefusedError,
  RelayLimitError, NotTextError, PlatformUnsupportedError
])

/** Throws AbortError if the signal is aborted. */
export function throwIfAborted (signal?: AbortSignal): void {
  if (signal?.aborted === true) {
    throw new AbortError('operation aborted', { cause: signal.reason })
  }
}
