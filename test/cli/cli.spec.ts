import { stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { expect } from 'chai'
import type { Command } from 'commander'
import { buildProgram, EXIT, runCli, type CliClient, type CliContext, type ClientOptions, type GlobalOptions } from '../../src/cli/index.js'
import { formatProgress, progressOf, syncAndWait } from '../../src/cli/commands/sync.js'
import { cleanJson, cleanText } from '../../src/cli/sanitize.js'
import { createTenantFactory } from '../../src/core/index.js'
import { loadConfig } from '../../src/daemon/config.js'
import { RpcError, RpcUnavailableError } from '../../src/daemon/rpc-client.js'
import { loadOrCreatePeerKey } from '../../src/p2p/identity.js'
import type { ShareStatus } from '../../src/p2p/index.js'
import { removeDir, tempDir } from '../utils/tmp.js'

type Answer = (params: Record<string, unknown>) => unknown

/** A fake daemon: records every call and answers from a table (an answer may throw, like the daemon). */
class StubClient implements CliClient {
  readonly calls: Array<{ method: string, params: Record<string, unknown> }> = []

  constructor (readonly answers: Record<string, Answer>) {}

  async call<T = any> (method: string, params: Record<string, unknown> = {}): Promise<T> { // eslint-disable-line @typescript-eslint/no-explicit-any
    this.calls.push({ method, params })
    const answer = this.answers[method]
    if (answer === undefined) throw new Error(`stub: no answer for ${method}`)
    return await (answer(params) as Promise<T>)
  }

  methods (): string[] {
    return this.calls.map((c) => c.method)
  }
}

interface Harness {
  client: StubClient
  /** What went to stdout: printed results and commander's help. */
  out: string[]
  /** Notes and progress (stderr). */
  notes: string[]
  /** Errors and usage messages (stderr). */
  err: string[]
  clientOptions: Array<ClientOptions | undefined>
  /** What a progress bar drew (the stream claims to be a terminal when `isTTY`). */
  drawn: () => string
  run: (...args: string[]) => Promise<number>
}

function harness (answers: Record<string, Answer> = {}, options: { stdin?: string, isTTY?: boolean } = {}): Harness {
  const progressStream = Object.assign(new PassThrough(), { isTTY: options.isTTY === true, columns: 160 })
  const drawn: Buffer[] = []
  progressStream.on('data', (chunk: Buffer) => { drawn.push(chunk) })
  const h: Harness = {
    client: new StubClient(answers),
    out: [],
    notes: [],
    err: [],
    clientOptions: [],
    drawn: () => Buffer.concat(drawn).toString('utf8'),
    run: async (...args) => await runCli(args, {
      from: 'user',
      context: (g: GlobalOptions): CliContext => ({
        json: g.json === true,
        isTTY: options.isTTY === true,
        progressStream,
        client: async (o) => {
          h.clientOptions.push(o)
          return h.client
        },
        print: (value, human) => { h.out.push(g.json === true ? JSON.stringify(value) : human(value)) },
        note: (text) => { h.notes.push(text) },
        readStdin: async () => options.stdin ?? ''
      }),
      output: { writeOut: (s) => { h.out.push(s) }, writeErr: (s) => { h.err.push(s) } }
    })
  }
  return h
}

const PEER_B = '12D3KooWPc3CauzUzJQ6kHvKU9C4qm1dozN9B5RseyyPoYRk553s'
const SIGNING_B = 'SzEadV_zrJe8G-gK3pTzXwPG_D--kipYSNaFX_wKIuA'

const doc = (docId: string, data: Record<string, unknown> = {}): Record<string, unknown> =>
  ({ docId, data, deleted: false, keyId: 'tenant:acme', heads: ['h'], createdAt: 1_700_000_000_000, modifiedAt: 1_700_000_001_000 })

const share = { id: 'orders', database: 'orders', partners: [{ peerId: PEER_B, tenant: { tenantId: 'bob', signingPublicKey: SIGNING_B } }], direction: 'both', filter: { kind: 'type', types: ['order'] }, enabled: true, origin: 'rpc' }

function shareStatus (t: { changesReceived?: number, changesSent?: number, bytesReceived?: number, bytesSent?: number }, lag?: number): ShareStatus {
  return {
    id: 'orders',
    database: 'orders',
    enabled: true,
    direction: 'both',
    filter: 'all',
    servedSetSize: 10,
    partners: [{ peerId: PEER_B, tenantId: 'bob', connected: true, dial: true, reachable: true, rounds: 1, roundsFailed: 0, sessionsFailed: 0, failures: 0, lag }],
    totals: { changesReceived: 0, changesSent: 0, bytesReceived: 0, bytesSent: 0, reconcileBytes: 0, rejected: {}, rounds: 0, roundsFailed: 0, errors: {}, ...t },
    recentRejections: []
  }
}

const roundOk = { peerId: PEER_B, ok: true, result: { received: 3, sent: 2, rejected: {}, bytesSent: 200, bytesReceived: 300, reconcileMessages: 2, peerLacked: 2 } }
const roundFailed = { peerId: PEER_B, ok: false, error: { code: 'DIAL_FAILED', message: 'no route' } }

describe('cli', () => {
  let dir: string

  beforeEach(async () => {
    dir = await tempDir('mindoodb-cli-')
  })

  afterEach(async () => {
    await removeDir(dir)
  })

  describe('help', () => {
    /** Every command path: ['doc'], ['doc', 'get'], ... */
    function paths (cmd: Command, prefix: string[] = []): string[][] {
      return cmd.commands.flatMap((c) => [[...prefix, c.name()], ...paths(c, [...prefix, c.name()])])
    }

    it('should print help with exit code 0 for every command', async () => {
      const all = paths(buildProgram())
      expect(all.map((p) => p.join(' '))).to.include.members([
        'init', 'daemon', 'status', 'doc create', 'doc get', 'doc change', 'doc text', 'doc delete', 'doc list',
        'key create', 'key import', 'key export', 'key rotate', 'key list', 'share add', 'share update',
        'share enable', 'share disable', 'share remove', 'share list', 'share show', 'share secret', 'peers', 'partners',
        'partner revoke', 'sync now', 'rpc', 'backup', 'restore', 'share preview', 'events', 'audit verify', 'audit show'
      ])
      for (const path of [[], ...all]) {
        const h = harness()
        expect(await h.run(...path, '--help'), path.join(' ')).to.equal(EXIT.OK)
        const text = h.out.join('')
        expect(text, path.join(' ')).to.include(`Usage: mindoodb${path.length === 0 ? '' : ' ' + path.join(' ')}`)
        expect(h.client.calls).to.have.length(0)
      }
    })

    it('should say passwords come from files, never arguments', async () => {
      const h = harness()
      await h.run('key', 'create', '--help')
      expect(h.out.join('')).to.match(/never taken as arguments/)
    })

    it('should exit 2 on an unknown command or a missing argument', async () => {
      const h = harness()
      expect(await h.run('nosuch')).to.equal(EXIT.USAGE)
      expect(await h.run('doc', 'get', 'orders')).to.equal(EXIT.USAGE)
      expect(h.err.join('')).to.include('missing required argument')
      expect(h.client.calls).to.have.length(0)
    })
  })

  describe('doc', () => {
    it('should create a document with data and a key', async () => {
      const h = harness({ 'doc.create': (p) => doc('d-1', p.data as Record<string, unknown>) })
      expect(await h.run('doc', 'create', 'orders', '--data', '{"type":"order","n":1}', '--key', 'k1')).to.equal(EXIT.OK)
      expect(h.client.calls).to.deep.equal([{ method: 'doc.create', params: { database: 'orders', data: { type: 'order', n: 1 }, keyId: 'k1' } }])
      expect(h.out[0]).to.match(/^d-1 {2}key tenant:acme/)
      expect(h.out[0]).to.include('"type": "order"')
    })

    it('should print the raw result with --json, before or after the command', async () => {
      for (const args of [['--json', 'doc', 'get', 'orders', 'd-1'], ['doc', 'get', 'orders', 'd-1', '--json']]) {
        const h = harness({ 'doc.get': () => doc('d-1', { a: 1 }) })
        expect(await h.run(...args)).to.equal(EXIT.OK)
        expect(h.client.calls).to.deep.equal([{ method: 'doc.get', params: { database: 'orders', docId: 'd-1' } }])
        expect(JSON.parse(h.out[0])).to.deep.equal(doc('d-1', { a: 1 }))
      }
    })

    it('should change with a merge patch and delete', async () => {
      const h = harness({ 'doc.change': () => doc('d-1', { b: 2 }), 'doc.delete': (p) => ({ docId: p.docId, deleted: true }) })
      expect(await h.run('doc', 'change', 'orders', 'd-1', '--patch', '{"b":2,"a":null}')).to.equal(EXIT.OK)
      expect(await h.run('doc', 'delete', 'orders', 'd-1')).to.equal(EXIT.OK)
      expect(h.client.calls).to.deep.equal([
        { method: 'doc.change', params: { database: 'orders', docId: 'd-1', patch: { b: 2, a: null } } },
        { method: 'doc.delete', params: { database: 'orders', docId: 'd-1' } }
      ])
      expect(h.out[1]).to.equal('deleted d-1')
    })

    it('should take ids that begin with a dash as ids, not options, wherever they stand', async () => {
      // base64url ids begin with '-' for one tenant in 64: '-s…' and '-p…' would read as -s (--socket) and -p
      // (--patch) with a value, '--…' as an unknown long option
      const ids = ['-s' + 'A'.repeat(52), '-p' + 'b'.repeat(52), '--' + 'x_'.repeat(26)]
      for (const id of ids) {
        const h = harness({ 'doc.get': (p) => doc(p.docId as string), 'doc.change': (p) => doc(p.docId as string), 'doc.text.splice': (p) => doc(p.docId as string), 'doc.delete': (p) => ({ docId: p.docId, deleted: true }) })
        expect(await h.run('doc', 'get', 'orders', id)).to.equal(EXIT.OK)
        expect(await h.run('doc', 'change', 'orders', id, '--patch', '{"a":1}')).to.equal(EXIT.OK)
        expect(await h.run('doc', 'text', 'orders', id, 'notes', '--insert', id)).to.equal(EXIT.OK)
        expect(await h.run('--json', 'doc', 'delete', 'orders', id)).to.equal(EXIT.OK)
        expect(h.err).to.deep.equal([])
        expect(h.client.calls).to.deep.equal([
          { method: 'doc.get', params: { database: 'orders', docId: id } },
          { method: 'doc.change', params: { database: 'orders', docId: id, patch: { a: 1 } } },
          { method: 'doc.text.splice', params: { database: 'orders', docId: id, path: ['notes'], index: 0, insert: id } },
          { method: 'doc.delete', params: { database: 'orders', docId: id } }
        ])
        expect(h.out[0].startsWith(id)).to.equal(true)
      }
      // a signing key (43 characters) too; a word of another length that begins with '-' is still an option
      const key = '-' + 'K'.repeat(42)
      const h = harness({ 'partner.revoke': () => ({ revoked: [], shares: [], rotated: [] }) })
      await writeFile(join(dir, 'pw'), 'rotation-password\n')
      expect(await h.run('partner', 'revoke', key, '--password-file', join(dir, 'pw'))).to.equal(EXIT.OK)
      expect(h.client.calls).to.deep.equal([{ method: 'partner.revoke', params: { partner: key, password: 'rotation-password' } }])
      expect(await h.run('doc', 'get', 'orders', '-' + 'A'.repeat(40))).to.equal(EXIT.USAGE)
      expect(h.err.join('')).to.include('unknown option')
    })

    it('should refuse malformed JSON without calling the daemon', async () => {
      const h = harness()
      expect(await h.run('doc', 'create', 'orders', '--data', '{nope')).to.equal(EXIT.USAGE)
      expect(await h.run('doc', 'change', 'orders', 'd-1', '--patch', '[1]')).to.equal(EXIT.USAGE)
      expect(await h.run('doc', 'change', 'orders', 'd-1')).to.equal(EXIT.USAGE)
      expect(h.client.calls).to.have.length(0)
    })

    it('should list one page and show how to continue', async () => {
      const h = harness({ 'doc.list': () => ({ documents: [doc('d-1', { a: 1 })], cursor: { seq: 4, docId: 'd-1' }, more: true }) })
      expect(await h.run('doc', 'list', 'orders', '--limit', '1', '--cursor', '{"seq":2}')).to.equal(EXIT.OK)
      expect(h.client.calls).to.deep.equal([{ method: 'doc.list', params: { database: 'orders', cursor: { seq: 2 }, limit: 1 } }])
      expect(h.out[0]).to.include('d-1  2023-11-14T22:13:21Z  tenant:acme  {"a":1}')
      expect(h.out[0]).to.include('more: mindoodb doc list orders --cursor \'{"seq":4,"docId":"d-1"}\'')
    })

    it('should follow the pages with --all', async () => {
      const pages = [
        { documents: [doc('d-1')], cursor: { seq: 1, docId: 'd-1' }, more: true },
        { documents: [doc('d-2')], cursor: { seq: 2, docId: 'd-2' }, more: false }
      ]
      const h = harness({ 'doc.list': () => pages.shift() })
      expect(await h.run('--json', 'doc', 'list', 'orders', '--all', '-n', '1')).to.equal(EXIT.OK)
      expect(h.client.calls.map((c) => c.params)).to.deep.equal([
        { database: 'orders', cursor: null, limit: 1 },
        { database: 'orders', cursor: { seq: 1, docId: 'd-1' }, limit: 1 }
      ])
      const printed = JSON.parse(h.out[0])
      expect(printed.documents.map((d: { docId: string }) => d.docId)).to.deep.equal(['d-1', 'd-2'])
      expect(printed).to.include({ more: false })
      expect(await h.run('doc', 'list', 'orders', '--limit', '0')).to.equal(EXIT.USAGE)
    })
  })

  describe('exit codes', () => {
    it('should exit 2 on invalid params (-32602) and unknown methods (-32601)', async () => {
      const h = harness({
        'doc.get': () => { throw new RpcError(-32602, 'params.docId: must match pattern') },
        nope: () => { throw new RpcError(-32601, 'Method not found') }
      })
      expect(await h.run('doc', 'get', 'orders', 'bad id')).to.equal(EXIT.USAGE)
      expect(await h.run('rpc', 'nope')).to.equal(EXIT.USAGE)
      expect(h.err.join('')).to.include('params.docId')
    })

    it('should exit 1 when the daemon says no', async () => {
      const h = harness({ 'doc.get': () => { throw new RpcError(-32000, 'no document x in database orders', 'DOCUMENT_NOT_FOUND') } })
      expect(await h.run('doc', 'get', 'orders', 'x')).to.equal(EXIT.FAILED)
      expect(h.err.join('')).to.match(/^mindoodb: DOCUMENT_NOT_FOUND: /)
      expect(h.out).to.have.length(0)
    })

    it('should exit 3 when the daemon is unreachable', async () => {
      const h = harness({ 'peers.list': () => { throw new RpcUnavailableError('cannot reach the daemon at /x.sock: ENOENT') } })
      expect(await h.run('peers')).to.equal(EXIT.UNAVAILABLE)
      expect(h.err.join('')).to.include('cannot reach the daemon')
    })

    it('should exit 3 with the real client when no daemon listens, and 4 on an invalid config', async () => {
      const writeErr = (): void => {}
      expect(await runCli(['--socket', join(dir, 'none.sock'), 'peers'], { from: 'user', output: { writeOut: writeErr, writeErr } })).to.equal(EXIT.UNAVAILABLE)
      await writeFile(join(dir, 'bad.json'), '{"tenant": 5}')
      expect(await runCli(['--config', join(dir, 'bad.json'), 'peers'], { from: 'user', output: { writeOut: writeErr, writeErr } })).to.equal(EXIT.CONFIG)
    })
  })

  describe('key', () => {
    it('should create a key with the password from a file and print the blob alone', async () => {
      await writeFile(join(dir, 'pw'), 's3cret pass\n')
      const h = harness({ 'key.create': (p) => ({ keyId: p.keyId, blob: 'mdbkey1.abc' }) })
      expect(await h.run('key', 'create', 'k1', '--password-file', join(dir, 'pw'))).to.equal(EXIT.OK)
      expect(h.client.calls).to.deep.equal([{ method: 'key.create', params: { keyId: 'k1', password: 's3cret pass' } }])
      expect(h.out).to.deep.equal(['mdbkey1.abc'])
      expect(h.notes.join('\n')).to.include('created k1')
    })

    it('should read the password from stdin with -', async () => {
      const h = harness({ 'key.export': (p) => ({ keyId: p.keyId, blob: 'b' }), 'key.rotate': (p) => ({ keyId: p.keyId, blob: 'b2', versions: 2 }) }, { stdin: 'from-stdin\n' })
      expect(await h.run('key', 'export', 'k1', '--password-file', '-')).to.equal(EXIT.OK)
      expect(await h.run('--json', 'key', 'rotate', 'k1', '--password-file', '-')).to.equal(EXIT.OK)
      expect(h.client.calls.map((c) => c.params)).to.deep.equal([{ keyId: 'k1', password: 'from-stdin' }, { keyId: 'k1', password: 'from-stdin' }])
      expect(JSON.parse(h.out[1])).to.deep.equal({ keyId: 'k1', blob: 'b2', versions: 2 })
    })

    it('should import from a blob file', async () => {
      await writeFile(join(dir, 'blob'), 'mdbkey1.xyz\n')
      await writeFile(join(dir, 'pw'), 'pw\n')
      const h = harness({ 'key.import': (p) => ({ keyId: p.keyId, versions: 1 }) })
      expect(await h.run('key', 'import', 'k1', '--blob-file', join(dir, 'blob'), '--password-file', join(dir, 'pw'))).to.equal(EXIT.OK)
      expect(h.client.calls[0].params).to.deep.equal({ keyId: 'k1', blob: 'mdbkey1.xyz', password: 'pw' })
      expect(h.out[0]).to.equal('imported k1 (1 version)')
    })

    it('should refuse a missing or empty password file, and two stdins', async () => {
      await writeFile(join(dir, 'empty'), '\n')
      const h = harness({})
      expect(await h.run('key', 'create', 'k1', '--password-file', join(dir, 'missing'))).to.equal(EXIT.USAGE)
      expect(await h.run('key', 'create', 'k1', '--password-file', join(dir, 'empty'))).to.equal(EXIT.USAGE)
      expect(await h.run('key', 'import', 'k1', '--blob-file', '-', '--password-file', '-')).to.equal(EXIT.USAGE)
      expect(await h.run('key', 'create', 'k1')).to.equal(EXIT.USAGE)
      expect(h.client.calls).to.have.length(0)
    })

    it('should list keys', async () => {
      const h = harness({ 'key.list': () => ({ keys: [{ keyId: 'tenant:acme', versions: 1 }, { keyId: 'k1', versions: 2 }] }) })
      expect(await h.run('key', 'list')).to.equal(EXIT.OK)
      expect(h.out[0]).to.equal('tenant:acme  1 version\nk1           2 versions')
    })
  })

  describe('share', () => {
    it('should add a share from a file with flags over it', async () => {
      await writeFile(join(dir, 'share.json'), JSON.stringify({ id: 'orders', database: 'wrong', direction: 'serve' }))
      await writeFile(join(dir, 'topic'), 'a-very-secret-topic-0123456789\n')
      await writeFile(join(dir, 'bob.json'), JSON.stringify(share.partners[0]))
      const h = harness({ 'share.add': () => share })
      expect(await h.run('share', 'add', '--file', join(dir, 'share.json'), '--database', 'orders', '--topic-secret-file', join(dir, 'topic'),
        '--partner-file', join(dir, 'bob.json'), '--filter', '{"kind":"type","types":["order"]}')).to.equal(EXIT.OK)
      expect(h.client.calls).to.deep.equal([{
        method: 'share.add',
        params: { share: { id: 'orders', database: 'orders', direction: 'serve', topicSecret: 'a-very-secret-topic-0123456789', partners: share.partners, filter: { kind: 'type', types: ['order'] } } }
      }])
      expect(h.out[0]).to.equal([
        'share orders (enabled, both, filter type order) -> database orders, from rpc',
        `  partner bob ${PEER_B}`
      ].join('\n'))
    })

    it('should refuse a share without an id and a bad direction', async () => {
      const h = harness({})
      expect(await h.run('share', 'add', '--database', 'orders')).to.equal(EXIT.USAGE)
      expect(await h.run('share', 'add', '--id', 'x', '--direction', 'sideways')).to.equal(EXIT.USAGE)
      expect(h.client.calls).to.have.length(0)
    })

    it('should update, enable, disable, remove, list and show', async () => {
      await writeFile(join(dir, 'patch.json'), '{"filter":{"kind":"all"}}')
      const h = harness({
        'share.update': () => share,
        'share.enable': () => share,
        'share.disable': () => ({ ...share, enabled: false }),
        'share.remove': (p) => ({ id: p.id, removed: true }),
        'share.list': () => ({ shares: [share] }),
        'share.get': () => share
      })
      expect(await h.run('share', 'update', 'orders', '--file', join(dir, 'patch.json'), '--direction', 'receive')).to.equal(EXIT.OK)
      expect(await h.run('share', 'enable', 'orders')).to.equal(EXIT.OK)
      expect(await h.run('share', 'disable', 'orders')).to.equal(EXIT.OK)
      expect(await h.run('share', 'remove', 'orders')).to.equal(EXIT.OK)
      expect(await h.run('share', 'list')).to.equal(EXIT.OK)
      expect(await h.run('share', 'show', 'orders')).to.equal(EXIT.OK)
      expect(h.client.calls).to.deep.equal([
        { method: 'share.update', params: { id: 'orders', update: { filter: { kind: 'all' }, direction: 'receive' } } },
        { method: 'share.enable', params: { id: 'orders' } },
        { method: 'share.disable', params: { id: 'orders' } },
        { method: 'share.remove', params: { id: 'orders' } },
        { method: 'share.list', params: {} },
        { method: 'share.get', params: { id: 'orders' } }
      ])
      expect(h.out[2]).to.match(/^share orders \(DISABLED,/)
      expect(h.out[3]).to.equal('removed share orders')
      expect(await h.run('share', 'update', 'orders')).to.equal(EXIT.USAGE)
    })
  })

  describe('peers and partners', () => {
    it('should list connected peers', async () => {
      const h = harness({ 'peers.list': () => ({ peers: [{ peerId: PEER_B, addresses: ['/ip4/127.0.0.1/tcp/1'] }] }) })
      expect(await h.run('peers')).to.equal(EXIT.OK)
      expect(h.out[0]).to.equal(`${PEER_B}  /ip4/127.0.0.1/tcp/1`)
      const none = harness({ 'peers.list': () => ({ peers: [] }) })
      await none.run('peers')
      expect(none.out[0]).to.equal('no peers connected')
    })

    it('should list partners with their state', async () => {
      const partner = { share: 'orders', peerId: PEER_B, tenantId: 'bob', connected: false, rounds: 3, roundsFailed: 1, sessionsFailed: 0, failures: 1, lag: 7, lastError: { code: 'DIAL_FAILED', message: 'x', at: Date.now() } }
      const h = harness({ 'partners.list': () => ({ partners: [partner] }) })
      expect(await h.run('partners')).to.equal(EXIT.OK)
      expect(h.client.methods()).to.deep.equal(['partners.list'])
      expect(h.out[0]).to.match(/^share orders: bob \S+ not connected, last sync never, lag 7, rounds 3 \(1 failed\), last error DIAL_FAILED/)
      const opened = harness({ 'partners.list': () => ({ partners: [{ ...partner, sessionsFailed: 2 }] }) })
      await opened.run('partners')
      expect(opened.out[0]).to.match(/, rounds 3 \(1 failed\), other sessions failed: 2, last error DIAL_FAILED/)
    })
  })

  describe('sync now', () => {
    it('should start rounds without waiting', async () => {
      const h = harness({ 'sync.now': () => ({ started: true }) })
      expect(await h.run('sync', 'now', '--share', 'orders')).to.equal(EXIT.OK)
      expect(h.client.calls).to.deep.equal([{ method: 'sync.now', params: { share: 'orders' } }])
      expect(h.out[0]).to.match(/^sync rounds started/)
    })

    /** sync.status answers grow with each poll; sync.now answers once status was polled `after` times. */
    function syncingDaemon (results: unknown[], after = 3): Record<string, Answer> {
      let polls = 0
      let release: () => void = () => {}
      const released = new Promise<void>((resolve) => { release = resolve })
      return {
        'sync.status': () => {
          const n = polls++
          if (polls > after) release()
          return { shares: [shareStatus({ changesReceived: n * 10, bytesReceived: n * 1000, changesSent: n, bytesSent: n * 100 }, 50)] }
        },
        'sync.now': async () => {
          await released
          return { started: true, results }
        }
      }
    }

    it('should wait, print plain progress lines when stderr is not a terminal, then the results', async () => {
      const h = harness(syncingDaemon([roundOk], 2))
      expect(await h.run('sync', 'now', '--wait', '--share', 'orders')).to.equal(EXIT.OK)
      expect(h.client.calls.find((c) => c.method === 'sync.now')?.params).to.deep.equal({ share: 'orders', wait: true })
      expect(h.client.calls.filter((c) => c.method === 'sync.status').every((c) => c.params.share === 'orders')).to.equal(true)
      expect(h.clientOptions).to.deep.equal([{ timeoutMs: 0 }]) // a long transfer must not time out
      expect(h.drawn()).to.equal('')
      expect(h.notes.at(-1)).to.match(/^sync done in \d+s: \d+ changes \(\d+ in, \d+ out\), /)
      expect(h.out[0]).to.equal(`bob ${PEER_B} ok: received 3 (300 B), sent 2 (200 B)\n1 round ok`)
    })

    it('should print a line per poll interval with the changes, bytes, rate and ETA', async () => {
      const h = harness(syncingDaemon([roundOk], 4))
      const { result } = await syncAndWait(
        { json: false, isTTY: false, progressStream: new PassThrough(), note: (t: string) => { h.notes.push(t) } } as unknown as CliContext,
        h.client, 'orders', { pollMs: 1, lineMs: 0 })
      expect(result.results).to.deep.equal([roundOk])
      const lines = h.notes.filter((l) => !l.startsWith('sync done'))
      expect(lines.length).to.be.at.least(3)
      expect(lines[0]).to.match(/^sync \d+s: 11 changes \(10 in, 1 out\), 1\.1 KiB \(1000 B in, 100 B out\), .*\/s, ETA \d+/)
    })

    it('should draw a progress bar on a terminal, not lines', async () => {
      const h = harness(syncingDaemon([roundOk], 2), { isTTY: true })
      expect(await h.run('sync', 'now', '--wait')).to.equal(EXIT.OK)
      expect(h.notes).to.have.length(0)
      // the partners' lag (50) gives the bar its total, the share totals its position
      expect(h.drawn()).to.match(/sync \[█*░*\] \d+% \| \d+ changes \(\d+ in, \d+ out\), .*\/s/)
      expect(h.out[0]).to.include('1 round ok')
    })

    it('should exit 1 when a round failed, after printing the results', async () => {
      const h = harness(syncingDaemon([roundOk, roundFailed], 1))
      expect(await h.run('sync', 'now', '--wait')).to.equal(EXIT.FAILED)
      expect(h.out[0]).to.include(`bob ${PEER_B} FAILED DIAL_FAILED: no route`)
      expect(h.out[0]).to.include('1 of 2 rounds FAILED')
      expect(h.err.join('')).to.include('SYNC_ROUNDS_FAILED')
    })

    it('should compute the ETA from what running rounds will move', () => {
      const start = { changesReceived: 0, changesSent: 0, bytesReceived: 0, bytesSent: 0, planned: 0, moved: 0 }
      const running = progressOf(start, { ...start, changesReceived: 30, changesSent: 10, planned: 200, moved: 40 }, 4000)
      expect(running).to.include({ expected: 200 })
      expect(running.etaSeconds).to.equal(16) // 160 left at 10 changes/s
    })

    it('should compute the ETA from the partners\' lag, and omit it without one', () => {
      const start = { changesReceived: 0, changesSent: 0, bytesReceived: 0, bytesSent: 0, planned: 0, moved: 0 }
      const withLag = progressOf({ ...start, lag: 100 }, { ...start, changesSent: 25, bytesSent: 2048 }, 5000)
      expect(withLag).to.include({ expected: 100, changesSent: 25 })
      expect(withLag.etaSeconds).to.equal(15)
      expect(formatProgress(withLag)).to.equal('25 changes (0 in, 25 out), 2.0 KiB (0 B in, 2.0 KiB out), 410 B/s, ETA 15s')
      const withoutLag = progressOf(start, { ...start, changesReceived: 5, bytesReceived: 10 }, 1000)
      expect(withoutLag.etaSeconds).to.equal(undefined)
      expect(formatProgress(withoutLag)).to.not.include('ETA')
    })
  })

  describe('rpc', () => {
    it('should call any method with JSON params and print the result as JSON', async () => {
      const h = harness({ 'doc.get': () => doc('d-1'), 'rpc.discover': () => ({ openrpc: '1.2.6', methods: [] }) })
      expect(await h.run('rpc', 'doc.get', '{"database":"orders","docId":"d-1"}')).to.equal(EXIT.OK)
      expect(await h.run('rpc', 'rpc.discover')).to.equal(EXIT.OK)
      expect(h.client.calls).to.deep.equal([
        { method: 'doc.get', params: { database: 'orders', docId: 'd-1' } },
        { method: 'rpc.discover', params: {} }
      ])
      expect(JSON.parse(h.out[0])).to.deep.equal(doc('d-1'))
      expect(JSON.parse(h.out[1])).to.deep.equal({ openrpc: '1.2.6', methods: [] })
    })

    it('should take params from stdin and refuse params that are not an object', async () => {
      const h = harness({ 'key.export': () => ({ keyId: 'k', blob: 'b' }) }, { stdin: '{"keyId":"k","password":"p"}' })
      expect(await h.run('rpc', 'key.export', '-')).to.equal(EXIT.OK)
      expect(h.client.calls[0].params).to.deep.equal({ keyId: 'k', password: 'p' })
      expect(await h.run('rpc', 'doc.get', '[1,2]')).to.equal(EXIT.USAGE)
    })
  })

  describe('init', () => {
    it('should create the tenant, the identity and a valid config, and print what partners need', async () => {
      const config = join(dir, 'etc', 'acme.json')
      const dataDir = join(dir, 'data')
      const h = harness()
      expect(await h.run('--json', '--config', config, 'init', '--tenant', 'acme', '--data-dir', dataDir,
        '--listen', '/ip4/127.0.0.1/tcp/4501', '/ip4/0.0.0.0/tcp/4502')).to.equal(EXIT.OK)
      expect(h.client.calls).to.have.length(0) // no daemon needed
      const partner = JSON.parse(h.out[0])

      const loaded = await loadConfig(config)
      expect(loaded).to.include({ tenant: 'acme', dataDir })
      expect(loaded.listen).to.deep.equal(['/ip4/127.0.0.1/tcp/4501', '/ip4/0.0.0.0/tcp/4502'])
      expect(loaded.rpc.socket).to.equal(join(dataDir, 'rpc.sock'))
      const peerId = peerIdFromPrivateKey(await loadOrCreatePeerKey(join(dataDir, 'node'))).toString()
      const factory = await createTenantFactory({ dataDir })
      try {
        const tenant = await factory.openTenant('acme')
        expect(partner).to.deep.equal({ peerId, tenant: tenant.getPublicInfo(), addresses: ['/ip4/127.0.0.1/tcp/4501'] })
      } finally {
        await factory.close()
      }
      expect((await stat(config)).mode & 0o777).to.equal(0o640)
      expect((await stat(join(dataDir, 'tenant-password'))).mode & 0o777).to.equal(0o600)

      // a second init refuses to overwrite the config; --force rewrites it and keeps tenant and identity
      expect(await h.run('--config', config, 'init', '--tenant', 'acme', '--data-dir', dataDir)).to.equal(EXIT.USAGE)
      expect(h.err.join('')).to.include('--force')
      expect(await h.run('--config', config, 'init', '--tenant', 'acme', '--data-dir', dataDir, '--force')).to.equal(EXIT.OK)
      expect(h.out.at(-1)).to.include(`peer     ${peerId}`)
      expect(h.out.at(-1)).to.include('tenant   acme (existed, opened)')
      expect((await loadConfig(config)).listen).to.equal(undefined)
    })

    it('should use the password from --password-file and refuse an invalid tenant id', async () => {
      const config = join(dir, 'bob.json')
      const dataDir = join(dir, 'bob')
      await writeFile(join(dir, 'pw'), 'bob-tenant-password\n')
      const h = harness()
      expect(await h.run('--config', config, 'init', '--tenant', 'bob', '--data-dir', dataDir, '--password-file', join(dir, 'pw'))).to.equal(EXIT.OK)
      expect(h.out[0]).to.not.include('tenant-password')
      const factory = await createTenantFactory({ dataDir })
      try {
        await factory.openTenant('bob', { tenantEncryptionKeyPassword: 'bob-tenant-password' }) // throws on a wrong password
      } finally {
        await factory.close()
      }
      expect(await h.run('--config', join(dir, 'x.json'), 'init', '--tenant', 'not valid', '--data-dir', dataDir)).to.equal(EXIT.USAGE)
      expect(h.err.join('')).to.include('/tenant')
    })
  })

  describe('share secret and partner revoke', () => {
    it('should print a random 256-bit base64url topic secret without calling the daemon', async () => {
      const h = harness()
      expect(await h.run('share', 'secret')).to.equal(EXIT.OK)
      expect(await h.run('share', 'secret')).to.equal(EXIT.OK)
      expect(h.out[0]).to.match(/^[A-Za-z0-9_-]{43}$/)
      expect(Buffer.from(h.out[0], 'base64url')).to.have.length(32)
      expect(h.out[1]).to.not.equal(h.out[0])
      expect(h.client.calls).to.have.length(0)
    })

    it('should revoke with the password from a file and print what the remaining partners need', async () => {
      await writeFile(join(dir, 'pw'), 'rotation-password\n')
      const answer = {
        revoked: [{ peerId: PEER_B, tenantId: 'bob', signingPublicKey: SIGNING_B }],
        shares: ['orders'],
        rotated: [{ keyId: 'orders-key', versions: 2, blob: 'BLOB', importers: [{ share: 'orders', tenantId: 'carol', peerId: 'PEER_C' }, { share: 'orders', tenantId: 'dave' }] }]
      }
      const h = harness({ 'partner.revoke': () => answer })
      expect(await h.run('partner', 'revoke', PEER_B, '--password-file', join(dir, 'pw'))).to.equal(EXIT.OK)
      expect(h.client.calls).to.deep.equal([{ method: 'partner.revoke', params: { partner: PEER_B, password: 'rotation-password' } }])
      const out = h.out[0]
      expect(out).to.include(`revoked bob peer ${PEER_B}`)
      expect(out).to.include('rotated orders-key (2 versions)')
      expect(out).to.include('import at carol peer PEER_C, share orders')
      expect(out).to.include('import at dave (participant), share orders')
      expect(out).to.include('  BLOB')
      const missing = harness({ 'partner.revoke': () => { throw new RpcError(-32000, 'no share names a partner x', 'PARTNER_NOT_FOUND') } })
      expect(await missing.run('partner', 'revoke', 'x', '--password-file', join(dir, 'pw'))).to.equal(EXIT.FAILED)
      expect(missing.err.join('')).to.include('PARTNER_NOT_FOUND')
      expect(await harness().run('partner', 'revoke', 'x')).to.equal(EXIT.USAGE) // no password file
    })
  })

  describe('events', () => {
    const event = (seq: number, data: Record<string, unknown>): Record<string, unknown> => ({ seq, time: '2026-12-01T10:00:00.000Z', type: 'session.refused', data })

    it('should follow with the returned cursors, note a stale cursor and go on from the buffer, and stop at --max', async () => {
      let n = 0
      const h = harness({
        'events.since': () => {
          n++
          if (n === 1) return { events: [event(1, { peerId: 'p1', code: 'NOT_AUTHORIZED' })], cursor: 'r-1', more: false }
          if (n === 2) return { events: [], cursor: 'r-1', more: false }
          if (n === 3) throw new RpcError(-32000, 'events fell out of the buffer', 'EVENTS_CURSOR_STALE')
          return { events: [event(9, { peerId: 'p2', message: 'line\n{"forged":1}\u001b[2J' }), event(10, { peerId: 'p3' })], cursor: 'r-10', more: false }
        }
      })
      expect(await h.run('events', '--follow', '--types', 'session.refused', '--max', '2')).to.equal(EXIT.OK)
      expect(h.client.calls.map((c) => c.params)).to.deep.equal([
        { types: ['session.refused'], timeoutMs: 30_000 },
        { cursor: 'r-1', types: ['session.refused'], timeoutMs: 30_000 },
        { cursor: 'r-1', types: ['session.refused'], timeoutMs: 30_000 },
        { types: ['session.refused'], timeoutMs: 30_000 }
      ])
      expect(h.notes.join('\n')).to.include('events were missed')
      // one line per event; the partner's text quoted as JSON, its escape sequence gone
      expect(h.out).to.deep.equal([
        '2026-12-01T10:00:00Z #1 session.refused peerId=p1 code=NOT_AUTHORIZED',
        '2026-12-01T10:00:00Z #9 session.refused peerId=p2 message="line\\n{\\"forged\\":1}\\u001b[2J"'
      ])
    })

    it('should fail on a stale cursor without --follow, and refuse unknown types before calling', async () => {
      const h = harness({ 'events.since': () => { throw new RpcError(-32000, 'stale', 'EVENTS_CURSOR_STALE') } })
      expect(await h.run('events', '--cursor', 'x-1')).to.equal(EXIT.FAILED)
      expect(h.err.join('')).to.include('EVENTS_CURSOR_STALE')
      const bad = harness({})
      expect(await bad.run('events', '--types', 'round.started,bogus')).to.equal(EXIT.USAGE)
      expect(bad.client.calls).to.have.length(0)
    })
  })

  describe('remote text on the terminal', () => {
    /** Escape sequences and controls a partner or a compromised daemon could put into any text field. */
    const EVIL = '\u001b]0;pwned\u0007\u001b[2J\u001b[31mred\u001b[0m\r\u0008\u009b31m\u009d8;;http://evil\u009c\u202eevil\u0000\u007f'
    const controls = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/ // eslint-disable-line no-control-regex
    const clean = (text: string): void => {
      expect(text).to.not.match(controls)
    }

    it('should strip escape sequences and controls but keep newlines, tabs and the text around them', () => {
      expect(cleanText(`a\u001b[1;31mb\u001b[0m\tc\nd\re\u009b2Jf\u001b]8;;http://x\u001b\\g`)).to.equal('ab\tc\ndef' + 'g')
      expect(cleanText('ünïcödé ✓ 日本')).to.equal('ünïcödé ✓ 日本')
      clean(cleanText(EVIL))
      expect(cleanText(EVIL)).to.not.include('pwned') // the whole OSC sequence goes, not only its ESC
      // JSON keeps the data: what is escaped parses back to the same string
      const value = { text: EVIL }
      const json = cleanJson(value)
      expect(json).to.not.match(controls)
      expect(JSON.parse(json)).to.deep.equal(value)
    })

    it('should print no control character from sync results, documents, shares, peers, partners and errors', async () => {
      const failed = { peerId: PEER_B, ok: false, error: { code: `NOT_AUTHORIZED${EVIL}`, message: `refused ${EVIL}` } }
      const status = shareStatus({}, 0)
      status.partners[0].tenantId = `bob${EVIL}`
      status.partners[0].lastError = { code: 'X', message: EVIL, at: Date.now() }
      const evilShare = { ...share, id: `orders${EVIL}`, partners: [{ peerId: PEER_B, tenant: { tenantId: `bob${EVIL}`, signingPublicKey: SIGNING_B }, addresses: [`/dns4/${EVIL}`] }] }
      const h = harness({
        'sync.status': () => ({ shares: [status] }),
        'sync.now': () => ({ started: true, results: [failed] }),
        'doc.get': () => doc('d-1', { title: EVIL, nested: { x: EVIL } }),
        'share.list': () => ({ shares: [evilShare] }),
        'peers.list': () => ({ peers: [{ peerId: PEER_B, addresses: [EVIL] }] }),
        'partners.list': () => ({ partners: [{ share: 'orders', ...status.partners[0] }] }),
        'node.info': () => ({ peerId: PEER_B, addresses: [EVIL], tenant: { tenantId: EVIL } }),
        'key.list': () => { throw new RpcError(-32000, `daemon says ${EVIL}`, 'KEY_NOT_FOUND') }
      })
      expect(await h.run('sync', 'now', '--wait')).to.equal(EXIT.FAILED)
      expect(h.out.join('')).to.include('FAILED NOT_AUTHORIZED')
      expect(h.out.join('')).to.include('refused ')
      for (const cmd of [['doc', 'get', 'db', 'd-1'], ['share', 'list'], ['peers'], ['partners'], ['status'], ['key', 'list']]) {
        await h.run(...cmd)
      }
      expect(h.out.join('')).to.include('red') // the text between the sequences stays
      expect(h.out.join('')).to.include('\\u001b]0;pwned') // document JSON shows escapes as text, harmless
      clean(h.out.join('\n'))
      clean(h.notes.join('\n'))
      clean(h.err.join('\n'))
      expect(h.err.join('')).to.include('KEY_NOT_FOUND: daemon says')
    })
  })
})
