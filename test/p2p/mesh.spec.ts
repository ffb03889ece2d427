import { expect } from 'chai'
import type { MindooDB, ShareConfig, ShareParticipant, SharePartner } from '../../src/index.js'
import { dhtEpochOf, topicCidOf } from '../../src/p2p/node.js'
import { createOrg, shareKey, waitFor, type TestOrg } from '../utils/orgs.js'

const TOPIC = 'mesh-topic-secret-0123456789'

/** `org` as a partner entry; addresses only when `withAddresses` (the DHT has to find the rest). */
function partnerOf (org: TestOrg, withAddresses: boolean): SharePartner {
  return {
    peerId: org.node.peerId,
    tenant: org.tenant.getPublicInfo(),
    ...(withAddresses ? { addresses: org.node.getMultiaddrs() } : {})
  }
}

function share (partners: SharePartner[], participants?: ShareParticipant[]): ShareConfig {
  return { id: 'shared', topicSecret: TOPIC, database: 'shared', direction: 'both', filter: { kind: 'all' }, enabled: true, partners, participants }
}

function connectedTo (org: TestOrg, other: TestOrg): boolean {
  return org.node.getPeers().some((p) => p.peerId === other.node.peerId)
}

async function readable (db: MindooDB, docId: string): Promise<boolean> {
  try {
    await db.getDocument(docId)
    return true
  } catch {
    return false
  }
}

