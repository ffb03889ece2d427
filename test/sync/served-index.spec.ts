/**
 * The persisted served-set index (src/sync/served-index.ts, src/sync/served-set.ts): after a restart the served
 * set equals the one a full rebuild gives, for every filter kind, with documents that start and stop matching;
 * a clean restart reads no payload and loads no document; an index made for another filter, or damaged, is
 * rebuilt; a store written before the index records existed still gives its index entries.
 */
import { expect } from 'chai'
import { Level } from 'level'
import { spawn } from 'node:child_process'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { MindooDB, ShareConfig } from '../../src/index.js'
import { createMindooNode, type MindooNode } from '../../src/p2p/index.js'
import { createReconcileSet } from '../../src/sync/reconcile/index.js'
import { ServedSet } from '../../src/sync/served-set.js'
import { filterIdentity, policyOf } from '../../src/sync/share.js'
import { LevelStore } from '../../src/store/level-store.js'
import { createAuthor, makeChanges } from '../utils/changes.js'
import { prng } from '../utils/prng.js'
import { CRASH_CHECKPOINT_EVERY } from '../utils/index-writer.js'
import { itemsOf, makeSet, openOrg, randomWrite, SPECS, type Org, type SetSpec } from '../utils/served-org.js'
import { removeDir, tempDir } from '../utils/tmp.js'

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

const WRITER = fileURLToPath(new URL('../utils/index-writer.js', import.meta.url))

