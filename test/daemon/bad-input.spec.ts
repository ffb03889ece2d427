/**
 * Bad input to real daemon processes: invalid config files (one test per kind of mistake: the daemon exits
 * non-zero at once and names the key), bad JSON-RPC parameters, unknown methods, malformed and oversized
 * requests, wrong or missing bearer tokens, and a second daemon on the same data directory. After each bad
 * request the daemon still answers `health`.
 */
import { expect } from 'chai'
import { randomBytes } from 'node:crypto'
import { stat, writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { networkInterfaces } from 'node:os'
import { join } from 'node:path'
import { RpcClient, RpcUnavailableError } from '../../src/daemon/rpc-client.js'
import { killAll, rawRequest, rpcError, startDaemon, startDaemonExpectingFailure, testConfig, writeJson, type DaemonProcess } from '../utils/daemon-proc.js'
import { removeDir, tempDir } from '../utils/tmp.js'

/** EXIT.CONFIG of the CLI: the config file is invalid. */
const EXIT_CONFIG = 4
const TOPIC = 'bad-input-topic-secret-0123'

/** A syntactically valid partner (the daemon does not dial at start-up checks). */
const PARTNER = {
  peerId: '12D3KooWGzh9Qv9hBdLkDc3mrjT1ki4UN7TpvnRcgWKWbcrDxVYD',
  tenant: { tenantId: 'partner', signingPublicKey: randomBytes(32).toString('base64url') },
  addresses: ['/ip4/127.0.0.1/tcp/9/p2p/12D3KooWGzh9Qv9hBdLkDc3mrjT1ki4UN7TpvnRcgWKWbcrDxVYD']
}
const share = (extra: Record<string, unknown> = {}): Record<string, unknown> =>
  ({ id: 'orders', topicSecret: TOPIC, database: 'orders', partners: [PARTNER], ...extra })

describe('daemon: bad input', function () {
  this.timeout(60_000)
  let dir: string

  before(async () => { dir = await tempDir('mindoodb-daemon-bad-') })
  after(async () => {
    await killAll()
    await removeDir(dir)
  })

  describe('invalid config files: the daemon refuses to start and names the key', () => {
    let n = 0
    /** Writes `content` as a config file, starts a daemon on it, expects a quick config failure naming `key`. */
    async function refuses (content: string | Record<string, unknown>, ...mentions: string[]): Promise<string> {
      const file = join(dir, `bad-${++n}.json`)
      await writeFile(file, typeof content === 'string' ? content : JSON.stringify(content, null, 2))
      const { exit, stderr, ms } = await startDaemonExpectingFailure(file, 15_000)
      expect(exit.code, `exit code; stderr: ${stderr}`).to.equal(EXIT_CONFIG)
      expect(ms, 'refused quickly').to.be.lessThan(10_000)
      for (const m of mentions) expect(stderr).to.include(m)
      expect(stderr).to.not.include(TOPIC)
      return stderr
    }
    const base = (): Record<string, unknown> => testConfig(dir, `org${n + 1}`)

    it('not JSON', async () => {
      await refuses('{ "dataDir": "x", ', 'not valid JSON')
    })

    it('not an object', async () => {
      await refuses('[1, 2]', 'must be a JSON object')
    })

    it('an unknown key, at the top and nested', async () => {
      await refuses({ ...base(), colour: 'blue' }, '/colour', 'unknown key')
      await refuses({ ...base(), rpc: { sockett: '/tmp/x.sock' } }, '/rpc/sockett', 'unknown key')
    })

    it('a value of the wrong type (dht: "yes")', async () => {
      await refuses({ ...base(), dht: 'yes' }, '/dht', 'boolean')
    })

    it('a value out of range (metrics.port 70000) and a bad enum (logLevel)', async () => {
      await refuses({ ...base(), metrics: { port: 70000 } }, '/metrics/port')
      await refuses({ ...base(), logLevel: 'loud' }, '/logLevel')
    })

    it('a share whose topicSecret is too short', async () => {
      await refuses({ ...base(), shares: [share({ topicSecret: 'short' })] }, '/shares/0/topicSecret')
    })

    it('a share partner with a bad peerId', async () => {
      await refuses({ ...base(), shares: [share({ partners: [{ ...PARTNER, peerId: 'not-a-peer-id!' }] })] }, '/shares/0/partners/0/peerId')
    })

    it('a share filter with an unsupported selector operator', async () => {
      await refuses({ ...base(), shares: [share({ filter: { kind: 'selector', selector: { type: { $regex: 'x' } } } })] }, '/shares/0/filter', '$regex')
    })

    it('a share filter of an unknown kind', async () => {
      await refuses({ ...base(), shares: [share({ filter: { kind: 'everything' } })] }, '/shares/0/filter')
    })

    it('duplicate share ids', async () => {
      await refuses({ ...base(), shares: [share(), share({ topicSecret: TOPIC + '-2' })] }, '/shares/1/id', 'duplicate')
    })

    it('rpc.http without a tokenFile', async () => {
      await refuses({ ...base(), rpc: { http: { port: 0 } } }, '/rpc/http/tokenFile', 'required')
    })

    it('an unreadable passphraseFile', async () => {
      const missing = join(dir, 'no-such-passphrase')
      await refuses({ ...base(), passphraseFile: missing }, '/passphraseFile', missing)
    })

    it('a missing or empty rpc.http.tokenFile', async () => {
      const missing = join(dir, 'no-such-token')
      await refuses({ ...base(), rpc: { http: { port: 0, tokenFile: missing } } }, '/rpc/http/tokenFile', missing)
      const empty = join(dir, 'empty-token')
      await writeFile(empty, '\n')
      await refuses({ ...base(), rpc: { http: { port: 0, tokenFile: empty } } }, '/rpc/http/tokenFile', 'empty')
    })

    it('a config file that does not exist', async () => {
      const missing = join(dir, 'no-such-config.json')
      const { exit, stderr } = await startDaemonExpectingFailure(missing)
      expect(exit.code).to.equal(EXIT_CONFIG)
      expect(stderr).to.include(missing).and.include('ENOENT')
    })
  })

  describe('a running daemon', () => {
    let d: DaemonProcess
    let configFile: string
    const token = randomBytes(24).toString('base64url')
    let url: string

    before(async () => {
      const tokenFile = join(dir, 'token')
      await writeFile(tokenFile, token + '\n', { mode: 0o600 })
      configFile = await writeJson(join(dir, 'running.json'), testConfig(dir, 'running', { rpc: { http: { port: 0, tokenFile } } }))
      d = await startDaemon(configFile)
      url = `http://127.0.0.1:${d.ready.rpcHttpPort}/`
    })
    after(async () => { await d?.dispose() })

    afterEach(async () => {
      // whatever the bad input was, the daemon still answers
      expect(d.exited, 'the daemon is still running').to.equal(undefined)
      expect(await d.client.call('health')).to.include({ status: 'ok' })
    })

    it('a missing parameter: -32602 naming params.database', async () => {
      const err = await rpcError(d.client.call('doc.create', {}))
      expect(err.rpcCode).to.equal(-32602)
      expect(err.message).to.include('params.database')
    })

    it('a parameter of the wrong type: -32602 naming it', async () => {
      const err = await rpcError(d.client.call('doc.get', { database: 42, docId: 'x' }))
      expect(err.rpcCode).to.equal(-32602)
      expect(err.message).to.include('params.database')
      const nested = await rpcError(d.client.call('doc.list', { database: 'db', cursor: { seq: -1 } }))
      expect(nested.rpcCode).to.equal(-32602)
      expect(nested.message).to.include('params.cursor')
      const pattern = await rpcError(d.client.call('doc.get', { database: '../etc', docId: 'x' }))
      expect(pattern.rpcCode).to.equal(-32602)
      expect(pattern.message).to.include('params.database')
    })

    it('an unknown parameter: -32602 naming it', async () => {
      const err = await rpcError(d.client.call('doc.get', { database: 'db', docId: 'x', colour: 'blue' }))
      expect(err.rpcCode).to.equal(-32602)
      expect(err.message).to.include('params.colour').and.include('unknown parameter')
      const none = await rpcError(d.client.call('health', { verbose: true }))
      expect(none.rpcCode).to.equal(-32602)
      expect(none.message).to.include('params.verbose')
    })

    it('positional (array) params: -32602', async () => {
      const res = await rawRequest({ socketPath: d.ready.rpcSocket, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'doc.get', params: ['db', 'x'] }) })
      expect(res.status).to.equal(200)
      const body = JSON.parse(res.body) as { id: number, error: { code: number, message: string } }
      expect(body.id).to.equal(1)
      expect(body.error.code).to.equal(-32602)
      expect(body.error.message).to.include('params')
    })

    it('an application error keeps its stable code (unknown document, unknown share)', async () => {
      const doc = await rpcError(d.client.call('doc.get', { database: 'db', docId: 'no-such-doc' }))
      expect(doc.rpcCode).to.equal(-32000)
      expect(doc.dataCode).to.equal('DOCUMENT_NOT_FOUND')
      const s = await rpcError(d.client.call('share.disable', { id: 'no-such-share' }))
      expect([-32000, -32602]).to.include(s.rpcCode)
      expect(s.message).to.include('no-such-share')
    })

    it('a share whose topicSecret is under 22 characters: -32602 naming it, on add and on update', async () => {
      const add = await rpcError(d.client.call('share.add', { share: share({ id: 'short', topicSecret: 'x'.repeat(21) }) }))
      expect(add.rpcCode).to.equal(-32602)
      expect(add.message).to.include('params.share.topicSecret')
      await d.client.call('share.add', { share: share({ id: 'long-enough', topicSecret: 'y'.repeat(22), enabled: false }) })
      const update = await rpcError(d.client.call('share.update', { id: 'long-enough', update: { topicSecret: 'z'.repeat(21) } }))
      expect(update.rpcCode).to.equal(-32602)
      expect(update.message).to.include('params.update.topicSecret')
      await d.client.call('share.remove', { id: 'long-enough' })
    })

    it('partner.revoke of a partner no share names: PARTNER_NOT_FOUND; of the own tenant: -32602', async () => {
      const none = await rpcError(d.client.call('partner.revoke', { partner: 'nobody', password: 'pw' }))
      expect(none.dataCode).to.equal('PARTNER_NOT_FOUND')
      const info = await d.client.call<{ tenant: { tenantId: string } }>('node.info')
      const own = await rpcError(d.client.call('partner.revoke', { partner: info.tenant.tenantId, password: 'pw' }))
      expect(own.rpcCode).to.equal(-32602)
      const missing = await rpcError(d.client.call('partner.revoke', { partner: 'nobody' }))
      expect(missing.message).to.include('params.password')
    })

    it('an unknown method: -32601', async () => {
      const err = await rpcError(d.client.call('no.such.method'))
      expect(err.rpcCode).to.equal(-32601)
      const proto = await rpcError(d.client.call('__proto__'))
      expect(proto.rpcCode).to.equal(-32601)
      const builtin = await rpcError(d.client.call('toString'))
      expect(builtin.rpcCode).to.equal(-32601)
    })

    it('a malformed JSON body: -32700; a JSON body that is no request: -32600', async () => {
      const res = await rawRequest({ socketPath: d.ready.rpcSocket, body: '{"jsonrpc": "2.0", "id": 1, "method": ' })
      expect(res.status).to.equal(200)
      expect((JSON.parse(res.body) as { error: { code: number } }).error.code).to.equal(-32700)
      const notRequest = await rawRequest({ socketPath: d.ready.rpcSocket, body: '{"hello": "world"}' })
      expect((JSON.parse(notRequest.body) as { error: { code: number } }).error.code).to.equal(-32600)
      const empty = await rawRequest({ socketPath: d.ready.rpcSocket, body: '' })
      expect((JSON.parse(empty.body) as { error: { code: number } }).error.code).to.equal(-32700)
    })

    it('a request over 1 MiB: HTTP 413, with and without a content-length', async () => {
      const big = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'doc.create', params: { database: 'db', data: { pad: 'x'.repeat(1024 * 1024) } } })
      const res = await rawRequest({ socketPath: d.ready.rpcSocket, body: big }).catch((err: NodeJS.ErrnoException) => err)
      if (res instanceof Error) expect(['EPIPE', 'ECONNRESET']).to.include(res.code) // the server may close before reading it all
      else expect(res.status).to.equal(413)
      const chunked = await rawRequest({ socketPath: d.ready.rpcSocket, body: big, headers: { 'transfer-encoding': 'chunked', 'content-length': '' } }).catch((err: NodeJS.ErrnoException) => err)
      if (chunked instanceof Error) expect(['EPIPE', 'ECONNRESET']).to.include(chunked.code)
      else expect(chunked.status).to.equal(413)
      // the client reports it as an error too
      const err = await d.client.call('doc.create', { database: 'db', data: { pad: 'x'.repeat(1024 * 1024) } }).catch((e: unknown) => e)
      expect(err).to.be.instanceOf(Error)
      // nothing was created
      expect((await d.client.call<{ documents: unknown[] }>('doc.list', { database: 'db' })).documents).to.deep.equal([])
    })

    it('HTTP without the bearer token or with a wrong one: 401 and no data', async () => {
      const attempts: Array<Record<string, string>> = [{}, { authorization: 'Bearer wrong' }, { authorization: `Bearer ${token}x` }, { authorization: token }, { authorization: `Basic ${token}` }]
      for (const headers of attempts) {
        const res = await rawRequest({ port: d.ready.rpcHttpPort, headers, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'node.info' }) })
        expect(res.status, JSON.stringify(headers)).to.equal(401)
        expect(res.headers['www-authenticate']).to.equal('Bearer')
        const body = JSON.parse(res.body) as { result?: unknown, error: { code: number } }
        expect(body).to.not.have.property('result')
        expect(body.error.code).to.equal(-32001)
        expect(res.body).to.not.include(d.ready.peerId)
      }
      const wrong = await new RpcClient({ url, token: 'wrong' }).call('health').catch((e: unknown) => e)
      expect(wrong).to.be.instanceOf(RpcUnavailableError)
      // the right token works, and only POST is accepted
      expect(await new RpcClient({ url, token }).call('node.info')).to.include({ peerId: d.ready.peerId })
      const get = await rawRequest({ port: d.ready.rpcHttpPort, method: 'GET', headers: { authorization: `Bearer ${token}` } })
      expect(get.status).to.equal(405)
    })

    it('HTTP listens on 127.0.0.1 only; the socket is mode 0600; the token is never logged', async () => {
      expect((await stat(d.ready.rpcSocket)).mode & 0o777).to.equal(0o600)
      // the port is not open on this machine's other addresses (when it has any)
      const external = Object.values(networkInterfaces()).flat().find((i) => i !== undefined && !i.internal && i.family === 'IPv4')
      if (external !== undefined) {
        const outcome = await new Promise<string>((resolve) => {
          const socket = connect({ host: external.address, port: d.ready.rpcHttpPort as number, timeout: 2_000 })
          socket.on('connect', () => { socket.destroy(); resolve('connected') })
          socket.on('timeout', () => { socket.destroy(); resolve('timeout') })
          socket.on('error', (err: NodeJS.ErrnoException) => { resolve(err.code ?? 'error') })
        })
        expect(outcome, `connecting to ${external.address}`).to.not.equal('connected')
      }
      expect(JSON.stringify(d.lines)).to.not.include(token)
    })

    it('a second daemon on the same data directory refuses to start (LOCKED); the first keeps serving', async () => {
      const { exit, stderr, ms } = await startDaemonExpectingFailure(configFile, 15_000)
      expect(exit.code).to.not.equal(0)
      expect(stderr).to.include('LOCKED')
      expect(ms).to.be.lessThan(10_000)
      // the first daemon's socket is still its own
      expect(await d.client.call('node.info')).to.include({ peerId: d.ready.peerId })
    })

    it('a second daemon on the same data directory with another tenant refuses too', async () => {
      const other = await writeJson(join(dir, 'same-dir-other-tenant.json'), testConfig(dir, 'running', { tenant: 'intruder' }))
      const { exit, stderr } = await startDaemonExpectingFailure(other, 15_000)
      expect(exit.code).to.not.equal(0)
      expect(stderr).to.include('LOCKED')
      expect(await d.client.call('node.info')).to.include({ peerId: d.ready.peerId })
    })
  })
})
