/**
 * Issue 7, "participants and peers to dial are separate lists": in a hub-and-spokes mesh each spoke names the
 * hub as its one partner and the other spokes as participants (authors accepted when the hub relays their
 * changes); the hub names one spoke with `dial: false` (it calls in). Nobody dials a node it is not to reach,
 * no round fails, and every relayed change is accepted.
 */
import { expect } from 'chai'
import type { ShareConfig } from '../../src/index.js'
import { createOrg, shareKey, waitFor, type TestOrg } from '../utils/orgs.js'

const SECRET = 'hub-and-spokes-topic-secret-0123'

function share (partners: ShareConfig['partners'], participants?: ShareConfig['participants']): ShareConfig {
  return { id: 'mesh', topicSecret: SECRET, database: 'mesh', direction: 'both', filter: { kind: 'all' }, enabled: true, partners, participants }
}

describe('adversary: participants that are not dialled (hub and spokes)', function () {
  this.timeout(60_000)
  let orgs: TestOrg[] = []

  afterEach(async () => {
    for (const org of orgs.reverse()) await org.cleanup()
    orgs = []
  })

  it('should run no failed round and accept every relayed change', async () => {
    const fast = { syncIntervalMs: 200, backoffBaseMs: 100, backoffMaxMs: 400 }
    const hub = await createOrg('hub', fast)
    const spokes = [await createOrg('spoke-1', fast), await createOrg('spoke-2', fast), await createOrg('spoke-3', fast)]
    orgs = [hub, ...spokes]
    await shareKey(orgs, 'k')
    const [callsIn] = spokes.slice(-1)
    // the hub dials the first two spokes; the third calls in, and the hub has no address of it
    await hub.node.addShare(share(spokes.map((s) => s === callsIn
      ? { peerId: s.node.peerId, tenant: s.tenant.getPublicInfo(), dial: false }
      : { peerId: s.node.peerId, tenant: s.tenant.getPublicInfo(), addresses: s.node.getMultiaddrs() })))
    for (const spoke of spokes) {
      const others = spokes.filter((s) => s !== spoke).map((s) => ({ tenant: s.tenant.getPublicInfo() }))
      await spoke.node.addShare(share([{ peerId: hub.node.peerId, tenant: hub.tenant.getPublicInfo(), addresses: hub.node.getMultiaddrs() }], others))
    }
    const dbs = await Promise.all(orgs.map(async (o) => await o.tenant.openDB('mesh', { defaultKeyId: 'k' })))
    const created: string[] = []
    for (const db of dbs.slice(1)) {
      const doc = await db.createDocument()
      await db.changeDoc(doc, (d) => { d.getData().from = 'a spoke' })
      created.push(doc.getId())
    }
    const total = created.length * 2
    await waitFor(async () => (await Promise.all(dbs.map(async (db) => await db.getStore().count()))).every((n) => n === total),
      'every node to hold every spoke\'s changes', 30_000, 50)
    for (const db of dbs.slice(1)) {
      for (const id of created) expect((await db.getDocument(id)).getData().from).to.equal('a spoke')
    }

    // nothing was rejected: the hub relayed the spokes' changes and each spoke accepted the others' authors
    for (const org of orgs) expect(org.node.status('mesh')[0].totals.rejected, `${org.name} rejections`).to.deep.equal({})
    // rounds failed while the shares were being added (a node not yet naming the other refuses it); from now on,
    // over many periodic cycles, none fails anywhere (a spoke listed as a partner without an address used to
    // fail a round every cycle)
    const failedBefore = orgs.map((o) => o.node.status('mesh')[0].totals.roundsFailed)
    const rounds = orgs.map((o) => o.node.status('mesh')[0].totals.rounds)
    await waitFor(() => orgs.every((o, i) => o.node.status('mesh')[0].totals.rounds >= rounds[i] + 4), 'more periodic rounds of every node')
    expect(orgs.map((o) => o.node.status('mesh')[0].totals.roundsFailed)).to.deep.equal(failedBefore)
    for (const org of orgs) expect(org.node.status('mesh')[0].totals.rejected, `${org.name} rejections`).to.deep.equal({})
    // the hub ran rounds with the spoke that calls in over that spoke's own connection, and never dialled it
    const [hubStatus] = hub.node.status('mesh')
    const third = hubStatus.partners.find((p) => p.peerId === callsIn.node.peerId)
    expect(third).to.include({ dial: false, connected: true, reachable: true })
    expect(third?.rounds).to.be.greaterThan(0)
    // spokes see one partner each; the other spokes are participants, not peers: no connection between spokes
    for (const spoke of spokes) {
      expect(spoke.node.status('mesh')[0].partners.map((p) => p.peerId)).to.deep.equal([hub.node.peerId])
      for (const other of spokes) {
        if (other !== spoke) expect(spoke.node.getPeers().map((p) => p.peerId)).to.not.include(other.node.peerId)
      }
    }
  })

  it('should skip, not fail, a partner that is not connected and has no address or is not to be dialled', async () => {
    const a = await createOrg('org-a')
    const b = await createOrg('org-b')
    const c = await createOrg('org-c')
    orgs = [a, b, c]
    // C's node is stopped: A knows neither an address of B nor may it dial C
    const cPeer = c.node.peerId
    await c.node.stop()
    await a.node.addShare(share([
      { peerId: b.node.peerId, tenant: b.tenant.getPublicInfo() },
      { peerId: cPeer, tenant: c.tenant.getPublicInfo(), addresses: [`/ip4/127.0.0.1/tcp/9/p2p/${cPeer}`], dial: false }
    ]))
    const results = await a.node.syncNow('mesh', { signal: AbortSignal.timeout(10_000) })
    for (const r of results) expect(r).to.deep.include({ ok: false, skipped: true, error: { code: 'PEER_NOT_DIALLED', message: r.error?.message } })
    const [status] = a.node.status('mesh')
    expect(status.totals).to.include({ rounds: 0, roundsFailed: 0 })
    expect(status.totals.errors).to.deep.equal({})
    expect(status.partners.map((p) => [p.dial, p.reachable, p.roundsFailed])).to.deep.equal([[true, false, 0], [false, false, 0]])
    // once B calls in, A syncs with it
    await b.node.addShare(share([{ peerId: a.node.peerId, tenant: a.tenant.getPublicInfo(), addresses: a.node.getMultiaddrs() }]))
    await waitFor(() => a.node.status('mesh')[0].partners[0].reachable, 'B to connect to A')
    const [withB] = await a.node.syncNow('mesh', { signal: AbortSignal.timeout(10_000) })
    expect(withB.ok, JSON.stringify(withB.error)).to.equal(true)
  })
})
