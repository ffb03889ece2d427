import { expect } from 'chai'
import * as varint from 'uint8-varint'
import type { MindooDB } from '../../src/index.js'
import type { NodeEvent } from '../../src/p2p/events.js'
import type { PartnerStatus } from '../../src/p2p/index.js'
import { encodeFrame } from '../../src/p2p/codec.js'
import { DEFAULT_MAX_FRAME_BYTES } from '../../src/p2p/constants.js'
import { decodeChange, encodeChange, type StoreChange } from '../../src/store/change.js'
import { SYNC_PROTOCOL_VERSION, type SyncMessage } from '../../src/sync/messages.js'
import { createInitiator, createReconcileSet } from '../../src/sync/reconcile/index.js'
import { topicIdOf } from '../../src/sync/share.js'
import type { Logger } from '../../src/util/logger.js'
import { createOrg, shareKey, shareWith, waitFor, type TestOrg } from '../utils/orgs.js'
import { containsBytes, openRawStream, RECONCILE_MESSAGE_BYTES, type RawEvent, type RawPeer } from '../utils/raw-peer.js'

const TOPIC_SECRET = shareWith([]).topicSecret
const TOPIC = topicIdOf(TOPIC_SECRET)

/** The changes of one document, oldest first. */
async function changesOf (db: MindooDB, docId: string): Promise<StoreChange[]> {
  const store = db.getStore()
  return (await store.getChanges(await store.getAllChangeHashesForDoc(docId))).sort((x, y) => x.time - y.time)
}

async function hashes (db: MindooDB): Promise<string[]> {
  return (await db.getStore().getAllChangeHashes()).sort()
}

function frames (events: RawEvent[]): SyncMessage[] {
  return events.flatMap((e) => e.kind === 'frame' ? [e.message] : [])
}

/** A refused stream: only `error` frames with `code` (at most one), then the stream ends or is reset. */
function expectRefused (events: RawEvent[], code: string): void {
  const last = events.at(-1)
  expect(last?.kind, 'the stream must end').to.be.oneOf(['end', 'reset'])
  for (const m of frames(events)) {
    expect(m.type).to.equal('error')
    expect(m.type === 'error' ? m.code : undefined).to.equal(code)
  }
  expect(frames(events).length).to.be.at.most(1)
}

/** A logger that records the fields of every warning whose message is `message`. */
function recordingLogger (into: Array<{ code?: string }>, message: string): Logger {
  const logger: Logger = {
    debug: () => {},
    info: () => {},
    warn: (obj, msg) => { if (msg === message && typeof obj === 'object') into.push(obj as { code?: string }) },
    error: () => {},
    child: () => logger
  }
  return logger
}

function flipByte (bytes: Uint8Array, at: number): Uint8Array {
  const out = new Uint8Array(bytes)
  out[at] ^= 0xff
  return out
}

