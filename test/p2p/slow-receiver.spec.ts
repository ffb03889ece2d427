import * as Automerge from '@automerge/automerge'
import { expect } from 'chai'
import { randomBytes } from 'node:crypto'
import { createOrg, shareKey, shareWith, type TestOrg } from '../utils/orgs.js'

/**
 * Backpressure on the receiving side: a want's answer is many frames sent back to back, and a receiver that
 * stores and materialises each frame before reading the next must slow the sender down (its stream is paused,
 * Yamux stops granting window) instead of overflowing its read buffer and failing the session.
 */
describe('a slow receiver of many frames', function () {
  this.timeout(120_000)
  let orgs: TestOrg[] = []

  afterEach(async () => {
    for (const org of orgs) await org.cleanup()
    orgs = []
  })

  it('should slow the sender down and store everything, with no session failing on either side', async () => {
    // B accepts frames of 64 KiB only: A answers each want of 256 changes of about 20 KB in about 80 frames
    const [a, b] = [await createOrg('org-a'), await createOrg('org-b', { maxFrameBytes: 64 * 1024 })]
    orgs = [a, b]
    await shareKey([a, b], 'k')
    const dbA = await a.tenant.openDB('shared', { defaultKeyId: 'k' })
    const count = 300
    for (let i = 0; i < count; i++) {
      const doc = await dbA.createDocument()
      await dbA.changeDoc(doc, (d) => { d.getData().blob = new Automerge.ImmutableString(randomBytes(15 * 1024).toString('base64')) })
    }
    await a.node.addShare(shareWith([b], { direction: 'serve' }))
    await b.node.addShare(shareWith([a], { direction: 'receive' }))
    const rounds = await b.node.syncNow('shared')
    expect(rounds.map((r) => r.ok), JSON.stringify(rounds.map((r) => r.error))).to.deep.equal([true])
    const dbB = await b.tenant.openDB('shared')
    expect(await dbB.getStore().count()).to.equal(2 * count)
    const status = b.node.status('shared')[0]
    expect(status.totals.errors, JSON.stringify(status.lastError)).to.deep.equal({})
    expect(status.totals.roundsFailed).to.equal(0)
  })
})
