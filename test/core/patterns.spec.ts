/**
 * Every pattern of the cross-tenant collaboration guide (../shared/cross-tenant-collaboration.md), written as
 * it is there, against real LevelDB on disk.
 */
import { expect } from 'chai'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import {
  DocumentNotFoundError, type AppendOnlyStore, type MindooDB, type MindooDoc, type MindooTenant,
  type ProcessChangesCursor, type TenantFactory
} from '../../src/index.js'
import { testFactory } from '../utils/tmp.js'

// ---- the guide's helpers, as written there ----

async function syncStores (source: MindooDB, target: MindooDB): Promise<void> {
  const sourceStore = source.getStore()
  const targetStore = target.getStore()
  const newHashes = await sourceStore.findNewChanges(await targetStore.getAllChangeHashes())
  if (newHashes.length > 0) {
    const changes = await sourceStore.getChanges(newHashes)
    for (const change of changes) {
      await targetStore.append(change)
    }
    await target.syncStoreChanges(newHashes)
  }
}

async function syncFilteredData (sourceDB: MindooDB, targetStore: AppendOnlyStore, filter: (doc: MindooDoc) => boolean): Promise<ProcessChangesCursor | null> {
  let cursor: ProcessChangesCursor | null = null
  for await (const { doc, cursor: currentCursor } of sourceDB.iterateChangesSince(cursor)) {
    cursor = currentCursor
    if (filter(doc)) {
      const changeHashes = await sourceDB.getStore().getAllChangeHashesForDoc(doc.getId())
      const changes = await sourceDB.getStore().getChanges(changeHashes)
      for (const change of changes) {
        await targetStore.append(change)
      }
    }
  }
  return cursor // where a later filtered sync can resume
}

async function syncDocumentType (sourceDB: MindooDB, targetStore: AppendOnlyStore, documentType: string): Promise<ProcessChangesCursor | null> {
  return await syncFilteredData(sourceDB, targetStore, (doc) => doc.getData().type === documentType)
}

interface SyncState {
  lastSyncCursor: ProcessChangesCursor | null
  lastSyncTimestamp: number
}

async function incrementalSync (sourceDB: MindooDB, targetStore: AppendOnlyStore, lastSyncState: SyncState): Promise<SyncState> {
  let cursor = lastSyncState.lastSyncCursor
  const sourceStore = sourceDB.getStore()
  const targetHashes = await targetStore.getAllChangeHashes()
  const newHashes = await sourceStore.findNewChanges(targetHashes)
  if (newHashes.length === 0) return lastSyncState
  const newChanges = await sourceStore.getChanges(newHashes)
  for (const change of newChanges) {
    await targetStore.append(change)
  }
  for await (const { cursor: currentCursor } of sourceDB.iterateChangesSince(cursor)) {
    cursor = currentCursor
  }
  return { lastSyncCursor: cursor, lastSyncTimestamp: Date.now() }
}

async function docsOf (db: MindooDB): Promise<Map<string, Record<string, unknown>>> {
  const out = new Map<string, Record<string, unknown>>()
  for await (const { doc } of db.iterateChangesSince(null)) {
    if (!doc.isDeleted()) out.set(doc.getId(), JSON.parse(JSON.stringify(doc.getData())))
  }
  return out
}

/** Two organisations that trust each other and share the 'collab-key' named key. */
async function partners (factory: TenantFactory, a = 'org-a', b = 'org-b'): Promise<{ orgA: MindooTenant, orgB: MindooTenant }> {
  const orgA = await factory.createTenant({ tenantId: a, tenantEncryptionKeyPassword: 'pw-a' })
  const orgB = await factory.createTenant({ tenantId: b, tenantEncryptionKeyPassword: 'pw-b' })
  const key = await factory.createSymmetricEncryptedPrivateKey('collab-password')
  await orgA.importNamedKey('collab-key', key, 'collab-password')
  await orgB.importNamedKey('collab-key', key, 'collab-password')
  return { orgA, orgB }
}

async function trustEachOther (dbA: MindooDB, orgA: MindooTenant, dbB: MindooDB, orgB: MindooTenant): Promise<void> {
  await dbA.trustPartner(orgB.getPublicInfo())
  await dbB.trustPartner(orgA.getPublicInfo())
}

