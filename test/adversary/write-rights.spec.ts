/**
 * Issue 7, items 1 and 10 over the real protocol: a trusted partner M, speaking the sync protocol from its own
 * node identity, pushes validly signed changes it crafted to write into, delete, or claim documents under a key
 * it does not hold, and re-signs payloads it lifted from other changes. Each attempt fails at A, and an honest
 * partner B keeps syncing with A meanwhile.
 */
import { expect } from 'chai'
import type { MindooDB } from '../../src/index.js'
import type { StoreChange } from '../../src/store/change.js'
import { topicIdOf } from '../../src/sync/share.js'
import { automergeChange, forgeChange, keyBytes, pushChanges, tenantSigner } from '../utils/forge.js'
import { createOrg, shareKey, shareWith, type TestOrg } from '../utils/orgs.js'
import { openRawStream } from '../utils/raw-peer.js'

async function changesOf (db: MindooDB, docId: string): Promise<StoreChange[]> {
  const store = db.getStore()
  return (await store.getChanges(await store.getAllChangeHashesForDoc(docId))).sort((x, y) => x.deps.length - y.deps.length)
}

describe('adversary: a partner writing outside its keys (write rights)', function () {
  this.timeout(60_000)
  let orgs: TestOrg[] = []

  afterEach(async () => {
    for (const org of orgs) await org.cleanup()
    orgs = []
  })

  it('should refuse cross-key writes, deletes, forged creations and lifted payloads, and keep syncing B', async () => {
    const [a, b, m] = [await createOrg('org-a'), await createOrg('org-b'), await createOrg('org-m')]
    orgs = [a, b, m]
    await shareKey([a, b, m], 'k1')
    await a.tenant.createNamedKey('k2', 'k2-pw') // only A holds k2
    const share = shareWith([b, m])
    await a.node.addShare(share)
    const dbA = await a.tenant.openDB(share.database)

    const secret = await dbA.createDocument({ keyId: 'k2' })
    await dbA.changeDoc(secret, (d) => { d.getData().secret = 'only A' })
    const open = await dbA.createDocument({ keyId: 'k1' })
    await dbA.changeDoc(open, (d) => { d.getData().note = 'shared' })
    const [, secretChange] = await changesOf(dbA, secret.getId())
    const [openCreation, openChange] = await changesOf(dbA, open.getId())

    const signer = await tenantSigner(m)
    const k1 = await keyBytes(await m.tenant.exportNamedKey('k1', 'x-pw'), 'x-pw')
    const heads = [secretChange.hash]
    const attacks = {
      // delete / write the k2 document with the key M holds
      crossKeyDelete: forgeChange(signer, { kind: 'delete', docId: secret.getId(), keyId: 'k1', key: k1, deps: heads, plaintext: new Uint8Array(0) }),
      crossKeyWrite: forgeChange(signer, { docId: secret.getId(), keyId: 'k1', key: k1, deps: heads, plaintext: automergeChange({ secret: 'M' }) }),
      // the same, labelled k2 so that the id check passes, but M cannot encrypt under k2
      labelledDelete: forgeChange(signer, { kind: 'delete', docId: secret.getId(), keyId: 'k2', key: k1, deps: heads, plaintext: new Uint8Array(0) }),
      // a creation of A's document id, signed by M (racing A's real creation at partners that lack it)
      forgedCreation: forgeChange(signer, { docId: open.getId(), keyId: 'k1', key: k1, plaintext: automergeChange({ note: 'M owns this' }) }),
      // A's encrypted change re-signed by M as a tombstone of the same document
      liftedAsDelete: forgeChange(signer, { kind: 'delete', docId: open.getId(), keyId: 'k1', deps: [openChange.hash], payload: openChange.payload })
    }
    const raw = await openRawStream(m, a)
    const asked = await pushChanges(raw, topicIdOf(share.topicSecret), Object.values(attacks))
    expect(asked).to.have.members(Object.values(attacks).map((c) => c.hash))

    const rejected = a.node.status(share.id)[0].totals.rejected
    expect(rejected).to.deep.include({ KEY_MISMATCH: 2, NOT_CREATOR: 1 })
    const store = dbA.getStore()
    for (const c of [attacks.crossKeyDelete, attacks.crossKeyWrite, attacks.forgedCreation]) {
      expect(await store.has(c.hash)).to.equal(false)
    }
    // stored (the header is consistent and signed by a participant) but never applied: the payload does not
    // decrypt under the document's key with this header
    await dbA.syncStoreChanges([attacks.labelledDelete.hash, attacks.liftedAsDelete.hash])
    expect((await dbA.getDocument(secret.getId())).isDeleted()).to.equal(false)
    expect((await dbA.getDocument(secret.getId())).getData()).to.deep.equal({ secret: 'only A' })
    expect((await dbA.getDocument(open.getId())).isDeleted()).to.equal(false)
    expect((await dbA.changeDoc(secret, (d) => { d.getData().more = 1 })).getData()).to.deep.equal({ secret: 'only A', more: 1 })

    // B, honest, syncs with A and ends up with A's documents intact (it applies none of M's changes either)
    await b.tenant.importNamedKey('k2', await a.tenant.exportNamedKey('k2', 'k2-pw'), 'k2-pw')
    await b.node.addShare(shareWith([a]))
    const [round] = await b.node.syncNow(share.id)
    expect(round.ok, JSON.stringify(round.error)).to.equal(true)
    const dbB = await b.tenant.openDB(share.database)
    expect(await dbB.getStore().has(openCreation.hash)).to.equal(true)
    expect((await dbB.getDocument(secret.getId())).getData()).to.deep.equal({ secret: 'only A', more: 1 })
    expect((await dbB.getDocument(open.getId())).isDeleted()).to.equal(false)
  })

  it('should refuse a partner under a types rule giving a document a type outside it, and take its other writes', async () => {
    const [a, m] = [await createOrg('org-a'), await createOrg('org-m')]
    orgs = [a, m]
    await shareKey([a, m], 'k1')
    const share = shareWith([m])
    share.partners[0].write = { types: ['order'] }
    await a.node.addShare(share)
    const dbA = await a.tenant.openDB(share.database, { defaultKeyId: 'k1' })
    const order = await dbA.createDocument()
    await dbA.changeDoc(order, (d) => { Object.assign(d.getData(), { type: 'order', qty: 1 }) })

    // M holds A's order (as a sync would have brought it) and writes with its own database
    const dbM = await m.tenant.openDB('m', { defaultKeyId: 'k1' })
    await dbM.trustPartner(a.tenant.getPublicInfo())
    await dbM.receiveChanges(await changesOf(dbA, order.getId()))
    await dbM.changeDoc(order.getId(), (d) => { d.getData().qty = 2 })
    await dbM.changeDoc(order.getId(), (d) => { d.getData().type = 'invoice' })
    const [, , edit, retype] = await changesOf(dbM, order.getId())
    const ownOrder = await dbM.createDocument()
    await dbM.changeDoc(ownOrder, (d) => { d.getData().type = 'order' })
    const ownInvoice = await dbM.createDocument()
    await dbM.changeDoc(ownInvoice, (d) => { d.getData().type = 'invoice' })
    const own = [...await changesOf(dbM, ownOrder.getId()), ...await changesOf(dbM, ownInvoice.getId())]

    // each in a push of its own, in dependency order; then a new document's type and its creation in one frame,
    // the type first (judged again once the creation is admitted)
    const topic = topicIdOf(share.topicSecret)
    for (const change of [edit, retype, own[2], own[3]]) await pushChanges(await openRawStream(m, a), topic, [change])
    await pushChanges(await openRawStream(m, a), topic, [own[1], own[0]])
    const store = dbA.getStore()
    expect(await store.has(edit.hash), 'an order edited as an order').to.equal(true)
    expect(await store.has(retype.hash), 'an order turned into an invoice').to.equal(false)
    expect(await store.has(own[0].hash) && await store.has(own[1].hash), 'M\'s new order, creation and type in one frame').to.equal(true)
    expect(await store.has(own[2].hash), 'M\'s new document, untyped').to.equal(true)
    expect(await store.has(own[3].hash), 'M\'s new document made an invoice').to.equal(false)
    expect(a.node.status(share.id)[0].totals.rejected).to.deep.include({ WRITE_DENIED: 2 })
    expect((await dbA.getDocument(order.getId())).getData()).to.deep.include({ type: 'order', qty: 2 })
    expect((await dbA.getDocument(ownOrder.getId())).getData().type).to.equal('order')
  })
})
