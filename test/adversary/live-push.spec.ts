/**
 * Issue 8, live sync: a partner M on a long-lived session pushes what it likes with its announcements — a change
 * to a document the share's filter does not serve it, a change it did not announce, a tampered one, one over the
 * push limit, and a flood of pushes that bring nothing. Each is refused with a typed code; rejections leave the
 * session running, limits cut it off; an honest partner C keeps syncing with A live throughout.
 */
import { expect } from 'chai'
import type { MindooDB } from '../../src/index.js'
import { LIVE_MAX_PUSH_CHANGE_BYTES, LIVE_WASTE_BURST } from '../../src/limits.js'
import { encodeChange, type StoreChange } from '../../src/store/change.js'
import { CAPABILITIES, LIVE_ANNOUNCE_CAPABILITY, LIVE_CAPABILITY, SYNC_PROTOCOL_VERSION, type SyncMessage } from '../../src/sync/messages.js'
import { topicIdOf } from '../../src/sync/share.js'
import { automergeChange, forgeChange, keyBytes, tenantSigner } from '../utils/forge.js'
import { createOrg, shareKey, shareWith, waitFor, type TestOrg } from '../utils/orgs.js'
import { openRawStream, type RawPeer } from '../utils/raw-peer.js'

const hex = (h: string): Uint8Array => Buffer.from(h, 'hex')

/** Opens a session as M, offers the live phase, runs an empty transfer and enters the live phase. */
async function goLive (raw: RawPeer, topic: Uint8Array): Promise<void> {
  await raw.send({ type: 'hello', topic, version: SYNC_PROTOCOL_VERSION, capabilities: [...CAPABILITIES, LIVE_CAPABILITY, LIVE_ANNOUNCE_CAPABILITY], maxFrameBytes: 4 * 1024 * 1024 })
  const welcome = await raw.frame()
  expect(welcome.type).to.equal('welcome')
  expect(welcome.type === 'welcome' && welcome.capabilities).to.include(LIVE_CAPABILITY)
  await raw.reconcile([])
  await raw.send({ type: 'want', hashes: [], done: true })
  // A asks for nothing (M revealed nothing), answers nothing (M wants nothing), then goes live
  for (let m = await raw.frame(); m.type !== 'live'; m = await raw.frame()) {
    expect(m).to.deep.include({ type: 'want', done: true })
  }
  await raw.send({ type: 'live' })
}

/** The next frame that is not one of A's own announcements (which M acknowledges, as a partner would). */
async function reply (raw: RawPeer): Promise<SyncMessage> {
  while (true) {
    const m = await raw.frame()
    if (m.type !== 'announce') return m
    await raw.send({ type: 'ack' })
  }
}

