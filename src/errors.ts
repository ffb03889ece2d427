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

/** Every error class, by code; used to document codes and to map them over RPC. A duplicate code throws at load. */
export const ERROR_CODES: Readonly<Record<string, ErrorClass>> = errorTable([
  MalformedChangeError, HashMismatchError, InvalidSignatureError, UntrustedAuthorError, WrongPasswordError,
  InvalidKeyFormatError, KeyNotFoundError, KeyExistsError, DecryptionError, TenantExistsError, TenantNotFoundError,
  DocumentNotFoundError, DocumentDeletedError, ChangeNotFoundError, InvalidArgumentError, ClosedError,
  LockedError, AbortError, ChangeRejectedError, UnrequestedChangeError, InvalidFilterError, SyncProtocolError,
  SyncRemoteError, ShareDisabledError, SessionIdleError, ReconcileProtocolError, KeyMismatchError, NotCreatorError,
  WriteDeniedError,
  ConfigError, InvalidParamsError, NotStartedError, PartnerNotFoundError, RpcError, RpcUnavailableError, UsageError,
  RoundsFailedError, StoreCorruptError
])

/** Throws AbortError if the signal is aborted. */
export function throwIfAborted (signal?: AbortSignal): void {
  if (signal?.aborted === true) {
    throw new AbortError('operation aborted', { cause: signal.reason })
  }
}