/** Runs the writer until it has been ready for `killAfterMs`, then kills it with SIGKILL; resolves with its writes. */
async function runAndKill (dataDir: string, seed: number, killAfterMs: number): Promise<{ writes: number, stderr: string, signal: string | null }> {
  return await new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [WRITER, dataDir, String(seed)], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    let killTimer: NodeJS.Timeout | undefined
    const readyTimer = setTimeout(() => { child.kill('SIGKILL') }, 30_000)
    child.stdout.setEncoding('utf8')
    child.stderr.setEncoding('utf8')
    child.stdout.on('data', (chunk: string) => {
      stdout += chunk
      if (killTimer === undefined && stdout.includes('ready')) {
        clearTimeout(readyTimer)
        killTimer = setTimeout(() => { child.kill('SIGKILL') }, killAfterMs)
      }
    })
    child.stderr.on('data', (chunk: string) => { stderr += chunk })
    child.on('error', reject)
    child.on('close', (_code, signal) => {
      clearTimeout(readyTimer)
      clearTimeout(killTimer)
      resolve({ writes: stdout.split('\n').filter((l) => l === 'write').length, stderr, signal })
    })
  })
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
    const state = { kv: level.sublevel<string, Uint8Array>('index', { valueEncoding: 'view' }) as never, seal: (b: Uint8Array) => b, unseal: (b: Uint8Array) => b }
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
    const { kv } = org.tenant.openIndexState('orders', spec.name)
    const rebuilt = makeSet(org, spec, true, 3)
    await rebuilt.start()
    await rebuilt.settled() // its checkpoint is written once it is ready
    rebuilt.stop()
    const segs = await kv.keys({ gte: 'cs!', lt: 'cs"' }).all()
    expect(segs.length).to.be.greaterThan(0)
    await kv.del(segs[0])
    const repaired = makeSet(org, spec, true, 3)
    await repaired.start()
    expect(repaired.startInfo?.restored).to.equal(false)
    expect(repaired.startInfo?.rebuildReason).to.match(/^unreadable/)
    await expectSameAsRebuild(org, spec, repaired, 'damaged checkpoint')
    await repaired.settled()
    repaired.stop()
    // an index ahead of its source (here: another, empty database's) is never used
    const empty = await org.tenant.openDB('empty')
    for (const [s, reason] of [[spec, 'index ahead of the changefeed'], [SPECS[0], 'checkpoint ahead of the store']] as const) {
      const own = makeSet(org, s, true, 3)
      await own.start()
      await own.settled()
      own.stop()
      const foreign = new ServedSet({ db: empty, index: createReconcileSet(), state: org.tenant.openIndexState('orders', s.name) }, {
        policy: policyOf(s.filter), identity: filterIdentity(s.filter), direction: s.direction, ownAuthor: org.tenant.getPublicInfo().signingPublicKey
      })
      await foreign.start()
      expect(foreign.startInfo, s.name).to.include({ restored: false, rebuildReason: reason })
      expect(foreign.size).to.equal(0)
      foreign.stop()
    }
  })

  it('should keep the persisted index sealed: no document id or change hash of it readable on disk', async () => {
    org = await openOrg(dataDir, true)
    const rnd = prng(5)
    const docs: string[] = []
    const theirs: string[] = []
    const spec = SPECS[3]
    const set = makeSet(org, spec, true, 4)
    await set.start()
    for (let i = 0; i < 30; i++) await randomWrite(org, rnd, docs, theirs)
    await set.settled()
    const served = [...set.index.items()]
    const matching = (await org.db.getAllDocumentIds()).filter((id) => set.servesDoc(id))
    expect(matching.length).to.be.greaterThan(0)
    set.stop()
    const { kv } = org.tenant.openIndexState('orders', spec.name)
    const entries = await kv.iterator({}).all()
    expect(entries.some(([key]) => key.startsWith('cd!'))).to.equal(true)
    expect(entries.some(([key]) => key.startsWith('cs!'))).to.equal(true)
    for (const [key, value] of entries) {
      if (key === 'cfg') continue
      const bytes = Buffer.from(value)
      for (const docId of matching) expect(bytes.includes(docId), `${key} holds ${docId}`).to.equal(false)
      for (const { id } of served) {
        expect(bytes.includes(id), `${key} holds a hash as hex`).to.equal(false)
        expect(bytes.includes(Buffer.from(id, 'hex')), `${key} holds a hash`).to.equal(false)
      }
    }
  })

  it('should persist a node\'s share index, serve the same set after a node restart, and drop it when the share is removed', async () => {
    org = await openOrg(dataDir, true)
    const rnd = prng(11)
    const docs: string[] = []
    const theirs: string[] = []
    for (let i = 0; i < 20; i++) await randomWrite(org, rnd, docs, theirs)
    const share: ShareConfig = {
      id: 'public-a', topicSecret: 'served-index-test-topic-secret', database: 'orders', partners: [], direction: 'both',
      filter: SPECS[3].filter, enabled: true
    }
    const start = async (): Promise<MindooNode> => {
      const node = await createMindooNode({ tenant: (org as Org).tenant, dataDir: join(dataDir, 'node'), listen: ['/ip4/127.0.0.1/tcp/0'], dht: false, shares: [share] })
      await node.start()
      return node
    }
    const rebuilt = makeSet(org, SPECS[3], false)
    await rebuilt.start()
    let node = await start()
    expect(node.status('public-a')[0].servedSetSize).to.equal(rebuilt.size)
    await node.stop()
    const { kv } = org.tenant.openIndexState('orders', 'public-a')
    expect(await kv.get('cfg')).to.not.equal(undefined)
    node = await start()
    expect(node.status('public-a')[0].servedSetSize).to.equal(rebuilt.size)
    expect(node.status('public-a')[0].servedSetStart).to.include({ restored: true, reevaluated: 0 })
    await node.removeShare('public-a')
    expect(await kv.keys().all()).to.deep.equal([])
    await node.stop()
    rebuilt.stop()
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

  it('should restart to a full rebuild\'s set after the writer is killed at random moments', async () => {
    // the organisation, prepared here: the child opens it
    org = await openOrg(dataDir, true)
    await org.factory.close()
    org = undefined
    const rnd = prng(42)
    let restored = 0
    let writes = 0
    for (let round = 0; round < 5; round++) {
      const result = await runAndKill(dataDir, 100 + round, 300 + Math.floor(rnd() * 900))
      expect(result.signal, result.stderr).to.equal('SIGKILL')
      writes += result.writes
      org = await openOrg(dataDir, false)
      for (const spec of SPECS) {
        const set = makeSet(org, spec, true, CRASH_CHECKPOINT_EVERY)
        await set.start()
        if (set.startInfo?.restored === true) restored++
        await expectSameAsRebuild(org, spec, set, `after kill ${round}`)
        set.stop()
      }
      await org.factory.close()
      org = undefined
    }
    expect(writes).to.be.greaterThan(20)
    expect(restored).to.be.greaterThan(0)
  })
})
