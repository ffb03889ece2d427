import { expect } from 'chai'
import type { MindooDB, MindooTenant } from '../../src/index.js'
import { createChannelPair, type MessageChannel } from '../../src/sync/messages.js'
import { createInitiator, createReconcileSet, createResponder } from '../../src/sync/reconcile/index.js'
import { ServedSet } from '../../src/sync/served-set.js'
import { WantClaims } from '../../src/sync/claims.js'
import { runSession, type LiveSession, type SessionResult } from '../../src/sync/session.js'
import { testFactory, twoTenantsSharingKey } from '../utils/tmp.js'

describe('sync session: the live phase (unit, in-memory channel)', function () {
  this.timeout(30_000)
  let cleanups: Array<() => Promise<void>> = []
  let a: MindooTenant
  let b: MindooTenant
  let dbA: MindooDB
  let dbB: MindooDB
  let served: ServedSet[] = []

  beforeEach(async () => {
    const t = await testFactory()
    cleanups.push(t.cleanup)
    ;[a, b] = await twoTenantsSharingKey(t.factory)
    dbA = await a.openDB('x', { defaultKeyId: 'k' })
    dbB = await b.openDB('x', { defaultKeyId: 'k' })
    await dbA.trustPartner(b.getPublicInfo())
    await dbB.trustPartner(a.getPublicInfo())
  })

  afterEach(async () => {
    for (const s of served) s.stop()
    served = []
    for (const c of cleanups) await c()
    cleanups = []
  })

  /** One side of a session over `db` with the live phase offered; resolves with its result and its live phase. */
  async function side (tenant: MindooTenant, db: MindooDB, channel: MessageChannel, role: 'initiator' | 'responder', signal: AbortSignal, liveSignal?: AbortSignal): Promise<{ result: SessionResult, live?: LiveSession }> {
    const set = new ServedSet({ db, index: createReconcileSet() }, { policy: { mode: 'all' }, direction: 'both', ownAuthor: tenant.getPublicInfo().signingPublicKey })
    await set.start()
    served.push(set)
    let live: LiveSession | undefined
    // a responder's owner reads and authorises the hello before the session starts
    const hello = role === 'responder' ? await channel.receive() : undefined
    const result = await runSession({
      channel,
      db,
      served: set,
      claims: new WantClaims(),
      reconciler: (s, maxMessageBytes) => (role === 'initiator' ? createInitiator : createResponder)({ set: s }, { maxMessageBytes }),
      onLive: (l) => { live = l }
    }, {
      role,
      peer: role,
      direction: 'both',
      participants: new Set([a.getPublicInfo().signingPublicKey, b.getPublicInfo().signingPublicKey]),
      topic: role === 'initiator' ? new Uint8Array(32) : undefined,
      peerCapabilities: hello?.type === 'hello' ? hello.capabilities : undefined,
      peerHas: new Set(),
      live: { ownAuthor: tenant.getPublicInfo().signingPublicKey, signal: liveSignal }
    }, { signal })
    return { result, live }
  }

  async function waitFor (condition: () => Promise<boolean>, what: string): Promise<void> {
    for (let i = 0; i < 500; i++) {
      if (await condition()) return
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
    throw new Error(`timed out waiting for ${what}`)
  }

  it('should outlive the run\'s signal, carry a change both ways, and end gracefully on close', async () => {
    const first = await dbA.createDocument()
    const [ca, cb] = createChannelPair(64)
    const runA = new AbortController()
    const runB = new AbortController()
    const phase = new AbortController()
    const [sa, sb] = await Promise.all([side(a, dbA, ca, 'initiator', runA.signal, phase.signal), side(b, dbB, cb, 'responder', runB.signal, phase.signal)])
    expect(sa.result.sent).to.equal(1)
    expect(sb.result.received).to.equal(1)
    expect(sa.live).to.not.equal(undefined)
    expect(sb.live).to.not.equal(undefined)
    // the callers of the runs give up: the live phase goes on
    runA.abort(new Error('caller deadline'))
    runB.abort(new Error('caller deadline'))
    const doc = await dbA.createDocument()
    await dbA.changeDoc(doc, (d) => { d.getData().v = 'live' })
    await waitFor(async () => await dbB.getStore().has((await dbA.getDocument(doc.getId())).getHeads()[0]), 'the change to reach B')
    const back = await dbB.changeDoc(first.getId(), (d) => { d.getData().from = 'b' })
    await waitFor(async () => await dbA.getStore().has(back.getHeads()[0]), 'B\'s change to reach A')
    expect((await dbB.getStore().getAllChangeHashes()).sort()).to.deep.equal((await dbA.getStore().getAllChangeHashes()).sort())
    sa.live?.close()
    await Promise.all([sa.live?.ended, sb.live?.ended])
  })

  it('should end the live phase with its own signal', async () => {
    const [ca, cb] = createChannelPair(64)
    const phase = new AbortController()
    const [sa, sb] = await Promise.all([side(a, dbA, ca, 'initiator', new AbortController().signal, phase.signal), side(b, dbB, cb, 'responder', new AbortController().signal)])
    phase.abort(new Error('share disabled'))
    const err = await (sa.live as LiveSession).ended.then(() => undefined, (e: Error) => e)
    expect(err?.message).to.equal('share disabled')
    // the other side learns it: its live phase ends too (the channel was torn down)
    await (sb.live as LiveSession).ended.catch(() => {})
  })
})
