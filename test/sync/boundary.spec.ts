import { expect } from 'chai'
import { randomBytes } from 'node:crypto'
import { WriteDeniedError, WriteUndecidedError } from '../../src/errors.js'
import type { MindooDB, MindooTenant } from '../../src/index.js'
import { decodeChange, type StoreChange } from '../../src/store/change.js'
import { createChannelPair, type MessageChannel, type SyncMessage } from '../../src/sync/messages.js'
import { createInitiator, createReconcileSet, createResponder, type ReconcileSession } from '../../src/sync/reconcile/index.js'
import { Refusals } from '../../src/sync/refusals.js'
import { ServedSet } from '../../src/sync/served-set.js'
import { WantClaims } from '../../src/sync/claims.js'
import { runSession, type SessionComponents, type SessionInit } from '../../src/sync/session.js'
import { policyOf } from '../../src/sync/share.js'
import { createWritePolicy } from '../../src/sync/write-policy.js'
import { hostileMessage } from '../../bench/reconcile.js'
import { testFactory, twoTenantsSharingKey } from '../utils/tmp.js'

async function changesOf (db: MindooDB, docId: string): Promise<StoreChange[]> {
  const store = db.getStore()
  return (await store.getChanges(await store.getAllChangeHashesForDoc(docId))).sort((x, y) => x.time - y.time)
}

/**
 * Plays the initiating peer of a session on `end`: waits for the welcome, then reconciles `items` until done;
 * `received` collects the session's reconcile messages.
 */
async function reconcileAsInitiator (end: MessageChannel, items: Array<{ timestamp: number, id: string }> = [], maxMessageBytes = 64 * 1024, received: SyncMessage[] = []): Promise<ReconcileSession> {
  const r = createInitiator({ set: createReconcileSet(items) }, { maxMessageBytes })
  let out: Uint8Array | null = r.initiate()
  expect((await end.receive())?.type).to.equal('welcome')
  while (true) {
    if (out !== null) await end.send({ type: 'reconcile', data: out })
    if (r.done) return r
    const m = await end.receive() as SyncMessage
    expect(m.type).to.equal('reconcile')
    received.push(m)
    out = r.reconcile((m as { data: Uint8Array }).data)
  }
}

