/**
 * Keys, signatures, encryption and password wrapping: `node:crypto`, and libsodium (sodium-native) for Ed25519.
 *
 * - Ed25519 signing keys: authors sign the canonical bytes of their changes. Signing and checking go through
 *   libsodium, which verifies about twice as fast as OpenSSL here (a receiver's largest cost per change). Its
 *   check is the strict one: it also refuses small-order keys and points, and non-canonical encodings, which no
 *   honest signer produces. Keys are kept and exchanged as before (PKCS#8 DER, raw public keys).
 * - AES-256-GCM with a fresh random 96-bit IV per payload: `IV || ciphertext || tag`.
 * - Password wrapping of 256-bit keys with scrypt and a random salt (`createWrappedKey` / `unwrapKey`).
 *
 * @example
 * ```ts
 * const blob = await createWrappedKey(randomKey(), 'password')
 * const key = await unwrapKey(blob, 'password')          // WrongPasswordError on a wrong password
 * const sealed = encrypt(key, new TextEncoder().encode('hi'))
 * ```
 */
import {
  createCipheriv, createDecipheriv, createPrivateKey, createSecretKey, generateKeyPairSync, randomBytes, scrypt,
  type KeyObject
} from 'node:crypto'
import { createRequire } from 'node:module'
import type SodiumNative from 'sodium-native'
import { DecryptionError, InvalidKeyFormatError, PlatformUnsupportedError, WrongPasswordError } from '../errors.js'

/**
 * libsodium, loaded once. Without it nothing can be signed or checked: where its prebuilt binary does not load
 * (a platform the package has none for), loading this module fails with one PlatformUnsupportedError that says so.
 */
const sodium: typeof SodiumNative = loadSodium()

function loadSodium (): typeof SodiumNative {
  try {
    return createRequire(import.meta.url)('sodium-native') as typeof SodiumNative
  } catch (err) {
    const why = String((err as Error)?.message ?? err).split('\n')[0]
    throw new PlatformUnsupportedError(`libsodium (the sodium-native package) does not load on ${process.platform}-${process.arch}, and MindooDB signs and checks changes with it: ${why}`, { cause: err })
  }
}

export const KEY_BYTES = 32
const IV_BYTES = 12
const TAG_BYTES = 16

/** A fresh random 256-bit symmetric key. */
export function randomKey (): Uint8Array {
  return randomBytes(KEY_BYTES)
}

// ---------------------------------------------------------------- signing

export interface SigningKeyPair {
  /** base64url of the raw 32-byte public key: the author id written into changes. */
  publicKey: string
  /** PKCS#8 DER of the private key. */
  privateKeyDer: Uint8Array
}

export function generateSigningKeyPair (): SigningKeyPair {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519')
  return {
    publicKey: rawPublicKey(publicKey),
    privateKeyDer: privateKey.export({ format: 'der', type: 'pkcs8' })
  }
}

function rawPublicKey (key: KeyObject): string {
  const der = key.export({ format: 'der', type: 'spki' })
  return der.subarray(der.length - 32).toString('base64url')
}

/** A signer holding an imported private key. */
export class Signer {
  readonly publicKey: string
  /** libsodium's secret key: the 32-byte seed, then the public key. */
  readonly #secret: Buffer

