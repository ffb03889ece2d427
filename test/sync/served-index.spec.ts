/**
 * The persisted served-set index (src/sync/served-index.ts, src/sync/served-set.ts): after a restart the served
 * set equals the one a full rebuild gives, for every filter kind, with documents that start and stop matching;
 * a clean restart reads no payload and loads no document; an index made for another filter, or damaged, is
 * rebuilt; a store written before the index records existed still gives its index entries.
 */
import { expect } from 'chai'
import { Level } from 'level'
import { join } from 'node:path'
import type { MindooDB, MindooTenant, TenantFactory } from '../../src/index.js'
import { createReconcileSet } from '../../src/sync/reconcile/index.js'
import { ServedSet } from '../../src/sync/served-set.js'
import { filterIdentity, policyOf, type ShareDirection, type ShareFilter } from '../../src/sync/share.js'
import { LevelStore } from '../../src/store/level-store.js'
import { createAuthor, makeChanges } from '../utils/changes.js'
import { prng } from '../utils/prng.js'
import { removeDir, tempDir, testFactory } from '../utils/tmp.js'

interface SetSpec {
  name: string
  filter: ShareFilter
  direction: ShareDirection
}

const SPECS: SetSpec[] = [
  { name: 'all', filter: { kind: 'all' }, direction: 'both' },
  { name: 'all-receive', filter: { kind: 'all' }, direction: 'receive' },
  { name: 'keys', filter: { kind: 'keys', keyIds: ['k1'] }, direction: 'both' },
  { name: 'selector', filter: { kind: 'selector', selector: { type: 'a' } }, direction: 'both' },
  { name: 'type-receive', filter: { kind: 'type', types: ['b'] }, direction: 'receive' }
]

interface Org {
  factory: TenantFactory
  tenant: MindooTenant
  partner: MindooTenant
  db: MindooDB
  outbox: MindooDB
}

async function openOrg (dataDir: string, create: boolean): Promise<Org> {
  const { factory } = await testFactory({ dataDir })
  let tenant: MindooTenant
  let partner: MindooTenant
  if (create) {
    tenant = await factory.createTenant({ tenantId: 'org-a', tenantEncryptionKeyPassword: 'a' })
    partner = await factory.createTenant({ tenantId: 'org-b', tenantEncryptionKeyPassword: 'b' })
    for (const keyId of ['k1', 'k2']) {
      const blob = await factory.createSymmetricEncryptedPrivateKey(`${keyId}-pw`)
      await tenant.importNamedKey(keyId, blob, `${keyId}-pw`)
      await partner.importNamedKey(keyId, blob, `${keyId}-pw`)
    }
  } else {
    tenant = await factory.openTenant('org-a')
    partner = await factory.openTenant('org-b')
  }
  const db = await tenant.openDB('orders', { defaultKeyId: 'k1' })
  await db.trustPartner(partner.getPublicInfo())
  const outbox = await partner.openDB('outbox', { defaultKeyId: 'k1' })
  return { factory, tenant, partner, db, outbox }
}

function makeSet (org: Org, spec: SetSpec, persisted: boolean, checkpointEvery?: number): ServedSet {
  return new ServedSet({
    db: org.db, index: createReconcileSet(), state: persisted ? org.tenant.openIndexState('orders', spec.name) : undefined
  }, {
    policy: policyOf(spec.filter),
    identity: filterIdentity(spec.filter),
    direction: spec.direction,
    ownAuthor: org.tenant.getPublicInfo().signingPublicKey,
    checkpointEvery
  })
}

const itemsOf = (set: ServedSet): string[] => [...set.index.items()].map((i) => `${i.timestamp}:${i.id}`)

/** Expects `set` to equal what a full rebuild gives, items and documents served. */
async function expectSameAsRebuild (org: Org, spec: SetSpec, set: ServedSet, context: string): Promise<void> {
  const rebuilt = makeSet(org, spec, false)
  await rebuilt.start()
  expect(itemsOf(set), `${context}: items of ${spec.name}`).to.deep.equal(itemsOf(rebuilt))
  for (const docId of await org.db.getAllDocumentIds()) {
    expect(set.servesDoc(docId), `${context}: ${spec.name} serves ${docId}`).to.equal(rebuilt.servesDoc(docId))
  }
  rebuilt.stop()
}