describe('cross-tenant collaboration patterns', () => {
  let factory: TenantFactory
  let dataDir: string
  let cleanup: () => Promise<void>

  beforeEach(async () => {
    ({ factory, dataDir, cleanup } = await testFactory())
  })

  afterEach(async () => {
    await cleanup()
  })

  it('should sync a shared database both ways', async () => {
    const { orgA, orgB } = await partners(factory)
    const sharedDB = await orgA.openDB('collaboration', { defaultKeyId: 'collab-key' })
    const orgBSharedDB = await orgB.openDB('collaboration', { defaultKeyId: 'collab-key' })
    await trustEachOther(sharedDB, orgA, orgBSharedDB, orgB)

    const fromA = await sharedDB.createDocument()
    await sharedDB.changeDoc(fromA, (d) => { d.getData().content = 'written by A' })
    const fromB = await orgBSharedDB.createDocument()
    await orgBSharedDB.changeDoc(fromB, (d) => { d.getData().content = 'written by B' })

    await syncStores(sharedDB, orgBSharedDB)
    await syncStores(orgBSharedDB, sharedDB)

    expect((await orgBSharedDB.getDocument(fromA.getId())).getData().content).to.equal('written by A')
    expect((await sharedDB.getDocument(fromB.getId())).getData().content).to.equal('written by B')
    expect((await sharedDB.getStore().getAllChangeHashes()).sort())
      .to.deep.equal((await orgBSharedDB.getStore().getAllChangeHashes()).sort())
    // a second round moves nothing
    const before = await orgBSharedDB.getStore().count()
    await syncStores(sharedDB, orgBSharedDB)
    expect(await orgBSharedDB.getStore().count()).to.equal(before)
  })

  it('should share only documents a predicate accepts', async () => {
    const { orgA, orgB } = await partners(factory)
    const orgADB = await orgA.openDB('collaboration', { defaultKeyId: 'collab-key' })
    const orgBDB = await orgB.openDB('collaboration')
    await orgBDB.trustPartner(orgA.getPublicInfo())
    const ids: Record<string, string> = {}
    for (const visibility of ['public', 'private', 'public', 'internal']) {
      const doc = await orgADB.createDocument()
      await orgADB.changeDoc(doc, (d) => { d.getData().visibility = visibility; d.getData().n = Object.keys(ids).length })
      ids[doc.getId()] = visibility
    }

    await syncFilteredData(orgADB, orgBDB.getStore(), (doc) => doc.getData().visibility === 'public')

    const seen = await docsOf(orgBDB)
    const expected = Object.entries(ids).filter(([, v]) => v === 'public').map(([id]) => id).sort()
    expect([...seen.keys()].sort()).to.deep.equal(expected)
    for (const [id] of Object.entries(ids).filter(([, v]) => v !== 'public')) {
      expect(await orgBDB.getStore().getAllChangeHashesForDoc(id)).to.deep.equal([])
    }
  })

  it('should share only documents of one type', async () => {
    const { orgA, orgB } = await partners(factory)
    const orgADB = await orgA.openDB('erp', { defaultKeyId: 'collab-key' })
    const orgBDB = await orgB.openDB('erp')
    await orgBDB.trustPartner(orgA.getPublicInfo())
    for (const type of ['order', 'invoice', 'order', 'employee']) {
      const doc = await orgADB.createDocument()
      await orgADB.changeDoc(doc, (d) => { d.getData().type = type })
    }

    await syncDocumentType(orgADB, orgBDB.getStore(), 'order')

    const types = [...(await docsOf(orgBDB)).values()].map((d) => d.type)
    expect(types).to.deep.equal(['order', 'order'])
  })

  it('should let a partner read documents of a named key and nothing else', async () => {
    const orgA = await factory.createTenant({ tenantId: 'org-a', tenantEncryptionKeyPassword: 'pw-a' })
    const orgB = await factory.createTenant({ tenantId: 'org-b', tenantEncryptionKeyPassword: 'pw-b' })
    const password = 'collab-password-xyz'
    const collaborationKey = await factory.createSymmetricEncryptedPrivateKey(password)
    await orgA.importNamedKey('collaboration-key', collaborationKey, password)
    await orgB.importNamedKey('collaboration-key', collaborationKey, password)
    const orgADB = await orgA.openDB('projects')
    const orgBDB = await orgB.openDB('projects')
    await orgBDB.trustPartner(orgA.getPublicInfo())

    const sharedDoc = await orgADB.createDocument({ keyId: 'collaboration-key' })
    await orgADB.changeDoc(sharedDoc, (d) => { d.getData().content = 'Shared collaboration data' })
    const privateDoc = await orgADB.createDocument()
    await orgADB.changeDoc(privateDoc, (d) => { d.getData().content = 'internal only' })

    await syncStores(orgADB, orgBDB) // B receives (and keeps) every change, readable or not

    expect((await orgBDB.getDocument(sharedDoc.getId())).getData().content).to.equal('Shared collaboration data')
    const err = await orgBDB.getDocument(privateDoc.getId()).catch((e: unknown) => e)
    expect(err).to.be.instanceOf(DocumentNotFoundError)
    expect([...(await docsOf(orgBDB)).keys()]).to.deep.equal([sharedDoc.getId()])
    expect(await orgBDB.getStore().getAllChangeHashesForDoc(privateDoc.getId())).to.have.length(2)
  })

  it('should isolate a limited-access tenant with its own key', async () => {
    const orgA = await factory.createTenant({ tenantId: 'org-a', tenantEncryptionKeyPassword: 'main-password' })
    const limitedTenant = await factory.createTenant({ tenantId: 'limited-collab-tenant', tenantEncryptionKeyPassword: 'different-password' })
    const partner = await factory.createTenant({ tenantId: 'partner', tenantEncryptionKeyPassword: 'pw-p' })
    const mainDB = await orgA.openDB('shared-data')
    const secret = await mainDB.createDocument()
    await mainDB.changeDoc(secret, (d) => { d.getData().salary = 100 })
    const sharedDB = await limitedTenant.openDB('shared-data')
    const open = await sharedDB.createDocument()
    await sharedDB.changeDoc(open, (d) => { d.getData().topic = 'joint study' })

    // the partner gets the limited tenant's key (and password) out of band, and trusts its authors
    await partner.importNamedKey('tenant:limited-collab-tenant', limitedTenant.exportTenantKey(), 'different-password')
    const partnerDB = await partner.openDB('from-limited')
    await partnerDB.trustPartner(limitedTenant.getPublicInfo())
    await syncStores(sharedDB, partnerDB)
    expect((await partnerDB.getDocument(open.getId())).getData().topic).to.equal('joint study')

    // the main tenant's data is neither in the limited tenant nor readable with its key
    expect(await sharedDB.getStore().getAllChangeHashesForDoc(secret.getId())).to.deep.equal([])
    await partnerDB.trustPartner(orgA.getPublicInfo())
    await syncStores(mainDB, partnerDB)
    const err = await partnerDB.getDocument(secret.getId()).catch((e: unknown) => e)
    expect(err).to.be.instanceOf(DocumentNotFoundError)
  })

  it('should sync incrementally from a persisted SyncState', async () => {
    const { orgA, orgB } = await partners(factory)
    const sourceDB = await orgA.openDB('inc', { defaultKeyId: 'collab-key' })
    const targetDB = await orgB.openDB('inc')
    await targetDB.trustPartner(orgA.getPublicInfo())
    const statePath = join(dataDir, 'sync-state.json')
    const load = async (): Promise<SyncState> => {
      try { return JSON.parse(await readFile(statePath, 'utf8')) } catch { return { lastSyncCursor: null, lastSyncTimestamp: 0 } }
    }
    const save = async (s: SyncState): Promise<void> => { await writeFile(statePath, JSON.stringify(s)) }

    const first = await sourceDB.createDocument()
    await sourceDB.changeDoc(first, (d) => { d.getData().v = 1 })
    await save(await incrementalSync(sourceDB, targetDB.getStore(), await load()))
    expect(await targetDB.getStore().count()).to.equal(2)
    const state1 = await load()
    expect(state1.lastSyncCursor).to.not.equal(null)

    // nothing new: state unchanged, nothing moved
    expect(await incrementalSync(sourceDB, targetDB.getStore(), state1)).to.deep.equal(state1)

    const second = await sourceDB.createDocument()
    await sourceDB.changeDoc(second, (d) => { d.getData().v = 2 })
    await save(await incrementalSync(sourceDB, targetDB.getStore(), await load()))
    expect(await targetDB.getStore().count()).to.equal(4)
    expect((await targetDB.getDocument(second.getId())).getData().v).to.equal(2)
    // the persisted cursor resumes the source's changefeed after the last document it saw
    const rest = []
    for await (const { doc } of sourceDB.iterateChangesSince((await load()).lastSyncCursor)) rest.push(doc.getId())
    expect(rest).to.deep.equal([])
  })

  it('should sync on a schedule', async () => {
    const { orgA, orgB } = await partners(factory)
    const dbA = await orgA.openDB('sched', { defaultKeyId: 'collab-key' })
    const dbB = await orgB.openDB('sched', { defaultKeyId: 'collab-key' })
    await trustEachOther(dbA, orgA, dbB, orgB)
    let rounds = 0
    let running: Promise<void> = Promise.resolve()
    const timer = setInterval(() => {
      running = running.then(async () => {
        await syncStores(dbA, dbB)
        await syncStores(dbB, dbA)
        rounds++
      })
    }, 20)
    try {
      const doc = await dbA.createDocument()
      await dbA.changeDoc(doc, (d) => { d.getData().status = 'scheduled' })
      const other = await dbB.createDocument()
      await dbB.changeDoc(other, (d) => { d.getData().status = 'from B' })
      const start = rounds
      // bounded wait for two full rounds (generous: a loaded machine runs the 20 ms timer far less often)
      for (let i = 0; i < 3000 && rounds < start + 2; i++) await new Promise((resolve) => setTimeout(resolve, 20))
      expect(rounds).to.be.greaterThanOrEqual(start + 2)
    } finally {
      clearInterval(timer)
      await running
    }
    expect((await docsOf(dbA)).size).to.equal(2)
    expect(await docsOf(dbB)).to.deep.equal(await docsOf(dbA))
  })

  it('should keep syncing other relationships when one fails', async () => {
    const local = await factory.createTenant({ tenantId: 'hub', tenantEncryptionKeyPassword: 'pw' })
    const key = await factory.createSymmetricEncryptedPrivateKey('k')
    await local.importNamedKey('collab-key', key, 'k')
    const partnerIds = ['p1', 'p2', 'p3']
    const partnerTenants = new Map<string, MindooTenant>()
    for (const id of partnerIds) {
      const t = await factory.createTenant({ tenantId: id, tenantEncryptionKeyPassword: 'pw' })
      await t.importNamedKey('collab-key', key, 'k')
      partnerTenants.set(id, t)
    }
    const localDB = await local.openDB('orders', { defaultKeyId: 'collab-key' })
    const doc = await localDB.createDocument()
    await localDB.changeDoc(doc, (d) => { d.getData().item = 'bolts' })

    interface Relationship { partnerTenant: MindooTenant, dbIds: string[], lastSync: number | null, enabled: boolean }
    const relationships = new Map<string, Relationship>()
    const errors: string[] = []
    for (const [id, t] of partnerTenants) {
      // p2 never trusted the hub: its store refuses the hub's changes
      const partnerDB = await t.openDB('orders')
      if (id !== 'p2') await partnerDB.trustPartner(local.getPublicInfo())
      await localDB.trustPartner(t.getPublicInfo())
      relationships.set(id, { partnerTenant: t, dbIds: ['orders'], lastSync: null, enabled: true })
    }
    relationships.set('off', { partnerTenant: partnerTenants.get('p3') as MindooTenant, dbIds: ['orders'], lastSync: null, enabled: false })
    for (const [id, relationship] of relationships) {
      if (!relationship.enabled) continue
      try {
        for (const dbId of relationship.dbIds) {
          const partnerDB = await relationship.partnerTenant.openDB(dbId)
          await syncStores(localDB, partnerDB)
          await syncStores(partnerDB, localDB)
        }
        relationship.lastSync = Date.now()
      } catch (error) {
        errors.push(`${id}: ${(error as { code?: string }).code}`)
      }
    }
    expect(errors).to.deep.equal(['p2: UNTRUSTED_AUTHOR'])
    expect(relationships.get('p1')?.lastSync).to.be.a('number')
    expect(relationships.get('p3')?.lastSync).to.be.a('number')
    expect(relationships.get('off')?.lastSync).to.equal(null)
    for (const id of ['p1', 'p3']) {
      const db = await (partnerTenants.get(id) as MindooTenant).openDB('orders')
      expect((await db.getDocument(doc.getId())).getData().item).to.equal('bolts')
    }
    expect(await (await (partnerTenants.get('p2') as MindooTenant).openDB('orders')).getStore().count()).to.equal(0)
  })

  it('should run the supplier-customer collaboration with differently named databases', async () => {
    const supplierTenant = await factory.createTenant({ tenantId: 'supplier', tenantEncryptionKeyPassword: 's' })
    const customerTenant = await factory.createTenant({ tenantId: 'customer', tenantEncryptionKeyPassword: 'c' })
    const key = await factory.createSymmetricEncryptedPrivateKey('orders-pw')
    await supplierTenant.importNamedKey('orders-key', key, 'orders-pw')
    await customerTenant.importNamedKey('orders-key', key, 'orders-pw')
    const supplierDB = await supplierTenant.openDB('customer-orders', { defaultKeyId: 'orders-key' })
    const customerDB = await customerTenant.openDB('supplier-orders', { defaultKeyId: 'orders-key' })
    await trustEachOther(supplierDB, supplierTenant, customerDB, customerTenant)
    await syncStores(supplierDB, customerDB)

    // customer creates an order and syncs it to the supplier
    const orderDoc = await customerDB.createDocument()
    await customerDB.changeDoc(orderDoc, (d) => {
      Object.assign(d.getData(), { item: 'widgets', quantity: 500 })
      d.getData().type = 'order'
      d.getData().status = 'pending'
    })
    await syncStores(customerDB, supplierDB)

    // supplier updates the status and syncs back
    const atSupplier = await supplierDB.getDocument(orderDoc.getId())
    expect(atSupplier.getData()).to.deep.include({ item: 'widgets', quantity: 500, status: 'pending' })
    await supplierDB.changeDoc(atSupplier, (d) => { d.getData().status = 'shipped' })
    await syncStores(supplierDB, customerDB)

    expect((await customerDB.getDocument(orderDoc.getId())).getData().status).to.equal('shipped')
  })

  it('should converge a multi-party research consortium', async () => {
    const key = await factory.createSymmetricEncryptedPrivateKey('research')
    const tenants: MindooTenant[] = []
    for (const id of ['uni-a', 'uni-b', 'lab-c', 'inst-d']) {
      const t = await factory.createTenant({ tenantId: id, tenantEncryptionKeyPassword: 'pw' })
      await t.importNamedKey('research-key', key, 'research')
      tenants.push(t)
    }
    const dbs = await Promise.all(tenants.map(async (t) => await t.openDB('research-data', { defaultKeyId: 'research-key' })))
    for (const db of dbs) {
      for (const t of tenants) await db.trustPartner(t.getPublicInfo())
    }
    for (const [i, db] of dbs.entries()) {
      const doc = await db.createDocument()
      await db.changeDoc(doc, (d) => { Object.assign(d.getData(), { sample: i, type: 'research-data' }) })
    }
    for (let i = 0; i < dbs.length; i++) {
      for (let j = i + 1; j < dbs.length; j++) {
        await syncStores(dbs[i], dbs[j])
        await syncStores(dbs[j], dbs[i])
      }
    }
    const first = await docsOf(dbs[0])
    expect(first.size).to.equal(4)
    for (const db of dbs) expect(await docsOf(db)).to.deep.equal(first)
  })

  it('should resolve concurrent edits with Automerge', async () => {
    const { orgA, orgB } = await partners(factory)
    const orgADB = await orgA.openDB('collaboration', { defaultKeyId: 'collab-key' })
    const orgBDB = await orgB.openDB('collaboration', { defaultKeyId: 'collab-key' })
    await trustEachOther(orgADB, orgA, orgBDB, orgB)
    const sharedDoc = await orgADB.createDocument()
    await syncStores(orgADB, orgBDB)

    await orgADB.changeDoc(sharedDoc, (d) => { d.getData().fieldX = 'value from A' })
    await orgBDB.changeDoc(sharedDoc.getId(), (d) => { d.getData().fieldY = 'value from B' })
    // and both edit the same field
    await orgADB.changeDoc(sharedDoc, (d) => { d.getData().title = 'A title' })
    await orgBDB.changeDoc(sharedDoc.getId(), (d) => { d.getData().title = 'B title' })

    await syncStores(orgADB, orgBDB)
    await syncStores(orgBDB, orgADB)

    const a = (await orgADB.getDocument(sharedDoc.getId())).getData()
    const b = (await orgBDB.getDocument(sharedDoc.getId())).getData()
    expect(a.fieldX).to.equal('value from A')
    expect(a.fieldY).to.equal('value from B')
    expect(['A title', 'B title']).to.include(a.title)
    expect(JSON.parse(JSON.stringify(b))).to.deep.equal(JSON.parse(JSON.stringify(a)))
    expect((await orgADB.getDocument(sharedDoc.getId())).getHeads()).to.have.length(2)
  })
})
