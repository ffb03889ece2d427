/**
 * The materialiser off the receive path: `receiveChanges` stores, the background applies batched per document,
 * reads wait only for what they need, and document snapshots are a cache written when the rule says so.
 */
import { expect } from 'chai'
import {
  createTenantFactory, type MindooDB, type MindooTenant, type ProcessChangesCursor, type StoreChange, type TenantFactory
} from '../../src/index.js'
import * as Automerge from '@automerge/automerge'
import { availableParallelism } from 'node:os'
import { setMaterialiseMainBuildDocs, setMaterialiseWorkers } from '../../src/core/materialise-pool.js'
import { CHANGEFEED_STEP_CHANGES, MATERIALISE_MAIN_BUILD_DOCS, MATERIALISE_SNAPSHOT_AFTER_CHANGES } from '../../src/limits.js'
import { setChangefeedStep } from '../../src/core/changefeed.js'
import { Level } from 'level'
import { tenantPaths } from '../../src/core/factory.js'
import { TEST_KDF, testFactory, twoTenantsSharingKey } from '../utils/tmp.js'

const json = (value: unknown): unknown => JSON.parse(JSON.stringify(value))

/** A deterministic shuffle (the order matters, not its randomness). */
function shuffled<T> (items: T[], seed: number): T[] {
  const out = [...items]
  let s = seed
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) % 2147483648
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j], out[i]]
  }
  return out
}

async function allChanges (db: MindooDB): Promise<StoreChange[]> {
  return await db.getStore().getChanges(await db.getStore().getAllChangeHashes())
}

async function feedIds (db: MindooDB): Promise<string[]> {
  const ids: string[] = []
  for await (const { doc } of db.iterateChangesSince(null)) ids.push(doc.getId())
  return ids
}