describe('sync boundary (unit)', function () {
  this.timeout(30_000)
  let cleanups: Array<() => Promise<void>> = []
  let tenant: MindooTenant
  let other: MindooTenant
  let db: MindooDB

  beforeEach(async () => {
    const t = await testFactory()
    cleanups.push(t.cleanup)
    ;[tenant, other] = await twoTenantsSharingKey(t.factory)
    db = await tenant.openDB('orders', { defaultKeyId: 'k' })
  })

  afterEach(async () => {
    for (const c of cleanups) await c()
    cleanups = []
  })

  describe('Refusals', () => {
    it('should remember only reasons tied to the bytes, per peer', () => {
      const r = new Refusals()
      const h = 'ab'.repeat(32)
      for (const code of ['INVALID_SIGNATURE', 'UNREQUESTED', 'HASH_MISMATCH']) r.add('peer-x', h, code)
      expect(r.has('peer-x', h)).to.equal(false)
      for (const code of ['UNTRUSTED_AUTHOR', 'KEY_MISMATCH', 'NOT_CREATOR', 'WRITE_DENIED', 'MALFORMED_CHANGE']) {
        const one = new Refusals()
        one.add('peer-x', h, code)
        expect(one.has('peer-x', h), code).to.equal(true)
        expect(one.has('peer-y', h), code).to.equal(false)
      }
    })

    it('should stay within its bounds per peer and in peers', () => {
      const r = new Refusals({ perPeer: 3, maxPeers: 2 })
      const hash = (i: number): string => i.toString(16).padStart(64, '0')
      for (let i = 0; i < 5; i++) r.add('p1', hash(i), 'UNTRUSTED_AUTHOR')
      expect(r.size).to.equal(3)
      expect(r.has('p1', hash(0))).to.equal(false)
      expect(r.has('p1', hash(4))).to.equal(true)
      r.add('p2', hash(0), 'UNTRUSTED_AUTHOR')
      r.add('p3', hash(0), 'UNTRUSTED_AUTHOR')
      expect(r.has('p1', hash(4))).to.equal(false)
      expect(r.has('p3', hash(0))).to.equal(true)
      r.clear()
      expect(r.size).to.equal(0)
    })
  })

  describe('ServedSet (evaluate before insert)', () => {
    it('should never insert or announce the change that makes a document leave a selector filter', async () => {
      const served = new ServedSet({ db, index: createReconcileSet() }, {
        policy: policyOf({ kind: 'selector', selector: { visibility: 'public' } }), direction: 'both', ownAuthor: tenant.getPublicInfo().signingPublicKey
      })
      await served.start()
      const grown: string[] = []
      served.onGrow((hashes) => grown.push(...hashes))
      const doc = await db.createDocument()
      await db.changeDoc(doc, (d) => { d.getData().visibility = 'public' })
      await served.settled()
      expect(served.servesDoc(doc.getId())).to.equal(true)
      expect(served.size).to.equal(2)
      await db.changeDoc(doc, (d) => { d.getData().visibility = 'private'; d.getData().secret = 1 })
      const leaving = (await changesOf(db, doc.getId())).at(-1) as StoreChange
      await served.settled()
      expect(grown).to.not.include(leaving.hash)
      expect(served.includes(leaving)).to.equal(false)
      expect(served.size).to.equal(0)
      expect(served.servesDoc(doc.getId())).to.equal(false)
      // back to public: its whole applied history enters again
      await db.changeDoc(doc, (d) => { d.getData().visibility = 'public' })
      await served.settled()
      expect(served.size).to.equal(4)
      served.stop()
    })

    it('should answer servesKey and servesDoc by the filter kind', async () => {
      const byKey = new ServedSet({ db, index: createReconcileSet() }, { policy: policyOf({ kind: 'keys', keyIds: ['k'] }), direction: 'both', ownAuthor: '' })
      expect(byKey.servesKey('k')).to.equal(true)
      expect(byKey.servesKey('k2')).to.equal(false)
      expect(byKey.servesDoc('any')).to.equal(false)
      const all = new ServedSet({ db, index: createReconcileSet() }, { policy: policyOf({ kind: 'all' }), direction: 'both', ownAuthor: '' })
      expect(all.servesKey('k2')).to.equal(true)
      expect(all.servesDoc('any')).to.equal(true)
    })
  })

  describe('reconciliation work budget', () => {
    it('should refuse a 62 KB message of thousands of mismatching ranges against a 200k set with BUDGET', () => {
      const items = Array.from({ length: 200_000 }, (_, i) => ({ timestamp: 1_700_000_000_000 + i, id: i.toString(16).padStart(64, '0') }))
      const set = createReconcileSet(items)
      const responder = createResponder({ set }, { maxMessageBytes: 64 * 1024 })
      let err: unknown
      try {
        responder.reconcile(hostileMessage(3269))
      } catch (caught) {
        err = caught
      }
      expect(err).to.include({ code: 'RECONCILE_PROTOCOL', reason: 'BUDGET' })
      expect(responder.done).to.equal(false)
      // an honest first message (one fingerprint) is well within the budget
      const honest = createResponder({ set }, { maxMessageBytes: 64 * 1024 })
      const reply = honest.reconcile(createInitiator({ set: createReconcileSet(items.slice(1)) }, { maxMessageBytes: 64 * 1024 }).initiate())
      expect(reply).to.not.equal(null)
    })
  })

  describe('write policy', () => {
    it('should let a partner write what it created and what is served to it, and deny the rest WRITE_DENIED', async () => {
      const partner = other.getPublicInfo().signingPublicKey
      const dbB = await other.openDB('orders', { defaultKeyId: 'k' })
      await dbB.trustPartner(tenant.getPublicInfo())
      const mine = await db.createDocument()
      await db.changeDoc(mine, (d) => { d.getData().type = 'order' })
      const changes = await changesOf(db, mine.getId())
      await dbB.getStore().appendMany(changes)
      await dbB.syncStoreChanges(changes.map((c) => c.hash))
      await dbB.changeDoc(mine.getId(), (d) => { d.getData().visibility = 'public' })
      const intoMine = (await changesOf(dbB, mine.getId())).at(-1) as StoreChange
      const theirs = await dbB.createDocument()
      const [creation] = await changesOf(dbB, theirs.getId())
      let serves = false
      const served = { servesDoc: () => serves, servesKey: () => false }
      const admit = (policy?: Parameters<typeof createWritePolicy>[0]['participants'] extends ReadonlyMap<string, infer P> ? P : never) =>
        createWritePolicy({ served, db, ownAuthor: tenant.getPublicInfo().signingPublicKey, participants: new Map([[partner, policy]]) })
      expect(await admit()(creation)).to.equal(undefined)
      expect(await admit()(intoMine)).to.be.instanceOf(WriteDeniedError)
      expect((await admit()(intoMine))?.code).to.equal('WRITE_DENIED')
      serves = true
      expect(await admit()(intoMine)).to.equal(undefined)
      expect(await admit({ served: false })(intoMine)).to.be.instanceOf(WriteDeniedError)
      expect(await admit({ types: ['invoice'] })(intoMine)).to.be.instanceOf(WriteDeniedError)
      expect(await admit({ types: ['order'] })(intoMine)).to.equal(undefined)
      expect(await admit({ keyIds: ['other'] })(intoMine)).to.be.instanceOf(WriteDeniedError)
      expect(await admit('none')(creation)).to.be.instanceOf(WriteDeniedError)
      // a document this side does not have yet passes a type rule only if the author created it
      expect(await admit({ types: ['order'] })(creation)).to.equal(undefined)
      // judged after the change too: its own new document given a type, with the creation earlier in the frame;
      // without it the outcome is unknown (WRITE_UNDECIDED, asked for again later), not denied
      await dbB.changeDoc(theirs, (d) => { d.getData().type = 'order' })
      const typed = (await changesOf(dbB, theirs.getId())).at(-1) as StoreChange
      expect(await admit({ types: ['order'] })(typed, [creation])).to.equal(undefined)
      expect(await admit({ types: ['invoice'] })(typed, [creation])).to.be.instanceOf(WriteDeniedError)
      const undecided = await admit({ types: ['order'] })(typed)
      expect(undecided).to.be.instanceOf(WriteUndecidedError)
      expect(undecided?.code).to.equal('WRITE_UNDECIDED')
      // a served order made an invoice (after B's edit, in the same frame): the state before passes, the state
      // after does not
      await dbB.changeDoc(mine.getId(), (d) => { d.getData().type = 'invoice' })
      const retyped = (await changesOf(dbB, mine.getId())).at(-1) as StoreChange
      expect(await admit({ types: ['order'] })(retyped, [intoMine])).to.be.instanceOf(WriteDeniedError)
      expect(await admit({ types: ['order', 'invoice'] })(retyped, [intoMine])).to.equal(undefined)
    })
  })

  describe('serving a want', () => {
    /**
     * Runs a responder session over `served` against a hand-driven peer that reconciles over an empty set, then
     * sends each of `wants` in turn and collects each answer; returns the hashes received per want and the result.
     */
    async function askFor (served: ServedSet, wants: string[][], maxFrameBytes?: number): Promise<{ answers: string[][], sent: number, peerLacked: number }> {
      const [ours, theirs] = createChannelPair(1024)
      const session = runSession({
        channel: ours, db, served, claims: new WantClaims(), reconciler: (set, maxMessageBytes) => createResponder({ set }, { maxMessageBytes })
      }, { role: 'responder', peer: 'peer-x', direction: 'serve', participants: new Set(), maxFrameBytes, peerMaxFrameBytes: maxFrameBytes })
      // both sides pick the same reconciliation message size from the frame limit
      const r = await reconcileAsInitiator(theirs, [], Math.min(64 * 1024, (maxFrameBytes ?? 4 * 1024 * 1024) - 64))
      // the peer learnt exactly the served set
      expect(r.need.map((i) => i.id).sort()).to.deep.equal([...served.index.items()].map((i) => i.id).sort())
      const answers: string[][] = []
      for (const want of wants) {
        await theirs.send({ type: 'want', hashes: want.map((h) => Buffer.from(h, 'hex')), done: false })
        const got: string[] = []
        while (true) {
          const m = await theirs.receive() as SyncMessage
          if (m.type === 'want') continue // the session's own want{done} (direction serve asks for nothing)
          expect(m.type).to.equal('changes')
          const frame = m as { changes: Uint8Array[], last: boolean }
          for (const bytes of frame.changes) got.push(decodeChange(bytes).hash)
          if (frame.last) break
        }
        answers.push(got)
      }
      await theirs.send({ type: 'want', hashes: [], done: true })
      while (await theirs.receive() !== undefined) { /* the session's closing frames */ }
      await theirs.close()
      const result = await session
      return { answers, sent: result.sent, peerLacked: result.peerLacked }
    }

    /** A document of two changes (creation, then its fields); returns its id and its changes' hashes. */
    const make = async (visibility: string, keyId?: string, bodyBytes = 150): Promise<{ docId: string, hashes: string[] }> => {
      const doc = await db.createDocument({ keyId })
      await db.changeDoc(doc, (d) => { d.getData().visibility = visibility; d.getData().body = randomBytes(bodyBytes).toString('base64') })
      return { docId: doc.getId(), hashes: (await changesOf(db, doc.getId())).map((c) => c.hash) }
    }

    it('should answer a want mixing served, unserved and unknown hashes with exactly the served ones, in the order asked', async () => {
      const served = new ServedSet({ db, index: createReconcileSet() }, {
        policy: policyOf({ kind: 'selector', selector: { visibility: 'public' } }), direction: 'serve', ownAuthor: tenant.getPublicInfo().signingPublicKey
      })
      await served.start()
      const pub1 = (await make('public')).hashes
      const pub2 = (await make('public')).hashes
      const internal = (await make('internal')).hashes
      // a document that matched, was served, then stopped matching: its changes left the served set
      const leaving = await make('public')
      await served.settled()
      const left = leaving.hashes
      expect(served.includes((await db.getStore().getChanges([left[0]]))[0])).to.equal(true)
      await db.changeDoc(leaving.docId, (d) => { d.getData().visibility = 'internal' })
      await served.settled()
      expect(served.includes((await db.getStore().getChanges([left[0]]))[0])).to.equal(false)
      const unknown = ['ab'.repeat(32), 'cd'.repeat(32)]
      const servedHashes = [...pub1, ...pub2]
      expect(served.size).to.equal(servedHashes.length)
      const mixed = [unknown[0], pub2[1], internal[0], left[0], pub1[0], unknown[1], internal[1], pub2[0], left[1], pub1[1], pub1[1]]
      const { answers, sent, peerLacked } = await askFor(served, [mixed, [...internal, ...left, ...unknown], [pub1[0]]])
      expect(answers[0]).to.deep.equal([pub2[1], pub1[0], pub2[0], pub1[1], pub1[1]])
      expect(answers[1]).to.deep.equal([])
      expect(answers[2]).to.deep.equal([pub1[0]])
      expect(sent).to.equal(6)
      expect(peerLacked).to.equal(servedHashes.length)
      served.stop()
    })

    it('should serve by key id alone under a keys filter, and skip a change larger than the frame limit', async () => {
      const served = new ServedSet({ db, index: createReconcileSet() }, {
        policy: policyOf({ kind: 'keys', keyIds: ['k'] }), direction: 'serve', ownAuthor: tenant.getPublicInfo().signingPublicKey
      })
      await served.start()
      const underK = (await make('any')).hashes
      const underTenantKey = (await make('any', 'tenant:org-a')).hashes
      const frameLimit = 2048
      const [small, big] = (await make('any', undefined, 3000)).hashes
      expect((await db.getStore().getEncodedMany([big]))[0]?.length).to.be.greaterThan(frameLimit)
      await served.settled()
      expect(served.size).to.equal(4)
      const { answers, sent } = await askFor(served, [[...underTenantKey, big, ...underK, small]], frameLimit)
      expect(answers[0]).to.deep.equal([...underK, small])
      expect(sent).to.equal(3)
      served.stop()
    })
  })

  describe('asking for what this side lacks', () => {
    it('should not ask for a change it stores but does not serve, and ask for every one it lacks', async () => {
      const served = new ServedSet({ db, index: createReconcileSet() }, {
        policy: policyOf({ kind: 'selector', selector: { visibility: 'public' } }), direction: 'both', ownAuthor: tenant.getPublicInfo().signingPublicKey
      })
      await served.start()
      const doc = await db.createDocument()
      await db.changeDoc(doc, (d) => { d.getData().visibility = 'internal' })
      const unserved = await changesOf(db, doc.getId())
      await served.settled()
      expect(served.size).to.equal(0)
      const lacking = Array.from({ length: 300 }, (_, i) => ({ timestamp: 1 + i, id: (i + 1).toString(16).padStart(64, '0') }))
      // the peer holds what this side stores but does not serve (reconciliation says this side lacks it) and 300 more
      const revealed = [...unserved.map((c) => ({ timestamp: c.time, id: c.hash })), ...lacking]
      const [ours, theirs] = createChannelPair(1024)
      const session = runSession({
        channel: ours, db, served, claims: new WantClaims(), reconciler: (set, maxMessageBytes) => createResponder({ set }, { maxMessageBytes })
      }, { role: 'responder', peer: 'peer-x', direction: 'both', participants: new Set(), wantBatch: 256, pipeline: 1 })
      await reconcileAsInitiator(theirs, revealed)
      await theirs.send({ type: 'want', hashes: [], done: true })
      const asked: string[] = []
      while (true) {
        const m = await theirs.receive() as SyncMessage
        expect(m.type).to.equal('want')
        const want = m as { hashes: Uint8Array[], done: boolean }
        asked.push(...want.hashes.map((h) => Buffer.from(h).toString('hex')))
        if (want.done) break
        expect(want.hashes.length).to.be.at.most(256)
        await theirs.send({ type: 'changes', changes: [], last: true })
      }
      await theirs.close()
      await session
      expect(asked.sort()).to.deep.equal(lacking.map((i) => i.id).sort())
      served.stop()
    })
  })

  describe('session stalls', () => {
    /** A responder session over `db` against a hand-driven initiator end. */
    function start (channel: MessageChannel, extra: Partial<SessionInit> = {}, signal?: AbortSignal, claims = new WantClaims()): Promise<unknown> {
      const served = new ServedSet({ db, index: createReconcileSet() }, { policy: { mode: 'all' }, direction: 'both', ownAuthor: '' })
      const components: SessionComponents = {
        channel, db, served, claims, reconciler: (set, maxMessageBytes) => createResponder({ set }, { maxMessageBytes })
      }
      return runSession(components, { role: 'responder', peer: 'peer-x', direction: 'both', participants: new Set(), idleTimeoutMs: 60_000, ...extra }, { signal })
    }


    it('should end a session flooded with empty wants with PROTOCOL_ERROR (they are no progress)', async () => {
      const [ours, theirs] = createChannelPair(1024)
      const session = start(ours)
      await reconcileAsInitiator(theirs)
      for (let i = 0; i < 100; i++) await theirs.send({ type: 'want', hashes: [], done: false })
      const err = await session.then(() => undefined, (e: Error) => e)
      expect((err as { code?: string })?.code).to.equal('PROTOCOL_ERROR')
    })

    it('should fail with SESSION_IDLE when the peer only sends frames that move nothing', async () => {
      const [ours, theirs] = createChannelPair(1024)
      const session = start(ours, { idleTimeoutMs: 300 })
      await reconcileAsInitiator(theirs)
      // fewer no-op frames than the limit, then silence: the no-ops did not move the idle deadline
      for (let i = 0; i < 10; i++) await theirs.send({ type: 'want', hashes: [], done: false })
      const err = await session.then(() => undefined, (e: Error) => e)
      expect((err as { code?: string })?.code).to.equal('SESSION_IDLE')
    })

    it('should honour abort while waiting for another session\'s claim', async () => {
      const doc = await other.openDB('x', { defaultKeyId: 'k' })
      const created = await doc.createDocument()
      const [wanted] = await changesOf(doc, created.getId())
      const claims = new WantClaims()
      claims.claim([wanted.hash], {}) // another session holds it and never releases it
      const [ours, theirs] = createChannelPair(1024)
      const controller = new AbortController()
      const session = start(ours, {}, controller.signal, claims)
      await reconcileAsInitiator(theirs, [{ timestamp: wanted.time, id: wanted.hash }])
      await theirs.send({ type: 'want', hashes: [], done: true })
      controller.abort(new Error('share disabled'))
      const err = await session.then(() => undefined, (e: Error) => e)
      expect(err?.message).to.equal('share disabled')
    })

    it('should reconcile a receive-only session over what the peer revealed, and remember it', async () => {
      for (let i = 0; i < 10; i++) await db.createDocument()
      const local = await db.getStore().getAllChangeHashes()
      const seen = createReconcileSet()
      const [ours, theirs] = createChannelPair(1024)
      const served = new ServedSet({ db, index: createReconcileSet() }, { policy: { mode: 'all' }, direction: 'receive', ownAuthor: '' })
      await served.start()
      const session = runSession({
        channel: ours, db, served, seen, claims: new WantClaims(), reconciler: (set, maxMessageBytes) => createResponder({ set }, { maxMessageBytes })
      }, { role: 'responder', peer: 'peer-x', direction: 'receive', participants: new Set() })
      // the peer reveals a hash this side lacks, and one it stores already
      const [stored] = await db.getStore().getChanges([local[0]])
      const revealed = [{ timestamp: 1, id: 'cd'.repeat(32) }, { timestamp: stored.time, id: stored.hash }]
      const sent: SyncMessage[] = []
      await reconcileAsInitiator(theirs, revealed, undefined, sent)
      await theirs.send({ type: 'want', hashes: [], done: true })
      // A asks for the hash it lacks; the peer answers nothing and ends
      const want = await theirs.receive()
      expect(want?.type).to.equal('want')
      await theirs.send({ type: 'changes', changes: [], last: true })
      expect((await theirs.receive())?.type).to.equal('want')
      await theirs.close()
      await session
      const bytes = Buffer.concat(sent.map((m) => Buffer.from((m as { data: Uint8Array }).data)))
      for (const h of local) expect(bytes.includes(Buffer.from(h, 'hex'))).to.equal(false)
      // remembered: only what the peer revealed and this side stores; the hash it never got is asked for again
      expect(seen.has(stored.time, stored.hash)).to.equal(true)
      expect(seen.has(1, revealed[0].id)).to.equal(false)
      expect(seen.size).to.equal(1)
      served.stop()
    })
  })
})
