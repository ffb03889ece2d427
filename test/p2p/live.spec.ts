import { expect } from 'chai'
import type { MindooDB } from '../../src/index.js'
import { LIVE_SESSIONS_PER_PEER } from '../../src/limits.js'
import type { PartnerStatus, ShareStatus } from '../../src/p2p/index.js'
import { createOrg, shareKey, shareWith, waitFor, type TestOrg } from '../utils/orgs.js'

function status (org: TestOrg, share = 'shared'): ShareStatus {
  return org.node.status(share)[0]
}

function partner (org: TestOrg, other: TestOrg, share = 'shared'): PartnerStatus {
  const p = status(org, share).partners.find((x) => x.peerId === other.node.peerId)
  if (p === undefined) throw new Error('no such partner')
  return p
}

async function hashes (db: MindooDB): Promise<string[]> {
  return (await db.getStore().getAllChangeHashes()).sort()
}

/** Rounds run by either side (initiated and answered): a live change must not add any. */
function rounds (...orgs: TestOrg[]): number {
  return orgs.reduce((n, o) => n + status(o).totals.rounds, 0)
}

async function readable (db: MindooDB, docId: string, field: string, value: unknown): Promise<boolean> {
  try {
    return (await db.getDocument(docId)).getData()[field] === value
  } catch {
    return false
  }
}

