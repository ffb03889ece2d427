/**
 * `share.preview` / `mindoodb share preview` against real daemons: a selector share from a file (not added) and
 * an existing share by id; a document this node stores but cannot read (a partner's, under a key it lacks) is
 * counted as refused by the selector and served as ciphertext by an `all` share. Nothing is started, announced
 * or created by a preview.
 */
import { expect } from 'chai'
import { join } from 'node:path'
import type { ShareStatus } from '../../src/p2p/index.js'
import { eventually, killAll, rpcError, runCli, startDaemon, testConfig, writeJson, type DaemonProcess } from '../utils/daemon-proc.js'
import { removeDir, tempDir } from '../utils/tmp.js'

interface NodeInfo { peerId: string, addresses: string[], tenant: { tenantId: string, signingPublicKey: string } }
interface Count { documents: number, changes: number }
interface Preview {
  share: string
  database: string
  filter: string
  databaseExists: boolean
  total: Count
  served: Count & { byType: Record<string, Count>, byKey: Record<string, Count>, sample: string[] }
  refused: Count & { byKey: Record<string, Count>, missingKey: number, sample: string[] }
  notServed: Count
}

const TOPIC = 'preview-topic-secret-0123456789abc'
const partnerOf = (info: NodeInfo): Record<string, unknown> => ({ peerId: info.peerId, tenant: info.tenant, addresses: info.addresses })

