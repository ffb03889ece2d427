/**
 * The reconciliation message size a session agrees on (src/sync/session.ts, `#open`): 1 MiB when both sides offer
 * RECONCILE_LARGE_CAPABILITY, so a large difference takes a few round trips; 64 KiB with a peer that does not
 * (an older one), the same on both sides, so the session still completes.
 */
import { expect } from 'chai'
import { randomBytes } from 'node:crypto'
import type { MindooDB } from '../../src/index.js'
import { createChannelPair, RECONCILE_LARGE_CAPABILITY, type MessageChannel, type SyncMessage } from '../../src/sync/messages.js'
import { createReconcileSet, type ReconcileSet } from '../../src/sync/reconcile/index.js'
import type { ServedSet } from '../../src/sync/served-set.js'
import type { SessionResult } from '../../src/sync/session.js'
import { initiate, mapChannel, respond, servedSetOf } from '../utils/sessions.js'
import { testFactory, twoTenantsSharingKey } from '../utils/tmp.js'

/** A channel that drops RECONCILE_LARGE_CAPABILITY from the hello and welcome passing through it. */
function withoutLarge (channel: MessageChannel): MessageChannel {
  const strip = (m: SyncMessage): SyncMessage =>
    m.type === 'hello' || m.type === 'welcome' ? { ...m, capabilities: m.capabilities.filter((c) => c !== RECONCILE_LARGE_CAPABILITY) } : m
  return mapChannel(channel, { send: strip, receive: strip })
}

describe('sync session: the reconciliation message size', function () {
  this.timeout(60_000)
  let cleanup: () => Promise<void>
  let dbA: MindooDB
  let dbB: MindooDB
  const served: ServedSet[] = []

  beforeEach(async () => {
    const t = await testFactory()
    cleanup = t.cleanup
    const [a, b] = await twoTenantsSharingKey(t.factory)
    dbA = await a.openDB('x', { defaultKeyId: 'k' })
    dbB = await b.openDB('x', { defaultKeyId: 'k' })
  })

  afterEach(async () => {
    for (const s of served.splice(0)) s.stop()
    await cleanup()
  })

  /**
   * B, receive-only, reconciles over `seen` (20,000 ids the peer revealed before: none of them stored at A any
   * more) against A, which serves an empty set: every id crosses once, from B to A.
   */
  async function session (seen: ReconcileSet, large: boolean): Promise<[SessionResult, SessionResult]> {
    const [ca, cb] = createChannelPair(64)
    const channelB = large ? cb : withoutLarge(cb)
    const [servedA, servedB] = [await servedSetOf(dbA, 'serve', served), await servedSetOf(dbB, 'receive', served)]
    const responder = respond(ca, dbA, servedA, { peer: 'b', direction: 'serve', participants: new Set() })
    const initiator = initiate(channelB, dbB, servedB, { peer: 'a', direction: 'receive', participants: new Set(), topic: new Uint8Array(32) }, seen)
    return await Promise.all([responder, initiator])
  }

  const ids = (n: number): ReconcileSet => {
    const set = createReconcileSet()
    for (let i = 0; i < n; i++) set.insert(1_700_000_000_000 + i, randomBytes(32).toString('hex'))
    return set
  }

  it('should send a large difference in a few 1 MiB messages when both sides offer it', async () => {
    const [a, b] = await session(ids(20_000), true)
    expect(a.reconcileBytes).to.equal(b.reconcileBytes).and.to.be.greaterThan(20_000 * 32)
    expect(b.reconcileMessages).to.be.at.most(4)
  })

  it('should fall back to 64 KiB messages on both sides with a peer that does not offer it', async () => {
    const [a, b] = await session(ids(20_000), false)
    expect(a.reconcileBytes).to.equal(b.reconcileBytes).and.to.be.greaterThan(20_000 * 32)
    // every message within 64 KiB: at least as many as the ids need
    expect(b.reconcileMessages).to.be.at.least(Math.ceil(20_000 * 32 / (64 * 1024)))
  })
})
