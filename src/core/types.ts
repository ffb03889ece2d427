/** Types shared by the parts of a database (db.ts re-exports the public ones). */
import type { AbstractLevel } from 'abstract-level'
import type { Signer } from '../crypto/index.js'
import type { ChangeHash, DocId } from '../store/change.js'
import type { KeyRing } from './keyring.js'

/** A key-value store with string keys and binary values (a LevelDB sublevel). */
export type KV = AbstractLevel<any, string, Uint8Array> // eslint-disable-line @typescript-eslint/no-explicit-any

/** Where `iterateChangesSince` resumes: null for the beginning, or a cursor it yielded. JSON-serialisable. */
export interface ProcessChangesCursor {
  /** Position in this replica's changefeed. */
  readonly seq: number
  /** The document yielded at that position (informational). */
  readonly docId?: DocId
}

/** What a tenant tells partners out of band so their databases can trust its authors. */
export interface TenantPublicInfo {
  tenantId: string
  /** base64url of the raw 32-byte Ed25519 public key its changes are signed with. */
  signingPublicKey: string
}

/** The parts of its tenant a database uses. */
export interface TenantContext {
  tenantId: string
  signer: Signer
  keyring: KeyRing
  /** Key id of the tenant's own key (`tenant:<tenantId>`), which also seals local snapshots. */
  localKeyId: string
}

/** What one call of the materialiser did. */
export interface MaterialiseResult {
  /** Changes applied to documents. */
  applied: number
  /** Documents whose state changed. */
  documents: DocId[]
  /**
   * Stored changes the materialiser refused to apply, with the reason code (they stay stored, are never applied,
   * and changes depending on them never apply either): a change whose dependencies belong to another document,
   * or a change whose key differs from its document's.
   */
  rejected: Array<{ hash: ChangeHash, code: string }>
}

/**
 * Listener for documents whose materialised state changed: `docIds`, and `applied`, the changes applied to them
 * in that batch (their documents are materialised with them when the listener runs).
 */
export type DocumentsChangedListener = (event: DocumentsChangedEvent) => void

export interface DocumentsChangedEvent {
  docIds: DocId[]
  applied: Array<{ hash: ChangeHash, docId: DocId, time: number }>
  /**
   * The changefeed position once this batch was written: every document changed at or before it has had its
   * event. An index of the documents that records it resumes from there (`iterateChangesSince({ seq })`).
   */
  feedSeq?: number
}
