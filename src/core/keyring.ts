import type { KeyObject } from 'node:crypto'
import { decrypt, encrypt, importSecretKey, KEY_BYTES } from '../crypto/index.js'
import { DecryptionError, KeyNotFoundError } from '../errors.js'

/** One version of a named key. */
export interface KeyVersion {
  key: Uint8Array
  /** The same key imported once for the cipher calls. */
  handle: KeyObject
  /** When this replica learned the version (ms); versions are kept in the order they were added. */
  addedAt: number
}

export interface KeyInfo {
  keyId: string
  versions: number
}

/** Serialised form kept in the tenant's secrets file. */
export type KeyRingJson = Record<string, Array<{ key: string, addedAt: number }>>

/**
 * The symmetric keys a tenant holds, by key id. A key id may hold several versions (rotation): the newest
 * encrypts, all are tried on decrypt.
 */
export class KeyRing {
  readonly #keys = new Map<string, KeyVersion[]>()

  static fromJSON (json: KeyRingJson): KeyRing {
    const ring = new KeyRing()
    for (const [keyId, versions] of Object.entries(json)) {
      ring.#keys.set(keyId, versions.map((v) => {
        const key = Buffer.from(v.key, 'base64')
        return { key, handle: importSecretKey(key), addedAt: v.addedAt }
      }))
    }
    return ring
  }

  toJSON (): KeyRingJson {
    const out: KeyRingJson = {}
    for (const [keyId, versions] of this.#keys) {
      out[keyId] = versions.map((v) => ({ key: Buffer.from(v.key).toString('base64'), addedAt: v.addedAt }))
    }
    return out
  }

  has (keyId: string): boolean {
    return this.#keys.has(keyId)
  }

  list (): KeyInfo[] {
    return [...this.#keys].map(([keyId, versions]) => ({ keyId, versions: versions.length }))
  }

  /**
   * Adds key material: `material` is one or more 32-byte versions, oldest first. Versions already held are
   * skipped. Returns how many versions were new.
   */
  add (keyId: string, material: Uint8Array): number {
    if (material.length === 0 || material.length % KEY_BYTES !== 0) {
      throw new DecryptionError('key material must be a multiple of 32 bytes')
    }
    const versions = this.#keys.get(keyId) ?? []
    let added = 0
    for (let o = 0; o < material.length; o += KEY_BYTES) {
      const key = Uint8Array.prototype.slice.call(material, o, o + KEY_BYTES)
      if (versions.some((v) => Buffer.from(v.key).equals(key))) continue
      versions.push({ key, handle: importSecretKey(key), addedAt: Date.now() })
      added++
    }
    this.#keys.set(keyId, versions)
    return added
  }

  /** All versions of a key concatenated, oldest first (what an export wraps). */
  material (keyId: string): Uint8Array {
    return Buffer.concat(this.#versions(keyId).map((v) => v.key))
  }

  /** Encrypts under the newest version; `aad` is authenticated with it (see crypto `encrypt`). */
  encrypt (keyId: string, plaintext: Uint8Array, aad?: Uint8Array): Uint8Array {
    const versions = this.#versions(keyId)
    return encrypt(versions[versions.length - 1].handle, plaintext, aad)
  }

  /** Tries every version, newest first. Throws KeyNotFoundError or DecryptionError. */
  decrypt (keyId: string, sealed: Uint8Array, aad?: Uint8Array): Uint8Array {
    const versions = this.#versions(keyId)
    for (let i = versions.length - 1; i >= 0; i--) {
      try {
        return decrypt(versions[i].handle, sealed, aad)
      } catch {
        // try the next version
      }
    }
    throw new DecryptionError(`no version of key ${keyId} decrypts this payload`)
  }

  #versions (keyId: string): KeyVersion[] {
    const versions = this.#keys.get(keyId)
    if (versions === undefined) throw new KeyNotFoundError(`unknown key ${keyId}`)
    return versions
  }
}