/** One random write: local creates and changes (under k1 or k2, type a or b), deletes, and a partner's writes. */
async function randomWrite (org: Org, rnd: () => number, docs: string[], theirs: string[]): Promise<void> {
  const r = rnd()
  const type = rnd() < 0.5 ? 'a' : 'b'
  if (docs.length === 0 || r < 0.25) {
    const doc = await org.db.createDocument({ keyId: rnd() < 0.7 ? 'k1' : 'k2' })
    await org.db.changeDoc(doc, (d) => { d.getData().type = type })
    docs.push(doc.getId())
  } else if (r < 0.65) {
    // flips the type (a document starts or stops matching) or touches another field
    const docId = docs[Math.floor(rnd() * docs.length)]
    await org.db.changeDoc(docId, (d) => { if (rnd() < 0.6) d.getData().type = type; else d.getData().n = Math.floor(rnd() * 100) })
  } else if (r < 0.72) {
    const docId = docs.splice(Math.floor(rnd() * docs.length), 1)[0]
    await org.db.deleteDocument(docId)
  } else {
    // the partner writes; its changes arrive through the store, as sync brings them
    if (theirs.length === 0 || rnd() < 0.4) {
      const doc = await org.outbox.createDocument()
      await org.outbox.changeDoc(doc, (d) => { d.getData().type = type })
      theirs.push(doc.getId())
    } else {
      const docId = theirs[Math.floor(rnd() * theirs.length)]
      await org.outbox.changeDoc(docId, (d) => { d.getData().type = type })
    }
    const missing = await org.outbox.getStore().findNewChanges(await org.db.getStore().getAllChangeHashes())
    const { added } = await org.db.getStore().appendMany(await org.outbox.getStore().getChanges(missing))
    await org.db.syncStoreChanges(added)
  }
}

/** Counts what would read payloads or load documents: the store's change reads and the database's document reads. */
function spyOnReads (org: Org): { counts: Record<string, number>, restore: () => void } {
  const counts: Record<string, number> = { getChanges: 0, iterateSince: 0, getDocument: 0, changefeedDocs: 0 }
  const store = org.db.getStore()
  const db = org.db
  const originals = { getChanges: store.getChanges, iterateSince: store.iterateSince, getDocument: db.getDocument, iterateChangesSince: db.iterateChangesSince }
  store.getChanges = async (...args) => { counts.getChanges++; return await originals.getChanges.apply(store, args) }
  store.iterateSince = (...args) => { counts.iterateSince++; return originals.iterateSince.apply(store, args) }
  db.getDocument = async (...args) => { counts.getDocument++; return await originals.getDocument.apply(db, args) }
  db.iterateChangesSince = async function * (...args) {
    for await (const entry of originals.iterateChangesSince.apply(db, args)) {
      counts.changefeedDocs++
      yield entry
    }
  }
  return {
    counts,
    restore: () => {
      store.getChanges = originals.getChanges
      store.iterateSince = originals.iterateSince
      db.getDocument = originals.getDocument
      db.iterateChangesSince = originals.iterateChangesSince
    }
  }
}

