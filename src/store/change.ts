/**
 * The change: the unit that is stored, synced and relayed.
 *
 * A change carries the encrypted Automerge change bytes of one document plus the metadata needed to route,
 * verify and order it. Its canonical binary form (version 2) is:
 *
 * ```
 * signed part (what the author signs; its SHA-256 is the change hash):
 *   magic      4 bytes  "MDC2"
 *   kind       u8       0 = change, 1 = delete (tombstone)
 *   docId      u16 length + UTF-8
 *   keyId      u16 length + UTF-8
 *   deps       u16 count + count * 32-byte hashes (sorted, unique)
 *   author     32 bytes Ed25519 public key
 *   time       u64 milliseconds since the epoch
 *   payloadSha 32 bytes SHA-256 of the payload
 * then:
 *   payload    u32 length + bytes (IV || AES-256-GCM ciphertext || tag)
 *   signature  64 bytes Ed25519 over the signed part
 * ```
 *
 * The hash covers the payload through its SHA-256, so verifying a change is: hash the payload, hash the signed
 * part, compare with the stated hash, verify the signature over the signed part.
 *
 * Version 2 adds two bindings that version 1 lacked:
 * - **Self-certifying document ids.** `docId = base64url(fp ‖ nonce ‖ tag)` with `fp` the first 16 bytes of
 *   SHA-256 of the creator's public key, a random 12-byte nonce, and `tag` the first 12 bytes of
 *   SHA-256("mindoodb/doc/v2\0" ‖ fp ‖ nonce ‖ keyId). Anyone, a relay without keys included, can check from the
 *   header alone that a change is under its document's key (`docKeyMatches`) and that a creation is signed by
 *   the document's creator (`docCreatedBy`): a document's key is fixed by its id, and its creation cannot be
 *   forged or raced by another author.
 * - **Payloads bound to their header.** The payload is AES-256-GCM with associated data `payloadAad(header)`
 *   (kind, docId, keyId, author), so a payload lifted into another header does not decrypt, and a tombstone
 *   (an encrypted empty payload) proves that its author holds the document's key.
 */
import { hash as oneShotHash, randomBytes } from 'node:crypto'
import { HashMismatchError, MalformedChangeError } from '../errors.js'

/** A change hash: 64 lower-case hex characters (SHA-256). */
export type ChangeHash = string & { readonly __brand?: 'ChangeHash' }
/** A document id. */
export type DocId = string & { readonly __brand?: 'DocId' }

export type ChangeKind = 'change' | 'delete'

/** The metadata an author signs (everything but the payload bytes themselves and the signature). */
export interface ChangeHeader {
  readonly kind: ChangeKind
  readonly docId: DocId
  /** Id of the key that encrypts the payload: a named key, or `tenant:<tenantId>` for a tenant's own key. */
  readonly keyId: string
  /** Hashes of this document's changes that this one follows (the author's heads when it was made). */
  readonly deps: readonly ChangeHash[]
  /** The author's Ed25519 public key, base64url of the 32 raw bytes. */
  readonly author: string
  /** When the author made the change, milliseconds since the epoch. */
  readonly time: number
}

/** A signed, encrypted change as held by an AppendOnlyStore. */
export interface StoreChange extends ChangeHeader {
  readonly hash: ChangeHash
  /** IV || ciphertext || GCM tag. */
  readonly payload: Uint8Array
  /** Ed25519 signature over the canonical signed bytes. */
  readonly signature: Uint8Array
}

const MAGIC = new Uint8Array([0x4d, 0x44, 0x43, 0x32]) // "MDC2"
/** Longest docId or keyId accepted, in bytes. */
export const MAX_ID_BYTES = 256
/** Most dependencies a change may list. */
export const MAX_DEPS = 4096
/** Largest payload accepted, in bytes. */
export const MAX_PAYLOAD_BYTES = 16 * 1024 * 1024
const ID_PATTERN = /^[A-Za-z0-9._:@/-]+$/
const HASH_PATTERN = /^[0-9a-f]{64}$/
const encoder = new TextEncoder()
const decoder = new TextDecoder('utf-8', { fatal: true })

