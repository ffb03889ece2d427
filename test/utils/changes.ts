/**
 * Real signed changes for tests, made with node:crypto alone (independent of src/crypto), and a verifier that
 * checks their Ed25519 signatures against a set of trusted authors.
 */
import { createPublicKey, generateKeyPairSync, randomBytes, sign, verify, type KeyObject } from 'node:crypto'
import { InvalidSignatureError, UntrustedAuthorError } from '../../src/errors.js'
import {
  encodeSignedPart, sha256, type ChangeHash, type ChangeHeader, type ChangeKind, type DocId, type StoreChange
} from '../../src/store/change.js'
import type { ChangeVerifier } from '../../src/store/types.js'

/** DER prefix of an Ed25519 SubjectPublicKeyInfo; the raw 32-byte key follows it. */
const ED25519_SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')

export interface TestAuthor {
  /** base64url of the raw 32-byte public key, as written into changes. */
  readonly id: string
  readonly privateKey: KeyObject
}

export function createAuthor (): TestAuthor {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519')
  const der = publicKey.export({ format: 'der', type: 'spki' })
  return { id: der.subarray(der.length - 32).toString('base64url'), privateKey }
}

/** The public KeyObject of a base64url raw Ed25519 key. */
export function publicKeyFromRaw (author: string): KeyObject {
  const raw = Buffer.from(author, 'base64url')
  return createPublicKey({ key: Buffer.concat([ED25519_SPKI_PREFIX, raw]), format: 'der', type: 'spki' })
}

export interface ChangeOptions {
  kind?: ChangeKind
  docId?: DocId
  keyId?: string
  deps?: ChangeHash[]
  time?: number
  /** Default: random bytes of `payloadSize`. */
  payload?: Uint8Array
  /** Default 64. */
  payloadSize?: number
}

let clock = 1_700_000_000_000

/** A change signed by `author`, with plain Uint8Arrays (as the store hands them back). */
export function makeChange (author: TestAuthor, options: ChangeOptions = {}): StoreChange {
  const header: ChangeHeader = {
    kind: options.kind ?? 'change',
    docId: options.docId ?? 'doc-1',
    keyId: options.keyId ?? 'tenant:test',
    deps: [...(options.deps ?? [])].sort(),
    author: author.id,
    time: options.time ?? clock++
  }
  const payload = new Uint8Array(options.payload ?? randomBytes(options.payloadSize ?? 64))
  const signedPart = encodeSignedPart(header, sha256(payload))
  return {
    ...header,
    hash: Buffer.from(sha256(signedPart)).toString('hex'),
    payload,
    signature: new Uint8Array(sign(null, signedPart, author.privateKey))
  }
}

/** `count` changes by `author`, spread over `docs` documents (`doc-0`, `doc-1`...). */
export function makeChanges (author: TestAuthor, count: number, docs = 1): StoreChange[] {
  return Array.from({ length: count }, (_, i) => makeChange(author, { docId: `doc-${i % docs}` }))
}

/** Checks the Ed25519 signature, then that the author is trusted. */
export class TestVerifier implements ChangeVerifier {
  readonly trusted: Set<string>

  constructor (trusted: Iterable<string | TestAuthor> = []) {
    this.trusted = new Set([...trusted].map((a) => typeof a === 'string' ? a : a.id))
  }

  verify (change: StoreChange, signedPart: Uint8Array): void {
    let ok: boolean
    try {
      ok = verify(null, signedPart, publicKeyFromRaw(change.author), change.signature)
    } catch {
      ok = false
    }
    if (!ok) {
      throw new InvalidSignatureError(`bad signature on ${change.hash}`)
    }
    if (!this.trusted.has(change.author)) throw new UntrustedAuthorError(`author ${change.author} is not trusted`)
  }
}
