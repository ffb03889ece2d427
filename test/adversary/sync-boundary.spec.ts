/**
 * Issue 7, items 2, 3, 4, 5, 7 and 8 over the real protocol: what a partner (a real node, or a raw libp2p peer
 * speaking the sync protocol from a partner's identity) can learn or make A spend through the sync session and
 * the served set. Each attack fails, and an honest partner keeps syncing with A meanwhile.
 */
import { randomBytes } from 'node:crypto'
import { expect } from 'chai'
import type { MindooDB } from '../../src/index.js'
import { encodeChange, type StoreChange } from '../../src/store/change.js'
import { INF_BOUND, MessageWriter } from '../../src/sync/reconcile/codec.js'
import { topicIdOf } from '../../src/sync/share.js'
import { createOrg, shareKey, shareWith, waitFor, type TestOrg } from '../utils/orgs.js'
import { containsBytes, openRawStream, type RawEvent } from '../utils/raw-peer.js'

async function changesOf (db: MindooDB, docId: string): Promise<StoreChange[]> {
  const store = db.getStore()
  return (await store.getChanges(await store.getAllChangeHashesForDoc(docId))).sort((x, y) => x.time - y.time)
}

async function allHashes (db: MindooDB): Promise<string[]> {
  return await db.getStore().getAllChangeHashes()
}

/** A reconcile message of `count` fingerprint ranges with random fingerprints (every one mismatches). */
export function hostileReconcileMessage (count: number): Uint8Array {
  const w = new MessageWriter(count * 24)
  for (let i = 1; i < count; i++) w.fingerprint({ ts: i * 1000, id: new Uint8Array(0) }, randomBytes(16))
  w.fingerprint(INF_BOUND, randomBytes(16))
  return w.finish()
}

function errorFrames (events: RawEvent[]): Array<{ code: string, message: string }> {
  return events.flatMap((e) => e.kind === 'frame' && e.message.type === 'error' ? [e.message] : [])
}

