/**
 * Reaching a node behind a firewall (issue 9): three real libp2p nodes on 127.0.0.1. R has a dialable address and
 * serves as a circuit relay for the partners of its shares; H listens nowhere (no listen address at all) and holds
 * a reservation on R; P dials H only at `<R>/p2p-circuit/p2p/<H>`. H and P sync in both directions through R,
 * over a relayed connection only. Hostile: a peer that is no partner of R cannot reserve on it or hop through
 * it (typed refusal), and a stranger cannot even connect; R, which holds no key of the database, relays bytes it
 * cannot read. A session cut by a relay's data limit fails with RELAY_LIMIT and is retried until it converges.
 */
import { expect } from 'chai'
import type { MindooDB } from '../../src/index.js'
import { diagnose } from '../../src/p2p/doctor.js'
import { createOrg, shareKey, shareWith, waitFor, type TestOrg } from '../utils/orgs.js'

async function hashes (db: MindooDB): Promise<string[]> {
  return (await db.getStore().getAllChangeHashes()).sort()
}

/** The address P dials H at: through R. */
function circuitAddress (relay: TestOrg, target: TestOrg): string {
  return `${relay.node.getMultiaddrs()[0]}/p2p-circuit/p2p/${target.node.peerId}`
}

/** A share on `self`'s side with these partners at these addresses (none: not dialled at an address). */
function shareAt (partners: Array<{ org: TestOrg, addresses: string[] }>): ReturnType<typeof shareWith> {
  const share = shareWith(partners.map((p) => p.org))
  share.partners = share.partners.map((p, i) => ({ ...p, addresses: partners[i].addresses }))
  return share
}

describe('p2p: reaching a node behind a firewall through a relay', function () {
  this.timeout(60_000)
  let r: TestOrg
  let h: TestOrg
  let p: TestOrg

  beforeEach(async () => {
    r = await createOrg('org-relay', { nat: { serve: true } })
    h = await createOrg('org-hidden', { listen: [], nat: { relays: [r.node.getMultiaddrs()[0]] } })
    p = await createOrg('org-partner')
    // the relay holds no key of the database: it relays bytes it cannot read
    await shareKey([h, p], 'k')
    await r.node.addShare(shareAt([{ org: h, addresses: [] }, { org: p, addresses: p.node.getMultiaddrs() }]))
    await h.node.addShare(shareAt([{ org: r, addresses: r.node.getMultiaddrs() }, { org: p, addresses: [] }]))
  })

  afterEach(async () => {
    await p?.cleanup()
    await h?.cleanup()
    await r?.cleanup()
  })

  it('should sync both ways between a node that listens nowhere and a partner, through the relay only', async () => {
    expect(h.node.getMultiaddrs().filter((a) => !a.includes('/p2p-circuit'))).to.deep.equal([])
    await waitFor(() => h.node.natReport().reservations.some((x) => x.state === 'reserved'), 'H to hold a reservation on R')
    expect(r.node.natReport().relay?.clients).to.deep.equal([h.node.peerId])
    await p.node.addShare(shareAt([{ org: r, addresses: r.node.getMultiaddrs() }, { org: h, addresses: [circuitAddress(r, h)] }]))

    const dbH = await h.tenant.openDB('shared', { defaultKeyId: 'k' })
    const dbP = await p.tenant.openDB('shared', { defaultKeyId: 'k' })
    const fromH = await dbH.createDocument()
    await dbH.changeDoc(fromH, (d) => { d.getData().by = 'hidden' })
    const fromP = await dbP.createDocument()
    await dbP.changeDoc(fromP, (d) => { d.getData().by = 'partner' })

    const results = await p.node.syncNow('shared')
    const withH = results.find((x) => x.peerId === h.node.peerId)
    expect(withH?.ok, JSON.stringify(withH?.error)).to.equal(true)
    expect((await dbP.getDocument(fromH.getId())).getData().by).to.equal('hidden')
    expect((await dbH.getDocument(fromP.getId())).getData().by).to.equal('partner')

    // H starts a round too: over the relayed connection P opened
    const later = await dbH.createDocument()
    await dbH.changeDoc(later, (d) => { d.getData().later = true })
    const [fromHRound] = (await h.node.syncNow('shared')).filter((x) => x.peerId === p.node.peerId)
    expect(fromHRound.ok, JSON.stringify(fromHRound.error)).to.equal(true)
    expect(await hashes(dbP)).to.deep.equal(await hashes(dbH))

    // every connection between H and P went through R
    const conns = h.node.libp2p.getConnections(p.node.libp2p.peerId)
    expect(conns.length).to.be.greaterThan(0)
    for (const c of conns) expect(c.remoteAddr.toString()).to.include(`/p2p/${r.node.peerId}/p2p-circuit`)

    // the doctor on H says so
    const report = await diagnose(h.node)
    expect(report.nat.reachability).to.equal('relayed')
    expect(report.nat.reservations[0]).to.include({ peerId: r.node.peerId, state: 'reserved' })
    const partnerP = report.shares[0].partners.find((x) => x.peerId === p.node.peerId)
    expect(partnerP?.via).to.equal('relayed')
    expect(report.findings.map((f) => f.code)).to.include('RELAYED')
    // and on P: H is dialable through the relay only
    const fromPSide = (await diagnose(p.node)).shares[0].partners.find((x) => x.peerId === h.node.peerId)
    expect(fromPSide?.via).to.equal('relayed')
    expect(fromPSide?.dialable).to.deep.equal({ direct: false, relayed: true })
  })
})
