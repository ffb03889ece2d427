/**
 * The persisted seen sets of receive-only shares (src/sync/seen-index.ts): what a partner revealed survives a
 * reopen whether it was journaled or checkpointed, is sealed on disk, an unreadable one is dropped (the partner
 * then sends its ids again), and dropping a share's seen sets leaves every other index alone.
 */
import { expect } from 'chai'
import { randomBytes } from 'node:crypto'
import { silentLogger } from '../../src/util/logger.js'
import type { ReconcileItem } from '../../src/sync/reconcile/index.js'
import { SeenSet, seenIndexName, seenIndexPrefix } from '../../src/sync/seen-index.js'
import { CHECKPOINT_MIN_WORK } from '../../src/sync/served-index.js'
import { openOrg, type Org } from '../utils/served-org.js'
import { removeDir, tempDir } from '../utils/tmp.js'

const items = (n: number, from = 0): ReconcileItem[] =>
  Array.from({ length: n }, (_, i) => ({ timestamp: 1_700_000_000_000 + from + i, id: randomBytes(32).toString('hex') }))

const sorted = (list: Iterable<ReconcileItem>): string[] => [...list].map((i) => `${i.timestamp}:${i.id}`).sort()

describe('sync: seen sets of receive-only shares', () => {
  let dataDir: string
  let org: Org | undefined

  beforeEach(async () => {
    dataDir = await tempDir('seen-index')
    org = await openOrg(dataDir, true)
  })

  afterEach(async () => {
    await org?.factory.close()
    org = undefined
    await removeDir(dataDir)
  })

  const open = async (peer: string): Promise<SeenSet> =>
    await SeenSet.open((org as Org).tenant.openIndexState('orders', seenIndexName('share-1', peer)), silentLogger)

  /** Adds `list` to the set as a session does: into the set, then persisted. */
  const add = async (seen: SeenSet, list: ReconcileItem[]): Promise<void> => {
    await seen.persist(list.filter((item) => seen.set.insert(item.timestamp, item.id)))
  }

  it('should reopen with what was added, journaled or checkpointed, and keep it sealed', async () => {
    const all: ReconcileItem[] = []
    let seen = await open('peer-a')
    for (const n of [5, 40, 3]) {
      const list = items(n, all.length)
      all.push(...list)
      await add(seen, list)
    }
    // small additions are journal records: no checkpoint yet
    const { kv } = (org as Org).tenant.openIndexState('orders', seenIndexName('share-1', 'peer-a'))
    expect(await kv.get('ck')).to.equal(undefined)
    seen = await open('peer-a')
    expect(sorted(seen.set.items())).to.deep.equal(sorted(all))

    // a cold sync's worth is a checkpoint, which takes the journal in
    const big = items(CHECKPOINT_MIN_WORK + 10, all.length)
    all.push(...big)
    await add(seen, big)
    expect(await kv.get('ck')).to.not.equal(undefined)
    expect((await kv.keys().all()).filter((k) => k.startsWith('j!'))).to.deep.equal([])
    const more = items(7, all.length)
    all.push(...more)
    await add(seen, more)
    seen = await open('peer-a')
    expect(seen.set.size).to.equal(all.length)
    expect(sorted(seen.set.items())).to.deep.equal(sorted(all))

    for (const [key, value] of await kv.iterator({}).all()) {
      if (key === 'cfg') continue
      const bytes = Buffer.from(value)
      for (const { id } of [...all.slice(0, 20), ...all.slice(-20)]) {
        expect(bytes.includes(id), `${key} holds a hash as hex`).to.equal(false)
        expect(bytes.includes(Buffer.from(id, 'hex')), `${key} holds a hash`).to.equal(false)
      }
    }
  })

  it('should drop an unreadable set and start empty, and keep partners apart', async () => {
    await add(await open('peer-a'), items(10))
    const other = items(4)
    await add(await open('peer-b'), other)
    const { kv } = (org as Org).tenant.openIndexState('orders', seenIndexName('share-1', 'peer-a'))
    const [journal] = (await kv.keys().all()).filter((k) => k.startsWith('j!'))
    await kv.put(journal, new Uint8Array([1, 2, 3]))
    const damaged = await open('peer-a')
    expect(damaged.set.size).to.equal(0)
    await add(damaged, items(2))
    expect((await open('peer-a')).set.size).to.equal(2)
    expect(sorted((await open('peer-b')).set.items())).to.deep.equal(sorted(other))
  })

  it('should drop every partner\'s set of a share and nothing else', async () => {
    const tenant = (org as Org).tenant
    await add(await open('peer-a'), items(3))
    await add(await open('peer-b'), items(3))
    const otherShare = await SeenSet.open(tenant.openIndexState('orders', seenIndexName('share-10', 'peer-a')), silentLogger)
    await add(otherShare, items(3))
    const served = tenant.openIndexState('orders', 'share-1')
    await served.kv.put('cfg', new Uint8Array([1]))
    await tenant.dropIndexStates('orders', seenIndexPrefix('share-1'))
    expect((await open('peer-a')).set.size).to.equal(0)
    expect((await open('peer-b')).set.size).to.equal(0)
    expect((await SeenSet.open(tenant.openIndexState('orders', seenIndexName('share-10', 'peer-a')), silentLogger)).set.size).to.equal(3)
    expect(await served.kv.get('cfg')).to.deep.equal(new Uint8Array([1]))
  })
})