describe('sync: persisted served-set index', function () {
  this.timeout(120_000)
  let dataDir: string
  let org: Org | undefined

  beforeEach(async () => {
    dataDir = await tempDir()
  })

  afterEach(async () => {
    await org?.factory.close()
    org = undefined
    await removeDir(dataDir)
  })

  for (const seed of [1, 2, 3]) {
    it(`should restart every filter kind to the set a full rebuild gives, over random writes (seed ${seed})`, async () => {
      const rnd = prng(seed)
      const docs: string[] = []
      const theirs: string[] = []
      for (let round = 0; round < 4; round++) {
        org = await openOrg(dataDir, round === 0)
        const spy = spyOnReads(org)
        // small checkpoints: rounds cross checkpoints, journals and tails
        const sets = SPECS.map((spec) => makeSet(org as Org, spec, true, 7 + seed))
        for (const set of sets) await set.start()
        spy.restore()
        for (const [i, spec] of SPECS.entries()) {
          await expectSameAsRebuild(org, spec, sets[i], `round ${round} after restart`)
          if (round > 0) expect(sets[i].startInfo?.restored, `${spec.name} restored`).to.equal(true)
        }
        // a clean restart reads no payload and loads no document
        expect(spy.counts, `round ${round}`).to.deep.equal({ getChanges: 0, iterateSince: 0, getDocument: 0, changefeedDocs: 0 })
        for (let i = 0; i < 25; i++) await randomWrite(org, rnd, docs, theirs)
        for (const set of sets) await set.settled()
        for (const [i, spec] of SPECS.entries()) await expectSameAsRebuild(org, spec, sets[i], `round ${round} after writes`)
        for (const set of sets) set.stop()
        await org.factory.close()
        org = undefined
      }
    })
  }

  it('should restore a large set from its checkpoint with a short tail, reading no payload', async () => {
    // a bare store (changes of documents nobody here can read: `all` serves them unread) and an index key space
    const level = new Level<string, Uint8Array>(join(dataDir, 'level'), { valueEncoding: 'view' })
    await level.open()
    const store = new LevelStore({ db: level.sublevel<string, Uint8Array>('store', { valueEncoding: 'view' }) as never })
    await store.open()
    const state = level.sublevel<string, Uint8Array>('index', { valueEncoding: 'view' }) as never
    const db = { getStore: () => store } as unknown as MindooDB
    const make = (): ServedSet => new ServedSet({ db, index: createReconcileSet(), state }, {
      policy: { mode: 'all' }, identity: 'all', direction: 'both', ownAuthor: ''
    })
    try {
      const first = make()
      await first.start()
      const changes = makeChanges(createAuthor(), 12_000, 100)
      for (let i = 0; i < changes.length; i += 2000) await store.appendMany(changes.slice(i, i + 2000))
      await first.settled()
      expect(first.size).to.equal(12_000)
      first.stop()
      let payloadReads = 0
      const { getChanges, iterateSince } = store
      store.getChanges = async (...args) => { payloadReads++; return await getChanges.apply(store, args) }
      store.iterateSince = (...args) => { payloadReads++; return iterateSince.apply(store, args) }
      const again = make()
      await again.start()
      expect(again.startInfo).to.include({ restored: true })
      // the checkpoint was written after 10,000 records: at most the rest is replayed
      expect(again.startInfo?.replayed).to.be.at.most(2000)
      expect(payloadReads).to.equal(0)
      const expected = changes.map((c) => `${c.time}:${c.hash}`).sort((x, y) => {
        const [tx, hx] = x.split(':')
        const [ty, hy] = y.split(':')
        return Number(tx) - Number(ty) || (hx < hy ? -1 : 1)
      })
      expect(itemsOf(again)).to.deep.equal(expected)
      again.stop()
    } finally {
      await store.close()
      await level.close()
    }
  })

  it('should rebuild an index made for another filter, and one whose checkpoint is damaged', async () => {
    org = await openOrg(dataDir, true)
    const rnd = prng(9)
    const docs: string[] = []
    const theirs: string[] = []
    const spec = SPECS[3]
    const set = makeSet(org, spec, true, 3)
    await set.start()
    for (let i = 0; i < 20; i++) await randomWrite(org, rnd, docs, theirs)
    await set.settled()
    set.stop()
    // the same key space under another selector: its index is not this one's
    const other: SetSpec = { ...spec, filter: { kind: 'selector', selector: { type: 'b' } } }
    const changed = makeSet(org, other, true)
    await changed.start()
    expect(changed.startInfo).to.include({ restored: false, rebuildReason: 'configuration changed' })
    await expectSameAsRebuild(org, other, changed, 'changed filter')
    changed.stop()
    // damage: a checkpoint segment goes missing
    const kv = org.tenant.openIndexState('orders', spec.name)
    const rebuilt = makeSet(org, spec, true, 3)
    await rebuilt.start()
    rebuilt.stop()
    const segs = await kv.keys({ gte: 'cs!', lt: 'cs"' }).all()
    expect(segs.length).to.be.greaterThan(0)
    await kv.del(segs[0])
    const repaired = makeSet(org, spec, true, 3)
    await repaired.start()
    expect(repaired.startInfo?.restored).to.equal(false)
    expect(repaired.startInfo?.rebuildReason).to.match(/^unreadable/)
    await expectSameAsRebuild(org, spec, repaired, 'damaged checkpoint')
    repaired.stop()
  })

  it('should give index entries of a store written before its records carried them (read from the changes)', async () => {
    const dir = join(dataDir, 'old-store')
    const author = createAuthor()
    const changes = makeChanges(author, 40)
    const store = await LevelStore.open(dir)
    await store.appendMany(changes)
    await store.close()
    // rewrite the seq records to the older form: the hash alone
    const level = new Level<string, Uint8Array>(dir, { valueEncoding: 'view' })
    await level.open()
    for (const [key, value] of await level.iterator({ gt: 's!', lt: 's"' }).all()) {
      if (Number(key.slice(2)) % 2 === 0) await level.put(key, value.subarray(0, 32))
    }
    await level.close()
    const reopened = await LevelStore.open(dir)
    const entries = []
    for await (const entry of reopened.iterateIndexSince(0)) entries.push(entry)
    expect(entries).to.deep.equal(changes.map((c, i) => ({ seq: i + 1, hash: c.hash, time: c.time, author: c.author, keyId: c.keyId })))
    await reopened.close()
  })
})
