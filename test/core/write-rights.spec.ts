/**
 * Write rights on the library path (`append` / `appendMany` + `syncStoreChanges`), attacked by a trusted partner
 * that crafts validly signed changes with its own key: a document's key is fixed by its id, a creation cannot be
 * forged or raced, payloads are bound to their header, and changes arriving before their creation wait.
 */
import { expect } from 'chai'
import type { Signer } from '../../src/crypto/index.js'
import type { MindooDB, MindooTenant, TenantFactory } from '../../src/index.js'
import { newDocId, type StoreChange } from '../../src/store/change.js'
import { automergeChange, forgeChange, keyBytes, tenantSigner } from '../utils/forge.js'
import { testFactory } from '../utils/tmp.js'

const PW = 'key-pw'

async function errorOf (p: Promise<unknown>): Promise<{ code?: string }> {
  try {
    await p
  } catch (err) {
    return err as { code?: string }
  }
  return expect.fail('expected a rejection')
}

async function changesOf (db: MindooDB, docId: string): Promise<StoreChange[]> {
  const store = db.getStore()
  return await store.getChanges(await store.getAllChangeHashesForDoc(docId))
}

describe('write rights (library path)', function () {
  this.timeout(30_000)
  let factory: TenantFactory
  let cleanup: () => Promise<void>
  let dataDir: string
  let victim: MindooTenant
  let mallory: MindooTenant
  let malloryKey: Signer
  /** The key both hold (the victim alone also holds k2). */
  let k1: Uint8Array
  let db: MindooDB

  beforeEach(async () => {
    ({ factory, cleanup, dataDir } = await testFactory())
    victim = await factory.createTenant({ tenantId: 'victim', tenantEncryptionKeyPassword: 'v' })
    mallory = await factory.createTenant({ tenantId: 'mallory', tenantEncryptionKeyPassword: 'm' })
    malloryKey = await tenantSigner({ dataDir, name: 'mallory' })
    const blob1 = await factory.createSymmetricEncryptedPrivateKey(PW)
    const blob2 = await factory.createSymmetricEncryptedPrivateKey(PW)
    k1 = await keyBytes(blob1, PW)
    await victim.importNamedKey('k1', blob1, PW)
    await victim.importNamedKey('k2', blob2, PW)
    await mallory.importNamedKey('k1', blob1, PW)
    db = await victim.openDB('shared')
    await db.trustPartner(mallory.getPublicInfo())
  })

  afterEach(async () => { await cleanup() })

  /** A document of the victim's under `keyId`, with one field set. */
  async function victimDoc (keyId: string): Promise<{ docId: string, heads: string[] }> {
    const doc = await db.createDocument({ keyId })
    const changed = await db.changeDoc(doc, (d) => { d.getData().secret = 'ours' })
    return { docId: doc.getId(), heads: [...changed.getHeads()] }
  }

  it('should give every new document an id that commits to its key and names its creator', async () => {
    const doc = await db.createDocument({ keyId: 'k1' })
    expect(doc.getId()).to.have.length(54)
    const [creation] = await changesOf(db, doc.getId())
    expect(creation.keyId).to.equal('k1')
    expect(creation.author).to.equal(victim.getPublicInfo().signingPublicKey)
  })

  it('should refuse a tombstone under another key with KEY_MISMATCH, and the victim keeps writing', async () => {
    const { docId, heads } = await victimDoc('k2')
    const tombstone = forgeChange(malloryKey, { kind: 'delete', docId, keyId: 'k1', key: k1, deps: heads, plaintext: new Uint8Array(0) })
    expect((await errorOf(db.getStore().append(tombstone))).code).to.equal('KEY_MISMATCH')
    const write = forgeChange(malloryKey, { docId, keyId: 'k1', key: k1, deps: heads, plaintext: automergeChange({ secret: 'theirs' }) })
    const many = await db.getStore().appendMany([tombstone, write])
    expect(many.rejected.map((r) => r.error.code)).to.deep.equal(['KEY_MISMATCH', 'KEY_MISMATCH'])
    expect(await db.getStore().has(tombstone.hash)).to.equal(false)
    const after = await db.changeDoc(docId, (d) => { d.getData().more = 1 })
    expect(after.isDeleted()).to.equal(false)
    expect(after.getData()).to.deep.include({ secret: 'ours', more: 1 })
  })

  it('should never apply a change that names the right key but whose payload is not under it', async () => {
    const { docId, heads } = await victimDoc('k2')
    // Mallory lacks k2: it labels the change k2 (so the id check passes) and encrypts under the key it has
    const tombstone = forgeChange(malloryKey, { kind: 'delete', docId, keyId: 'k2', key: k1, deps: heads, plaintext: new Uint8Array(0) })
    const write = forgeChange(malloryKey, { docId, keyId: 'k2', key: k1, deps: heads, plaintext: automergeChange({ secret: 'theirs' }) })
    for (const c of [tombstone, write]) expect(await db.getStore().append(c)).to.equal(true)
    const result = await db.syncStoreChanges([tombstone.hash, write.hash])
    expect(result.applied).to.equal(0)
    const doc = await db.getDocument(docId)
    expect(doc.isDeleted()).to.equal(false)
    expect(doc.getData()).to.deep.equal({ secret: 'ours' })
    expect((await db.changeDoc(docId, (d) => { d.getData().more = 2 })).getData().more).to.equal(2)
  })

  it('should refuse a creation signed by anyone but the creator the id names, also when racing the real one', async () => {
    // an id claiming the victim as creator, and the id of a real document of the victim's, taken from its header
    const claimed = newDocId(victim.getPublicInfo().signingPublicKey, 'k1')
    const forged = forgeChange(malloryKey, { docId: claimed, keyId: 'k1', key: k1 })
    expect((await errorOf(db.getStore().append(forged))).code).to.equal('NOT_CREATOR')

    const other = await testFactory()
    try {
      const replica = await (await other.factory.createTenant({ tenantId: 'victim-replica', tenantEncryptionKeyPassword: 'r' })).openDB('shared')
      const { docId } = await victimDoc('k1')
      const race = forgeChange(malloryKey, { docId, keyId: 'k1', key: k1, plaintext: automergeChange({ owner: 'mallory' }) })
      await replica.trustPartner(mallory.getPublicInfo())
      await replica.trustPartner(victim.getPublicInfo())
      // the forged creation reaches the replica before the real one: refused, and the real one still lands
      expect((await errorOf(replica.getStore().append(race))).code).to.equal('NOT_CREATOR')
      for (const c of await changesOf(db, docId)) await replica.getStore().append(c)
      await replica.syncStoreChanges(await replica.getStore().getAllChangeHashes())
      expect(await replica.getStore().count()).to.equal(2)
    } finally {
      await other.cleanup()
    }
  })

  it('should not apply a payload lifted into another header (document, kind or author)', async () => {
    const { docId } = await victimDoc('k1')
    const ownDoc = forgeChange(malloryKey, { keyId: 'k1', key: k1 })
    await db.getStore().append(ownDoc)
    await db.syncStoreChanges([ownDoc.hash])
    const [, secretChange] = (await changesOf(db, docId)).sort((x, y) => x.deps.length - y.deps.length)
    // Mallory holds k1 and re-signs the victim's encrypted payload under headers of its own
    const intoOwnDoc = forgeChange(malloryKey, { docId: ownDoc.docId, keyId: 'k1', deps: [ownDoc.hash], payload: secretChange.payload })
    const asTombstone = forgeChange(malloryKey, { kind: 'delete', docId, keyId: 'k1', deps: [secretChange.hash], payload: secretChange.payload })
    for (const c of [intoOwnDoc, asTombstone]) expect(await db.getStore().append(c)).to.equal(true)
    const result = await db.syncStoreChanges([intoOwnDoc.hash, asTombstone.hash])
    expect(result.applied).to.equal(0)
    expect((await db.getDocument(ownDoc.docId)).getData()).to.deep.equal({})
    expect((await db.getDocument(docId)).isDeleted()).to.equal(false)
  })

  it('should store changes that arrive before their creation and apply them, in order, once it lands', async () => {
    const doc = await mallory.openDB('own')
    const made = await doc.createDocument({ keyId: 'k1' })
    await doc.changeDoc(made, (d) => { d.getData().a = 1 })
    await doc.changeDoc(made, (d) => { d.getData().b = 2 })
    const chain = (await changesOf(doc, made.getId())).sort((x, y) => x.deps.length - y.deps.length || x.time - y.time)
    const [creation, ...later] = chain
    expect(creation.deps).to.deep.equal([])
    for (const c of later.reverse()) expect(await db.getStore().append(c)).to.equal(true)
    const waiting = await db.syncStoreChanges(later.map((c) => c.hash))
    expect(waiting.applied).to.equal(0)
    expect((await errorOf(db.getDocument(made.getId()))).code).to.equal('DOCUMENT_NOT_FOUND')
    await db.getStore().append(creation)
    const landed = await db.syncStoreChanges([creation.hash])
    expect(landed.applied).to.equal(3)
    expect((await db.getDocument(made.getId())).getData()).to.deep.equal({ a: 1, b: 2 })
  })

  it('should refuse, for good, a change whose dependencies belong to another document', async () => {
    const { docId } = await victimDoc('k1')
    const ownDoc = forgeChange(malloryKey, { keyId: 'k1', key: k1 })
    await db.getStore().append(ownDoc)
    // a change of the victim's document that "follows" Mallory's document instead of the victim's heads
    const crossed = forgeChange(malloryKey, { docId, keyId: 'k1', key: k1, deps: [ownDoc.hash], plaintext: automergeChange({ secret: 'theirs' }) })
    expect(await db.getStore().append(crossed)).to.equal(true)
    const result = await db.syncStoreChanges([ownDoc.hash, crossed.hash])
    expect(result.rejected).to.deep.equal([{ hash: crossed.hash, code: 'MALFORMED_CHANGE' }])
    expect((await db.getDocument(docId)).getData()).to.deep.equal({ secret: 'ours' })
  })

  it('should refuse a document id that is not self-certifying, and a tombstone that follows nothing', async () => {
    const legacy = forgeChange(malloryKey, { docId: '2b9c1f3e-6a2d-4f53-9a8e-7c1d2e3f4a5b', keyId: 'k1', key: k1 })
    expect((await errorOf(db.getStore().append(legacy))).code).to.equal('MALFORMED_CHANGE')
    const { docId } = await victimDoc('k1')
    const orphan = forgeChange(malloryKey, { kind: 'delete', docId, keyId: 'k1', key: k1, plaintext: new Uint8Array(0) })
    expect((await errorOf(db.getStore().append(orphan))).code).to.equal('MALFORMED_CHANGE')
  })

  it('should let a partner holding the key write and delete documents under it (the key is the right)', async () => {
    const { docId, heads } = await victimDoc('k1')
    const write = forgeChange(malloryKey, { docId, keyId: 'k1', key: k1, deps: heads, plaintext: automergeChange({ note: 'ok' }) })
    expect(await db.getStore().append(write)).to.equal(true)
    expect((await db.syncStoreChanges([write.hash])).applied).to.equal(1)
    const tombstone = forgeChange(malloryKey, { kind: 'delete', docId, keyId: 'k1', key: k1, deps: [write.hash], plaintext: new Uint8Array(0) })
    await db.getStore().append(tombstone)
    await db.syncStoreChanges([tombstone.hash])
    expect((await db.getDocument(docId)).isDeleted()).to.equal(true)
  })
})