describe('adversary: live pushes (long-lived sessions)', function () {
  this.timeout(60_000)
  let orgs: TestOrg[] = []
  let a: TestOrg
  let c: TestOrg
  let m: TestOrg
  let dbA: MindooDB
  let dbC: MindooDB
  const filter = { kind: 'selector' as const, selector: { visibility: 'public' } }

  beforeEach(async () => {
    [a, c, m] = [await createOrg('org-a'), await createOrg('org-c'), await createOrg('org-m')]
    orgs = [a, c, m]
    await shareKey([a, c, m], 'k')
    await a.node.addShare(shareWith([c, m], { filter }))
    await c.node.addShare(shareWith([a]))
    dbA = await a.tenant.openDB('shared', { defaultKeyId: 'k' })
    dbC = await c.tenant.openDB('shared', { defaultKeyId: 'k' })
    await c.node.syncNow('shared')
    await waitFor(() => a.node.status('shared')[0].partners.some((p) => p.peerId === c.node.peerId && p.live !== undefined), 'C live with A')
  })

  afterEach(async () => {
    for (const org of orgs) await org.cleanup()
    orgs = []
  })

  /** C writes a public document; it must reach A (C is still served, live). */
  async function honestCarriesOn (label: string): Promise<void> {
    const doc = await dbC.createDocument()
    await dbC.changeDoc(doc, (d) => { d.getData().visibility = 'public'; d.getData().label = label })
    await waitFor(async () => {
      try { return (await dbA.getDocument(doc.getId())).getData().label === label } catch { return false }
    }, `C's change ${label} to reach A`)
  }

  it('should refuse pushes outside the filter, unannounced and tampered, one by one, and keep the session', async () => {
    const secret = await dbA.createDocument()
    await dbA.changeDoc(secret, (d) => { d.getData().visibility = 'private' })
    const signer = await tenantSigner(m)
    const k = await keyBytes(await m.tenant.exportNamedKey('k', 'x-pw'), 'x-pw')
    const heads = (await dbA.getDocument(secret.getId())).getHeads() as string[]
    // a write into A's private document: not M's, not served to M
    const outside = forgeChange(signer, { docId: secret.getId(), keyId: 'k', key: k, deps: heads, plaintext: automergeChange({ visibility: 'public' }) })
    const unannounced = forgeChange(signer, { keyId: 'k', key: k })
    const tampered = forgeChange(signer, { keyId: 'k', key: k })
    const tamperedBytes = encodeChange(tampered)
    tamperedBytes[tamperedBytes.length - 1] ^= 0xff
    const good = forgeChange(signer, { keyId: 'k', key: k, plaintext: automergeChange({ visibility: 'public', by: 'm' }) })

    const raw = await openRawStream(m, a)
    await goLive(raw, topicIdOf(shareWith([]).topicSecret))
    const announce = async (hashes: StoreChange[], pushed: Uint8Array[]): Promise<SyncMessage> => {
      await raw.send({ type: 'announce', hashes: hashes.map((x) => hex(x.hash)), changes: pushed })
      return await reply(raw)
    }
    expect(await announce([outside], [encodeChange(outside)])).to.deep.equal({ type: 'ack' })
    // announced as `good`, pushed as another change
    expect(await announce([good], [encodeChange(unannounced)])).to.deep.include({ type: 'want' })
    expect(await reply(raw)).to.deep.equal({ type: 'ack' })
    expect(await announce([tampered], [tamperedBytes])).to.deep.equal({ type: 'ack' })

    const totals = a.node.status('shared')[0].totals
    expect(totals.rejected).to.include({ WRITE_DENIED: 1, UNREQUESTED: 1 })
    expect(Object.keys(totals.rejected).filter((code) => code !== 'WRITE_DENIED' && code !== 'UNREQUESTED')).to.have.length(1)
    const store = dbA.getStore()
    for (const x of [outside, unannounced, tampered]) expect(await store.has(x.hash)).to.equal(false)

    // the session goes on: the want for `good` is answered, and a valid push after all this is stored
    await raw.send({ type: 'changes', changes: [encodeChange(good)], last: true })
    const second = forgeChange(signer, { keyId: 'k', key: k, plaintext: automergeChange({ visibility: 'public', n: 2 }) })
    expect(await announce([second], [encodeChange(second)])).to.deep.equal({ type: 'ack' })
    await waitFor(async () => await store.has(good.hash) && await store.has(second.hash), 'the valid changes to be stored')
    // a late push of a change A has (it came another way first) is skipped: no rejection, no want
    const rejectedBefore = { ...a.node.status('shared')[0].totals.rejected }
    expect(await announce([second], [encodeChange(second)])).to.deep.equal({ type: 'ack' })
    expect(a.node.status('shared')[0].totals.rejected).to.deep.equal(rejectedBefore)
    // no session ended (A's rounds to M's own node fail to dial: M's node has no share)
    expect(Object.keys(a.node.status('shared')[0].totals.errors).filter((code) => code !== 'DIAL_FAILED')).to.deep.equal([])
    await honestCarriesOn('after refusals')
    raw.abort()
  })

  it('should cut off a push over the size limit and a flood of wasted pushes with typed codes, while C carries on', async () => {
    const signer = await tenantSigner(m)
    const k = await keyBytes(await m.tenant.exportNamedKey('k', 'x-pw'), 'x-pw')
    const topic = topicIdOf(shareWith([]).topicSecret)

    // over the size limit
    const big = forgeChange(signer, { keyId: 'k', key: k, plaintext: automergeChange({ visibility: 'public', body: 'x'.repeat(LIVE_MAX_PUSH_CHANGE_BYTES) }) })
    let raw = await openRawStream(m, a)
    await goLive(raw, topic)
    await raw.send({ type: 'announce', hashes: [hex(big.hash)], changes: [encodeChange(big)] })
    expect(await reply(raw)).to.deep.include({ type: 'error', code: 'PROTOCOL_ERROR' })
    await waitFor(() => a.node.status('shared')[0].totals.errors.PUSH_LIMIT === 1, 'PUSH_LIMIT to be counted')
    // on the partner that pushed, as a failed session of its own
    const sessionsFailed = (): number | undefined => a.node.status('shared')[0].partners.find((p) => p.peerId === m.node.peerId)?.sessionsFailed
    expect(sessionsFailed()).to.equal(1)
    expect(await dbA.getStore().has(big.hash)).to.equal(false)
    await honestCarriesOn('after PUSH_LIMIT')

    // a flood: a change with a broken signature pushed again and again is refused every time (a broken
    // signature is not remembered against the change: another peer may send the real one)
    const forged = forgeChange(signer, { keyId: 'k', key: k, plaintext: automergeChange({ visibility: 'public' }) })
    const broken = encodeChange(forged)
    broken[broken.length - 1] ^= 0xff
    raw = await openRawStream(m, a)
    await goLive(raw, topic)
    const copies = 100
    let cutOff: SyncMessage | undefined
    for (let i = 0; i * copies <= LIVE_WASTE_BURST * 2 && cutOff === undefined; i++) {
      await raw.send({ type: 'announce', hashes: Array(copies).fill(hex(forged.hash)), changes: Array(copies).fill(broken) })
      const answer = await reply(raw)
      if (answer.type !== 'ack') cutOff = answer
    }
    expect(cutOff).to.deep.include({ type: 'error', code: 'PROTOCOL_ERROR' })
    await waitFor(() => a.node.status('shared')[0].totals.errors.PUSH_FLOOD === 1, 'PUSH_FLOOD to be counted')
    expect(sessionsFailed()).to.equal(2)
    expect(await dbA.getStore().has(forged.hash)).to.equal(false)
    await honestCarriesOn('after PUSH_FLOOD')
  })
})
