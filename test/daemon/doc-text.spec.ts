/**
 * Strings and text through the JSON-RPC API and the CLI, with two real daemon processes: `doc.create` and merge
 * patches store strings as scalar strings (Automerge ImmutableString) that read back as plain JSON, a selector
 * filter and the share preview see them as the strings they are, and collaborative text is edited with
 * `doc.text.splice` / `mindoodb doc text`, where two organisations' concurrent edits merge. Bad paths, indexes and
 * parameters get typed errors and write nothing.
 */
import { expect } from 'chai'
import { join } from 'node:path'
import { createTenantFactory, isScalarString } from '../../src/index.js'
import { eventually, killAll, rpcError, runCli, startDaemon, testConfig, writeJson, type DaemonProcess } from '../utils/daemon-proc.js'
import { removeDir, tempDir } from '../utils/tmp.js'

interface DocView { docId: string, data: Record<string, unknown>, heads: string[] }
interface NodeInfo { peerId: string, addresses: string[], tenant: unknown }

const TOPIC = 'doc-text-topic-secret-0123456789'
const KEY = 'notes-key'
const DB = 'notes'
const partnerOf = (info: NodeInfo): Record<string, unknown> => ({ peerId: info.peerId, tenant: info.tenant, addresses: info.addresses })

describe('daemon: strings as scalar strings, collaborative text through doc.text.splice', function () {
  this.timeout(120_000)
  let dir: string
  let a: DaemonProcess
  let b: DaemonProcess
  const cliA = async (...args: string[]): ReturnType<typeof runCli> => await runCli(['--socket', a.ready.rpcSocket, ...args])
  const getB = async (docId: string): Promise<DocView> => await b.client.call<DocView>('doc.get', { database: DB, docId })

  before(async () => {
    dir = await tempDir('mindoodb-doc-text-')
    ;[a, b] = await Promise.all(['alpha', 'beta'].map(async (n) => await startDaemon(await writeJson(join(dir, `${n}.json`), testConfig(dir, n)))))
    const [ia, ib] = await Promise.all([a.client.call<NodeInfo>('node.info'), b.client.call<NodeInfo>('node.info')])
    // a named key both hold, so B can read what A serves
    const { blob } = await a.client.call<{ blob: string }>('key.create', { keyId: KEY, password: 'notes-key-password-0123' })
    await b.client.call('key.import', { keyId: KEY, blob, password: 'notes-key-password-0123' })
    // A serves only notes (a selector on a string the RPC writes); B serves everything back
    await a.client.call('share.add', { share: { id: 'notes', topicSecret: TOPIC, database: DB, partners: [partnerOf(ib)], filter: { kind: 'selector', selector: { type: 'note' } } } })
    await b.client.call('share.add', { share: { id: 'notes', topicSecret: TOPIC, database: DB, partners: [partnerOf(ia)] } })
  })

  after(async () => {
    await Promise.all([a?.dispose(), b?.dispose()])
    await killAll()
    await removeDir(dir)
  })

  it('should read RPC and CLI strings back as plain JSON, serve them by a selector filter and preview them by type', async () => {
    const data = { type: 'note', title: 'Minutes', tags: ['board', 'q4'], meta: { owner: 'ann', lines: [{ s: 'x' }] }, n: 3 }
    const note = await a.client.call<DocView>('doc.create', { database: DB, keyId: KEY, data })
    expect(note.data).to.deep.equal(data)
    const memoOut = await cliA('--json', 'doc', 'create', DB, '--key', KEY, '--data', JSON.stringify({ type: 'memo', title: 'private' }))
    expect(memoOut.code, memoOut.stderr).to.equal(0)
    const memo = JSON.parse(memoOut.stdout) as DocView
    expect(memo.data).to.deep.equal({ type: 'memo', title: 'private' })
    const patched = await a.client.call<DocView>('doc.change', { database: DB, docId: note.docId, patch: { title: 'Minutes (final)', meta: { owner: 'bob' } } })
    expect(patched.data).to.deep.include({ title: 'Minutes (final)', meta: { owner: 'bob', lines: [{ s: 'x' }] } })
    const shown = await cliA('doc', 'get', DB, note.docId)
    expect(shown.stdout).to.include('"title": "Minutes (final)"')

    // the selector { type: 'note' } serves the note and not the memo
    const atB = await eventually(async () => {
      const d = await getB(note.docId).catch(() => undefined)
      return d?.data.title === 'Minutes (final)' ? d : undefined
    }, 'the note at B')
    expect(atB.data).to.deep.equal(patched.data)
    const round = await a.client.call<{ results: Array<{ ok: boolean }> }>('sync.now', { share: 'notes', wait: true })
    expect(round.results.every((r) => r.ok)).to.equal(true)
    expect((await b.client.call<{ documents: DocView[] }>('doc.list', { database: DB })).documents.map((d) => d.docId)).to.deep.equal([note.docId])

    // the preview of the share, and of filters not added, count them by their type
    const preview = await a.client.call<{ served: { documents: number, byType: Record<string, unknown> }, refused: { documents: number }, notServed: { documents: number } }>('share.preview', { id: 'notes' })
    expect(preview.served.documents).to.equal(1)
    expect(Object.keys(preview.served.byType)).to.deep.equal(['note'])
    expect(preview.refused.documents).to.equal(0)
    expect(preview.notServed.documents).to.equal(1)
    const byType = await a.client.call<{ served: { documents: number, byType: Record<string, unknown> } }>('share.preview', { share: { database: DB, filter: { kind: 'type', types: ['memo'] } } })
    expect(byType.served.documents).to.equal(1)
    expect(Object.keys(byType.served.byType)).to.deep.equal(['memo'])
  })

  it('should edit collaborative text with mindoodb doc text and doc.text.splice, merging two organisations\' concurrent edits', async () => {
    const doc = await a.client.call<DocView>('doc.create', { database: DB, keyId: KEY, data: { type: 'note' } })
    const made = await cliA('--json', 'doc', 'text', DB, doc.docId, 'body', '--insert', 'Hello world')
    expect(made.code, made.stderr).to.equal(0)
    expect((JSON.parse(made.stdout) as DocView).data).to.deep.equal({ type: 'note', body: 'Hello world' })
    await eventually(async () => (await getB(doc.docId).catch(() => undefined))?.data.body === 'Hello world' ? true : undefined, 'the text at B')
    // both edit the same text while apart (the share disabled on both sides); each edit lands in the other's text
    await Promise.all([a, b].map(async (x) => await x.client.call('share.disable', { id: 'notes' })))
    await a.client.call('doc.text.splice', { database: DB, docId: doc.docId, path: ['body'], index: 0, insert: 'A: ' })
    await b.client.call('doc.text.splice', { database: DB, docId: doc.docId, path: ['body'], index: 11, insert: ' (B)' })
    expect((await getB(doc.docId)).data.body).to.equal('Hello world (B)')
    await Promise.all([a, b].map(async (x) => await x.client.call('share.enable', { id: 'notes' })))
    const merged = 'A: Hello world (B)'
    await eventually(async () => (await a.client.call<DocView>('doc.get', { database: DB, docId: doc.docId })).data.body === merged ? true : undefined, 'the merged text at A')
    await eventually(async () => (await getB(doc.docId)).data.body === merged ? true : undefined, 'the merged text at B')
    // delete and insert, a path with a list index (dotted on the CLI), a JSON path
    const edited = await a.client.call<DocView>('doc.text.splice', { database: DB, docId: doc.docId, path: ['body'], index: 9, deleteCount: 5, insert: 'there' })
    expect(edited.data.body).to.equal('A: Hello there (B)')
    await a.client.call('doc.change', { database: DB, docId: doc.docId, patch: { items: [{ label: 'one' }] } })
    const viaDots = await cliA('--json', 'doc', 'text', DB, doc.docId, 'items.0.text', '--insert', '😀 one')
    expect(viaDots.code, viaDots.stderr).to.equal(0)
    const viaJson = await cliA('--json', 'doc', 'text', DB, doc.docId, '["items",0,"text"]', '--at', '2', '--delete', '1', '--insert', 'the ')
    expect(viaJson.code, viaJson.stderr).to.equal(0)
    expect((JSON.parse(viaJson.stdout) as DocView).data.items).to.deep.equal([{ label: 'one', text: '😀the one' }])
  })

  it('should refuse a path to a non-text value, bad indexes and bad parameters with typed errors, writing nothing', async () => {
    const doc = await a.client.call<DocView>('doc.create', { database: DB, data: { type: 'note', n: 1, list: ['s'] } })
    await a.client.call('doc.text.splice', { database: DB, docId: doc.docId, path: ['t'], index: 0, insert: 'ab😀' })
    const before = await a.client.call<DocView>('doc.get', { database: DB, docId: doc.docId })
    const splice = async (params: Record<string, unknown>): ReturnType<typeof rpcError> =>
      await rpcError(a.client.call('doc.text.splice', { database: DB, docId: doc.docId, ...params }))
    for (const path of [['type'], ['n'], ['list'], ['list', 0], ['missing', 'x'], ['list', 'x']]) {
      const err = await splice({ path, index: 0, insert: 'x' })
      expect(err.rpcCode, JSON.stringify(path)).to.equal(-32602)
      expect(err.dataCode, JSON.stringify(path)).to.equal('NOT_TEXT')
    }
    for (const [index, deleteCount] of [[6, 0], [0, 6], [3, 0], [2, 1]]) {
      const err = await splice({ path: ['t'], index, deleteCount })
      expect(err.dataCode, `${index} ${deleteCount}`).to.equal('INVALID_ARGUMENT')
    }
    const bad: Array<[Record<string, unknown>, string]> = [
      [{ path: [], index: 0 }, 'params.path'],
      [{ path: ['t'], index: -1 }, 'params.index'],
      [{ path: ['t'] }, 'params.index'],
      [{ path: ['t'], index: 0, deleteCount: 1.5 }, 'params.deleteCount'],
      [{ path: ['t'], index: 0, insert: 5 }, 'params.insert'],
      [{ path: [true], index: 0 }, 'params.path'],
      [{ path: ['t'], index: 0, extra: 1 }, 'params.extra']
    ]
    for (const [params, named] of bad) {
      const err = await splice(params)
      expect(err.rpcCode, JSON.stringify(params)).to.equal(-32602)
      expect(err.message, JSON.stringify(params)).to.include(named)
    }
    const missing = await rpcError(a.client.call('doc.text.splice', { database: 'elsewhere', docId: doc.docId, path: ['t'], index: 0, insert: 'x' }))
    expect(missing.dataCode).to.equal('DOCUMENT_NOT_FOUND')
    // the CLI: exit 2 with the code, and a path it cannot parse
    const cli = await cliA('doc', 'text', DB, doc.docId, 'type', '--insert', 'x')
    expect(cli.code).to.equal(2)
    expect(cli.stderr).to.include('NOT_TEXT')
    expect((await cliA('doc', 'text', DB, doc.docId, 'a..b', '--insert', 'x')).code).to.equal(2)
    expect((await cliA('doc', 'text', DB, doc.docId, 't', '--at', '-1')).code).to.equal(2)
    // nothing was written
    const after = await a.client.call<DocView>('doc.get', { database: DB, docId: doc.docId })
    expect(after.heads).to.deep.equal(before.heads)
    expect(after.data).to.deep.equal({ type: 'note', n: 1, list: ['s'], t: 'ab😀' })
  })

  it('should keep RPC strings as scalar strings in the store, and text as text', async () => {
    const doc = await a.client.call<DocView>('doc.create', { database: DB, data: { type: 'note', tags: ['a'] } })
    await a.client.call('doc.text.splice', { database: DB, docId: doc.docId, path: ['body'], index: 0, insert: 'text' })
    await a.dispose()
    const factory = await createTenantFactory({ dataDir: join(dir, 'alpha') })
    try {
      const data = (await (await (await factory.openTenant('alpha')).openDB(DB)).getDocument(doc.docId)).getData()
      expect(isScalarString(data.type)).to.equal(true)
      expect(isScalarString(data.tags[0])).to.equal(true)
      expect(data.body).to.equal('text')
    } finally {
      await factory.close()
    }
  })
})
