import assert from 'node:assert/strict'
import fc from 'fast-check'
import { ChangeRejectedError, MalformedChangeError } from '../../src/errors.js'
import {
  checkChange, computeChangeHash, copyChange, decodeChange, encodeChange, readChangeTime, sha256, type ChangeHeader, type StoreChange
} from '../../src/store/change.js'

const hex = (bytes: Uint8Array): string => Buffer.from(bytes).toString('hex')
const bytes = (n: number): fc.Arbitrary<Uint8Array> => fc.uint8Array({ minLength: n, maxLength: n })
const id = fc.stringMatching(/^[A-Za-z0-9._:@/-]{1,40}$/)

/** Well-formed changes with random contents (the signature is random: the codec does not check it). */
const changeArb: fc.Arbitrary<StoreChange> = fc.record({
  kind: fc.constantFrom('change' as const, 'delete' as const),
  docId: id,
  keyId: id,
  deps: fc.uniqueArray(bytes(32).map(hex), { maxLength: 5 }).map((d) => d.sort()),
  author: bytes(32).map((b) => Buffer.from(b).toString('base64url')),
  time: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
  payload: fc.uint8Array({ maxLength: 300 }),
  signature: bytes(64)
}).map((c) => ({ ...c, hash: computeChangeHash(c as ChangeHeader, c.payload) }))

describe('change codec', () => {
  it('should round-trip every change byte-exact', () => {
    fc.assert(fc.property(changeArb, (change) => {
      const encoded = encodeChange(change)
      const decoded = decodeChange(encoded)
      assert.deepStrictEqual(decoded, change)
      assert.deepStrictEqual(encodeChange(decoded), encoded)
      assert.equal(hex(sha256(checkChange(decoded))), change.hash)
    }))
  })

  it('should judge a decoded change edited afterwards as it judges the same edit of a plain object', () => {
    // checkChange skips re-encoding a change decodeChange returned: any edit of its fields must still be seen
    type Editable = { -readonly [K in keyof StoreChange]: StoreChange[K] }
    const edits: Array<(c: Editable) => void> = [
      (c) => { if (c.payload.length > 0) c.payload[0] ^= 1; else c.payload = new Uint8Array([1]) },
      (c) => { c.docId = c.docId + 'x' },
      (c) => { c.keyId = c.keyId + 'x' },
      (c) => { c.time = c.time === 0 ? 1 : c.time - 1 },
      (c) => { c.kind = c.kind === 'change' ? 'delete' : 'change' },
      (c) => { c.author = Buffer.alloc(32, 7).toString('base64url') },
      (c) => { c.deps = c.deps.length === 0 ? ['0'.repeat(64)] : c.deps.slice(1) },
      (c) => { (c.deps as string[]).push('f'.repeat(64)) },
      (c) => { c.hash = 'e'.repeat(64) },
      () => {} // no edit: both pass
    ]
    const outcome = (c: StoreChange): string => {
      try {
        return hex(checkChange(c))
      } catch (err) {
        return (err as Error).constructor.name
      }
    }
    fc.assert(fc.property(changeArb, fc.nat(edits.length - 1), fc.boolean(), (change, e, copied) => {
      const decoded = decodeChange(encodeChange(change))
      const judged = copied ? copyChange(decoded) : decoded
      const plain = { ...change, deps: [...change.deps], payload: new Uint8Array(change.payload) }
      edits[e](judged as Editable)
      edits[e](plain)
      assert.equal(outcome(judged), outcome(plain))
      if (e < edits.length - 1) assert.notEqual(outcome(judged), hex(checkChange(decodeChange(encodeChange(change)))))
    }))
  })

  it('should keep a copy apart from its original', () => {
    fc.assert(fc.property(changeArb, (change) => {
      const decoded = decodeChange(encodeChange(change))
      const copy = copyChange(decoded)
      if (decoded.payload.length > 0) decoded.payload[0] ^= 1
      ;(decoded.deps as string[]).push('f'.repeat(64))
      assert.equal(hex(sha256(checkChange(copy))), change.hash)
    }))
  })

  it('should read the time of every change from its bytes alone', () => {
    fc.assert(fc.property(changeArb, (change) => {
      const encoded = encodeChange(change)
      assert.equal(readChangeTime(encoded), change.time)
      // from a view inside a larger buffer too (stores may hand out such views)
      const padded = new Uint8Array(encoded.length + 7)
      padded.set(encoded, 3)
      assert.equal(readChangeTime(padded.subarray(3, 3 + encoded.length)), change.time)
    }))
  })

  it('should throw MalformedChangeError when reading the time of a truncated header or garbage', () => {
    fc.assert(fc.property(changeArb, fc.nat(), (change, n) => {
      const encoded = encodeChange(change)
      const headerEnd = encoded.length - 4 - change.payload.length - 64 - 32 // the time ends 32 bytes before the signed part's end
      const cut = n % headerEnd
      assert.throws(() => readChangeTime(encoded.subarray(0, cut)), MalformedChangeError)
    }))
    assert.throws(() => readChangeTime(new Uint8Array(100)), MalformedChangeError)
    assert.throws(() => readChangeTime('MDC2' as unknown as Uint8Array), MalformedChangeError)
  })

  it('should throw MalformedChangeError for every truncation', () => {
    fc.assert(fc.property(changeArb, fc.nat(), (change, n) => {
      const encoded = encodeChange(change)
      assert.throws(() => decodeChange(encoded.subarray(0, n % encoded.length)), MalformedChangeError)
    }))
  })

  it('should throw only ChangeRejectedError for altered or garbage bytes, and decode nothing inconsistent', () => {
    const altered = fc.tuple(changeArb, fc.nat(), fc.integer({ min: 1, max: 255 })).map(([change, at, x]) => {
      const encoded = new Uint8Array(encodeChange(change))
      encoded[at % encoded.length] ^= x
      return encoded
    })
    fc.assert(fc.property(fc.oneof(altered, fc.uint8Array({ maxLength: 400 })), (input) => {
      let decoded: StoreChange
      try {
        decoded = decodeChange(input)
      } catch (err) {
        assert.ok(err instanceof ChangeRejectedError, String(err))
        return
      }
      assert.equal(hex(sha256(checkChange(decoded))), decoded.hash) // whatever decodes has the hash of its bytes
      assert.deepStrictEqual(Buffer.from(encodeChange(decoded)), Buffer.from(input))
    }))
  })
})
