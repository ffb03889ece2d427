/**
 * Issue 7, item 6 (memory before authorisation) and the stranger's part of item 9, over real libp2p on
 * 127.0.0.1: a stranger cannot connect at all (the connection gater), so it can neither query the DHT nor open a
 * sync stream; a peer that is admitted but not yet authorised on a topic is read with the small hello limit, and
 * the streams it may hold open before authorisation are capped per peer and in total. Honest partners keep
 * syncing meanwhile.
 */
import { expect } from 'chai'
import { multiaddr } from '@multiformats/multiaddr'
import * as varint from 'uint8-varint'
import type { MindooDB } from '../../src/index.js'
import { DHT_PROTOCOL, SYNC_PROTOCOL } from '../../src/p2p/constants.js'
import { MAX_HELLO_FRAME_BYTES } from '../../src/limits.js'
import { topicIdOf } from '../../src/sync/share.js'
import { createOrg, shareKey, shareWith, waitFor, type TestOrg } from '../utils/orgs.js'
import { createRawNode, type RawLibp2p } from '../utils/raw-node.js'
import { openRawStream, type RawEvent, type RawPeer } from '../utils/raw-peer.js'

const TOPIC = topicIdOf(shareWith([]).topicSecret)

/** Opens a raw sync stream that sends nothing (holding a slot before authorisation). */
async function silentStream (from: RawLibp2p, to: TestOrg): Promise<RawPeer> {
  return await openRawStream(from, to)
}

