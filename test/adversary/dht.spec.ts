/**
 * Issue 7, item 9: what a DHT participant learns. Provider records of a topic are keyed per epoch with an HMAC
 * of the topic's secret (the previous epoch's key and the old unsalted hash find nothing), private and loopback
 * addresses are not announced unless the node is told to, and peers the DHT hands out that are not in the
 * node's list are never dialled. The DHT participant here is a raw libp2p host with a Kad-DHT that the node
 * admits (`allowPeers`), as a bootstrap peer would be.
 */
import { expect } from 'chai'
import { multiaddr } from '@multiformats/multiaddr'
import type { CID } from 'multiformats/cid'
import { CID as CIDClass } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { createHash } from 'node:crypto'
import { announceEpochs, dhtEpochOf, lookupEpochs, topicCidOf } from '../../src/p2p/node.js'
import { DHT_EPOCH_LEAD_MS, DHT_EPOCH_MS } from '../../src/p2p/constants.js'
import { createOrg, shareWith, waitFor, type TestOrg } from '../utils/orgs.js'
import { createRawNode, type RawLibp2p } from '../utils/raw-node.js'

const SECRET = shareWith([]).topicSecret

/** Providers the DHT participant finds for `cid`: peer id -> addresses. */
async function providers (host: RawLibp2p, cid: CID): Promise<Map<string, string[]>> {
  const found = new Map<string, string[]>()
  for await (const p of host.contentRouting.findProviders(cid, { signal: AbortSignal.timeout(5000) })) {
    found.set(p.id.toString(), [...found.get(p.id.toString()) ?? [], ...p.multiaddrs.map((a) => a.toString())])
  }
  return found
}

describe('adversary: a DHT participant (provider records)', function () {
  this.timeout(60_000)
  let orgs: TestOrg[] = []
  let raws: RawLibp2p[] = []

  afterEach(async () => {
    for (const raw of raws) await raw.stop()
    for (const org of orgs) await org.cleanup()
    raws = []
    orgs = []
  })

  /** A node with a share and a DHT, and a DHT participant it admits, connected to it. */
  async function setup (announcePrivateAddresses?: boolean): Promise<{ a: TestOrg, dht: RawLibp2p }> {
    const dht = await createRawNode({ dht: true, listen: true })
    raws.push(dht)
    const b = await createOrg('org-b')
    const a = await createOrg('org-a', { dht: true, allowPeers: [dht.peerId.toString()], announcePrivateAddresses })
    orgs.push(a, b)
    await a.node.addShare(shareWith([b]))
    await dht.dial(multiaddr(a.node.getMultiaddrs()[0]), { signal: AbortSignal.timeout(10_000) })
    await waitFor(async () => (await dht.peerStore.get(a.node.libp2p.peerId)).protocols.length > 0, 'the DHT participant to identify A')
    if (announcePrivateAddresses === true) {
      const now = topicCidOf(SECRET, dhtEpochOf(Date.now()))
      await waitFor(async () => (await providers(dht, now)).has(a.node.peerId), 'the DHT participant to find A under this epoch\'s key')
    }
    return { a, dht }
  }

  it('should announce under this epoch\'s HMAC key only, not the previous epoch\'s nor the unsalted hash', async () => {
    const { a, dht } = await setup(true)
    const epoch = dhtEpochOf(Date.now())
    // the previous epoch's key: what a node announced yesterday is not what it announces today
    expect(topicCidOf(SECRET, epoch - 1).equals(topicCidOf(SECRET, epoch))).to.equal(false)
    expect((await providers(dht, topicCidOf(SECRET, epoch - 1))).has(a.node.peerId)).to.equal(false)
    // the old derivation: an unsalted hash of the secret, the same forever
    const v1 = CIDClass.createV1(0x55, Digest.create(0x12, createHash('sha256').update('mindoodb/topic/dht/v1\0').update(SECRET).digest()))
    expect((await providers(dht, v1)).size).to.equal(0)
    // and a SHA-256 of the secret alone (no key) finds nothing either
    const bare = CIDClass.createV1(0x55, Digest.create(0x12, createHash('sha256').update(SECRET).digest()))
    expect((await providers(dht, bare)).size).to.equal(0)
  })

  it('should pick epochs by time: the next one only near the boundary; lookups cover the previous one', () => {
    const start = 20_000 * DHT_EPOCH_MS
    expect(announceEpochs(start)).to.deep.equal([20_000])
    expect(announceEpochs(start + DHT_EPOCH_MS - DHT_EPOCH_LEAD_MS - 1)).to.deep.equal([20_000])
    expect(announceEpochs(start + DHT_EPOCH_MS - DHT_EPOCH_LEAD_MS)).to.deep.equal([20_000, 20_001])
    expect(lookupEpochs(start)).to.deep.equal([20_000, 19_999])
    // every announced key is one a peer whose clock is within the lead finds
    const t = start + DHT_EPOCH_MS - 1
    const later = t + DHT_EPOCH_LEAD_MS / 2
    expect(lookupEpochs(later).some((e) => announceEpochs(t).includes(e))).to.equal(true)
  })

  it('should not announce loopback or private addresses by default', async () => {
    const { a, dht } = await setup()
    expect(a.node.getMultiaddrs().some((m) => m.includes('/ip4/127.0.0.1/'))).to.equal(true)
    expect(a.node.getAnnouncedMultiaddrs()).to.deep.equal([])
    // A's record carries no address, so the participant neither stores nor hands out a record of A (kad-dht
    // drops providers without addresses); the same setup with the option set finds A (next test)
    await a.node.discover()
    const found = await providers(dht, topicCidOf(SECRET, dhtEpochOf(Date.now())))
    expect(found.has(a.node.peerId)).to.equal(false)
  })

  it('should announce them when announcePrivateAddresses is set', async () => {
    const { a, dht } = await setup(true)
    const found = await providers(dht, topicCidOf(SECRET, dhtEpochOf(Date.now())))
    expect(found.get(a.node.peerId)?.some((m) => m.includes('/ip4/127.0.0.1/'))).to.equal(true)
  })

  it('should never dial a peer the DHT hands out that is not in its list', async () => {
    const { a, dht } = await setup(true)
    // a stranger with a DHT that the participant knows (and would hand out as a closer peer)
    const stranger = await createRawNode({ dht: true, listen: true })
    raws.push(stranger)
    const dialled: string[] = []
    stranger.addEventListener('peer:connect', (evt) => { dialled.push(evt.detail.toString()) })
    await dht.dial(stranger.getMultiaddrs()[0], { signal: AbortSignal.timeout(10_000) })
    await waitFor(async () => (await dht.peerStore.get(stranger.peerId)).protocols.length > 0, 'the participant to identify the stranger')
    // A looks the topic up (and its own peer id, which walks the DHT): the participant answers with the stranger
    await a.node.discover()
    try {
      for await (const peer of a.node.libp2p.peerRouting.getClosestPeers(stranger.peerId.toMultihash().bytes, { signal: AbortSignal.timeout(5000) })) {
        expect(peer.id.toString()).to.be.a('string')
      }
    } catch {
      // a query whose only lead is a peer it may not dial ends without an answer
    }
    expect(await a.node.libp2p.peerStore.has(stranger.peerId), 'A never heard of the stranger (the test shows nothing)').to.equal(true)
    expect(dialled).to.not.include(a.node.peerId)
    expect(a.node.getPeers().map((p) => p.peerId)).to.not.include(stranger.peerId.toString())
  })
})
