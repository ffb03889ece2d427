/**
 * How a session stores the answers to its wants (src/sync/session.ts, `#onChanges` and `#store`): the reader
 * does not wait for one want's frames to be stored before it takes the next answer, so frames are verified and
 * stored side by side (ANSWER_FRAMES_IN_FLIGHT); unless the write policy reads what is stored
 * (`admitReadsStore`: a `types` rule), then each frame is judged once the frames before it are stored.
 */
import { expect } from 'chai'
import type { MindooDB, MindooTenant } from '../../src/index.js'
import type { StoreChange } from '../../src/store/change.js'
import { createChannelPair } from '../../src/sync/messages.js'
import type { ServedSet } from '../../src/sync/served-set.js'
import type { SessionResult } from '../../src/sync/session.js'
import { waitFor } from '../utils/orgs.js'
import { initiate, mapChannel, respond, servedSetOf } from '../utils/sessions.js'
import { testFactory, twoTenantsSharingKey } from '../utils/tmp.js'

const DOCS = 40
/** Hashes per want: DOCS changes take five wants, each answered in one frame. */
const WANT_BATCH = 8

describe('sync session: storing the answers', function () {
  this.timeout(60_000)
  let cleanup: () => Promise<void>
  let a: MindooTenant
  let dbA: MindooDB
  let dbB: MindooDB
  const served: ServedSet[] = []
  /** Releases the first receiveChanges of B, which waits for it. */
  let release: () => void
  /** B's receiveChanges calls. */
  let calls: number
  /** B's admit calls. */
  let admitted: number
  /** `changes` frames B's session has read. */
  let frames: number

  beforeEach(async () => {
    const t = await testFactory()
    cleanup = t.cleanup
    let b: MindooTenant
    [a, b] = await twoTenantsSharingKey(t.factory)
    dbA = await a.openDB('x', { defaultKeyId: 'k' })
    dbB = await b.openDB('x', { defaultKeyId: 'k' })
    await dbB.trustPartner(a.getPublicInfo())
    for (let i = 0; i < DOCS; i++) await dbA.createDocument()
    calls = admitted = frames = 0
    const gate = new Promise<void>((resolve) => { release = resolve })
    const receive = dbB.receiveChanges.bind(dbB)
    dbB.receiveChanges = async (changes, options) => {
      if (++calls === 1) await gate
      return await receive(changes, options)
    }
  })

  afterEach(async () => {
    release?.()
    for (const s of served.splice(0)) s.stop()
    await cleanup()
  })

  /** B fetches A's changes with small wants; `admitReadsStore` as given. */
  async function session (admitReadsStore: boolean): Promise<[SessionResult, SessionResult]> {
    const [ca, cb] = createChannelPair(64)
    const counting = mapChannel(cb, {
      receive: (m) => {
        if (m.type === 'changes') frames++
        return m
      }
    })
    const [servedA, servedB] = [await servedSetOf(dbA, 'both', served), await servedSetOf(dbB, 'both', served)]
    return await Promise.all([
      respond(ca, dbA, servedA, { peer: 'b', direction: 'both', participants: new Set() }),
      initiate(counting, dbB, servedB, {
        peer: 'a',
        direction: 'both',
        participants: new Set([a.getPublicInfo().signingPublicKey]),
        topic: new Uint8Array(32),
        wantBatch: WANT_BATCH,
        admit: (_change: StoreChange) => { admitted++; return undefined },
        admitReadsStore
      })
    ])
  }

  it('should store the next answer while the one before is still being stored', async () => {
    const result = session(false)
    // the first frame's store waits (its receiveChanges does not return): the next frames are judged and
    // stored meanwhile
    await waitFor(() => calls >= 2, 'a second frame to be stored while the first waits')
    release()
    const [, b] = await result
    expect(b.received).to.equal(DOCS)
    expect(await dbB.getStore().count()).to.equal(DOCS)
  })

  it('should judge a frame only once the frames before it are stored when the write policy reads the store', async () => {
    const result = session(true)
    await waitFor(() => frames >= 2 && calls === 1, 'a second frame to arrive while the first waits')
    // the second frame is held before it is judged (the callbacks queued so far have run)
    await new Promise((resolve) => setImmediate(resolve))
    expect(admitted).to.equal(WANT_BATCH)
    expect(calls).to.equal(1)
    release()
    const [, b] = await result
    expect(b.received).to.equal(DOCS)
    expect(admitted).to.equal(DOCS)
  })
})