/** SHA-256 of the parts one after the other, in one call (the parts hashed together here are small). */
export function sha256 (...parts: Uint8Array[]): Uint8Array {
  return oneShotHash('sha256', parts.length === 1 ? parts[0] : Buffer.concat(parts), 'buffer')
}

// ---------------------------------------------------------------- self-certifying document ids

const DOC_FP_BYTES = 16
const DOC_NONCE_BYTES = 12
const DOC_TAG_BYTES = 12
const DOC_ID_BYTES = DOC_FP_BYTES + DOC_NONCE_BYTES + DOC_TAG_BYTES
/** Length of a document id: base64url of 40 bytes. */
export const DOC_ID_LENGTH = 54
const DOC_TAG_DOMAIN = encoder.encode('mindoodb/doc/v2\0')
const DOC_ID_PATTERN = /^[A-Za-z0-9_-]{54}$/

/** Fingerprints of the authors seen lately: a receiver sees the same few authors over and over. */
const fingerprints = new Map<string, Uint8Array>()
const FINGERPRINTS_KEPT = 1024

function authorFingerprint (author: string): Uint8Array {
  let fp = fingerprints.get(author)
  if (fp === undefined) {
    fp = sha256(Buffer.from(author, 'base64url')).subarray(0, DOC_FP_BYTES)
    if (fingerprints.size >= FINGERPRINTS_KEPT) fingerprints.clear()
    fingerprints.set(author, fp)
  }
  return fp
}

function docTag (fp: Uint8Array, nonce: Uint8Array, keyId: string): Uint8Array {
  return sha256(DOC_TAG_DOMAIN, fp, nonce, encoder.encode(keyId)).subarray(0, DOC_TAG_BYTES)
}

/** The raw bytes of a version-2 document id, or undefined when `docId` is not one. */
function docIdBytes (docId: string): Buffer | undefined {
  if (typeof docId !== 'string' || !DOC_ID_PATTERN.test(docId)) return undefined
  const raw = Buffer.from(docId, 'base64url')
  // canonical form only (base64url decoding ignores unused trailing bits)
  return raw.length === DOC_ID_BYTES && raw.toString('base64url') === docId ? raw : undefined
}

/** A new document id for a document that `author` creates under `keyId` (random nonce). */
export function newDocId (author: string, keyId: string, nonce: Uint8Array = randomBytes(DOC_NONCE_BYTES)): DocId {
  if (nonce.length !== DOC_NONCE_BYTES) throw new TypeError(`a document nonce has ${DOC_NONCE_BYTES} bytes`)
  const fp = authorFingerprint(author)
  return Buffer.concat([fp, nonce, docTag(fp, nonce, keyId)]).toString('base64url')
}

/** True when `docId` is a version-2 document id (self-certifying). */
export function isDocId (docId: unknown): docId is DocId {
  return docIdBytes(docId as string) !== undefined
}

/** True when `docId` commits to `keyId`: a change of that document must be under this key. */
export function docKeyMatches (docId: DocId, keyId: string): boolean {
  const raw = docIdBytes(docId)
  if (raw === undefined) return false
  const fp = raw.subarray(0, DOC_FP_BYTES)
  const nonce = raw.subarray(DOC_FP_BYTES, DOC_FP_BYTES + DOC_NONCE_BYTES)
  return Buffer.from(docTag(fp, nonce, keyId)).equals(raw.subarray(DOC_FP_BYTES + DOC_NONCE_BYTES))
}

/** True when `author` (base64url public key) created the document `docId`. */
export function docCreatedBy (docId: DocId, author: string): boolean {
  const raw = docIdBytes(docId)
  return raw !== undefined && Buffer.from(authorFingerprint(author)).equals(raw.subarray(0, DOC_FP_BYTES))
}

/** True for the change that creates its document: kind `change` with no dependencies. */
export function isCreation (change: ChangeHeader): boolean {
  return change.kind === 'change' && change.deps.length === 0
}

/**
 * The associated data a payload is encrypted with: the header fields it belongs to (kind, docId, keyId, author).
 * A payload moved under another header fails to decrypt.
 */