describe('mesh', () => {
  const orgs: TestOrg[] = []

  afterEach(async () => {
    for (const org of orgs.splice(0).reverse()) await org.cleanup()
  })

  describe('discovery through the DHT', () => {
    it('should let two partners that only know a bootstrap node find each other and sync', async () => {
      // on 127.0.0.1 the DHT records must carry loopback addresses
      const fast = { dht: true, announcePrivateAddresses: true, discoveryIntervalMs: 250, announceIntervalMs: 250, backoffBaseMs: 200, backoffMaxMs: 1000 }
      // A takes no part in the share: it is only a DHT participant both others know the address of, and that
      // admits them (allowPeers), as they admit it (bootstrap)
      const a = await createOrg('org-a', fast)
      orgs.push(a)
      const b = await createOrg('org-b', fast)
      orgs.push(b)
      const c = await createOrg('org-c', fast)
      orgs.push(c)
      await a.restart({ allowPeers: [b.node.peerId, c.node.peerId] })
      const bootstrap = a.node.getMultiaddrs()
      expect(bootstrap).to.have.length.greaterThan(0)
      await b.restart({ bootstrap })
      await c.restart({ bootstrap })
      await shareKey([b, c], 'k')

      // each side's only route to the other is the DHT (neither has the other's address); whether the DHT's own
      // queries connect them before the share exists depends on timing, so it is not asserted
      await waitFor(() => connectedTo(b, a) && connectedTo(c, a), 'B and C to reach the bootstrap node', 10_000)

      const dbB = await b.tenant.openDB('shared', { defaultKeyId: 'k' })
      const doc = await dbB.createDocument()
      await dbB.changeDoc(doc, (d) => { d.getData().from = 'b' })
      await b.node.addShare(share([partnerOf(c, false)]))
      await c.node.addShare(share([partnerOf(b, false)]))

      await waitFor(() => connectedTo(c, b), 'C to connect to B through the DHT', 20_000)
      const dbC = await c.tenant.openDB('shared')
      await waitFor(async () => await readable(dbC, doc.getId()), 'B\'s change to reach C', 20_000)
      expect((await dbC.getDocument(doc.getId())).getData().from).to.equal('b')
      expect(await dbC.getStore().count()).to.equal(2)
      // A holds no share and no copy: the change went from B to C directly
      expect(a.node.listShares()).to.deep.equal([])
      expect(await a.tenant.listDatabases()).to.deep.equal([])
      const partner = c.node.status('shared')[0].partners[0]
      expect(partner).to.include({ peerId: b.node.peerId, connected: true })
      // the topic's provider record is on the DHT and names B with an address C can dial
      const cid = topicCidOf(TOPIC, dhtEpochOf(Date.now()))
      const found = new Map<string, number>()
      for await (const p of c.node.libp2p.contentRouting.findProviders(cid, { signal: AbortSignal.timeout(5000) })) {
        found.set(p.id.toString(), Math.max(found.get(p.id.toString()) ?? 0, p.multiaddrs.length))
      }
      expect(found.get(b.node.peerId)).to.be.greaterThan(0)
      expect(found.has(a.node.peerId)).to.equal(false)
    })
  })

  describe('a research consortium on one shared database', () => {
    it('should converge over a line of five organisations through a relay that cannot decrypt', async () => {
      // a line: each node knows only its neighbours' addresses; the relay sits in the middle, so every change
      // between the two halves has to pass through a node that holds no key for it
      const names = ['uni-a', 'uni-b', 'relay-c', 'uni-d', 'uni-e']
      const RELAY = 2
      for (const name of names) orgs.push(await createOrg(name, { backoffBaseMs: 200, backoffMaxMs: 1000 }))
      const holders = orgs.filter((_, i) => i !== RELAY)
      await shareKey(holders, 'consortium')
      const relay = orgs[RELAY]
      expect(relay.tenant.hasNamedKey('consortium')).to.equal(false)

      const DOCS = 15 // per key holder, before and after the shares start: 2 changes each
      const created: string[] = []
      const write = async (org: TestOrg, round: string): Promise<void> => {
        const db = await org.tenant.openDB('shared', { defaultKeyId: 'consortium' })
        for (let i = 0; i < DOCS; i++) {
          const doc = await db.createDocument()
          await db.changeDoc(doc, (d) => { d.getData().by = org.name; d.getData().round = round })
          created.push(doc.getId())
        }
      }
      for (const org of holders) await write(org, 'cold')

      for (const [i, org] of orgs.entries()) {
        // neighbours are partners (with an address); everyone else is a participant: its authors are trusted
        // when a neighbour relays their changes, and this node never tries to reach it
        const neighbour = (o: TestOrg): boolean => Math.abs(orgs.indexOf(o) - i) === 1
        const partners = orgs.filter((o) => o !== org && neighbour(o)).map((o) => partnerOf(o, true))
        const participants = orgs.filter((o) => o !== org && !neighbour(o)).map((o) => ({ tenant: o.tenant.getPublicInfo() }))
        await org.node.addShare(share(partners, participants))
      }
      for (const org of holders) await write(org, 'live')
      const total = created.length * 2

      const dbs = await Promise.all(orgs.map(async (o) => await o.tenant.openDB('shared')))
      await waitFor(async () => (await Promise.all(dbs.map(async (db) => await db.getStore().count()))).every((n) => n === total),
        'every store to hold every change', 30_000, 50)

      const hashes = (await dbs[0].getStore().getAllChangeHashes()).sort()
      expect(hashes).to.have.length(total)
      for (const db of dbs) expect((await db.getStore().getAllChangeHashes()).sort()).to.deep.equal(hashes)
      for (const [i, db] of dbs.entries()) {
        if (i === RELAY) continue
        await waitFor(async () => (await db.getAllDocumentIds()).length === created.length, `${names[i]} to materialise every document`, 10_000)
        expect((await db.getAllDocumentIds()).sort()).to.deep.equal([...created].sort())
        for (const id of created) expect((await db.getDocument(id)).getData().by).to.be.a('string')
      }
      // the relay stored and forwarded every change but can read none of them
      expect(await dbs[RELAY].getAllDocumentIds()).to.deep.equal([])

      // nobody found a non-neighbour: everything went along the line
      for (const [i, org] of orgs.entries()) {
        for (const [j, other] of orgs.entries()) {
          if (j !== i) expect(connectedTo(org, other), `${names[i]} connected to ${names[j]}`).to.equal(Math.abs(i - j) === 1)
        }
      }

      // roughly-once delivery: each change reached each of the other four nodes once, with at most a small excess
      const received = orgs.map((o) => o.node.status('shared')[0].totals.changesReceived)
      const sum = received.reduce((x, y) => x + y, 0)
      const ideal = (orgs.length - 1) * total
      console.log(`      delivery: ${total} changes, received per node ${JSON.stringify(received)}, sum ${sum}, ideal ${ideal}`)
      expect(sum).to.be.at.least(ideal)
      expect(sum).to.be.at.most(ideal * 1.05)
    })
  })
})
