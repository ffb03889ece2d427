/**
 * Two organisations as two real daemon processes, set up and driven only through the CLI and JSON-RPC:
 * a filtered share with a named key both hold, edits on both sides (concurrent ones too) that converge, the
 * document the filter keeps back never reaching the partner, Prometheus metrics after the sync, and a share
 * disabled over RPC that stops serving (the partner sees SHARE_DISABLED).
 */
import { expect } from 'chai'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { isDeepStrictEqual } from 'node:util'
import type { RoundResult, ShareStatus } from '../../src/p2p/index.js'
import { eventually, killAll, rpcError, runCli, startDaemon, testConfig, writeJson, type DaemonProcess } from '../utils/daemon-proc.js'
import { removeDir, tempDir } from '../utils/tmp.js'

interface DocView { docId: string, data: Record<string, unknown>, deleted: boolean, keyId: string, heads: string[] }
interface NodeInfo { peerId: string, addresses: string[], tenant: { tenantId: string, signingPublicKey: string } }

const KEY = 'orders-key'
const KEY_PW = 'orders-key-password-42'
const TOPIC = 'orders-topic-secret-0123456789'
const DB_A = 'orders'
const DB_B = 'orders-at-beta' // database names may differ per side

const partnerOf = (info: NodeInfo): Record<string, unknown> => ({ peerId: info.peerId, tenant: info.tenant, addresses: info.addresses })
const sorted = (a: string[]): string[] => [...a].sort()