describe('core: materialiser', () => {
  let factory: TenantFactory
  let dataDir: string
  let cleanup: () => Promise<void>
  let orgA: MindooTenant
  let orgB: MindooTenant
  let dbA: MindooDB
  let dbB: MindooDB

  beforeEach(async () => {
    ({ factory, dataDir, cleanup } = await testFactory())
    ;[orgA, orgB] = await twoTenantsSharingKey(factory)
    dbA = await orgA.openDB('src', { defaultKeyId: 'k' })
    dbB = await orgB.openDB('dst', { defaultKeyId: 'k' })
    await dbB.trustPartner(orgA.getPublicInfo())
    await dbA.trustPartner(orgB.getPublicInfo())
  })

  afterEach(async () => {
    await factory.close() // a test may have reopened it
    await cleanup()
  })

  /** `docs` documents on A, each created and changed once (two changes), like a library user makes them. */
  async function makeDocs (docs: number): Promise<string[]> {
    const ids: string[] = []
    for (let i = 0; i < docs; i++) {
      const doc = await dbA.createDocument()
      await dbA.changeDoc(doc, (d) => { d.getData().i = i; d.getData().body = `body ${i}` })
      ids.push(doc.getId())
    }
    return ids
  }

  it('should return from receiveChanges once stored, and materialise in the background', async () => {
    const ids = await makeDocs(20)
    const changes = await allChanges(dbA)
    const events: string[] = []
    dbB.onDocumentsChanged(({ docIds }) => { events.push(...docIds) })

    const result = await dbB.receiveChanges(changes)
    expect(result.added).to.have.length(changes.length)
    expect(await dbB.getStore().count()).to.equal(changes.length)
    // stored, not applied yet: the backlog is the whole batch, and no document was announced
    expect(dbB.getMaterialiseBacklog()).to.equal(changes.length)
    expect(events).to.deep.equal([])

    await dbB.whenMaterialised()
    expect(dbB.getMaterialiseBacklog()).to.equal(0)
    expect(new Set(events)).to.deep.equal(new Set(ids))
    for (const [i, id] of ids.entries()) expect(json((await dbB.getDocument(id)).getData())).to.deep.equal({ i, body: `body ${i}` })
  })

  it('should verify in receiveChanges like appendMany: a change of an untrusted author is refused and not stored', async () => {
    await makeDocs(1)
    const changes = await allChanges(dbA)
    await dbB.untrustPartner(orgA.getPublicInfo().signingPublicKey)
    const result = await dbB.receiveChanges(changes)
    expect(result.added).to.deep.equal([])
    expect(result.rejected.map((r) => r.error.code)).to.deep.equal(changes.map(() => 'UNTRUSTED_AUTHOR'))
    expect(await dbB.getStore().count()).to.equal(0)
  })

  it('should apply many changes of one document arriving out of order across batches', async () => {
    const doc = await dbA.createDocument()
    const steps = MATERIALISE_SNAPSHOT_AFTER_CHANGES + 9
    for (let i = 0; i < steps; i++) {
      await dbA.changeDoc(doc, (d) => {
        d.getData()[`f${i % 7}`] = i
        if (d.getData().list === undefined) d.getData().list = []
        d.getData().list.push(i)
      })
    }
    const changes = shuffled(await allChanges(dbA), 7)
    for (let i = 0; i < changes.length; i += 5) await dbB.receiveChanges(changes.slice(i, i + 5))
    await dbB.whenMaterialised()
    const a = await dbA.getDocument(doc.getId())
    const b = await dbB.getDocument(doc.getId())
    expect(json(b.getData())).to.deep.equal(json(a.getData()))
    expect(b.getHeads()).to.deep.equal(a.getHeads())
    expect((await feedIds(dbB))).to.deep.equal([doc.getId()])
    expect(dbB.getMaterialiseStats().applied).to.equal(steps + 1)
  })

  /** The keys of B's `dst` state under `prefix`, read from its LevelDB with the factory closed. */
  async function stateKeys (prefix: string): Promise<string[]> {
    await factory.close()
    const level = new Level<string, Uint8Array>(tenantPaths(dataDir, 'org-b').level, { valueEncoding: 'view' })
    try {
      const state = level.sublevel<string, Uint8Array>(['db', 'dst', 'state'], { valueEncoding: 'view' })
      return await state.keys({ gt: prefix, lt: prefix + '~' }).all()
    } finally {
      await level.close()
    }
  }

  async function reopenB (): Promise<void> {
    factory = await createTenantFactory({ dataDir, keyWrapping: TEST_KDF })
    orgB = await factory.openTenant('org-b')
    dbB = await orgB.openDB('dst')
  }

  it('should leave no waiting records behind once changes that arrived before their dependencies are applied', async () => {
    const ids = await makeDocs(30)
    // every document's second change first, in steps of its own: each waits on disk for its creation
    const changes = await allChanges(dbA)
    const later = changes.filter((c) => c.deps.length > 0)
    await dbB.receiveChanges(later)
    await dbB.whenMaterialised()
    expect(await dbB.getAllDocumentIds()).to.deep.equal([])
    await dbB.receiveChanges(changes.filter((c) => c.deps.length === 0))
    await dbB.whenMaterialised()
    for (const [i, id] of ids.entries()) expect((await dbB.getDocument(id)).getData().i).to.equal(i)
    expect(await stateKeys('wd!')).to.deep.equal([])
    expect(await stateKeys('wm!')).to.deep.equal([])
  })

  it('should apply a walk of many batches right, whatever the order: documents and waits spanning batches being written', async function () {
    this.timeout(120_000)
    // more documents than a batch holds (MATERIALISE_CACHE_DOCS), in a shuffled order: a document's changes land in
    // different batches, some while the batch before is still being built and written, and many changes wait for
    // a creation that comes in a later batch
    const ids = await makeDocs(1_500)
    const changes = shuffled(await allChanges(dbA), 11)
    await dbB.receiveChanges(changes)
    await dbB.whenMaterialised()
    expect(dbB.getMaterialiseStats().applied).to.equal(changes.length)
    for (const [i, id] of ids.entries()) {
      expect(json((await dbB.getDocument(id)).getData()), id).to.deep.equal({ i, body: `body ${i}` })
    }
    const feed = await feedIds(dbB)
    expect(feed).to.have.length(ids.length)
    expect(new Set(feed)).to.deep.equal(new Set(ids))
    expect(await stateKeys('wd!')).to.deep.equal([])
    expect(await stateKeys('wm!')).to.deep.equal([])
  })

  it('should apply changes that wait for a dependency in a state written before the waiting markers', async () => {
    const ids = await makeDocs(5)
    const changes = await allChanges(dbA)
    await dbB.receiveChanges(changes.filter((c) => c.deps.length > 0))
    await dbB.whenMaterialised()
    // the state as an older version wrote it: the waiting records without their markers
    const marks = await stateKeys('wm!')
    expect(marks).to.have.length(5)
    const level = new Level<string, Uint8Array>(tenantPaths(dataDir, 'org-b').level, { valueEncoding: 'view' })
    await level.sublevel<string, Uint8Array>(['db', 'dst', 'state'], { valueEncoding: 'view' }).batch(marks.map((key) => ({ type: 'del', key })))
    await level.close()
    await reopenB()
    await dbB.receiveChanges(changes.filter((c) => c.deps.length === 0))
    await dbB.whenMaterialised()
    for (const [i, id] of ids.entries()) expect((await dbB.getDocument(id)).getData().i).to.equal(i)
    expect(await stateKeys('wd!')).to.deep.equal([])
  })

  it('should converge concurrent edits of two tenants exchanged through receiveChanges', async () => {
    const doc = await dbA.createDocument()
    await dbA.changeDoc(doc, (d) => { d.getData().items = ['start'] })
    await dbB.receiveChanges(await allChanges(dbA))
    await dbB.whenMaterialised()
    // both edit concurrently, several times each, without seeing the other's changes
    for (let i = 0; i < 5; i++) {
      await dbA.changeDoc(doc.getId(), (d) => { d.getData().a = i; d.getData().items.push(`a${i}`) })
      await dbB.changeDoc(doc.getId(), (d) => { d.getData().b = i; d.getData().items.push(`b${i}`); d.getData().both = `b${i}` })
    }
    await dbA.changeDoc(doc.getId(), (d) => { d.getData().both = 'a' })
    const fromA = await allChanges(dbA)
    const fromB = await allChanges(dbB)
    await dbA.receiveChanges(fromB)
    await dbB.receiveChanges(fromA)
    await Promise.all([dbA.whenMaterialised(), dbB.whenMaterialised()])
    const a = await dbA.getDocument(doc.getId())
    const b = await dbB.getDocument(doc.getId())
    expect(json(a.getData())).to.deep.equal(json(b.getData()))
    expect(a.getHeads()).to.deep.equal(b.getHeads())
    expect(a.getHeads()).to.have.length(2)
    expect(a.getData().items).to.have.length(11)
    expect(a.getData().a).to.equal(4)
    expect(a.getData().b).to.equal(4)
  })

  it('should judge a chain of received changes on the copy built for the one before, and never on a wrong copy', async () => {
    const doc = await dbA.createDocument()
    for (let n = 1; n <= 5; n++) await dbA.changeDoc(doc, (d) => { d.getData().n = n })
    const id = doc.getId()
    const changes = await allChanges(dbA)
    const [creation, ...chain] = changes
    expect(chain).to.have.length(5)
    await dbB.receiveChanges([creation])
    await dbB.whenMaterialised()
    const nAfter = async (list: StoreChange[]): Promise<unknown> => (await dbB.dataAfter(id, list))?.n
    // one after the other, as a write rule judges a frame: each on the copy of the one before
    for (let k = 1; k <= 5; k++) expect(await nAfter(chain.slice(0, k))).to.equal(k)
    // not a prefix of what the copy has: built anew
    expect(await nAfter(chain.slice(0, 1))).to.equal(1)
    expect(await nAfter(chain.slice(0, 3))).to.equal(3)
    expect(await nAfter([chain[0], chain[2]])).to.equal(undefined) // chain[2] depends on chain[1]
    expect(await nAfter(chain.slice(0, 2))).to.equal(2)
    // what is stored moved on: built anew from it
    await dbB.receiveChanges(chain.slice(0, 3))
    await dbB.whenMaterialised()
    expect(await nAfter(chain.slice(3, 4))).to.equal(4)
    expect(await nAfter(chain.slice(3, 5))).to.equal(5)
    expect(await nAfter([])).to.equal(3)
    // another branch of the same length after the one kept: built anew (B, in a database of its own, writes two
    // changes to the document concurrently with A's)
    const other = await orgB.openDB('branch', { defaultKeyId: 'k' })
    await other.trustPartner(orgA.getPublicInfo())
    await other.receiveChanges([creation])
    await other.whenMaterialised()
    await other.changeDoc(id, (d) => { d.getData().m = 1 })
    await other.changeDoc(id, (d) => { d.getData().m = 2 })
    const branch = (await allChanges(other)).slice(1)
    expect(await nAfter([chain[3]])).to.equal(4)
    expect((await dbB.dataAfter(id, branch))?.m).to.equal(2)
    // the stored state moved on by a change the kept copy lacks: built anew, with it
    expect(await nAfter(chain.slice(3, 4))).to.equal(4)
    await dbB.receiveChanges(branch.slice(0, 1))
    await dbB.whenMaterialised()
    const after = await dbB.dataAfter(id, chain.slice(3, 5))
    expect(after?.n).to.equal(5)
    expect(after?.m).to.equal(1)
  })

  it('should materialise a queued document at once when it is read, ahead of the backlog', async () => {
    const ids = await makeDocs(300)
    const changes = await allChanges(dbA)
    await dbB.receiveChanges(changes)
    const last = ids[ids.length - 1]
    const doc = await dbB.getDocument(last)
    expect(json(doc.getData())).to.deep.equal({ i: 299, body: 'body 299' })
    // only that document's two changes were taken up: the rest still waits
    expect(dbB.getMaterialiseBacklog()).to.be.greaterThan(0)
    expect(dbB.getMaterialiseBacklog()).to.be.at.most(changes.length - 2)
    await dbB.whenMaterialised()
    const feed = await feedIds(dbB)
    // the document read first was materialised first, although it arrived last
    expect(feed[0]).to.equal(last)
    expect(new Set(feed)).to.deep.equal(new Set(ids))
    expect(feed).to.have.length(ids.length)
  })

  it('should never miss a document while the background is applying its changes', async () => {
    const ids = await makeDocs(100)
    await dbB.receiveChanges(await allChanges(dbA))
    // let the background take the backlog off the queue and start building it
    for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve))
    const docs = await Promise.all(ids.map(async (id) => await dbB.getDocument(id)))
    expect(docs.map((d) => d.getData().i)).to.deep.equal(ids.map((_, i) => i))
  })

  it('should let a local write to a document with queued changes build on them', async () => {
    const [id] = await makeDocs(1)
    await dbB.receiveChanges(await allChanges(dbA))
    const changed = await dbB.changeDoc(id, (d) => { d.getData().more = true })
    expect(json(changed.getData())).to.deep.equal({ i: 0, body: 'body 0', more: true })
    expect(changed.getHeads()).to.have.length(1)
    const back = (await dbB.getStore().getChanges([changed.getHeads()[0]]))[0]
    expect(back.deps).to.deep.equal((await dbA.getDocument(id)).getHeads())
  })

  it('should list and yield queued documents only once they are applied', async () => {
    const ids = await makeDocs(50)
    await dbB.receiveChanges(await allChanges(dbA))
    expect(new Set(await dbB.getAllDocumentIds())).to.deep.equal(new Set(ids))
    expect(await feedIds(dbB)).to.have.length(50)
  })

  it('should yield the documents that are up to date before taking up the backlog, and the others once, at their latest state', async () => {
    const ids = await makeDocs(30)
    await dbB.receiveChanges(await allChanges(dbA))
    await dbB.whenMaterialised()
    // three documents get a change that is stored but not applied (appendMany leaves it to the next read)
    const before = new Set((await allChanges(dbA)).map((c) => c.hash))
    const changed = [ids[2], ids[15], ids[29]]
    for (const id of changed) await dbA.changeDoc(id, (d) => { d.getData().i = -1 })
    await dbB.getStore().appendMany((await allChanges(dbA)).filter((c) => !before.has(c.hash)))
    expect(dbB.getMaterialiseBacklog()).to.equal(3)
    const yielded: string[] = []
    const backlogAt: number[] = []
    for await (const { doc } of dbB.iterateChangesSince(null)) {
      yielded.push(doc.getId())
      backlogAt.push(dbB.getMaterialiseBacklog())
      expect(doc.getData().i, doc.getId()).to.equal(changed.includes(doc.getId()) ? -1 : ids.indexOf(doc.getId()))
    }
    // every document once; the 27 up to date ones first, without waiting for the backlog; the changed ones last
    expect(yielded).to.have.length(30)
    expect(new Set(yielded)).to.deep.equal(new Set(ids))
    expect(backlogAt.slice(0, 27)).to.deep.equal(new Array(27).fill(3))
    expect(new Set(yielded.slice(27))).to.deep.equal(new Set(changed))
    expect(dbB.getMaterialiseBacklog()).to.equal(0)
  })

  it('should yield documents while the backlog is taken up, a step at a time, each once', async () => {
    const ids = await makeDocs(40)
    // stored document by document, each one's creation first: a step of 16 changes brings 8 documents up to date
    const order = (c: StoreChange): number => ids.indexOf(c.docId) * 2 + c.deps.length
    await dbB.getStore().appendMany((await allChanges(dbA)).sort((x, y) => order(x) - order(y)))
    setChangefeedStep(16)
    try {
      const yielded: string[] = []
      const backlogAt: number[] = []
      for await (const { doc } of dbB.iterateChangesSince(null)) {
        yielded.push(doc.getId())
        backlogAt.push(dbB.getMaterialiseBacklog())
        expect(doc.getData().i).to.equal(ids.indexOf(doc.getId()))
      }
      expect(yielded).to.have.length(40)
      expect(new Set(yielded)).to.deep.equal(new Set(ids))
      // the first eight came out after one step of 16 of the 80 changes, not after all of them
      expect(backlogAt.slice(0, 8)).to.deep.equal(new Array(8).fill(80 - 16))
      expect(dbB.getMaterialiseBacklog()).to.equal(0)
    } finally {
      setChangefeedStep(CHANGEFEED_STEP_CHANGES)
    }
  })

  // a document with a queued change is skipped where it is: the walk expects it further on, once the change is
  // applied; a change that turns out to wait must not make the walk miss it
  describe('a document whose queued change turns out to wait', () => {
    /** `stuck` has a change B stored and cannot apply yet: every document comes out once; `unblock` lets it apply. */
    async function expectYieldedOnce (ids: string[], stuck: string, unblock: () => Promise<void>, latest: number): Promise<void> {
      expect(dbB.getMaterialiseBacklog()).to.equal(1)
      const yielded: string[] = []
      let cursor: ProcessChangesCursor | null = null
      for await (const entry of dbB.iterateChangesSince(null)) {
        yielded.push(entry.doc.getId())
        cursor = entry.cursor
      }
      expect(yielded).to.have.length(30)
      expect(new Set(yielded)).to.deep.equal(new Set(ids))
      expect((await dbB.getDocument(stuck)).getData().i).to.equal(ids.indexOf(stuck))
      // once the change applies, the document comes out again after the cursor, at its latest state
      await unblock()
      await dbB.whenMaterialised()
      const later: string[] = []
      for await (const { doc } of dbB.iterateChangesSince(cursor)) later.push(doc.getId())
      expect(later).to.deep.equal([stuck])
      expect((await dbB.getDocument(stuck)).getData().i).to.equal(latest)
    }

    async function materialisedOnB (): Promise<{ ids: string[], known: Set<string> }> {
      const ids = await makeDocs(30)
      await dbB.receiveChanges(await allChanges(dbA))
      await dbB.whenMaterialised()
      return { ids, known: new Set((await allChanges(dbA)).map((c) => c.hash)) }
    }

    it('for the change it depends on', async () => {
      const { ids, known } = await materialisedOnB()
      await dbA.changeDoc(ids[7], (d) => { d.getData().i = -1 })
      const first = (await allChanges(dbA)).filter((c) => !known.has(c.hash))
      await dbA.changeDoc(ids[7], (d) => { d.getData().i = -2 })
      await dbB.getStore().appendMany((await allChanges(dbA)).filter((c) => !known.has(c.hash) && c.hash !== first[0].hash))
      await expectYieldedOnce(ids, ids[7], async () => { await dbB.receiveChanges(first) }, -2)
    })

    it('for a version of its key this tenant lacks', async () => {
      const { ids, known } = await materialisedOnB()
      const exported = await orgA.rotateNamedKey('k', 'pw')
      await dbA.changeDoc(ids[12], (d) => { d.getData().i = -3 })
      await dbB.getStore().appendMany((await allChanges(dbA)).filter((c) => !known.has(c.hash)))
      await expectYieldedOnce(ids, ids[12], async () => { await orgB.importNamedKey('k', exported, 'pw') }, -3)
    })
  })

  it('should save a snapshot only once a document has enough changes since the last, and reload from the tail', async () => {
    const doc = await dbB.createDocument()
    for (let i = 1; i < MATERIALISE_SNAPSHOT_AFTER_CHANGES - 1; i++) await dbB.changeDoc(doc, (d) => { d.getData().n = i })
    // the creation plus 30 changes: no Automerge save yet, every change sits in the tail
    expect(dbB.getMaterialiseStats().snapshots).to.equal(0)
    await dbB.changeDoc(doc, (d) => { d.getData().n = 'last before' })
    expect(dbB.getMaterialiseStats().snapshots).to.equal(1)
    for (let i = 0; i < 5; i++) await dbB.changeDoc(doc, (d) => { d.getData().after = i })
    expect(dbB.getMaterialiseStats().snapshots).to.equal(1)
    const before = json((await dbB.getDocument(doc.getId())).getData())
    const heads = (await dbB.getDocument(doc.getId())).getHeads()

    // a restart loads snapshot + tail, and the document goes on from there
    await factory.close()
    await reopenB()
    const reloaded = await dbB.getDocument(doc.getId())
    expect(json(reloaded.getData())).to.deep.equal(before)
    expect(reloaded.getHeads()).to.deep.equal(heads)
    const next = await dbB.changeDoc(doc.getId(), (d) => { d.getData().after = 'restart' })
    expect(next.getData().n).to.equal('last before')
    expect(next.getData().after).to.equal('restart')
  })

  it('should resume background materialisation after a restart with a backlog', async () => {
    const ids = await makeDocs(40)
    // stored without taking them up (appendMany leaves them to the next read), then closed
    await dbB.getStore().appendMany(await allChanges(dbA))
    expect(dbB.getMaterialiseBacklog()).to.equal(80)
    await factory.close()
    await reopenB()
    expect(dbB.getMaterialiseBacklog()).to.equal(80)
    // open takes the backlog up in the background, without a read asking for it
    await new Promise<void>((resolve) => {
      const off = dbB.onDocumentsChanged(() => {
        if (dbB.getMaterialiseBacklog() === 0) { off(); resolve() }
      })
    })
    expect(new Set(await feedIds(dbB))).to.deep.equal(new Set(ids))
    expect((await dbB.getDocument(ids[7])).getData().i).to.equal(7)
  })

  it('should fall back to the store when the queue overflows, and hold the backlog in memory again once caught up', async () => {
    const ids = await makeDocs(40)
    const changes = await allChanges(dbA)
    const big = await dbA.createDocument()
    await dbA.changeDoc(big, (d) => { d.getData().body = 'y'.repeat(10_000) })
    const bigChanges = await dbA.getStore().getChanges(await dbA.getStore().getAllChangeHashesForDoc(big.getId()))
    // a receiver whose queue holds 12 changes or 8 KB: 70 received changes overflow it
    await factory.close()
    factory = await createTenantFactory({ dataDir, keyWrapping: TEST_KDF, materialiseQueue: { changes: 12, bytes: 8192 } })
    dbB = await (await factory.openTenant('org-b')).openDB('dst')
    await dbB.receiveChanges(changes.slice(0, 70))
    // without the queue a read of one document waits for the whole backlog
    expect((await dbB.getDocument(ids[3])).getData().i).to.equal(3)
    expect(dbB.getMaterialiseBacklog()).to.equal(0)
    // caught up, the queue follows appends again: a read takes up only its own document's changes
    await dbB.receiveChanges(changes.slice(70))
    expect(dbB.getMaterialiseBacklog()).to.equal(10)
    expect((await dbB.getDocument(ids[39])).getData().i).to.equal(39)
    expect(dbB.getMaterialiseBacklog()).to.equal(8)
    // over the byte bound it overflows too, and everything still arrives
    await dbB.receiveChanges(bigChanges)
    expect((await dbB.getDocument(big.getId())).getData().body).to.have.length(10_000)
    expect(dbB.getMaterialiseBacklog()).to.equal(0)
    expect(new Set(await feedIds(dbB))).to.deep.equal(new Set([...ids, big.getId()]))
  })

  it('should yield every document also while the backlog overflows the queue (nothing is known to be up to date)', async () => {
    const ids = await makeDocs(30)
    await factory.close()
    factory = await createTenantFactory({ dataDir, keyWrapping: TEST_KDF, materialiseQueue: { changes: 12, bytes: 1 << 20 } })
    orgA = await factory.openTenant('org-a')
    dbA = await orgA.openDB('src')
    dbB = await (await factory.openTenant('org-b')).openDB('dst')
    await dbB.receiveChanges(await allChanges(dbA))
    await dbB.whenMaterialised()
    // 20 changes of 10 documents wait, more than the queue holds: the 20 other documents have nothing waiting
    const known = new Set((await allChanges(dbA)).map((c) => c.hash))
    for (const id of ids.slice(0, 10)) {
      await dbA.changeDoc(id, (d) => { d.getData().i = -1 })
      await dbA.changeDoc(id, (d) => { d.getData().i = -2 })
    }
    await dbB.getStore().appendMany((await allChanges(dbA)).filter((c) => !known.has(c.hash)))
    expect(dbB.getMaterialiseBacklog()).to.equal(20)
    const yielded = await feedIds(dbB)
    expect(yielded).to.have.length(30)
    expect(new Set(yielded)).to.deep.equal(new Set(ids))
    for (const id of ids.slice(0, 10)) expect((await dbB.getDocument(id)).getData().i).to.equal(-2)
  })

  it('should build a document of a live-sized step here and apply its next changes to it without a worker', async () => {
    const doc = await dbA.createDocument()
    const sent = new Set<string>()
    for (let i = 0; i < 3; i++) {
      await dbA.changeDoc(doc, (d) => { d.getData()[`f${i}`] = i })
      const fresh = (await allChanges(dbA)).filter((c) => !sent.has(c.hash))
      for (const c of fresh) sent.add(c.hash)
      await dbB.receiveChanges(fresh)
      await dbB.whenMaterialised()
      expect(json((await dbB.getDocument(doc.getId())).getData())).to.deep.equal(json((await dbA.getDocument(doc.getId())).getData()))
    }
    expect(dbB.getMaterialiseStats().offloaded).to.equal(0)
    // a step of more documents than that goes to the workers
    await makeDocs(MATERIALISE_MAIN_BUILD_DOCS + 1)
    await dbB.receiveChanges((await allChanges(dbA)).filter((c) => !sent.has(c.hash)))
    await dbB.whenMaterialised()
    expect(dbB.getMaterialiseStats().offloaded).to.equal(MATERIALISE_MAIN_BUILD_DOCS + 1)
  })

  describe('content built on the worker threads', () => {
    beforeEach(() => { setMaterialiseMainBuildDocs(0) })
    afterEach(() => {
      setMaterialiseWorkers(availableParallelism())
      setMaterialiseMainBuildDocs(MATERIALISE_MAIN_BUILD_DOCS)
    })

    /** A document with every kind of value Automerge keeps, and a key that looks like the content codec's tag. */
    async function richDoc (): Promise<string> {
      const doc = await dbA.createDocument()
      await dbA.changeDoc(doc, (d) => {
        Object.assign(d.getData(), {
          text: 'collaborative',
          fixed: new Automerge.ImmutableString('scalar'),
          count: new Automerge.Counter(3),
          when: new Date(1_700_000_000_000),
          bytes: new Uint8Array([1, 2, 255]),
          nested: { list: [1, 'two', null, { deep: true }], $mdb: 's', v: 'not a tag' },
          float: 1.5
        })
      })
      await dbA.changeDoc(doc, (d) => { d.getData().count.increment(2) })
      return doc.getId()
    }

    function expectRich (data: Record<string, any>): void { // eslint-disable-line @typescript-eslint/no-explicit-any
      expect(data.text).to.equal('collaborative')
      expect(data.fixed).to.be.instanceOf(Automerge.ImmutableString)
      expect(data.fixed.toString()).to.equal('scalar')
      expect(data.count).to.be.instanceOf(Automerge.Counter)
      expect(data.count.value).to.equal(5)
      expect(data.when).to.be.instanceOf(Date)
      expect(data.when.getTime()).to.equal(1_700_000_000_000)
      expect(data.bytes).to.be.instanceOf(Uint8Array)
      expect([...data.bytes]).to.deep.equal([1, 2, 255])
      expect(json(data.nested)).to.deep.equal({ list: [1, 'two', null, { deep: true }], $mdb: 's', v: 'not a tag' })
      expect(data.float).to.equal(1.5)
    }

    it('should read received documents with every value type intact, without loading them on the main thread', async () => {
      const id = await richDoc()
      await dbB.receiveChanges(await allChanges(dbA))
      await dbB.whenMaterialised()
      expect(dbB.getMaterialiseStats().offloaded).to.equal(1)
      expectRich((await dbB.getDocument(id)).getData())
      // after a restart the content comes from the sealed state as well; a local write loads the document
      await factory.close()
      factory = await createTenantFactory({ dataDir, keyWrapping: TEST_KDF })
      dbB = await (await factory.openTenant('org-b')).openDB('dst')
      expectRich((await dbB.getDocument(id)).getData())
      const changed = await dbB.changeDoc(id, (d) => { d.getData().count.increment(1) })
      expect(changed.getData().count.value).to.equal(6)
    })

    it('should build a document a few changes at a time on its worker, and never from a copy that missed a change', async () => {
      const doc = await dbA.createDocument()
      const sent = new Set<string>()
      const sendNew = async (): Promise<void> => {
        const fresh = (await allChanges(dbA)).filter((c) => !sent.has(c.hash))
        for (const c of fresh) sent.add(c.hash)
        await dbB.receiveChanges(fresh)
        await dbB.whenMaterialised()
      }
      for (let i = 0; i < 4; i++) {
        await dbA.changeDoc(doc, (d) => { d.getData()[`a${i}`] = i })
        await sendNew()
        expect(json((await dbB.getDocument(doc.getId())).getData())).to.deep.equal(json((await dbA.getDocument(doc.getId())).getData()))
      }
      expect(dbB.getMaterialiseStats().offloaded).to.be.at.least(4)
      // B writes locally (on the main thread: its worker's copy no longer has every change), then restarts, so the
      // next received changes are built on the worker again
      await dbB.changeDoc(doc.getId(), (d) => { d.getData().fromB = true })
      await factory.close()
      factory = await createTenantFactory({ dataDir, keyWrapping: TEST_KDF })
      dbA = await (await factory.openTenant('org-a')).openDB('src')
      dbB = await (await factory.openTenant('org-b')).openDB('dst')
      await dbA.changeDoc(doc.getId(), (d) => { d.getData().late = 'from A' })
      await sendNew()
      const b = (await dbB.getDocument(doc.getId())).getData()
      expect(b.fromB).to.equal(true)
      expect(b.late).to.equal('from A')
      expect(b.a3).to.equal(3)
      expect(dbB.getMaterialiseStats().offloaded).to.equal(1)
    })

    it('should materialise the same without workers, loading documents when read', async () => {
      setMaterialiseWorkers(0)
      const id = await richDoc()
      const ids = await makeDocs(10)
      await dbB.receiveChanges(await allChanges(dbA))
      await dbB.whenMaterialised()
      expect(dbB.getMaterialiseStats().offloaded).to.equal(0)
      expectRich((await dbB.getDocument(id)).getData())
      for (const [i, other] of ids.entries()) expect((await dbB.getDocument(other)).getData().i).to.equal(i)
    })
  })
})
