/**
 * Reaching a node behind a firewall (issue 9): three real libp2p nodes on 127.0.0.1. R has a dialable address and
 * serves as a circuit relay for the partners of its shares; H listens nowhere (no listen address at all) and holds
 * a reservation on R; P dials H only at `<R>/p2p-circuit/p2p/<H>`. H and P sync in both directions through R,
 * over a relayed connection only. Hostile: a peer that is no partner of R cannot reserve on it or hop through
 * it (typed refusal), and a stranger cannot even connect; R, which holds no key of the database, relays bytes it
 * cannot read. A session cut by a relay's data limit fails with RELAY_LIMIT and is retried until it converges.
 */
import { expect } from 'chai'
import { randomBytes } from 'node:crypto'
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { MindooDB } from '../../src/index.js'
import { diagnose } from '../../src/p2p/doctor.js'
import type { NodeEvent } from '../../src/p2p/events.js'
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
  let hEvents: NodeEvent[]

  beforeEach(async () => {
    r = await createOrg('org-relay', { nat: { serve: true } })
    h = await createOrg('org-hidden', { listen: [], nat: { relays: [r.node.getMultiaddrs()[0]] } })
    hEvents = []
    h.node.events.on((e) => { hEvents.push(e) })
    p = await createOrg('org-partner')
    // the relay holds no key of the database: it relays bytes it cannot read
    await shareKey([h, p], 'k')
    // R relays for the partners of its shares: H and P are (it never dials them)
    await r.node.addShare(relayShare([h, p]))
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
    expect(hEvents.filter((e) => e.type === 'relay.reservation' && e.state === 'reserved').map((e) => e.type === 'relay.reservation' && e.peerId)).to.deep.equal([r.node.peerId])
    // H and P are each other's only partners on the database: whatever moves between them crosses the circuit
    await h.node.addShare(shareAt([{ org: p, addresses: [] }]))
    await p.node.addShare(shareAt([{ org: h, addresses: [circuitAddress(r, h)] }]))

    const dbH = await h.tenant.openDB('shared', { defaultKeyId: 'k' })
    const dbP = await p.tenant.openDB('shared', { defaultKeyId: 'k' })
    const fromH = await dbH.createDocument()
    await dbH.changeDoc(fromH, (d) => { d.getData().by = 'hidden' })
    const fromP = await dbP.createDocument()
    await dbP.changeDoc(fromP, (d) => { d.getData().by = 'partner' })

    const [withH] = await p.node.syncNow('shared')
    expect(withH.ok, JSON.stringify(withH.error)).to.equal(true)
    // (the round P started when the share was added may have moved them already: count the share's totals)
    expect(p.node.status('shared')[0].totals).to.satisfy((t: { changesReceived: number, changesSent: number }) => t.changesReceived > 0 && t.changesSent > 0)
    expect((await dbP.getDocument(fromH.getId())).getData().by).to.equal('hidden')
    expect((await dbH.getDocument(fromP.getId())).getData().by).to.equal('partner')

    // H starts a round too: over the relayed connection P opened
    const later = await dbH.createDocument()
    await dbH.changeDoc(later, (d) => { d.getData().later = true })
    const [fromHRound] = (await h.node.syncNow('shared')).filter((x) => x.peerId === p.node.peerId)
    expect(fromHRound.ok, JSON.stringify(fromHRound.error)).to.equal(true)
    expect(await hashes(dbP)).to.deep.equal(await hashes(dbH))
    // no long-lived session over a connection with limits (the relay would cut it): rounds carry the changes
    expect(p.node.status('shared')[0].partners[0].live).to.equal(undefined)
    expect(h.node.status('shared')[0].partners[0].live).to.equal(undefined)
    expect(p.node.status('shared')[0].totals.live?.sessions ?? 0).to.equal(0)

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

  it('should carry only Noise-encrypted bytes between them, and as a share relay store ciphertext it cannot read', async () => {
    await waitFor(() => h.node.natReport().reservations.some((x) => x.state === 'reserved'), 'H to hold a reservation on R')
    // here R is a partner of the share too (store and forward, holding no key)
    await r.node.removeShare('relay-clients')
    await r.node.addShare(shareAt([{ org: h, addresses: [] }, { org: p, addresses: [] }]))
    await h.node.addShare(shareAt([{ org: r, addresses: r.node.getMultiaddrs() }, { org: p, addresses: [] }]))
    await p.node.addShare(shareAt([{ org: r, addresses: r.node.getMultiaddrs() }, { org: h, addresses: [circuitAddress(r, h)] }]))
    const marker = 'plaintext-marker-0f3c9a'
    const dbH = await h.tenant.openDB('shared', { defaultKeyId: 'k' })
    const doc = await dbH.createDocument()
    await dbH.changeDoc(doc, (d) => { d.getData().secret = marker })
    // P syncs with H through R (circuit) and with R directly (R is a partner of the share: it stores and forwards)
    const results = await p.node.syncNow('shared')
    expect(results.every((x) => x.ok), JSON.stringify(results)).to.equal(true)
    await h.node.syncNow('shared')
    const dbP = await p.tenant.openDB('shared')
    expect((await dbP.getDocument(doc.getId())).getData().secret).to.equal(marker)
    // the relayed connection is end-to-end Noise between H and P: R pipes bytes it has no session key for
    const relayed = h.node.libp2p.getConnections(p.node.libp2p.peerId)
    expect(relayed.map((c) => c.encryption)).to.deep.equal(relayed.map(() => '/noise'))
    // R holds the changes (hashes, sizes, headers) and cannot read them
    const dbR = await r.tenant.openDB('shared')
    await waitFor(async () => await dbR.getStore().has(doc.getHeads()[0]), 'R to store the change')
    const readable = await dbR.getDocument(doc.getId()).then((d) => d.getData().secret === marker, () => false)
    expect(readable).to.equal(false)
    expect(await grep(r.dataDir, marker)).to.deep.equal([])
  })

  it('should refuse a reservation and a hop to a peer that is admitted but no partner, and keep serving its partners', async () => {
    await waitFor(() => h.node.natReport().reservations.some((x) => x.state === 'reserved'), 'H to hold a reservation on R')
    // S is admitted by R's gater (allowPeers, as a DHT-only peer would be) but is no partner of R's shares; H would
    // even accept S as a partner: only R stands between them
    const s = await createOrg('org-admitted', { nat: { relays: [r.node.getMultiaddrs()[0]] } })
    try {
      await r.restart({ allowPeers: [s.node.peerId] })
      const rEvents: NodeEvent[] = []
      r.node.events.on((e) => { rEvents.push(e) })
      await h.node.addShare({ ...shareAt([{ org: s, addresses: [] }]), id: 'with-s', topicSecret: 'another-topic-secret-0123456789', database: 'with-s' })
      await s.node.addShare({ ...shareAt([{ org: h, addresses: [circuitAddress(r, h)] }]), id: 'with-s', topicSecret: 'another-topic-secret-0123456789', database: 'with-s' })
      // the reservation: PERMISSION_DENIED, typed
      await waitFor(() => s.node.natReport().reservations[0]?.lastError?.code === 'RELAY_REFUSED', 'S to be refused a reservation once R admits it')
      expect(s.node.natReport().reservations[0]).to.include({ state: 'failed' })
      expect(s.node.natReport().reservations[0].lastError?.code).to.equal('RELAY_REFUSED')
      expect(s.node.natReport().reservations[0].lastError?.message).to.include('PERMISSION_DENIED')
      // the hop to H: refused by R, typed, and no connection between S and H
      await waitFor(() => h.node.natReport().reservations.some((x) => x.state === 'reserved'), 'H to reserve again after R restarted')
      const [round] = await s.node.syncNow('with-s')
      expect(round.ok).to.equal(false)
      expect(round.error?.code).to.equal('RELAY_REFUSED')
      expect(round.error?.message).to.include('PERMISSION_DENIED')
      expect(h.node.libp2p.getConnections(s.node.libp2p.peerId)).to.deep.equal([])
      const served = r.node.natReport().relay
      expect(served?.clients).to.not.include(s.node.peerId)
      expect(served?.refused.reservations).to.be.greaterThan(0)
      expect(served?.refused.hops).to.be.greaterThan(0)
      expect(served?.refused.last?.peerId).to.equal(s.node.peerId)
      expect(rEvents).to.deep.include({ type: 'relay.refused', kind: 'hop', peerId: s.node.peerId, destination: h.node.peerId })
      // H saw its reservation go with R's restart, and come back
      const states = hEvents.flatMap((e) => e.type === 'relay.reservation' ? [e.state] : [])
      expect(states).to.include.members(['reserved', 'lost'])
      expect(states.filter((x) => x === 'lost')).to.have.length(1)
      // R still relays for its partners
      await h.node.addShare(shareAt([{ org: p, addresses: [] }]))
      await p.node.addShare(shareAt([{ org: h, addresses: [circuitAddress(r, h)] }]))
      const [withH] = await p.node.syncNow('shared')
      expect(withH.ok, JSON.stringify(withH.error)).to.equal(true)
    } finally {
      await s.cleanup()
    }
  })

  it('should not let a relay bring a peer that is no partner of the node', async () => {
    await waitFor(() => h.node.natReport().reservations.some((x) => x.state === 'reserved'), 'H to hold a reservation on R')
    // X is a partner of R (so R relays for it) but no partner of H: R lets the hop through, H turns it away
    const x = await createOrg('org-x')
    try {
      await r.node.removeShare('relay-clients')
      await r.node.addShare(relayShare([h, p, x]))
      await x.node.addShare({ ...shareAt([{ org: h, addresses: [circuitAddress(r, h)] }]), id: 'with-x', topicSecret: 'x-topic-secret-0123456789abcdef', database: 'with-x' })
      const [round] = await x.node.syncNow('with-x')
      expect(round.ok).to.equal(false)
      expect(round.error?.code).to.equal('RELAY_REFUSED')
      expect(h.node.libp2p.getConnections(x.node.libp2p.peerId)).to.deep.equal([])
      expect(await (await h.tenant.openDB('with-x')).getStore().count()).to.equal(0)
    } finally {
      await x.cleanup()
    }
  })

  it('should not even let a stranger connect to the relay, to reserve or to hop', async () => {
    const stranger = await createOrg('org-stranger', { nat: { relays: [r.node.getMultiaddrs()[0]] } })
    try {
      await h.node.addShare({ ...shareAt([{ org: stranger, addresses: [] }]), id: 'with-x', topicSecret: 'stranger-topic-secret-0123456789', database: 'with-x' })
      await stranger.node.addShare({ ...shareAt([{ org: h, addresses: [circuitAddress(r, h)] }]), id: 'with-x', topicSecret: 'stranger-topic-secret-0123456789', database: 'with-x' })
      await waitFor(() => stranger.node.natReport().reservations[0]?.lastError !== undefined, 'the stranger to fail to reserve')
      expect(stranger.node.natReport().reservations[0].lastError?.code).to.equal('DIAL_FAILED')
      const [round] = await stranger.node.syncNow('with-x')
      expect(round.ok).to.equal(false)
      expect(round.error?.code).to.equal('DIAL_FAILED')
      expect(h.node.libp2p.getConnections(stranger.node.libp2p.peerId)).to.deep.equal([])
      expect(r.node.libp2p.getConnections(stranger.node.libp2p.peerId)).to.deep.equal([])
      expect(r.node.natReport().relay?.clients).to.not.include(stranger.node.peerId)
    } finally {
      await stranger.cleanup()
    }
  })
})