describe('adversary: strangers and unauthorised streams (network limits)', function () {
  this.timeout(60_000)
  let orgs: TestOrg[] = []
  let raws: RawLibp2p[] = []
  let a: TestOrg
  let b: TestOrg
  let dbA: MindooDB
  let dbB: MindooDB

  beforeEach(async () => {
    a = await createOrg('org-a', { dht: true })
    b = await createOrg('org-b')
    orgs = [a, b]
    await shareKey([a, b], 'k')
    await a.node.addShare(shareWith([b]))
    await b.node.addShare(shareWith([a]))
    dbA = await a.tenant.openDB('shared', { defaultKeyId: 'k' })
    dbB = await b.tenant.openDB('shared', { defaultKeyId: 'k' })
  })

  afterEach(async () => {
    for (const raw of raws) await raw.stop()
    for (const org of orgs) await org.cleanup()
    raws = []
  })

  const raw = async (dht = false): Promise<RawLibp2p> => {
    const node = await createRawNode({ dht })
    raws.push(node)
    return node
  }

  /** B and A exchange a fresh document each in a round of `from`. */
  async function expectHonestRound (from: TestOrg): Promise<void> {
    const docA = await dbA.createDocument()
    const docB = await dbB.createDocument()
    const [round] = await from.node.syncNow('shared', { signal: AbortSignal.timeout(20_000) })
    expect(round.ok, JSON.stringify(round.error)).to.equal(true)
    await waitFor(async () => await dbB.getStore().has((await dbA.getStore().getAllChangeHashesForDoc(docA.getId()))[0]), 'A\'s document at B')
    await waitFor(async () => await dbA.getStore().has((await dbB.getStore().getAllChangeHashesForDoc(docB.getId()))[0]), 'B\'s document at A')
  }

  describe('a stranger on the network', () => {
    it('should not connect, so it can neither query the DHT nor open a sync stream, and B keeps syncing', async () => {
      const stranger = await raw(true)
      const addr = multiaddr(a.node.getMultiaddrs()[0])
      for (const protocol of [SYNC_PROTOCOL, `${DHT_PROTOCOL}/kad/1.0.0`, DHT_PROTOCOL]) {
        let failed: unknown
        try {
          const stream = await stranger.dialProtocol(addr, protocol, { signal: AbortSignal.timeout(10_000) })
          stream.abort(new Error('unexpected'))
        } catch (err) {
          failed = err
        }
        expect(failed, `the stranger opened ${protocol}`).to.be.instanceOf(Error)
      }
      expect(a.node.isAdmitted(stranger.peerId.toString())).to.equal(false)
      await waitFor(() => a.node.getPeers().every((p) => p.peerId !== stranger.peerId.toString()), 'A to drop the stranger')
      await expectHonestRound(b)
    })
  })

  describe('a partner removed from every share', () => {
    it('should be disconnected and turned away from then on', async () => {
      await expectHonestRound(b)
      expect(a.node.getPeers().map((p) => p.peerId)).to.include(b.node.peerId)
      await a.node.removeShare('shared')
      expect(a.node.isAdmitted(b.node.peerId)).to.equal(false)
      await waitFor(() => a.node.getPeers().every((p) => p.peerId !== b.node.peerId), 'A to close B\'s connection')
      const [round] = await b.node.syncNow('shared', { signal: AbortSignal.timeout(10_000) })
      expect(round.ok).to.equal(false)
      let refused: unknown
      await openRawStream(b, a).then((s) => { s.abort() }, (err: unknown) => { refused = err })
      expect(refused).to.be.instanceOf(Error)
    })
  })

  describe('an admitted peer before its hello is authorised', () => {
    it('should refuse a hello frame longer than the hello limit as soon as its length is read', async () => {
      const stream = await openRawStream(b, a)
      // within the 4 MiB session frame limit, over the hello limit: never buffered
      await stream.sendRaw(varint.encode(MAX_HELLO_FRAME_BYTES + 1))
      const events = await stream.drain()
      const [first] = events
      expect(first.kind).to.equal('frame')
      expect(first.kind === 'frame' ? first.message : undefined).to.include({ type: 'error', code: 'PROTOCOL_ERROR' })
      expect(events.at(-1)?.kind).to.be.oneOf(['end', 'reset'])
      stream.abort()
      await expectHonestRound(b)
    })

    it('should reset a stream that sends more than a hello\'s worth of bytes before authorisation', async () => {
      const stream = await openRawStream(b, a)
      // a frame prefix within the hello limit, then far more bytes than the frame needs, pushed without waiting
      await stream.sendRaw(varint.encode(MAX_HELLO_FRAME_BYTES - 16))
      let sent = 0
      try {
        for (let i = 0; i < 64; i++) {
          await stream.sendRaw(new Uint8Array(16 * 1024).fill(0x42))
          sent += 16 * 1024
        }
      } catch {
        // A reset the stream while we were still writing
      }
      const events: RawEvent[] = await stream.drain()
      // A never answers with anything but a protocol error, and cuts the stream
      for (const e of events) if (e.kind === 'frame') expect(e.message).to.include({ type: 'error', code: 'PROTOCOL_ERROR' })
      expect(events.at(-1)?.kind).to.be.oneOf(['end', 'reset'])
      // the writes failed once A cut the stream: A did not take the whole megabyte in
      expect(sent).to.be.below(1024 * 1024)
      stream.abort()
      await expectHonestRound(b)
    })

    it('should reset streams over the per-peer and the global cap at once, while honest partners keep syncing', async () => {
      const [m, n] = [await raw(), await raw()]
      await a.restart({ allowPeers: [m.peerId.toString(), n.peerId.toString()], maxPendingSessions: 3, maxPendingSessionsPerPeer: 2 })
      // M holds its two slots with streams that never send a hello; its third is reset, unread
      const held = [await silentStream(m, a), await silentStream(m, a)]
      const third = await silentStream(m, a)
      // (before the 10 s hello timeout could have closed it, and without a frame)
      expect((await third.next(8000)).kind).to.be.oneOf(['reset', 'end'])
      // N takes the last global slot; its second stream finds the node full
      held.push(await silentStream(n, a))
      const over = await silentStream(n, a)
      expect((await over.next(8000)).kind).to.be.oneOf(['reset', 'end'])
      // a stream that got a slot was not reset: it is still waiting for its hello (A has said nothing)
      const waiting = await held[0].next(200).catch((err: Error) => err)
      expect(waiting).to.be.instanceOf(Error)
      expect((waiting as Error).message).to.match(/no frame from the peer/)

      // rounds A starts are not counted against the caps: A and B exchange changes while every slot is held
      await expectHonestRound(a)
      // once the slots are free again, B's own rounds are accepted too
      for (const s of held) s.abort()
      await waitFor(async () => {
        const [round] = await b.node.syncNow('shared', { signal: AbortSignal.timeout(10_000) })
        return round.ok
      }, 'B\'s round to be accepted once the slots are free')
      await expectHonestRound(b)
      // a hello over a freed slot is authorised as usual
      const hello = await openRawStream(b, a)
      await hello.hello(TOPIC)
      expect(await hello.frame()).to.include({ type: 'welcome' })
      hello.abort()
    })
  })
})