describe('adversary: the sync boundary (served set, receive-only, refusals, stalls, reconciliation cost)', function () {
  this.timeout(60_000)
  let orgs: TestOrg[] = []
  const org = async (name: string): Promise<TestOrg> => {
    const o = await createOrg(name)
    orgs.push(o)
    return o
  }

  afterEach(async () => {
    for (const o of orgs) await o.cleanup()
    orgs = []
  })

  it('should never serve or announce the change that makes a document leave the filter', async () => {
    const [a, b] = [await org('org-a'), await org('org-b')]
    await shareKey([a, b], 'k')
    const dbA = await a.tenant.openDB('orders', { defaultKeyId: 'k' })
    const filter = { kind: 'selector' as const, selector: { visibility: 'public' } }
    await a.node.addShare(shareWith([b], { database: 'orders', filter, direction: 'serve' }))
    await b.node.addShare(shareWith([a], { database: 'orders', direction: 'receive' }))
    await b.node.syncNow('shared')
    const dbB = await b.tenant.openDB('orders')
    const has = async (hash: string): Promise<boolean> => await dbB.getStore().has(hash)

    // live rounds are running: every change to a public document reaches B without polling
    const doc = await dbA.createDocument()
    await dbA.changeDoc(doc, (d) => { d.getData().visibility = 'public' })
    const [, publicChange] = await changesOf(dbA, doc.getId())
    await waitFor(async () => await has(publicChange.hash), 'the public document to reach B')
    // the leaving change adds the secret and makes the document private; a marker document follows it
    for (let i = 0; i < 5; i++) {
      await dbA.changeDoc(doc, (d) => { d.getData().visibility = 'private'; d.getData().secret = `s${i}` })
      await dbA.changeDoc(doc, (d) => { d.getData().visibility = 'public'; delete d.getData().secret })
    }
    await dbA.changeDoc(doc, (d) => { d.getData().visibility = 'private'; d.getData().secret = 'final' })
    const leaving = (await changesOf(dbA, doc.getId())).at(-1) as StoreChange
    const marker = await dbA.createDocument()
    await dbA.changeDoc(marker, (d) => { d.getData().visibility = 'public' })
    const [, markerChange] = await changesOf(dbA, marker.getId())
    await waitFor(async () => await has(markerChange.hash), 'the marker to reach B')
    await b.node.syncNow('shared')
    expect(await has(leaving.hash), 'the leaving change reached B').to.equal(false)
    // and a partner reconciling by hand learns none of the private document's hashes any more
    const raw = await openRawStream(b, a)
    await raw.hello(topicIdOf(shareWith([]).topicSecret))
    expect(await raw.frame()).to.include({ type: 'welcome' })
    const reconciler = await raw.reconcile([])
    const announced = new Set(reconciler.need.map((i) => i.id))
    for (const c of await changesOf(dbA, doc.getId())) expect(announced.has(c.hash), 'a change of the private document is announced').to.equal(false)
    expect(announced.has(markerChange.hash)).to.equal(true)
    raw.abort()
  })

  it('should reveal nothing of a receive-only share\'s local set to a partner reconciling against it', async () => {
    const [a, b, c] = [await org('org-a'), await org('org-b'), await org('org-c')]
    await shareKey([a, b, c], 'k')
    const share = shareWith([b, c], { direction: 'receive' })
    const dbA = await a.tenant.openDB(share.database, { defaultKeyId: 'k' })
    for (let i = 0; i < 20; i++) await dbA.changeDoc(await dbA.createDocument(), (d) => { d.getData().i = i })
    // C's changes reach A through its own share: A holds another tenant's changes B must never learn of
    const dbC = await c.tenant.openDB(share.database, { defaultKeyId: 'k' })
    for (let i = 0; i < 5; i++) await dbC.createDocument()
    await a.node.addShare(share)
    await c.node.addShare(shareWith([a]))
    const [cRound] = await c.node.syncNow('shared')
    expect(cRound.ok, JSON.stringify(cRound.error)).to.equal(true)
    await waitFor(async () => (await allHashes(dbA)).length === 20 * 2 + 5, 'C\'s changes at A')
    const local = await allHashes(dbA)

    // B offers three changes of its own, made on its side
    const dbB = await b.tenant.openDB('offer', { defaultKeyId: 'k' })
    for (let i = 0; i < 3; i++) await dbB.createDocument()
    const offered = await dbB.getStore().getChanges(await allHashes(dbB))
    const topic = topicIdOf(share.topicSecret)
    for (const items of [[], offered.map((x) => ({ timestamp: x.time, id: x.hash }))]) {
      const raw = await openRawStream(b, a)
      await raw.hello(topic)
      expect(await raw.frame()).to.include({ type: 'welcome' })
      const reconciler = await raw.reconcile(items)
      // B also asks for local hashes by name (it must have learnt them elsewhere), and answers A's wants
      await raw.send({ type: 'want', hashes: local.slice(0, 8).map((h) => Buffer.from(h, 'hex')), done: true })
      let peerDone = false
      while (!peerDone) {
        const m = await raw.frame()
        if (m.type === 'changes') expect(m.changes).to.have.length(0)
        if (m.type === 'want' && m.hashes.length > 0) await raw.send({ type: 'changes', changes: offered.map(encodeChange), last: true })
        if (m.type === 'want' && m.done) peerDone = true
      }
      await raw.closeWrite()
      const events = await raw.drain()
      for (const bytes of raw.received) {
        for (const h of local) expect(containsBytes(bytes, Buffer.from(h, 'hex')), 'a local hash was revealed').to.equal(false)
      }
      expect(reconciler.need).to.have.length(0)
      expect(events.at(-1)?.kind).to.be.oneOf(['end', 'reset'])
    }
    expect(a.node.status('shared')[0].totals.changesSent).to.equal(0)
  })

  it('should keep fetching a change from an honest participant after another peer sent it broken or unasked', async () => {
    const [a, x, y] = [await org('org-a'), await org('org-x'), await org('org-y')]
    await shareKey([a, x, y], 'k')
    await a.node.addShare(shareWith([x, y], { direction: 'receive' }))
    const dbY = await y.tenant.openDB('shared', { defaultKeyId: 'k' })
    const docs = [await dbY.createDocument(), await dbY.createDocument()]
    const [brokenTarget, unaskedTarget] = await Promise.all(docs.map(async (d) => (await changesOf(dbY, d.getId()))[0]))
    const decoy = (await changesOf(dbY, (await dbY.createDocument()).getId()))[0]

    // X claims Y's first change and answers A's want with a broken signature, and pushes Y's second one unasked
    const raw = await openRawStream(x, a)
    await raw.hello(topicIdOf(shareWith([]).topicSecret))
    expect(await raw.frame()).to.include({ type: 'welcome' })
    await raw.reconcile([brokenTarget, decoy].map((c) => ({ timestamp: c.time, id: c.hash })))
    await raw.send({ type: 'want', hashes: [], done: true })
    let answered = false
    while (!answered) {
      const m = await raw.frame()
      if (m.type === 'want' && m.hashes.length > 0) {
        const sig = new Uint8Array(brokenTarget.signature)
        sig[3] ^= 0xff
        await raw.send({ type: 'changes', changes: [encodeChange({ ...brokenTarget, signature: sig }), encodeChange(unaskedTarget), encodeChange(decoy)], last: true })
        answered = true
      }
    }
    await raw.closeWrite()
    await raw.drain()
    const dbA = await a.tenant.openDB('shared')
    const rejected = a.node.status('shared')[0].totals.rejected
    expect(rejected).to.deep.include({ INVALID_SIGNATURE: 1, UNREQUESTED: 1 })
    expect(await dbA.getStore().has(brokenTarget.hash)).to.equal(false)
    expect(await dbA.getStore().has(decoy.hash)).to.equal(true)

    // Y, the honest participant, serves its changes: A takes both, the poisoned hashes included
    await y.node.addShare(shareWith([a], { direction: 'serve' }))
    const [round] = await y.node.syncNow('shared')
    expect(round.ok, JSON.stringify(round.error)).to.equal(true)
    expect(await dbA.getStore().has(brokenTarget.hash)).to.equal(true)
    expect(await dbA.getStore().has(unaskedTarget.hash)).to.equal(true)
  })

  it('should end a session flooded with empty wants, and not let a claim stall hang other partners, disableShare or stop', async () => {
    const [a, x, y] = [await org('org-a'), await org('org-x'), await org('org-y')]
    await shareKey([a, x, y], 'k')
    await a.node.addShare(shareWith([x, y]))
    const topic = topicIdOf(shareWith([]).topicSecret)

    // an empty-want flood: each frame moves nothing; A ends the session with PROTOCOL_ERROR
    const flood = await openRawStream(x, a)
    await flood.hello(topic)
    expect(await flood.frame()).to.include({ type: 'welcome' })
    await flood.reconcile([])
    for (let i = 0; i < 200; i++) {
      try {
        await flood.send({ type: 'want', hashes: [], done: false })
      } catch {
        break // A closed the stream
      }
    }
    const floodEvents = await flood.drain()
    expect(errorFrames(floodEvents).map((e) => e.code)).to.include('PROTOCOL_ERROR')

    // a claim stall: X claims Y's change and never answers A's want (it keeps the stream open)
    const dbY = await y.tenant.openDB('shared', { defaultKeyId: 'k' })
    const wanted = (await changesOf(dbY, (await dbY.createDocument()).getId()))[0]
    const stall = await openRawStream(x, a)
    await stall.hello(topic)
    expect(await stall.frame()).to.include({ type: 'welcome' })
    await stall.reconcile([{ timestamp: wanted.time, id: wanted.hash }])
    const want = await stall.frame()
    expect(want.type).to.equal('want')
    // Y's round with A finishes and A gets the change, though X still holds the claim on it
    await y.node.addShare(shareWith([a]))
    const [round] = await y.node.syncNow('shared', { signal: AbortSignal.timeout(45_000) })
    expect(round.ok, JSON.stringify(round.error)).to.equal(true)
    const dbA = await a.tenant.openDB('shared')
    await waitFor(async () => await dbA.getStore().has(wanted.hash), 'Y\'s change at A', 30_000)
    // and disabling the share and stopping the node end X's stalled session at once
    await a.node.disableShare('shared')
    const events = await stall.drain(10_000)
    expect(events.at(-1)?.kind).to.be.oneOf(['end', 'reset'])
    await a.node.stop()
  })

  it('should refuse a hostile reconcile message of thousands of ranges at once (BUDGET) and keep serving', async () => {
    const [a, b] = [await org('org-a'), await org('org-b')]
    await shareKey([a, b], 'k')
    const dbA = await a.tenant.openDB('shared', { defaultKeyId: 'k' })
    for (let i = 0; i < 200; i++) await dbA.createDocument()
    await a.node.addShare(shareWith([b]))
    const raw = await openRawStream(b, a)
    await raw.hello(topicIdOf(shareWith([]).topicSecret))
    expect(await raw.frame()).to.include({ type: 'welcome' })
    const message = hostileReconcileMessage(3000)
    expect(message.length).to.be.below(64 * 1024)
    await raw.send({ type: 'reconcile', data: message })
    const events = await raw.drain()
    const errors = errorFrames(events)
    expect(errors.map((e) => e.code)).to.deep.equal(['PROTOCOL_ERROR'])
    expect(errors[0].message).to.include('BUDGET')
    // nothing of the served set was answered
    for (const h of await allHashes(dbA)) expect(raw.received.some((bytes) => containsBytes(bytes, Buffer.from(h, 'hex')))).to.equal(false)
    await b.node.addShare(shareWith([a]))
    const [round] = await b.node.syncNow('shared')
    expect(round.ok, JSON.stringify(round.error)).to.equal(true)
    expect((await allHashes(await b.tenant.openDB('shared'))).length).to.equal(200)
  })

  it('should refuse WRITE_DENIED a partner making a private document it was not served public, and keep it unserved', async () => {
    const [a, b] = [await org('org-a'), await org('org-b')]
    await shareKey([a, b], 'k')
    const dbA = await a.tenant.openDB('orders', { defaultKeyId: 'k' })
    const secret = await dbA.createDocument()
    await dbA.changeDoc(secret, (d) => { d.getData().visibility = 'private'; d.getData().price = 42 })
    const open = await dbA.createDocument()
    await dbA.changeDoc(open, (d) => { d.getData().visibility = 'public' })
    const filter = { kind: 'selector' as const, selector: { visibility: 'public' } }
    await a.node.addShare(shareWith([b], { database: 'orders', filter }))
    // B obtained the private document's changes (say from a third party holding the key) and writes into it
    const dbB = await b.tenant.openDB('orders', { defaultKeyId: 'k' })
    await dbB.trustPartner(a.tenant.getPublicInfo())
    const secretChanges = await changesOf(dbA, secret.getId())
    await dbB.getStore().appendMany(secretChanges)
    await dbB.syncStoreChanges(secretChanges.map((c) => c.hash))
    await dbB.changeDoc(secret.getId(), (d) => { d.getData().visibility = 'public' })
    const write = (await changesOf(dbB, secret.getId())).at(-1) as StoreChange
    // and a write into the public document A serves to it, which is allowed
    await b.node.addShare(shareWith([a], { database: 'orders' }))
    await b.node.syncNow('shared')
    await dbB.changeDoc(open.getId(), (d) => { d.getData().note = 'from B' })
    const [round] = await b.node.syncNow('shared')
    expect(round.ok, JSON.stringify(round.error)).to.equal(true)

    expect(a.node.status('shared')[0].totals.rejected).to.deep.include({ WRITE_DENIED: 1 })
    expect(await dbA.getStore().has(write.hash)).to.equal(false)
    expect((await dbA.getDocument(secret.getId())).getData().visibility).to.equal('private')
    await waitFor(async () => (await dbA.getDocument(open.getId())).getData().note === 'from B', 'B\'s allowed write at A')
    // the private document is still not served: a fresh partner session learns none of its hashes
    const raw = await openRawStream(b, a)
    await raw.hello(topicIdOf(shareWith([]).topicSecret))
    expect(await raw.frame()).to.include({ type: 'welcome' })
    const reconciler = await raw.reconcile([])
    const announced = new Set(reconciler.need.map((i) => i.id))
    for (const c of secretChanges) expect(announced.has(c.hash)).to.equal(false)
    raw.abort()
  })
})