export function payloadAad (h: Pick<ChangeHeader, 'kind' | 'docId' | 'keyId' | 'author'>): Uint8Array {
  return encoder.encode(`mindoodb/payload/v2\0${h.kind}\0${h.docId}\0${h.keyId}\0${h.author}`)
}

export function isChangeHash (value: unknown): value is ChangeHash {
  return typeof value === 'string' && HASH_PATTERN.test(value)
}

/** True for ids (document, key, database, tenant) that this project accepts. */
export function isValidId (value: unknown): value is string {
  return typeof value === 'string' && value.length > 0 && Buffer.byteLength(value) <= MAX_ID_BYTES && ID_PATTERN.test(value)
}

function checkHeader (h: ChangeHeader): void {
  if (h.kind !== 'change' && h.kind !== 'delete') throw new MalformedChangeError(`invalid kind ${String(h.kind)}`)
  if (!isValidId(h.docId)) throw new MalformedChangeError('invalid docId')
  if (!isValidId(h.keyId)) throw new MalformedChangeError('invalid keyId')
  if (!Array.isArray(h.deps) || h.deps.length > MAX_DEPS || !h.deps.every(isChangeHash)) {
    throw new MalformedChangeError('invalid deps')
  }
  for (let i = 1; i < h.deps.length; i++) {
    if (h.deps[i - 1] >= h.deps[i]) throw new MalformedChangeError('deps must be sorted and unique')
  }
  // canonical form only: base64url decoding is lenient (padding, stray characters, unused trailing bits), and
  // an alias of a key would give the same hash and signature to a change whose author string differs
  if (typeof h.author !== 'string' || h.author.length !== 43 ||
    Buffer.from(h.author, 'base64url').toString('base64url') !== h.author) {
    throw new MalformedChangeError('invalid author')
  }
  if (!Number.isSafeInteger(h.time) || h.time < 0) throw new MalformedChangeError('invalid time')
}

/**
 * The canonical bytes an author signs. `payloadSha` is the SHA-256 of the payload.
 * Throws MalformedChangeError when a field is out of range.
 */
export function encodeSignedPart (h: ChangeHeader, payloadSha: Uint8Array): Uint8Array {
  checkHeader(h)
  const docId = encoder.encode(h.docId)
  const keyId = encoder.encode(h.keyId)
  const author = Buffer.from(h.author, 'base64url')
  const size = 4 + 1 + 2 + docId.length + 2 + keyId.length + 2 + 32 * h.deps.length + 32 + 8 + 32
  const out = Buffer.allocUnsafe(size)
  let o = 0
  out.set(MAGIC, o); o += 4
  out[o++] = h.kind === 'delete' ? 1 : 0
  out.writeUInt16BE(docId.length, o); o += 2
  out.set(docId, o); o += docId.length
  out.writeUInt16BE(keyId.length, o); o += 2
  out.set(keyId, o); o += keyId.length
  out.writeUInt16BE(h.deps.length, o); o += 2
  for (const d of h.deps) { out.write(d, o, 'hex'); o += 32 }
  out.set(author, o); o += 32
  out.writeBigUInt64BE(BigInt(h.time), o); o += 8
  out.set(payloadSha, o) // the last field, ending at size
  return out
}

/** The hash a change with this header and payload has. */
export function computeChangeHash (h: ChangeHeader, payload: Uint8Array): ChangeHash {
  return Buffer.from(sha256(encodeSignedPart(h, sha256(payload)))).toString('hex')
}

/**
 * Makes a change: computes its hash and has `sign` sign its canonical signed part. `payload` is already
 * encrypted (with `payloadAad(header)` as associated data).
 */
export function signChange (header: ChangeHeader, payload: Uint8Array, sign: (signedPart: Uint8Array) => Uint8Array): StoreChange {
  const signed = encodeSignedPart(header, sha256(payload))
  return { ...header, payload, hash: Buffer.from(sha256(signed)).toString('hex'), signature: sign(signed) }
}

/**
 * Checks the shape of a change object and that its hash matches its contents.
 * Returns the signed part, which the caller verifies the signature over.
 * Throws MalformedChangeError or HashMismatchError.
 */