describe('live sync over a long-lived session', () => {
  let a: TestOrg
  let b: TestOrg
  let dbA: MindooDB
  let dbB: MindooDB

  beforeEach(async () => {
    a = await createOrg('org-a')
    b = await createOrg('org-b')
    await shareKey([a, b], 'k')
    dbA = await a.tenant.openDB('shared', { defaultKeyId: 'k' })
    dbB = await b.tenant.openDB('shared', { defaultKeyId: 'k' })
  })

  afterEach(async () => {
    await a?.cleanup()
    await b?.cleanup()
  })

  /** Both shares added, the first reconciliation done, and one long-lived session open on both sides. */
  async function goLive (): Promise<void> {
    await a.node.addShare(shareWith([b]))
    await b.node.addShare(shareWith([a]))
    await a.node.syncNow('shared')
    await waitFor(() => partner(a, b).live !== undefined && partner(b, a).live !== undefined, 'a long-lived session on both sides')
    // both sides may have opened one at once: one is kept, the other closed
    await waitFor(() => a.node.status('shared')[0].partners[0].current === undefined && b.node.status('shared')[0].partners[0].current === undefined, 'no round running')
  }

  it('should deliver a change over the long-lived session without a new round, and not echo it back', async () => {
    await goLive()
    const before = rounds(a, b)
    const liveA = { ...partner(a, b).live }
    const doc = await dbA.createDocument()
    await dbA.changeDoc(doc, (d) => { d.getData().live = 1 })
    await waitFor(async () => await readable(dbB, doc.getId(), 'live', 1), 'the change to reach B')
    // the session counts what it received once the store's call returns, a turn after the change became readable
    await waitFor(async () => (partner(b, a).live?.changesReceived ?? 0) >= 2, 'B to count what it received')
    expect(rounds(a, b), 'no reconciliation round for a live change').to.equal(before)
    const atB = partner(b, a).live
    expect(atB?.changesReceived).to.equal(2)
    expect(atB?.hashesReceived).to.equal(2)
    expect(partner(a, b).live?.hashesAnnounced).to.equal((liveA.hashesAnnounced ?? 0) + 2)

    // B answers: A receives exactly B's one change, and none of its own two back (no echo)
    await dbB.changeDoc(doc.getId(), (d) => { d.getData().reply = 'b' })
    await waitFor(async () => await readable(dbA, doc.getId(), 'reply', 'b'), 'the reply to reach A')
    expect(partner(a, b).live?.hashesReceived).to.equal(1)
    expect(partner(b, a).live?.hashesAnnounced).to.equal(1)
    expect(rounds(a, b)).to.equal(before)
    expect(await hashes(dbA)).to.deep.equal(await hashes(dbB))
  })

  it('should deliver a burst of 100 changes completely in far fewer announcements', async () => {
    const docs = []
    for (let i = 0; i < 100; i++) docs.push(await dbA.createDocument())
    await goLive()
    const before = rounds(a, b)
    const sent = partner(a, b).live?.announcementsSent ?? 0
    // 100 writers at once, as a busy application makes them: what grows while an announcement awaits its ack
    // goes out together in the next one
    await Promise.all(docs.map(async (doc, i) => await dbA.changeDoc(doc, (d) => { d.getData().i = i })))
    await waitFor(async () => (await hashes(dbB)).length === (await hashes(dbA)).length, 'the burst to reach B')
    expect(await hashes(dbB)).to.deep.equal(await hashes(dbA))
    const live = partner(a, b).live
    expect(live, JSON.stringify([status(a), status(b)])).to.not.equal(undefined)
    expect(live?.hashesAnnounced).to.equal(100)
    expect((live?.announcementsSent ?? 0) - sent).to.be.below(100)
    expect(rounds(a, b)).to.equal(before)

    // 100 changes stored at once (an import): one announcement
    const scratch = await a.tenant.openDB('scratch', { defaultKeyId: 'k' })
    for (let i = 0; i < 100; i++) await scratch.changeDoc(await scratch.createDocument(), (d) => { d.getData().imported = i })
    const imported = await scratch.getStore().getChanges(await scratch.getStore().getAllChangeHashes())
    const announced = partner(a, b).live?.announcementsSent ?? 0
    await dbA.getStore().appendMany(imported)
    await waitFor(async () => (await hashes(dbB)).length === (await hashes(dbA)).length, 'the import to reach B')
    await waitFor(async () => (partner(b, a).live?.changesReceived ?? 0) >= 300, 'B to count what it received')
    expect(partner(a, b).live?.announcementsSent).to.equal(announced + 1)
    expect(partner(b, a).live?.changesReceived).to.equal(300) // 100 changes, then 100 creations and 100 changes
    expect(rounds(a, b)).to.equal(before)
  })

  it('should resume with a reconciliation after the connection is closed, and converge', async () => {
    await goLive()
    const sessions = status(a).totals.live?.sessions ?? 0
    const roundsBefore = rounds(a, b)
    await a.node.libp2p.hangUp(b.node.libp2p.peerId)
    // written while the connection is down: only a reconciliation can bring it over
    const doc = await dbA.createDocument()
    await dbA.changeDoc(doc, (d) => { d.getData().offline = true })
    await waitFor(async () => await readable(dbB, doc.getId(), 'offline', true), 'the change made while disconnected to reach B')
    expect(rounds(a, b)).to.be.above(roundsBefore)
    await waitFor(() => (status(a).totals.live?.sessions ?? 0) > sessions && partner(a, b).live !== undefined, 'a new long-lived session')
    const later = await dbB.createDocument()
    await dbB.changeDoc(later, (d) => { d.getData().after = true })
    await waitFor(async () => await readable(dbA, later.getId(), 'after', true), 'a change after the reconnect to reach A')
    expect(await hashes(dbA)).to.deep.equal(await hashes(dbB))
  })

  it('should never announce a change outside a filtered share', async () => {
    const filter = { kind: 'selector' as const, selector: { visibility: 'public' } }
    await a.node.addShare(shareWith([b], { filter, direction: 'serve' }))
    await b.node.addShare(shareWith([a], { direction: 'receive', database: 'from-a' }))
    const dbFromA = await b.tenant.openDB('from-a')
    await b.node.syncNow('shared')
    await waitFor(() => partner(a, b).live !== undefined && partner(b, a).live !== undefined, 'a long-lived session on both sides')
    const secret = await dbA.createDocument()
    await dbA.changeDoc(secret, (d) => { d.getData().visibility = 'private' })
    const open = await dbA.createDocument()
    await dbA.changeDoc(open, (d) => { d.getData().visibility = 'public' })
    await waitFor(async () => await readable(dbFromA, open.getId(), 'visibility', 'public'), 'the public document to reach B')
    // announcements named the public document's changes only
    expect(partner(a, b).live?.hashesAnnounced).to.equal(2)
    expect(partner(b, a).live?.hashesReceived).to.equal(2)
    const secretHashes = await dbA.getStore().getAllChangeHashesForDoc(secret.getId())
    for (const h of secretHashes) expect(await dbFromA.getStore().has(h)).to.equal(false)
    // B's direction is receive: it announces nothing, and A never asked for announcements
    expect(partner(b, a).live?.announcementsSent).to.equal(0)
  })

  it('should keep at most LIVE_SESSIONS_PER_PEER long-lived sessions with one partner and sync the other shares by rounds', async () => {
    const ids = ['s0', 's1', 's2', 's3', 's4']
    for (const id of ids) {
      const share = { id, database: id, topicSecret: `live-topic-secret-${id}-0123456789` }
      await a.node.addShare(shareWith([b], share))
      await b.node.addShare(shareWith([a], share))
    }
    for (const id of ids) await a.node.syncNow(id)
    const liveCount = (org: TestOrg, other: TestOrg): number => ids.filter((id) => partner(org, other, id).live !== undefined).length
    await waitFor(() => liveCount(a, b) === LIVE_SESSIONS_PER_PEER && liveCount(b, a) === LIVE_SESSIONS_PER_PEER, 'the long-lived sessions')
    const [without] = ids.filter((id) => partner(a, b, id).live === undefined)
    const dbAx = await a.tenant.openDB(without, { defaultKeyId: 'k' })
    const dbBx = await b.tenant.openDB(without, { defaultKeyId: 'k' })
    const doc = await dbAx.createDocument()
    await dbAx.changeDoc(doc, (d) => { d.getData().by = 'round' })
    await waitFor(async () => await readable(dbBx, doc.getId(), 'by', 'round'), 'the change on the share without a long-lived session to reach B')
    expect(liveCount(a, b)).to.equal(LIVE_SESSIONS_PER_PEER)
  })

  it('should keep the round-per-change path when live sessions are off', async () => {
    await a.restart({ live: false })
    await a.node.addShare(shareWith([b]))
    await b.node.addShare(shareWith([a]))
    await a.node.syncNow('shared')
    expect(partner(a, b).live).to.equal(undefined)
    const before = rounds(a, b)
    const doc = await dbA.createDocument()
    await dbA.changeDoc(doc, (d) => { d.getData().x = 1 })
    await waitFor(async () => await readable(dbB, doc.getId(), 'x', 1), 'the change to reach B')
    expect(rounds(a, b)).to.be.above(before)
    expect(partner(b, a).live).to.equal(undefined)
  })
})