describe('hostile peers', function () {
  this.timeout(30_000)
  let a: TestOrg
  let b: TestOrg
  let orgs: TestOrg[] = []

  const another = async (name: string): Promise<TestOrg> => {
    const org = await createOrg(name)
    orgs.push(org)
    return org
  }

  beforeEach(async () => {
    orgs = []
    a = await another('org-a')
    b = await another('org-b')
    await shareKey([a, b], 'k')
  })

  afterEach(async () => {
    for (const org of orgs) await org.cleanup()
  })

  /** A is still in service: a normal round of B (its share added if need be) succeeds and brings all of A's own changes. */
  async function expectServesB (dbA: MindooDB): Promise<void> {
    if (b.node.listShares().length === 0) await b.node.addShare(shareWith([a]))
    const [round] = await b.node.syncNow('shared', { signal: AbortSignal.timeout(15_000) })
    expect(round.ok, JSON.stringify(round.error)).to.equal(true)
    const dbB = await b.tenant.openDB('shared')
    const have = new Set(await hashes(dbB))
    const own = a.tenant.getPublicInfo().signingPublicKey
    const ofA = (await dbA.getStore().getChanges(await hashes(dbA))).filter((c) => c.author === own)
    expect(ofA).to.not.have.length(0)
    for (const change of ofA) expect(have.has(change.hash), `B lacks ${change.hash}`).to.equal(true)
  }

  /** B as A's status shows it. */
  function partnerBOfA (): PartnerStatus {
    const p = a.node.status('shared')[0].partners.find((x) => x.peerId === b.node.peerId)
    if (p === undefined) throw new Error('B is not a partner of A')
    return p
  }

  async function seedA (count = 5): Promise<MindooDB> {
    const dbA = await a.tenant.openDB('shared', { defaultKeyId: 'k' })
    for (let i = 0; i < count; i++) {
      const doc = await dbA.createDocument()
      await dbA.changeDoc(doc, (d) => { d.getData().i = i })
    }
    return dbA
  }

  describe('an organisation that is not a partner', () => {
    it('should not even let it connect, and give a partner with an unknown topic NOT_AUTHORIZED and nothing else', async () => {
      const dbA = await seedA()
      await a.node.addShare(shareWith([b]))
      const c = await another('org-c')
      const servedHashes = (await hashes(dbA)).map((h) => Buffer.from(h, 'hex'))
      const unknownTopic = topicIdOf('some-other-topic-secret-42')
      // an outsider is turned away by the connection gater before it can open a stream
      let refused: unknown
      await openRawStream(c, a).then((raw) => { raw.abort() }, (err: unknown) => { refused = err })
      expect(refused, 'a stranger opened a sync stream').to.be.instanceOf(Error)
      // a partner with an unknown topic pushes a reconciliation message and a want right behind its hello,
      // without waiting for an answer
      for (const [from, topic] of [[b, unknownTopic]] as Array<[TestOrg, Uint8Array]>) {
        const raw = await openRawStream(from, a)
        await raw.hello(topic)
        await raw.send({ type: 'reconcile', data: createInitiator({ set: createReconcileSet() }, { maxMessageBytes: RECONCILE_MESSAGE_BYTES }).initiate() })
        await raw.send({ type: 'want', hashes: servedHashes.slice(0, 3), done: true })
        const events = await raw.drain()
        expect(events.map((e) => e.kind)).to.deep.equal(['frame', 'end'])
        expect(frames(events)[0]).to.include({ type: 'error', code: 'NOT_AUTHORIZED' })
        for (const h of servedHashes) expect(containsBytes(raw.received[0], h)).to.equal(false)
        raw.abort()
      }
      expect(a.node.status('shared')[0].totals.changesSent).to.equal(0)
    })

    it('should fail a round of a share naming A (A does not admit it) and receive none of A\'s data', async () => {
      const dbA = await seedA()
      await a.node.addShare(shareWith([b]))
      const c = await another('org-c')
      await shareKey([a, c], 'k')
      await c.node.addShare(shareWith([a]))
      const [round] = await c.node.syncNow('shared', { signal: AbortSignal.timeout(15_000) })
      expect(round.ok).to.equal(false)
      expect(round.skipped).to.equal(undefined)
      expect(c.node.status('shared')[0].partners[0].roundsFailed).to.be.at.least(1)
      expect(a.node.isAdmitted(c.node.peerId)).to.equal(false)
      expect(await (await c.tenant.openDB('shared')).getStore().count()).to.equal(0)
      expect(a.node.status('shared')[0].totals.changesSent).to.equal(0)
      // and A still serves its partner
      await expectServesB(dbA)
    })
  })

  describe('a share disabled mid-session', () => {
    it('should stop serving at once, refuse new rounds with SHARE_DISABLED, and serve again once enabled', async () => {
      // long backoffs: no retry round starts by itself while the test runs
      const failures: Array<{ code?: string }> = []
      await a.restart({ backoffBaseMs: 600_000 })
      await b.restart({ backoffBaseMs: 600_000, logger: recordingLogger(failures, 'sync round failed') })
      const total = 3000
      const dbA = await a.tenant.openDB('shared', { defaultKeyId: 'k' })
      for (let i = 0; i < total; i++) await dbA.createDocument()
      // A's first round fails (B has no share yet); B's round on adding its share is the session under test
      await a.node.addShare(shareWith([b]))
      const [first] = await a.node.syncNow('shared', { signal: AbortSignal.timeout(10_000) })
      // B's gater does not admit A yet (no share of B names it)
      expect(first.ok).to.equal(false)
      const dbB = await b.tenant.openDB('shared')
      await b.node.addShare(shareWith([a]))
      await waitFor(async () => (await dbB.getStore().count()) > 0, 'the first changes to reach B', 15_000, 1)
      await a.node.disableShare('shared')
      const mid = await dbB.getStore().count()
      expect(mid).to.be.below(total)
      await waitFor(() => failures.length > 0, 'B\'s round to fail', 10_000)
      expect(failures[0].code).to.equal('SHARE_DISABLED')
      const partner = b.node.status('shared')[0].partners[0]
      expect(partner.lastSuccessAt).to.equal(undefined)
      expect(await dbB.getStore().count()).to.be.below(total)

      const [refused] = await b.node.syncNow('shared', { signal: AbortSignal.timeout(10_000) })
      expect(refused.ok).to.equal(false)
      expect(refused.error?.code).to.equal('SHARE_DISABLED')
      expect(await dbB.getStore().count()).to.be.below(total)

      await a.node.enableShare('shared')
      const [again] = await b.node.syncNow('shared', { signal: AbortSignal.timeout(20_000) })
      expect(again.ok, JSON.stringify(again.error)).to.equal(true)
      await waitFor(async () => (await dbB.getStore().count()) === total, 'B to have every change', 15_000)
      expect(await hashes(dbB)).to.deep.equal(await hashes(dbA))
    })
  })

  describe('malformed input from an authorised partner', () => {
    // before the hello is accepted, A answers with exactly one PROTOCOL_ERROR frame and ends the stream
    const beforeHello: Array<[string, (raw: RawPeer) => Promise<void>]> = [
      ['garbage bytes', async (raw) => { await raw.sendRaw(new Uint8Array(64).fill(0xff)) }],
      ['a length-prefixed frame of garbage', async (raw) => { await raw.sendBody(new Uint8Array(40).fill(0xff)) }],
      ['a length prefix over the frame limit', async (raw) => {
        await raw.sendRaw(varint.encode(DEFAULT_MAX_FRAME_BYTES + 1))
        await raw.sendRaw(new Uint8Array(1024))
      }],
      ['a frame cut off by the end of the stream', async (raw) => {
        const frame = encodeFrame({ type: 'hello', topic: TOPIC, version: 1, capabilities: [], maxFrameBytes: 1 << 20 })
        await raw.sendRaw(varint.encode(frame.length))
        await raw.sendRaw(frame.subarray(0, 10))
        await raw.closeWrite()
      }],
      ['a frame of unknown type 99', async (raw) => { await raw.sendBody(Uint8Array.from([0x08, 99])) }],
      ['a frame of type UNKNOWN', async (raw) => { await raw.sendBody(Uint8Array.from([0x08, 0x00, 0x3a, 0x01, 0x61])) }],
      ['an empty frame', async (raw) => { await raw.sendBody(new Uint8Array(0)) }],
      ['a hello with a 5-byte topic', async (raw) => {
        await raw.send({ type: 'hello', topic: TOPIC.subarray(0, 5), version: 1, capabilities: [], maxFrameBytes: 1 << 20 })
      }],
      ['a want before hello', async (raw) => { await raw.send({ type: 'want', hashes: [new Uint8Array(32)], done: false }) }]
    ]

    for (const [what, attack] of beforeHello) {
      it(`should answer ${what} with PROTOCOL_ERROR and keep serving`, async () => {
        const dbA = await seedA()
        await a.node.addShare(shareWith([b]))
        const raw = await openRawStream(b, a)
        await attack(raw)
        const events = await raw.drain()
        expect(events.map((e) => e.kind)).to.deep.equal(['frame', 'end'])
        expect(frames(events)[0]).to.include({ type: 'error', code: 'PROTOCOL_ERROR' })
        raw.abort()
        expect(a.node.libp2p.status).to.equal('started')
        await expectServesB(dbA)
      })
    }

    it('should refuse a hello of the previous protocol version with VERSION_UNSUPPORTED and keep serving', async () => {
      // version 1 spoke reconciliation messages of format 1: refused at the hello, never reconciled against
      const dbA = await seedA()
      await a.node.addShare(shareWith([b]))
      const raw = await openRawStream(b, a)
      await raw.send({ type: 'hello', topic: TOPIC, version: SYNC_PROTOCOL_VERSION - 1, capabilities: ['reconcile/rbsr-1'], maxFrameBytes: 1 << 20 })
      const events = await raw.drain()
      expect(events.map((e) => e.kind)).to.deep.equal(['frame', 'end'])
      expect(frames(events)[0]).to.include({ type: 'error', code: 'VERSION_UNSUPPORTED' })
      raw.abort()
      await expectServesB(dbA)
    })

    // after the welcome, A ends the session: exactly one PROTOCOL_ERROR frame, and nothing else
    const afterWelcome: Array<[string, (raw: RawPeer) => Promise<void>]> = [
      ['a second hello instead of reconciliation', async (raw) => { await raw.hello(TOPIC) }],
      ['a want instead of reconciliation', async (raw) => { await raw.send({ type: 'want', hashes: [], done: true }) }],
      ['garbage reconciliation data', async (raw) => {
        await raw.send({ type: 'reconcile', data: Uint8Array.from([0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9]) })
      }],
      ['a frame over the limit', async (raw) => { await raw.sendRaw(varint.encode(DEFAULT_MAX_FRAME_BYTES + 1)) }],
      ['the end of the stream', async (raw) => { await raw.closeWrite() }]
    ]

    for (const [what, attack] of afterWelcome) {
      it(`should end the session on ${what} after a valid hello and keep serving`, async () => {
        const dbA = await seedA()
        await a.node.addShare(shareWith([b]))
        const raw = await openRawStream(b, a)
        await raw.hello(TOPIC)
        expect(await raw.frame()).to.include({ type: 'welcome' })
        await attack(raw)
        const events = await raw.drain()
        expectRefused(events, 'PROTOCOL_ERROR')
        expect(frames(events)).to.have.length(1)
        raw.abort()
        expect(a.node.status('shared')[0].totals.changesSent).to.equal(0)
        // the failed session shows on the partner that opened it
        await waitFor(() => partnerBOfA().sessionsFailed === 1, 'A to count the failed session')
        const failed = partnerBOfA()
        expect(failed.lastError?.at).to.be.a('number')
        await expectServesB(dbA)
        const served = partnerBOfA()
        expect(served.sessionsFailed).to.equal(1)
        expect(served.lastSuccessAt).to.be.at.least(failed.lastError?.at ?? Infinity)
      })
    }
  })

  describe('an authorised partner sending forged changes', () => {
    it('should store only the good change, count each rejection by reason, and keep serving', async () => {
      const dbA = await seedA()
      const m = await another('org-m')
      await shareKey([a, m], 'k')
      await a.node.addShare(shareWith([b, m]))

      // real changes of M's tenant, and one of a tenant that is no participant of the share
      const dbM = await m.tenant.openDB('forge', { defaultKeyId: 'k' })
      const made: StoreChange[] = []
      for (let i = 0; i < 4; i++) {
        const doc = await dbM.createDocument()
        made.push(...await changesOf(dbM, doc.getId()))
      }
      const [good, tampered, forged, unasked] = made
      const x = await m.factory.createTenant({ tenantId: 'org-x', tenantEncryptionKeyPassword: 'x' })
      const dbX = await x.openDB('forge')
      const [untrusted] = await changesOf(dbX, (await dbX.createDocument()).getId())

      const tamperedBytes = encodeChange(tampered)
      const payloadAt = tamperedBytes.length - 64 - tampered.payload.length + 3
      const wire = [
        flipByte(tamperedBytes, payloadAt), // payload no longer matches its hash
        encodeChange({ ...forged, signature: flipByte(forged.signature, 7) }),
        encodeChange(untrusted),
        encodeChange(unasked), // valid, but not announced, so not asked for
        new Uint8Array(300).fill(7),
        encodeChange(good)
      ]
      expect(decodeChange(wire[1]).hash).to.equal(forged.hash)

      const events: NodeEvent[] = []
      const off = a.node.events.on((e) => { if (e.type !== 'partner.connected' && e.type !== 'partner.disconnected') events.push(e) })
      const raw = await openRawStream(m, a)
      await raw.hello(TOPIC)
      expect(await raw.frame()).to.include({ type: 'welcome' })
      const claimed = [good, tampered, forged, untrusted].map((c) => ({ timestamp: c.time, id: c.hash }))
      const reconciler = await raw.reconcile(claimed)
      expect(reconciler.have.map((i) => i.id).sort()).to.deep.equal(claimed.map((i) => i.id).sort())
      await raw.send({ type: 'want', hashes: [], done: true })

      let answered = false
      let peerDone = false
      while (!answered || !peerDone) {
        const msg = await raw.frame()
        if (msg.type === 'want') {
          if (msg.hashes.length > 0) {
            expect(msg.hashes.map((h) => Buffer.from(h).toString('hex')).sort()).to.deep.equal(claimed.map((i) => i.id).sort())
            await raw.send({ type: 'changes', changes: wire, last: true })
            answered = true
          }
          if (msg.done) peerDone = true
        } else {
          expect.fail(`unexpected ${msg.type} frame`)
        }
      }
      await raw.closeWrite()
      expect((await raw.drain()).map((e) => e.kind)).to.deep.equal(['end'])

      const store = dbA.getStore()
      expect(await store.has(good.hash)).to.equal(true)
      for (const bad of [tampered, forged, untrusted, unasked]) expect(await store.has(bad.hash), bad.hash).to.equal(false)
      const totals = a.node.status('shared')[0].totals
      expect(totals.rejected).to.deep.equal({
        HASH_MISMATCH: 1, INVALID_SIGNATURE: 1, UNTRUSTED_AUTHOR: 1, UNREQUESTED: 1, MALFORMED_CHANGE: 1
      })
      expect(totals.changesReceived).to.equal(1)
      expect((await dbA.getDocument(good.docId)).getId()).to.equal(good.docId)

      // the node told its listeners: the session accepted, one changes.rejected event for the session with the
      // counts per reason, and the round's end with what it moved
      await waitFor(() => events.some((e) => e.type === 'round.finished'), 'round.finished')
      off()
      const peerId = m.node.peerId
      expect(events.map((e) => e.type)).to.deep.equal(['session.accepted', 'round.started', 'changes.rejected', 'round.finished'])
      expect(events[0]).to.deep.equal({ type: 'session.accepted', peerId, share: 'shared', direction: 'inbound' })
      expect(events[2]).to.deep.equal({ type: 'changes.rejected', share: 'shared', peerId, counts: totals.rejected })
      expect(events[3]).to.deep.include({ ok: true, role: 'responder', received: 1, rejected: totals.rejected })

      // offering the same changes again: A does not ask for the ones it refused, nor the one it has
      const again = await openRawStream(m, a)
      await again.hello(TOPIC)
      expect(await again.frame()).to.include({ type: 'welcome' })
      await again.reconcile(claimed)
      await again.send({ type: 'want', hashes: [], done: true })
      const want = await again.frame()
      again.abort()
      // the untrusted change was refused for a reason its hash proves: not asked for again from M; the forged
      // signature is not covered by the hash (M could send it for anyone's change), so that hash is asked for
      // again, and so is the tampered one, which arrived under another hash
      const asked = want?.type === 'want' ? want.hashes.map((h) => Buffer.from(h).toString('hex')) : []
      expect(asked.sort()).to.deep.equal([tampered.hash, forged.hash].sort())

      await expectServesB(dbA)
    })
  })

  describe('a partner asking by name for changes outside its share', () => {
    it('should send only the matching change and never acknowledge the others', async () => {
      const dbA = await a.tenant.openDB('orders', { defaultKeyId: 'k' })
      const matching: string[] = []
      const hidden: string[] = []
      const combos: Array<[string, string]> = [['order', 'public'], ['order', 'private'], ['invoice', 'public'], ['order', 'public'], ['memo', 'private']]
      for (const [type, visibility] of combos) {
        const doc = await dbA.createDocument()
        await dbA.changeDoc(doc, (d) => { d.getData().type = type; d.getData().visibility = visibility })
        const docHashes = (await changesOf(dbA, doc.getId())).map((c) => c.hash)
        if (type === 'order' && visibility === 'public') matching.push(...docHashes)
        else hidden.push(...docHashes)
      }
      expect(hidden).to.have.length(6)
      const filter = { kind: 'selector' as const, selector: { type: 'order', visibility: 'public' } }
      await a.node.addShare(shareWith([b], { database: 'orders', filter, direction: 'serve' }))
      expect(a.node.status('shared')[0].servedSetSize).to.equal(matching.length)

      const raw = await openRawStream(b, a)
      await raw.hello(TOPIC)
      expect(await raw.frame()).to.include({ type: 'welcome' })
      const reconciler = await raw.reconcile([])
      expect(reconciler.need.map((i) => i.id).sort()).to.deep.equal([...matching].sort())

      const asked = [...hidden, matching[0]]
      await raw.send({ type: 'want', hashes: asked.map((h) => Buffer.from(h, 'hex')), done: false })
      const got: string[] = []
      let last = false
      let peerDone = false
      while (!last || !peerDone) {
        const msg = await raw.frame()
        if (msg.type === 'changes') {
          got.push(...msg.changes.map((bytes) => decodeChange(bytes).hash))
          last = msg.last
        } else if (msg.type === 'want') {
          expect(msg.hashes).to.have.length(0)
          peerDone = msg.done
        } else {
          expect.fail(`unexpected ${msg.type} frame`)
        }
      }
      expect(got).to.deep.equal([matching[0]])
      await raw.send({ type: 'want', hashes: [], done: true })
      await raw.closeWrite()
      expect((await raw.drain()).map((e) => e.kind)).to.deep.equal(['end'])

      // no reply of A, reconciliation included, carries a hidden hash, raw or in hex
      expect(raw.received.length).to.be.greaterThan(2)
      for (const frame of raw.received) {
        for (const h of hidden) {
          expect(containsBytes(frame, Buffer.from(h, 'hex')), `a frame carries ${h}`).to.equal(false)
          expect(containsBytes(frame, Buffer.from(h)), `a frame carries ${h} in hex`).to.equal(false)
        }
      }
      expect(a.node.status('shared')[0].totals.changesSent).to.equal(1)
    })
  })
})