export function checkChange (change: StoreChange): Uint8Array {
  if (change == null || typeof change !== 'object') throw new MalformedChangeError('change must be an object')
  if (!(change.payload instanceof Uint8Array) || change.payload.length > MAX_PAYLOAD_BYTES) {
    throw new MalformedChangeError('invalid payload')
  }
  if (!(change.signature instanceof Uint8Array) || change.signature.length !== 64) {
    throw new MalformedChangeError('invalid signature field')
  }
  if (!isChangeHash(change.hash)) throw new MalformedChangeError('invalid hash field')
  const known = decodedParts.get(change)
  if (known !== undefined && sameHeader(known.header, change) && known.hash === change.hash &&
    Buffer.from(sha256(change.payload)).equals(known.signed.subarray(known.signed.length - 32))) {
    return known.signed
  }
  const signed = encodeSignedPart(change, sha256(change.payload))
  const actual = Buffer.from(sha256(signed)).toString('hex')
  if (actual !== change.hash) {
    throw new HashMismatchError(`hash mismatch: stated ${change.hash}, computed ${actual}`)
  }
  return signed
}

/**
 * What `decodeChange` learnt of each change it returned: the signed part it hashed, and the header and hash it
 * read. `checkChange` of such a change (or of a `copyChange` of it) whose fields are still those hashes only the
 * payload again instead of encoding and hashing the signed part a second time.
 */
const decodedParts = new WeakMap<StoreChange, { signed: Uint8Array, header: ChangeHeader, hash: ChangeHash }>()

function sameHeader (a: ChangeHeader, b: ChangeHeader): boolean {
  if (a.kind !== b.kind || a.docId !== b.docId || a.keyId !== b.keyId || a.author !== b.author || a.time !== b.time) return false
  if (!Array.isArray(b.deps) || a.deps.length !== b.deps.length) return false
  for (let i = 0; i < a.deps.length; i++) if (a.deps[i] !== b.deps[i]) return false
  return true
}

/**
 * A copy of the fields of a change and nothing else (callers may pass objects with more on them), each read
 * once; bytes become plain Uint8Array copies, so edits of the original cannot reach the copy. Values of the wrong
 * type are kept for checkChange to report. A copy of a decoded change keeps `checkChange`'s shortcut.
 */
export function copyChange (c: StoreChange): StoreChange {
  if (c == null || typeof c !== 'object') return c
  const bytes = (b: Uint8Array): Uint8Array => b instanceof Uint8Array ? new Uint8Array(b) : b
  const copy: StoreChange = {
    kind: c.kind,
    docId: c.docId,
    keyId: c.keyId,
    deps: Array.isArray(c.deps) ? [...c.deps] : c.deps,
    author: c.author,
    time: c.time,
    hash: c.hash,
    payload: bytes(c.payload),
    signature: bytes(c.signature)
  }
  const known = decodedParts.get(c)
  if (known !== undefined) decodedParts.set(copy, known)
  return copy
}

/** Serialises a change to its canonical bytes (signed part, payload, signature). */
export function encodeChange (change: StoreChange): Uint8Array {
  return encodeWithSignedPart(encodeSignedPart(change, sha256(change.payload)), change)
}

/** Canonical bytes from a signed part already computed for this change (by `checkChange`). */
export function encodeWithSignedPart (signed: Uint8Array, change: StoreChange): Uint8Array {
  const out = Buffer.allocUnsafe(signed.length + 4 + change.payload.length + 64)
  out.set(signed, 0)
  out.writeUInt32BE(change.payload.length, signed.length)
  out.set(change.payload, signed.length + 4)
  out.set(change.signature, signed.length + 4 + change.payload.length)
  return out
}

/**
 * The time of a change, read from its canonical bytes without decoding the rest (no payload copy, no hashing):
 * for bytes a store returned (`getEncodedMany`), which were checked when they entered. Throws
 * MalformedChangeError when the bytes are not a change header.
 */