  constructor (privateKeyDer: Uint8Array) {
    let key: KeyObject
    try {
      key = createPrivateKey({ key: Buffer.from(privateKeyDer), format: 'der', type: 'pkcs8' })
    } catch (err) {
      throw new InvalidKeyFormatError('not an Ed25519 PKCS#8 private key', { cause: err })
    }
    if (key.asymmetricKeyType !== 'ed25519') throw new InvalidKeyFormatError('not an Ed25519 key')
    const seed = Buffer.from(key.export({ format: 'jwk' }).d as string, 'base64url')
    const pub = Buffer.alloc(sodium.crypto_sign_PUBLICKEYBYTES)
    this.#secret = Buffer.alloc(sodium.crypto_sign_SECRETKEYBYTES)
    sodium.crypto_sign_seed_keypair(pub, this.#secret, seed)
    this.publicKey = pub.toString('base64url')
  }

  sign (data: Uint8Array): Uint8Array {
    const signature = Buffer.alloc(sodium.crypto_sign_BYTES)
    sodium.crypto_sign_detached(signature, data, this.#secret)
    return signature
  }
}

/** Raw public keys by their base64url text: a receiver sees the same few authors over and over. */
const publicKeyCache = new Map<string, Buffer>()
const PUBLIC_KEY_CACHE_MAX = 4096

/** The raw bytes of a base64url Ed25519 public key (cached), or undefined when it has not 32 bytes. */
function rawPublicKeyOf (publicKey: string): Buffer | undefined {
  let raw = publicKeyCache.get(publicKey)
  if (raw === undefined) {
    if (typeof publicKey !== 'string') return undefined
    raw = Buffer.from(publicKey, 'base64url')
    if (raw.length !== sodium.crypto_sign_PUBLICKEYBYTES) return undefined
    if (publicKeyCache.size >= PUBLIC_KEY_CACHE_MAX) publicKeyCache.clear()
    publicKeyCache.set(publicKey, raw)
  }
  return raw
}

/**
 * True when `signature` is a valid Ed25519 signature of `data` by `publicKey` (base64url raw), by libsodium's
 * strict check. False, never a throw, for a key or signature of the wrong length or type.
 */
export function verifySignature (publicKey: string, data: Uint8Array, signature: Uint8Array): boolean {
  const raw = rawPublicKeyOf(publicKey)
  if (raw === undefined || !(signature instanceof Uint8Array) || signature.length !== sodium.crypto_sign_BYTES) return false
  try {
    return sodium.crypto_sign_verify_detached(signature, data, raw)
  } catch {
    return false
  }
}

// ---------------------------------------------------------------- AES-256-GCM

/** A key imported once, for repeated use (importing raw bytes on every call costs more than a 1 KB decrypt). */
export function importSecretKey (key: Uint8Array): KeyObject {
  return createSecretKey(key)
}

/** IVs drawn from the system's CSPRNG at once (256): one draw per 256 encryptions instead of one each. */
const IV_POOL_BYTES = IV_BYTES * 256
let ivPool = Buffer.alloc(0)
let ivAt = 0

/** A fresh random IV, never handed out twice (each pool is a new buffer, read once front to back). */
function freshIv (): Buffer {
  if (ivAt + IV_BYTES > ivPool.length) {
    ivPool = randomBytes(IV_POOL_BYTES)
    ivAt = 0
  }
  const iv = ivPool.subarray(ivAt, ivAt + IV_BYTES)
  ivAt += IV_BYTES
  return iv
}

/**
 * Encrypts with AES-256-GCM under a fresh random IV; returns `IV || ciphertext || tag`. `aad`, when given, is
 * authenticated but not encrypted: decrypting needs the same bytes.
 */
export function encrypt (key: Uint8Array | KeyObject, plaintext: Uint8Array, aad?: Uint8Array): Uint8Array {
  const iv = freshIv()
  const cipher = createCipheriv('aes-256-gcm', key, iv)
  if (aad !== undefined) cipher.setAAD(aad)
  const body = cipher.update(plaintext)
  const final = cipher.final()
  return Buffer.concat([iv, body, final, cipher.getAuthTag()])
}

/**
 * Decrypts `IV || ciphertext || tag`. Throws DecryptionError when the key is wrong, the bytes were altered, or
 * `aad` differs from what was given to `encrypt`.
 */
export function decrypt (key: Uint8Array | KeyObject, sealed: Uint8Array, aad?: Uint8Array): Uint8Array {
  if (sealed.length < IV_BYTES + TAG_BYTES) throw new DecryptionError('ciphertext too short')
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, IV_BYTES))
    if (aad !== undefined) decipher.setAAD(aad)
    decipher.setAuthTag(sealed.subarray(sealed.length - TAG_BYTES))
    const body = decipher.update(sealed.subarray(IV_BYTES, sealed.length - TAG_BYTES))
    return Buffer.concat([body, decipher.final()])
  } catch (err) {
    throw new DecryptionError('decryption failed (wrong key or altered ciphertext)', { cause: err })
  }
}

