/**
 * The verify pool: a batch large enough goes to the worker threads; every answer must land on its own check,
 * whatever worker verified it, and a tampered signature, a wrong key or a malformed key is false, not an error.
 * A worker that dies with a share of a batch leaves that share to the calling thread: the batch is still answered.
 */
import { expect } from 'chai'
import { randomBytes } from 'node:crypto'
import { generateSigningKeyPair, Signer } from '../../src/crypto/index.js'
import { terminateVerifyWorkersForTests, verifySignatures, type SignatureCheck } from '../../src/crypto/verify-pool.js'

describe('crypto: verify pool', () => {
  const alice = generateSigningKeyPair()
  const bob = generateSigningKeyPair()
  const signer = new Signer(alice.privateKeyDer)

  function checks (n: number): { checks: SignatureCheck[], expected: boolean[] } {
    const out: SignatureCheck[] = []
    const expected: boolean[] = []
    for (let i = 0; i < n; i++) {
      const data = randomBytes(64 + (i % 50))
      const signature = signer.sign(data)
      // every kind of bad check, at positions spread over the workers' shares
      const kind = i % 7
      if (kind === 3) signature[i % signature.length] ^= 1
      const publicKey = kind === 5 ? bob.publicKey : kind === 6 && i % 2 === 0 ? 'not-a-key' : alice.publicKey
      if (kind === 4) data[0] ^= 0xff
      out.push({ publicKey, data, signature })
      expected.push(kind !== 3 && kind !== 4 && kind !== 5 && !(kind === 6 && i % 2 === 0))
    }
    return { checks: out, expected }
  }

  it('should answer each check of a large batch in order, false for every tampered one', async () => {
    const { checks: batch, expected } = checks(301)
    expect(await verifySignatures(batch)).to.deep.equal(expected)
  })

  it('should answer a small batch (verified in place) the same way', async () => {
    const { checks: batch, expected } = checks(9)
    expect(await verifySignatures(batch)).to.deep.equal(expected)
  })

  it('should answer false for data or a signature that is not bytes, in a batch the workers verify', async () => {
    const { checks: batch, expected } = checks(120)
    // a valid signature of the empty message: bytes that went missing on the way must not verify as empty data
    const emptySigned = signer.sign(new Uint8Array(0))
    batch[7] = { publicKey: alice.publicKey, data: 'not bytes' as unknown as Uint8Array, signature: emptySigned }
    batch[70] = { publicKey: alice.publicKey, data: new Uint8Array(0), signature: [...emptySigned] as unknown as Uint8Array }
    expected[7] = expected[70] = false
    batch[71] = { publicKey: alice.publicKey, data: new Uint8Array(0), signature: emptySigned }
    expected[71] = true
    // and the checks are left as they were
    const before = batch.map((c) => c.data instanceof Uint8Array ? Buffer.from(c.data).toString('hex') : c.data)
    expect(await verifySignatures(batch)).to.deep.equal(expected)
    expect(batch.map((c) => c.data instanceof Uint8Array ? Buffer.from(c.data).toString('hex') : c.data)).to.deep.equal(before)
  })

  it('should keep answers apart when batches overlap', async () => {
    const runs = [checks(100), checks(57), checks(240)]
    const answers = await Promise.all(runs.map(async ({ checks: batch }) => await verifySignatures(batch)))
    answers.forEach((answer, i) => { expect(answer).to.deep.equal(runs[i].expected) })
  })

  it('should answer a batch whose workers die while it is out, and go on after', async () => {
    // 2,000 checks keep each worker busy for far longer than it takes to terminate it (posted in this same tick)
    const out = checks(2000)
    const answer = verifySignatures(out.checks)
    const terminated = terminateVerifyWorkersForTests()
    // a call while they are dying is verified on the calling thread
    const meanwhile = checks(64)
    const answerMeanwhile = verifySignatures(meanwhile.checks)
    expect(await answer).to.deep.equal(out.expected)
    expect(await answerMeanwhile).to.deep.equal(meanwhile.expected)
    await terminated
    // and after, a new pool with new workers
    const after = checks(301)
    expect(await verifySignatures(after.checks)).to.deep.equal(after.expected)
  })
})
