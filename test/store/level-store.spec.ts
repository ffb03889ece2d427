import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Level } from 'level'
import { LevelStore, type LevelStoreDatabase } from '../../src/store/level-store.js'
import { createAuthor, makeChange, makeChanges, TestVerifier, type TestAuthor } from '../utils/changes.js'
import { arrival, collect, runStoreTests, withCode } from './store-suite.js'

const tempDir = async (): Promise<string> => await mkdtemp(join(tmpdir(), 'mindoodb-store-'))
const removeDir = async (dir: string): Promise<void> => { await rm(dir, { recursive: true, force: true }) }

runStoreTests('LevelStore (own database)', async () => {
  const dir = await tempDir()
  const store = await LevelStore.open(dir)
  return { store, teardown: async () => { await store.close(); await removeDir(dir) } }
})

runStoreTests('LevelStore (sublevel)', async () => {
  const dir = await tempDir()
  const db = new Level<string, Uint8Array>(dir, { valueEncoding: 'view' })
  const store = new LevelStore({ db: db.sublevel<string, Uint8Array>('changes', { valueEncoding: 'view' }) })
  await store.open()
  return { store, teardown: async () => { await store.close(); await db.close(); await removeDir(dir) } }
})

describe('LevelStore', () => {
  let dir: string
  let author: TestAuthor

  beforeEach(async () => {
    dir = await tempDir()
    author = createAuthor()
  })

  afterEach(async () => {
    await removeDir(dir)
  })

  it('should write out what its write buffer holds on close, so the next open replays no log', async () => {
    const logBytes = async (): Promise<number> => {
      let bytes = 0
      for (const name of await readdir(dir)) if (name.endsWith('.log')) bytes += (await stat(join(dir, name))).size
      return bytes
    }
    const store = await LevelStore.open(dir)
    store.setVerifier(new TestVerifier([author]))
    const changes = makeChanges(author, 200, 4)
    await store.appendMany(changes)
    assert.ok(await logBytes() > 200 * 64)
    await store.close()
    assert.equal(await logBytes(), 0)
    const reopened = await LevelStore.open(dir)
    assert.deepStrictEqual(await reopened.getAllChangeHashes(), changes.map((c) => c.hash))
    await reopened.close()
  })

  it('should keep everything across a reopen and continue the seqs', async () => {
    const changes = makeChanges(author, 12, 3) // 12 > 9: seq keys must sort as numbers
    let store = await LevelStore.open(dir)
    await store.appendMany(changes.slice(0, 4))
    for (const c of changes.slice(4)) await store.append(c)
    await store.close()

    store = await LevelStore.open(dir, { verifier: new TestVerifier([author]) })
    try {
      assert.equal(store.getLastSeq(), 12)
      assert.equal(await store.count(), 12)
      assert.deepStrictEqual(await store.getAllChangeHashes(), changes.map((c) => c.hash))
      assert.deepStrictEqual(await store.getChanges([changes[11].hash, changes[0].hash]), [changes[11], changes[0]])
      assert.deepStrictEqual(await store.getAllChangeHashesForDoc('doc-1'), changes.filter((c) => c.docId === 'doc-1').map((c) => c.hash))
      assert.equal(await store.append(changes[3]), false)
      const next = makeChange(author)
      assert.equal(await store.append(next), true)
      assert.deepStrictEqual(await arrival(store), [...changes, next].map((c, i) => [i + 1, c.hash]))
    } finally {
      await store.close()
    }
  })

  it('should keep sublevel stores in one database apart', async () => {
    const db = new Level<string, Uint8Array>(dir, { valueEncoding: 'view' })
    const sub = (name: string): LevelStoreDatabase => db.sublevel<string, Uint8Array>(name, { valueEncoding: 'view' })
    const a = new LevelStore({ db: sub('a') })
    const b = new LevelStore({ db: sub('b') })
    const shared = makeChange(author, { docId: 'doc-1' })
    const onlyA = makeChanges(author, 3)
    const onlyB = makeChanges(author, 2)
    try {
      await a.appendMany(onlyA)
      await b.appendMany(onlyB)
      assert.equal(await a.append(shared), true)
      assert.equal(await b.append(shared), true)
      await db.put('c!' + onlyA[0].hash, new Uint8Array([1])) // the parent's own keys do not leak in either

      assert.deepStrictEqual(await a.getAllChangeHashes(), [...onlyA, shared].map((c) => c.hash))
      assert.deepStrictEqual(await b.getAllChangeHashes(), [...onlyB, shared].map((c) => c.hash))
      assert.deepStrictEqual([a.getLastSeq(), b.getLastSeq()], [4, 3])
      assert.equal(await b.has(onlyA[0].hash), false)
      await assert.rejects(b.getChanges([onlyA[0].hash]), withCode('CHANGE_NOT_FOUND'))
      assert.deepStrictEqual(await b.getAllChangeHashesForDoc('doc-1'), [shared.hash])
      await a.close()
      assert.equal(db.status, 'open') // not owned: left open
      assert.equal(await b.count(), 3)
      await b.close()
      await db.close()

      const reopened = new Level<string, Uint8Array>(dir, { valueEncoding: 'view' })
      const a2 = new LevelStore({ db: reopened.sublevel<string, Uint8Array>('a', { valueEncoding: 'view' }) })
      const b2 = new LevelStore({ db: reopened.sublevel<string, Uint8Array>('b', { valueEncoding: 'view' }) })
      await Promise.all([a2.open(), b2.open()])
      assert.deepStrictEqual([a2.getLastSeq(), b2.getLastSeq()], [4, 3])
      await reopened.close()
    } finally {
      await db.close()
    }
  })

  it('should work on a sublevel with default (utf8) encodings', async () => {
    const db = new Level(dir)
    const store = new LevelStore({ db: db.sublevel('changes') as unknown as LevelStoreDatabase })
    try {
      const changes = makeChanges(author, 3)
      await store.appendMany(changes)
      assert.deepStrictEqual(await store.getChanges(changes.map((c) => c.hash)), changes)
      assert.deepStrictEqual((await collect(store.iterateSince(1))).map((e) => e.seq), [2, 3])
    } finally {
      await store.close()
      await db.close()
    }
  })

  it('should recover the last seq on open and report it only once open', async () => {
    const db = new Level<string, Uint8Array>(dir, { valueEncoding: 'view' })
    try {
      await new LevelStore({ db }).appendMany(makeChanges(author, 3)) // opens on its first call
      const store = new LevelStore({ db })
      assert.throws(() => store.getLastSeq(), withCode('CLOSED'))
      await store.open()
      await store.open()
      assert.equal(store.getLastSeq(), 3)
    } finally {
      await db.close()
    }
  })

  it('should throw LockedError when another store holds the database', async () => {
    const store = await LevelStore.open(dir)
    try {
      await assert.rejects(LevelStore.open(dir), withCode('LOCKED'))
    } finally {
      await store.close()
    }
  })

  it('should use no seq for a write that fails', async () => {
    const db = new Level<string, Uint8Array>(dir, { valueEncoding: 'view' })
    const store = new LevelStore({ db })
    try {
      const [a, b, c] = makeChanges(author, 3)
      await store.append(a)
      const batch = db.batch.bind(db)
      db.batch = (async () => { throw new Error('disk full') }) as unknown as typeof db.batch
      await assert.rejects(store.append(b), /disk full/)
      await assert.rejects(store.appendMany([b, c]), /disk full/)
      db.batch = batch
      assert.equal(store.getLastSeq(), 1)
      assert.equal(await store.has(b.hash), false)
      assert.deepStrictEqual((await store.appendMany([b, c])).added, [b.hash, c.hash])
      assert.deepStrictEqual(await arrival(store), [a, b, c].map((x, i) => [i + 1, x.hash]))
    } finally {
      await store.close()
      await db.close()
    }
  })

  it('should be whole after the writing process is killed', async function () {
    this.timeout(30_000)
    const fixture = fileURLToPath(new URL('./fixtures/append-loop.js', import.meta.url))
    const child = spawn(process.execPath, [fixture, dir], { stdio: ['ignore', 'pipe', 'inherit'] })
    const [line] = await once(child.stdout, 'data') as [Buffer]
    assert.equal(line.toString().trim(), 'ready')
    await new Promise((resolve) => setTimeout(resolve, 100 + Math.floor(Math.random() * 200)))
    child.kill('SIGKILL')
    await once(child, 'exit')

    const store = await LevelStore.open(dir)
    try {
      const last = store.getLastSeq()
      assert.ok(last > 50)
      const walked = await collect(store.iterateSince(0))
      assert.deepStrictEqual(walked.map((e) => e.seq), Array.from({ length: last }, (_, i) => i + 1))
      const hashes = walked.map((e) => e.change.hash)
      assert.equal(new Set(hashes).size, last)
      assert.deepStrictEqual(await store.getAllChangeHashes(), hashes)
      const byDoc = await Promise.all([0, 1, 2, 3, 4].map(async (i) => await store.getAllChangeHashesForDoc(`doc-${i}`)))
      assert.deepStrictEqual(new Set(byDoc.flat()), new Set(hashes))
      assert.equal(byDoc.flat().length, last)
      assert.equal(await store.append(makeChange(author)), true)
      assert.equal(store.getLastSeq(), last + 1)
    } finally {
      await store.close()
    }
  })
})