// ---------------------------------------------------------------- password wrapping

/** scrypt cost parameters. The defaults follow OWASP's recommendation (N = 2^17, r = 8, p = 1). */
export interface ScryptParams {
  /** CPU/memory cost, a power of two. Default 2^17; at least 2^14 is accepted. */
  N?: number
  /** Block size. Default 8. */
  r?: number
  /** Parallelism. Default 1. */
  p?: number
}

const DEFAULT_SCRYPT = { N: 2 ** 17, r: 8, p: 1 }
const MIN_SCRYPT_N = 2 ** 14
const MAX_SCRYPT_N = 2 ** 22
const WRAP_PREFIX = 'mdbkey1.'

interface WrappedKeyJson {
  kdf: 'scrypt'
  N: number
  r: number
  p: number
  salt: string
  data: string
}

/** Derives a 256-bit key from a password with scrypt. */
export async function deriveKey (password: string, salt: Uint8Array, params: ScryptParams = {}): Promise<Uint8Array> {
  const N = params.N ?? DEFAULT_SCRYPT.N
  const r = params.r ?? DEFAULT_SCRYPT.r
  const p = params.p ?? DEFAULT_SCRYPT.p
  return await new Promise((resolve, reject) => {
    scrypt(password.normalize('NFC'), salt, KEY_BYTES, { N, r, p, maxmem: 256 * N * r + 1024 * 1024 }, (err, key) => {
      if (err != null) reject(err)
      else resolve(key)
    })
  })
}

/**
 * Wraps key bytes (any length) under a password: scrypt with a random salt, then AES-256-GCM.
 * Returns a portable string `mdbkey1.<base64url JSON>`.
 */
export async function createWrappedKey (secret: Uint8Array, password: string, params: ScryptParams = {}): Promise<string> {
  if (typeof password !== 'string' || password.length === 0) throw new TypeError('password must be a non-empty string')
  const json: Omit<WrappedKeyJson, 'data'> = { kdf: 'scrypt', ...DEFAULT_SCRYPT, ...params, salt: randomBytes(16).toString('base64url') }
  const wrapping = await deriveKey(password, Buffer.from(json.salt, 'base64url'), json)
  const data = Buffer.from(encrypt(wrapping, secret)).toString('base64url')
  return WRAP_PREFIX + Buffer.from(JSON.stringify({ ...json, data })).toString('base64url')
}

/** Unwraps a blob made by createWrappedKey. Throws WrongPasswordError or InvalidKeyFormatError. */
export async function unwrapKey (blob: string, password: string): Promise<Uint8Array> {
  if (typeof blob !== 'string' || !blob.startsWith(WRAP_PREFIX)) throw new InvalidKeyFormatError('not a wrapped key')
  let json: WrappedKeyJson
  try {
    json = JSON.parse(Buffer.from(blob.slice(WRAP_PREFIX.length), 'base64url').toString('utf8'))
  } catch (err) {
    throw new InvalidKeyFormatError('wrapped key is not readable', { cause: err })
  }
  const { N, r, p } = json
  if (json.kdf !== 'scrypt' || !Number.isInteger(N) || N < MIN_SCRYPT_N || N > MAX_SCRYPT_N || (N & (N - 1)) !== 0 ||
      !Number.isInteger(r) || r < 1 || r > 32 || !Number.isInteger(p) || p < 1 || p > 16 ||
      typeof json.salt !== 'string' || typeof json.data !== 'string') {
    throw new InvalidKeyFormatError('wrapped key has invalid parameters')
  }
  if (typeof password !== 'string') throw new TypeError('password must be a string')
  const wrapping = await deriveKey(password, Buffer.from(json.salt, 'base64url'), { N, r, p })
  try {
    return decrypt(wrapping, Buffer.from(json.data, 'base64url'))
  } catch (err) {
    throw new WrongPasswordError('wrong password for this key', { cause: err })
  }
}