describe('daemon: share preview', function () {
  this.timeout(90_000)
  let dir: string
  let a: DaemonProcess
  let b: DaemonProcess
  const orders: string[] = []
  let secretDoc: string

  before(async () => {
    dir = await tempDir('mindoodb-preview-')
    ;[a, b] = await Promise.all([
      startDaemon(await writeJson(join(dir, 'alpha.json'), testConfig(dir, 'alpha'))),
      startDaemon(await writeJson(join(dir, 'beta.json'), testConfig(dir, 'beta')))
    ])
    const [infoA, infoB] = await Promise.all([a.client.call<NodeInfo>('node.info'), b.client.call<NodeInfo>('node.info')])
    await a.client.call('share.add', { share: { id: 'everything', topicSecret: TOPIC, database: 'main', partners: [partnerOf(infoB)] } })
    await b.client.call('share.add', { share: { id: 'everything', topicSecret: TOPIC, database: 'main', partners: [partnerOf(infoA)] } })
    // B writes an order under a key only B holds: A stores (and relays) it, but cannot read it
    await b.client.call('key.create', { keyId: 'beta-only', password: 'beta-only-password-0123' })
    secretDoc = (await b.client.call<{ docId: string }>('doc.create', { database: 'main', keyId: 'beta-only', data: { type: 'order', secret: true } })).docId
    for (let i = 0; i < 3; i++) orders.push((await a.client.call<{ docId: string }>('doc.create', { database: 'main', data: { type: 'order', i } })).docId)
    for (let i = 0; i < 2; i++) await a.client.call('doc.create', { database: 'main', data: { type: 'memo', i } })
    await eventually(async () => {
      const { shares } = await a.client.call<{ shares: ShareStatus[] }>('sync.status', { share: 'everything' })
      return shares[0].totals.changesReceived === 2 ? true : undefined
    }, 'A to store B\'s order')
  })

  after(async () => {
    await Promise.all([a?.dispose(), b?.dispose()])
    await killAll()
    await removeDir(dir)
  })

  it('should preview a selector share from a file: served by type and key, the unreadable document refused, nothing started', async () => {
    const sharesBefore = await a.client.call<{ shares: unknown[] }>('share.list')
    const statusBefore = await a.client.call<{ shares: ShareStatus[] }>('sync.status')
    const file = await writeJson(join(dir, 'orders-share.json'), {
      id: 'orders-only', database: 'main', partners: [], filter: { kind: 'selector', selector: { type: 'order' } }
    })
    const out = await runCli(['--socket', a.ready.rpcSocket, '--json', 'share', 'preview', '--file', file])
    expect(out.code, out.stderr).to.equal(0)
    const p = JSON.parse(out.stdout) as Preview
    expect(p).to.include({ share: 'orders-only', database: 'main', filter: 'selector', databaseExists: true })
    // every doc.create with data is two changes
    expect(p.total).to.deep.equal({ documents: 6, changes: 12 })
    expect(p.served).to.include({ documents: 3, changes: 6 })
    expect(p.served.byType).to.deep.equal({ order: { documents: 3, changes: 6 } })
    expect(p.served.byKey).to.deep.equal({ 'tenant:alpha': { documents: 3, changes: 6 } })
    expect([...p.served.sample].sort()).to.deep.equal([...orders].sort())
    expect(p.refused).to.deep.include({ documents: 1, changes: 2, missingKey: 1, sample: [secretDoc] })
    expect(p.refused.byKey).to.deep.equal({ 'beta-only': { documents: 1, changes: 2 } })
    expect(p.notServed).to.deep.equal({ documents: 2, changes: 4 })

    // people's output says the same
    const human = await runCli(['--socket', a.ready.rpcSocket, 'share', 'preview', '--file', file, '--sample', '1'])
    expect(human.code, human.stderr).to.equal(0)
    expect(human.stdout).to.include('would serve 3 documents, 6 changes')
    expect(human.stdout).to.include('would refuse (cannot read here, fails closed): 1 document, 2 changes')
    expect(human.stdout).to.include('beta-only: 1 document, 2 changes')

    // nothing was added or started, no round ran
    expect(await a.client.call('share.list')).to.deep.equal(sharesBefore)
    const statusAfter = await a.client.call<{ shares: ShareStatus[] }>('sync.status')
    expect(statusAfter.shares.map((s) => s.id)).to.deep.equal(statusBefore.shares.map((s) => s.id))
  })

  it('should preview an existing share by id: an `all` share serves the unreadable document as ciphertext', async () => {
    const out = await runCli(['--socket', a.ready.rpcSocket, '--json', 'share', 'preview', 'everything'])
    expect(out.code, out.stderr).to.equal(0)
    const p = JSON.parse(out.stdout) as Preview
    expect(p).to.include({ share: 'everything', filter: 'all' })
    expect(p.served).to.include({ documents: 6, changes: 12 })
    expect(p.served.byType).to.deep.equal({
      order: { documents: 3, changes: 6 }, memo: { documents: 2, changes: 4 }, '(unreadable)': { documents: 1, changes: 2 }
    })
    expect(p.served.byKey['beta-only']).to.deep.equal({ documents: 1, changes: 2 })
    expect(p.refused.documents).to.equal(0)
    // the sample is bounded
    const one = await a.client.call<Preview>('share.preview', { id: 'everything', sample: 2 })
    expect(one.served.sample).to.have.length(2)
  })

  it('should not create a database it previews, and refuse unknown shares and bad filters with typed errors', async () => {
    const p = await a.client.call<Preview>('share.preview', { share: { id: 'x', database: 'nowhere', partners: [], filter: { kind: 'all' } } })
    expect(p.databaseExists).to.equal(false)
    expect(p.served.documents).to.equal(0)
    expect((await a.client.call<{ databases: string[] }>('db.list')).databases).to.not.include('nowhere')

    const unknown = await runCli(['--socket', a.ready.rpcSocket, 'share', 'preview', 'no-such-share'])
    expect(unknown.code).to.not.equal(0)
    const bad = await rpcError(a.client.call('share.preview', { share: { database: 'main', filter: { kind: 'selector', selector: { type: { $regex: 'x' } } } } }))
    expect(bad.rpcCode).to.equal(-32602)
    expect(bad.message).to.include('params.share.filter')
    const neither = await rpcError(a.client.call('share.preview', {}))
    expect(neither.rpcCode).to.equal(-32602)
    const both = await runCli(['--socket', a.ready.rpcSocket, 'share', 'preview', 'everything', '--file', join(dir, 'orders-share.json')])
    expect(both.code).to.equal(2)
  })
})
