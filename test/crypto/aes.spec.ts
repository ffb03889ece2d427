/**
 * AES-256-GCM sealing (src/crypto/index.ts): every encryption takes a fresh random IV, also across the refills of
 * the pool the IVs are drawn from, and what is sealed opens only with the same key and associated data.
 */
import { expect } from 'chai'
import { randomBytes } from 'node:crypto'
import { decrypt, encrypt } from '../../src/crypto/index.js'
import { DecryptionError } from '../../src/errors.js'

const IV_BYTES = 12

describe('crypto: AES-256-GCM', () => {
  it('should never use an IV twice, across many pool refills, and open each sealed text again', () => {
    const key = randomBytes(32)
    const ivs = new Set<string>()
    const n = 3000 // more than ten pools of 256 IVs
    for (let i = 0; i < n; i++) {
      const plaintext = Buffer.from(`message ${i}`)
      const sealed = encrypt(key, plaintext)
      ivs.add(Buffer.from(sealed.subarray(0, IV_BYTES)).toString('hex'))
      expect(Buffer.from(decrypt(key, sealed)).equals(plaintext)).to.equal(true)
    }
    expect(ivs.size).to.equal(n)
  })

  it('should keep an IV it handed out when the sealed bytes are changed afterwards', () => {
    const key = randomBytes(32)
    const first = encrypt(key, Buffer.from('first'))
    const copy = Buffer.from(first)
    first.fill(0, 0, IV_BYTES) // the caller owns what encrypt returned
    const second = encrypt(key, Buffer.from('second'))
    expect(Buffer.from(decrypt(key, copy)).toString()).to.equal('first')
    expect(Buffer.from(second.subarray(0, IV_BYTES)).equals(Buffer.alloc(IV_BYTES))).to.equal(false)
    expect(Buffer.from(decrypt(key, second)).toString()).to.equal('second')
  })

  it('should refuse another key, other associated data or altered bytes with DecryptionError', () => {
    const key = randomBytes(32)
    const aad = Buffer.from('header')
    const sealed = encrypt(key, Buffer.from('content'), aad)
    const altered = Buffer.from(sealed)
    altered[IV_BYTES] ^= 1
    for (const attempt of [
      () => decrypt(randomBytes(32), sealed, aad),
      () => decrypt(key, sealed, Buffer.from('other')),
      () => decrypt(key, altered, aad)
    ]) expect(attempt).to.throw(DecryptionError)
  })
})
