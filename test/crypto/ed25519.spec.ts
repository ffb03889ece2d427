/**
 * Ed25519 signing and checking (src/crypto/index.ts, libsodium): signatures are the same bytes OpenSSL makes for the
 * same key (keys and changes made before keep verifying, both ways), and the check refuses every altered bit,
 * malformed input (as false, never a throw), non-canonical signatures and small-order keys.
 */
import { expect } from 'chai'
import { createPrivateKey, createPublicKey, sign as opensslSign, verify as opensslVerify, randomBytes } from 'node:crypto'
import { generateSigningKeyPair, Signer, verifySignature } from '../../src/crypto/index.js'
import { InvalidKeyFormatError } from '../../src/errors.js'

/** The group order L of Ed25519, little-endian (a canonical S is below it). */
const L = Buffer.from('edd3f55c1a631258d69cf7a2def9de1400000000000000000000000000000010', 'hex')

function addLittleEndian (a: Uint8Array, b: Uint8Array): Buffer {
  const out = Buffer.alloc(a.length)
  let carry = 0
  for (let i = 0; i < a.length; i++) {
    const sum = a[i] + b[i] + carry
    out[i] = sum & 0xff
    carry = sum >> 8
  }
  return out
}

function flip (bytes: Uint8Array, bit: number): Buffer {
  const out = Buffer.from(bytes)
  out[bit >> 3] ^= 1 << (bit & 7)
  return out
}

describe('crypto: Ed25519', () => {
  const pair = generateSigningKeyPair()
  const signer = new Signer(pair.privateKeyDer)
  const opensslPrivate = createPrivateKey({ key: Buffer.from(pair.privateKeyDer), format: 'der', type: 'pkcs8' })
  const opensslPublic = createPublicKey(opensslPrivate)

  it('should make the signatures OpenSSL makes, and check them both ways', () => {
    expect(signer.publicKey).to.equal(pair.publicKey)
    for (let i = 0; i < 50; i++) {
      const data = randomBytes(1 + i * 7)
      const ours = signer.sign(data)
      const theirs = opensslSign(null, data, opensslPrivate)
      expect(Buffer.from(ours).equals(theirs)).to.equal(true)
      expect(opensslVerify(null, data, opensslPublic, ours)).to.equal(true)
      expect(verifySignature(pair.publicKey, data, theirs)).to.equal(true)
    }
  })

  it('should refuse every altered bit of the data, the signature and the key', () => {
    const data = Buffer.from('a change header and its payload hash')
    const signature = signer.sign(data)
    const key = Buffer.from(pair.publicKey, 'base64url')
    for (let bit = 0; bit < data.length * 8; bit += 3) expect(verifySignature(pair.publicKey, flip(data, bit), signature)).to.equal(false)
    for (let bit = 0; bit < 512; bit++) expect(verifySignature(pair.publicKey, data, flip(signature, bit))).to.equal(false)
    for (let bit = 0; bit < 256; bit++) expect(verifySignature(flip(key, bit).toString('base64url'), data, signature)).to.equal(false)
    expect(verifySignature(generateSigningKeyPair().publicKey, data, signature)).to.equal(false)
  })

  it('should answer false, not throw, for keys and signatures of the wrong length or type', () => {
    const data = Buffer.from('data')
    const signature = signer.sign(data)
    expect(verifySignature(pair.publicKey, data, signature.subarray(0, 63))).to.equal(false)
    expect(verifySignature(pair.publicKey, data, Buffer.concat([signature, Buffer.alloc(1)]))).to.equal(false)
    expect(verifySignature(pair.publicKey, data, 'not bytes' as unknown as Uint8Array)).to.equal(false)
    expect(verifySignature(pair.publicKey.slice(0, 40), data, signature)).to.equal(false)
    expect(verifySignature('', data, signature)).to.equal(false)
    expect(verifySignature(42 as unknown as string, data, signature)).to.equal(false)
    expect(verifySignature(pair.publicKey, data, signature)).to.equal(true)
  })

  it('should refuse a signature whose S is not reduced (S + L), though it satisfies the curve equation', () => {
    const data = Buffer.from('malleable?')
    const signature = Buffer.from(signer.sign(data))
    const s = signature.subarray(32)
    const sPlusL = addLittleEndian(s, L)
    // S + L still fits in 256 bits for a random S (S < L < 2^253), so this is a second encoding of the same scalar
    const malleated = Buffer.concat([signature.subarray(0, 32), sPlusL])
    expect(verifySignature(pair.publicKey, data, malleated)).to.equal(false)
    expect(verifySignature(pair.publicKey, data, signature)).to.equal(true)
  })

  it('should refuse small-order keys, with signatures that would hold for many messages', () => {
    const identity = Buffer.alloc(32)
    identity[0] = 1
    // R = the identity, S = 0: [S]B = R + [k]A holds for every message when A is the identity
    const universal = Buffer.concat([identity, Buffer.alloc(32)])
    const zeroKey = Buffer.alloc(32)
    for (const message of ['one message', 'any other']) {
      expect(verifySignature(identity.toString('base64url'), Buffer.from(message), universal)).to.equal(false)
      expect(verifySignature(zeroKey.toString('base64url'), Buffer.from(message), universal)).to.equal(false)
    }
  })

  it('should refuse a private key that is not Ed25519 PKCS#8 with InvalidKeyFormatError', () => {
    expect(() => new Signer(randomBytes(48))).to.throw(InvalidKeyFormatError)
  })
})