describe('daemon: two organisations share a filtered database', function () {
  this.timeout(90_000)
  let dir: string
  let a: DaemonProcess
  let b: DaemonProcess
  let infoA: NodeInfo
  let infoB: NodeInfo
  /** `mindoodb --socket <B's socket> ...` */
  const cliB = async (...args: string[]): ReturnType<typeof runCli> => await runCli(['--socket', b.ready.rpcSocket, ...args])
  const cliA = async (...args: string[]): ReturnType<typeof runCli> => await runCli(['--socket', a.ready.rpcSocket, ...args])
  const getA = async (docId: string): Promise<DocView> => await a.client.call<DocView>('doc.get', { database: DB_A, docId })
  const getB = async (docId: string): Promise<DocView> => await b.client.call<DocView>('doc.get', { database: DB_B, docId })
  const orders: string[] = []
  let memo: string

  before(async () => {
    dir = await tempDir('mindoodb-daemon-sync-')
    const metrics = { metrics: { port: 0 } }
    ;[a, b] = await Promise.all([
      startDaemon(await writeJson(join(dir, 'alpha.json'), testConfig(dir, 'alpha', metrics))),
      startDaemon(await writeJson(join(dir, 'beta.json'), testConfig(dir, 'beta', metrics)))
    ])
    ;[infoA, infoB] = await Promise.all([a.client.call<NodeInfo>('node.info'), b.client.call<NodeInfo>('node.info')])
  })

  after(async () => {
    await Promise.all([a?.dispose(), b?.dispose()])
    await killAll()
    await removeDir(dir)
  })

  it('shares a named key and a filtered database, edits on both sides converge, the filtered-out document stays at A', async () => {
    // node.info is what partners put in their shares; it matches the ready line
    expect(infoA.peerId).to.equal(a.ready.peerId)
    expect(infoA.tenant.tenantId).to.equal('alpha')
    expect(infoB.addresses).to.deep.equal(b.ready.addresses)

    // the named key: A creates it (CLI), B imports the blob (CLI); passwords only ever come from files
    const pwFile = join(dir, 'key-password')
    await writeFile(pwFile, KEY_PW + '\n', { mode: 0o600 })
    const created = await cliA('--json', 'key', 'create', KEY, '--password-file', pwFile)
    expect(created.code, created.stderr).to.equal(0)
    const { blob } = JSON.parse(created.stdout) as { blob: string }
    expect(blob).to.be.a('string').and.not.include(KEY_PW)
    const blobFile = join(dir, 'key.blob')
    await writeFile(blobFile, blob)
    const imported = await cliB('key', 'import', KEY, '--blob-file', blobFile, '--password-file', pwFile)
    expect(imported.code, imported.stderr).to.equal(0)
    expect((await b.client.call<{ keys: Array<{ keyId: string }> }>('key.list')).keys.map((k) => k.keyId)).to.include(KEY)

    // A serves only orders (over RPC); B serves everything of its side (CLI, from a share file)
    const shareA = await a.client.call('share.add', {
      share: { id: 'orders', topicSecret: TOPIC, database: DB_A, partners: [partnerOf(infoB)], filter: { kind: 'selector', selector: { type: 'order' } } }
    })
    expect(shareA).to.include({ id: 'orders', enabled: true, origin: 'rpc' }).and.not.have.property('topicSecret')
    const shareFile = await writeJson(join(dir, 'share-b.json'), { id: 'orders', topicSecret: TOPIC, database: DB_B, partners: [partnerOf(infoA)] })
    const added = await cliB('--json', 'share', 'add', '--file', shareFile)
    expect(added.code, added.stderr).to.equal(0)
    expect(JSON.parse(added.stdout)).to.include({ id: 'orders', database: DB_B }).and.not.have.property('topicSecret')

    // documents on both sides, all under the shared key
    for (let i = 0; i < 3; i++) {
      orders.push((await a.client.call<DocView>('doc.create', { database: DB_A, keyId: KEY, data: { type: 'order', item: `bolt-${i}`, qty: 10 * (i + 1) } })).docId)
    }
    memo = (await a.client.call<DocView>('doc.create', { database: DB_A, keyId: KEY, data: { type: 'memo', text: 'margin is 40 %' } })).docId
    const fromB = await cliB('--json', 'doc', 'create', DB_B, '--key', KEY, '--data', JSON.stringify({ type: 'order', item: 'nut', qty: 5, by: 'beta' }))
    expect(fromB.code, fromB.stderr).to.equal(0)
    const orderB = (JSON.parse(fromB.stdout) as DocView).docId

    // live sync both ways, no sync call needed
    for (const docId of orders) {
      const doc = await eventually(async () => await getB(docId), `order ${docId} at B`)
      expect(doc.data).to.deep.equal((await getA(docId)).data)
    }
    const atA = await eventually(async () => await getA(orderB), 'B\'s order at A')
    expect(atA.data).to.deep.equal({ type: 'order', item: 'nut', qty: 5, by: 'beta' })

    // concurrent edits of the same document on both sides merge
    const target = orders[0]
    await Promise.all([
      a.client.call('doc.change', { database: DB_A, docId: target, patch: { status: 'confirmed', qty: 20 } }),
      b.client.call('doc.change', { database: DB_B, docId: target, patch: { note: 'rush', qty: 30 } }),
      a.client.call('doc.change', { database: DB_A, docId: orderB, patch: { price: 7 } }),
      b.client.call('doc.change', { database: DB_B, docId: orderB, patch: { by: null, confirmedBy: 'beta' } })
    ])
    for (const docId of [target, orderB]) {
      await eventually(async () => {
        const [x, y] = await Promise.all([getA(docId), getB(docId)])
        return isDeepStrictEqual(sorted(x.heads), sorted(y.heads)) && isDeepStrictEqual(x.data, y.data) && x.heads.length > 0 ? true : undefined
      }, `${docId} to converge`)
    }
    const merged = await getB(target)
    expect(merged.data).to.include({ type: 'order', item: 'bolt-0', status: 'confirmed', note: 'rush' })
    expect([20, 30]).to.include(merged.data.qty)
    expect((await getA(orderB)).data).to.deep.equal({ type: 'order', item: 'nut', qty: 5, price: 7, confirmedBy: 'beta' })

    // a round on demand through the CLI succeeds; the memo is still not at B
    const round = await cliB('sync', 'now', '--share', 'orders', '--wait')
    expect(round.code, round.stderr + round.stdout).to.equal(0)
    const missing = await rpcError(getB(memo))
    expect(missing.dataCode).to.equal('DOCUMENT_NOT_FOUND')
    const listed = await cliB('--json', 'doc', 'list', DB_B, '--all')
    expect(listed.code, listed.stderr).to.equal(0)
    const ids = (JSON.parse(listed.stdout) as { documents: DocView[] }).documents.map((d) => d.docId)
    expect(sorted(ids)).to.deep.equal(sorted([...orders, orderB]))
    expect(ids).to.not.include(memo)
    // B never even learned a hash of the memo: nothing was rejected, and B holds exactly the orders' changes
    // (served sets follow appends asynchronously: compare once both have settled)
    const [statusA, statusB] = await eventually(async () => {
      const [x] = (await a.client.call<{ shares: ShareStatus[] }>('sync.status', { share: 'orders' })).shares
      const [y] = (await b.client.call<{ shares: ShareStatus[] }>('sync.status', { share: 'orders' })).shares
      return x.servedSetSize === y.servedSetSize ? [x, y] : undefined
    }, 'B to store exactly what A serves')
    expect(statusB.totals.rejected).to.deep.equal({})
    expect(statusA.totals.rejected).to.deep.equal({})
    expect(statusA.partners[0]).to.include({ tenantId: 'beta', connected: true })

    // the human status output names the share and the partner
    const human = await cliB('status')
    expect(human.code, human.stderr).to.equal(0)
    expect(human.stdout).to.include('share orders').and.include('alpha')
  })

  it('publishes Prometheus metrics: per-share counters after the sync, and libp2p\'s own', async () => {
    expect(b.ready.metricsPort, 'the ready line carries metricsPort').to.be.a('number').and.greaterThan(0)
    const res = await fetch(`http://127.0.0.1:${b.ready.metricsPort}/metrics`)
    expect(res.status).to.equal(200)
    const text = await res.text()
    const received = /^mindoodb_share_changes_received_total\{share="orders"\} (\d+)$/m.exec(text)
    expect(received, 'mindoodb_share_changes_received_total for the share').to.not.equal(null)
    expect(Number(received?.[1])).to.be.greaterThan(0)
    expect(text).to.match(/^mindoodb_share_connected_partners\{share="orders"\} 1$/m)
    expect(text).to.match(/^mindoodb_share_enabled\{share="orders"\} 1$/m)
    expect(text, 'libp2p metrics').to.match(/^libp2p_\w+/m)
    const sent = /^mindoodb_share_changes_sent_total\{share="orders"\} (\d+)$/m.exec(await (await fetch(`http://127.0.0.1:${a.ready.metricsPort}/metrics`)).text())
    expect(Number(sent?.[1] ?? 0), 'A counts what it sent').to.be.greaterThan(0)
    expect((await fetch(`http://127.0.0.1:${b.ready.metricsPort}/other`)).status).to.equal(404)
  })

  it('a share disabled over RPC stops serving: new changes no longer reach B, which sees SHARE_DISABLED', async () => {
    const disabled = await a.client.call<{ enabled: boolean }>('share.disable', { id: 'orders' })
    expect(disabled.enabled).to.equal(false)
    const late = (await a.client.call<DocView>('doc.create', { database: DB_A, keyId: KEY, data: { type: 'order', item: 'late' } })).docId
    const changed = orders[1]
    await a.client.call('doc.change', { database: DB_A, docId: changed, patch: { qty: 999 } })

    const { results } = await b.client.call<{ results: RoundResult[] }>('sync.now', { share: 'orders', wait: true })
    expect(results).to.have.length(1)
    expect(results[0]).to.include({ peerId: infoA.peerId, ok: false })
    expect(results[0].error?.code).to.equal('SHARE_DISABLED')
    const [status] = (await b.client.call<{ shares: ShareStatus[] }>('sync.status', { share: 'orders' })).shares
    expect(status.partners[0].lastError?.code).to.equal('SHARE_DISABLED')
    // the CLI reports the failed round with exit code 1
    const round = await cliB('sync', 'now', '--share', 'orders', '--wait')
    expect(round.code).to.equal(1)
    expect(round.stdout + round.stderr).to.include('SHARE_DISABLED')

    // B keeps retrying on its own (interval 1 s); nothing new arrives meanwhile
    await new Promise((resolve) => setTimeout(resolve, 2_500))
    expect((await rpcError(getB(late))).dataCode).to.equal('DOCUMENT_NOT_FOUND')
    expect((await getB(changed)).data.qty).to.not.equal(999)

    // enabling it again resumes serving
    await a.client.call('share.enable', { id: 'orders' })
    await eventually(async () => await getB(late), 'the late order at B after share.enable')
    await eventually(async () => (await getB(changed)).data.qty === 999 ? true : undefined, 'the change at B after share.enable')
    expect(a.errors()).to.deep.equal([])
    expect(b.errors()).to.deep.equal([])
  })
})