export function readChangeTime (bytes: Uint8Array): number {
  if (!(bytes instanceof Uint8Array)) throw new MalformedChangeError('change bytes must be a Uint8Array')
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  const need = (end: number): void => {
    if (end > bytes.length) throw new MalformedChangeError('truncated change')
  }
  need(7)
  if (bytes[0] !== MAGIC[0] || bytes[1] !== MAGIC[1] || bytes[2] !== MAGIC[2] || bytes[3] !== MAGIC[3]) {
    throw new MalformedChangeError('not a change (bad magic)')
  }
  let o = 5 // magic, kind
  o += 2 + view.getUint16(o) // docId
  need(o + 2)
  o += 2 + view.getUint16(o) // keyId
  need(o + 2)
  o += 2 + 32 * view.getUint16(o) + 32 // deps, author
  need(o + 8)
  const time = view.getBigUint64(o)
  if (time > BigInt(Number.MAX_SAFE_INTEGER)) throw new MalformedChangeError('invalid time')
  return Number(time)
}

/**
 * Parses canonical change bytes. The hash is computed from the bytes (the result always has the hash its
 * contents imply); the signature is not checked here. Throws MalformedChangeError on truncated or garbage input.
 */
export function decodeChange (bytes: Uint8Array): StoreChange {
  if (!(bytes instanceof Uint8Array)) throw new MalformedChangeError('change bytes must be a Uint8Array')
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  let o = 0
  const need = (n: number): void => {
    if (o + n > buf.length) throw new MalformedChangeError('truncated change')
  }
  const readId = (what: string): string => {
    need(2)
    const len = buf.readUInt16BE(o); o += 2
    if (len === 0 || len > MAX_ID_BYTES) throw new MalformedChangeError(`invalid ${what} length`)
    need(len)
    try {
      return decoder.decode(buf.subarray(o, o + len))
    } catch (err) {
      throw new MalformedChangeError(`invalid ${what} encoding`, { cause: err })
    } finally {
      o += len
    }
  }
  need(5)
  if (buf[0] !== MAGIC[0] || buf[1] !== MAGIC[1] || buf[2] !== MAGIC[2] || buf[3] !== MAGIC[3]) {
    throw new MalformedChangeError('not a change (bad magic)')
  }
  o = 4
  const kindByte = buf[o++]
  if (kindByte > 1) throw new MalformedChangeError('invalid kind')
  const docId = readId('docId')
  const keyId = readId('keyId')
  need(2)
  const depCount = buf.readUInt16BE(o); o += 2
  if (depCount > MAX_DEPS) throw new MalformedChangeError('too many deps')
  need(32 * depCount)
  const deps: string[] = []
  for (let i = 0; i < depCount; i++) { deps.push(buf.toString('hex', o, o + 32)); o += 32 }
  need(32 + 8 + 32)
  const author = buf.toString('base64url', o, o + 32); o += 32
  const timeBig = buf.readBigUInt64BE(o); o += 8
  if (timeBig > BigInt(Number.MAX_SAFE_INTEGER)) throw new MalformedChangeError('invalid time')
  const payloadSha = buf.subarray(o, o + 32); o += 32
  const signedEnd = o
  need(4)
  const payloadLen = buf.readUInt32BE(o); o += 4
  if (payloadLen > MAX_PAYLOAD_BYTES) throw new MalformedChangeError('payload too large')
  need(payloadLen + 64)
  // plain Uint8Array copies (not Buffers, whose slice() is a view), independent of the input bytes
  const payload = new Uint8Array(buf.subarray(o, o + payloadLen)); o += payloadLen
  const signature = new Uint8Array(buf.subarray(o, o + 64)); o += 64
  if (o !== buf.length) throw new MalformedChangeError('trailing bytes after change')
  if (!Buffer.from(sha256(payload)).equals(payloadSha)) throw new HashMismatchError('payload does not match its hash')
  const header: ChangeHeader = { kind: kindByte === 1 ? 'delete' : 'change', docId, keyId, deps, author, time: Number(timeBig) }
  checkHeader(header)
  const signed = new Uint8Array(buf.subarray(0, signedEnd))
  const hash = Buffer.from(sha256(signed)).toString('hex')
  const change: StoreChange = { ...header, hash, payload, signature }
  decodedParts.set(change, { signed, header: { ...header, deps: [...deps] }, hash })
  return change
}