describe('p2p: a session cut by a relay\'s data limit', function () {
  this.timeout(120_000)
  let r: TestOrg
  let h: TestOrg
  let p: TestOrg

  afterEach(async () => {
    await p?.cleanup()
    await h?.cleanup()
    await r?.cleanup()
  })

  it('should fail with RELAY_LIMIT, never hang, and converge over fresh relayed connections', async () => {
    // a relay with libp2p's own default limit: 128 KiB per relayed connection
    r = await createOrg('org-relay', { nat: { serve: { dataLimitBytes: 128 * 1024 } } })
    h = await createOrg('org-hidden', { listen: [], nat: { relays: [r.node.getMultiaddrs()[0]] }, backoffBaseMs: 20, backoffMaxMs: 200 })
    p = await createOrg('org-partner', { backoffBaseMs: 20, backoffMaxMs: 200 })
    await shareKey([h, p], 'k')
    await r.node.addShare(relayShare([h, p]))
    await h.node.addShare(shareAt([{ org: p, addresses: [] }]))
    await waitFor(() => h.node.natReport().reservations.some((x) => x.state === 'reserved'), `H to hold a reservation on R ${JSON.stringify(h.node.natReport().reservations)}`)
    // about 400 KB of changes on H: a few times what one relayed connection may carry
    const dbH = await h.tenant.openDB('shared', { defaultKeyId: 'k' })
    for (let i = 0; i < 48; i++) {
      const doc = await dbH.createDocument()
      // random text: Automerge compresses repetitive text
      await dbH.changeDoc(doc, (d) => { d.getData().text = randomBytes(6 * 1024).toString('base64') })
    }
    await p.node.addShare(shareAt([{ org: h, addresses: [circuitAddress(r, h)] }]))
    const dbP = await p.tenant.openDB('shared')
    const target = await dbH.getStore().count()
    const cuts: string[] = []
    p.node.events.on((e) => { if (e.type === 'round.finished' && e.error !== undefined) cuts.push(e.error.code) })
    const [first] = await p.node.syncNow('shared')
    expect(first?.ok).to.equal(false)
    expect(first?.error?.code).to.equal('RELAY_LIMIT')
    expect(await dbP.getStore().count()).to.be.greaterThan(0)
    // the retries (backoff timers, and rounds this test asks for) each move what the next connection allows
    await waitFor(async () => {
      if (await dbP.getStore().count() >= target) return true
      await p.node.syncNow('shared')
      return await dbP.getStore().count() >= target
    }, 'P to get every change of H through the limited relay', 90_000)
    expect(await hashes(dbP)).to.deep.equal(await hashes(dbH))
    const errors = p.node.status('shared')[0].totals.errors
    expect(errors.RELAY_LIMIT).to.be.greaterThan(0)
    // the event stream and the status say the same: every failed round was a cut
    expect(cuts.length).to.be.greaterThan(0)
    expect([...new Set(cuts)]).to.deep.equal(['RELAY_LIMIT'])
  })
})

/** A share on the relay's side that makes `orgs` partners of it (so it relays for them); it never dials them. */
function relayShare (orgs: TestOrg[]): ReturnType<typeof shareWith> {
  const share = shareWith(orgs, { id: 'relay-clients', topicSecret: 'relay-clients-topic-secret-0123', database: 'relay-clients' })
  share.partners = share.partners.map((x) => ({ ...x, addresses: [], dial: false }))
  return share
}

/** Files under `dir` whose bytes contain `text`. */
async function grep (dir: string, text: string): Promise<string[]> {
  const found: string[] = []
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (!entry.isFile()) continue
    const path = join(entry.parentPath, entry.name)
    if ((await readFile(path)).includes(text)) found.push(path)
  }
  return found
}
