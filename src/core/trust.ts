/**
 * A database's trust and write rights: which authors it accepts (its own tenant's and the partners it trusts,
 * persisted as `trust!<signing key>`), and the verifier it installs on its store, which every path into the
 * database goes through (local writes, `append`, `appendMany`, `receiveChanges`, sync).
 *
 * The verifier accepts a change only if its author is trusted, its signature verifies, its key is the one its
 * document id commits to (else KEY_MISMATCH), and, when it creates a document, its author is the creator the id
 * names (else NOT_CREATOR). A batch (`verifyMany`) checks signatures on every core (the verify pool).
 */
import { verifySignature } from '../crypto/index.js'
import { verifySignatures } from '../crypto/verify-pool.js'
import {
  InvalidArgumentError, InvalidSignatureError, KeyMismatchError, MalformedChangeError, NotCreatorError,
  UntrustedAuthorError, type ChangeRejectedError
} from '../errors.js'
import { docCreatedBy, docKeyMatches, isCreation, isDocId, isValidId, type StoreChange } from '../store/change.js'
import type { ChangeVerifier } from '../store/types.js'
import type { KV, TenantPublicInfo } from './types.js'

const enc = new TextEncoder()
const dec = new TextDecoder()

export class Trust {
  readonly #dbName: string
  readonly #state: KV
  readonly #ownKey: string
  readonly #trusted = new Map<string, string>()

  constructor (dbName: string, state: KV, own: { publicKey: string, tenantId: string }) {
    this.#dbName = dbName
    this.#state = state
    this.#ownKey = own.publicKey
    this.#trusted.set(own.publicKey, own.tenantId)
  }

  /** Reads the trusted partners from the database's state. */
  async load (): Promise<void> {
    for await (const [key, value] of this.#state.iterator({ gt: 'trust!', lt: 'trust!~' })) {
      if (key.slice('trust!'.length) !== this.#ownKey) this.#trusted.set(key.slice('trust!'.length), dec.decode(value))
    }
  }

  async trustPartner (info: TenantPublicInfo): Promise<void> {
    if (info == null || !isValidId(info.tenantId) || typeof info.signingPublicKey !== 'string' ||
        Buffer.from(info.signingPublicKey, 'base64url').length !== 32) {
      throw new InvalidArgumentError('info must be { tenantId, signingPublicKey } of a tenant')
    }
    await this.#state.put('trust!' + info.signingPublicKey, enc.encode(info.tenantId))
    this.#trusted.set(info.signingPublicKey, info.tenantId)
  }

  async untrustPartner (signingPublicKey: string): Promise<void> {
    if (signingPublicKey === this.#ownKey) throw new InvalidArgumentError('cannot untrust the own tenant')
    await this.#state.del('trust!' + signingPublicKey)
    this.#trusted.delete(signingPublicKey)
  }

  /** Signing key -> tenant id, the own tenant included. */
  authors (): Map<string, string> {
    return new Map(this.#trusted)
  }

  readonly verifier: ChangeVerifier = {
    verify: (change: StoreChange, signedPart: Uint8Array): void => {
      const verdict = this.#checkRights(change)
      if (verdict !== undefined) throw verdict
      if (!verifySignature(change.author, signedPart, change.signature)) throw this.#badSignature(change)
    },
    verifyMany: async (items) => {
      const verdicts: Array<ChangeRejectedError | undefined> = items.map(({ change }) => this.#checkRights(change))
      const trusted = items.filter((_, i) => verdicts[i] === undefined)
      const ok = await verifySignatures(trusted.map(({ change, signedPart }) => ({ publicKey: change.author, data: signedPart, signature: change.signature })))
      let k = 0
      items.forEach((item, i) => {
        if (verdicts[i] === undefined && !ok[k++]) verdicts[i] = this.#badSignature(item.change)
      })
      return verdicts
    }
  }

  /**
   * The checks that need no signature work, from the change alone: a trusted author, a version-2 document id,
   * the document's key, the creator for a creation, and a tombstone that follows something.
   */
  #checkRights (change: StoreChange): ChangeRejectedError | undefined {
    if (!this.#trusted.has(change.author)) {
      return new UntrustedAuthorError(`author ${change.author} is not trusted by database ${this.#dbName}`)
    }
    if (!isDocId(change.docId)) return new MalformedChangeError(`document id ${change.docId} is not a self-certifying id`)
    if (!docKeyMatches(change.docId, change.keyId)) {
      return new KeyMismatchError(`change ${change.hash} is under key ${change.keyId}, not its document's key`)
    }
    if (isCreation(change) && !docCreatedBy(change.docId, change.author)) {
      return new NotCreatorError(`change ${change.hash} creates document ${change.docId} but its author did not create it`)
    }
    if (change.kind === 'delete' && change.deps.length === 0) {
      return new MalformedChangeError(`tombstone ${change.hash} follows no change of its document`)
    }
    return undefined
  }

  #badSignature (change: StoreChange): InvalidSignatureError {
    return new InvalidSignatureError(`signature of change ${change.hash} does not verify`)
  }
}
