/**
 * Issue 7, item 11, as the attackers would try it against a real daemon process:
 *
 * - A partner M (a real node whose sync handler answers every session with an error frame) puts terminal escape
 *   sequences into its error text: set the window title, clear the screen, colour, move the cursor, hide text behind
 *   a carriage return, an OSC 8 hyperlink, C1 controls and a bidi override. `mindoodb sync now --wait` (and
 *   `status`, `partners`, `--json`) print M's failure without one control character, while the honest partner H
 *   keeps syncing in the same rounds.
 * - A web page rebinds its DNS name to 127.0.0.1 and lets the browser fetch `/metrics` (and post to the HTTP RPC):
 *   it gets a status and an empty body, never a metric or a result. The operator's own scrape still works.
 */
import { expect } from 'chai'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { RoundResult } from '../../src/p2p/index.js'
import { SYNC_PROTOCOL } from '../../src/p2p/constants.js'
import { killAll, rawRequest, runCli, startDaemon, testConfig, writeJson, type DaemonProcess } from '../utils/daemon-proc.js'
import { getMetrics } from '../utils/http.js'
import { createOrg, type TestOrg } from '../utils/orgs.js'
import { RawPeer } from '../utils/raw-peer.js'
import { removeDir, tempDir } from '../utils/tmp.js'

const TOPIC = 'adversary-terminal-topic-secret-0123456789'
const TOKEN = 'adversary-rpc-token-0123456789abcdef'
/** What M writes into its error frame: title, clear screen, colour, CR overwrite, hyperlink, C1 CSI, bidi override. */
const EVIL = 'refused-by-mallory \u001b]0;owned\u0007\u001b[2J\u001b[H\u001b[31mRED\u001b[0m\rSAFE\u001b]8;;http://evil.example\u001b\\link\u001b]8;;\u001b\\ \u009b6n\u202egnp.exe\u0008\u007f'
const CONTROLS = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/ // eslint-disable-line no-control-regex

describe('adversary: what reaches the operator\'s terminal and local endpoints', function () {
  this.timeout(90_000)
  let dir: string
  let a: DaemonProcess
  let m: TestOrg
  let h: TestOrg
  let metricsPort: number
  const partnerOf = (o: TestOrg): Record<string, unknown> => ({ peerId: o.node.peerId, tenant: o.tenant.getPublicInfo(), addresses: o.node.getMultiaddrs() })

  before(async () => {
    dir = await tempDir('mindoodb-adversary-local-')
    const tokenFile = join(dir, 'token')
    await writeFile(tokenFile, TOKEN + '\n', { mode: 0o600 })
    a = await startDaemon(await writeJson(join(dir, 'a.json'), testConfig(dir, 'alpha', { metrics: { port: 0 }, rpc: { http: { port: 0, tokenFile } } })))
    metricsPort = a.ready.metricsPort as number
    ;[m, h] = [await createOrg('mallory'), await createOrg('honest')]
    const aSide = { peerId: a.ready.peerId, tenant: a.ready.tenant, addresses: a.ready.addresses }
    for (const o of [m, h]) {
      await o.node.addShare({ id: 'orders', topicSecret: TOPIC, database: 'orders', partners: [aSide as never], direction: 'both', filter: { kind: 'all' }, enabled: true })
    }
    // M's node answers every sync session with an error frame carrying the escape sequences
    await m.node.libp2p.unhandle(SYNC_PROTOCOL)
    await m.node.libp2p.handle(SYNC_PROTOCOL, async (stream) => {
      const peer = new RawPeer(stream)
      await peer.frame() // the hello
      await peer.send({ type: 'error', code: 'NOT_AUTHORIZED', message: EVIL })
      await peer.closeWrite()
    }, { runOnLimitedConnection: false })
    await a.client.call('share.add', { share: { id: 'orders', topicSecret: TOPIC, database: 'orders', partners: [partnerOf(m), partnerOf(h)] } })
    await a.client.call('doc.create', { database: 'orders', data: { type: 'order', qty: 1 } })
  })

  after(async () => {
    await a?.dispose()
    await killAll()
    for (const o of [m, h]) await o?.cleanup()
    await removeDir(dir)
  })

  it('should print a partner\'s escape sequences as plain text in sync now --wait, status, partners and --json', async () => {
    const cli = async (...args: string[]): ReturnType<typeof runCli> => await runCli(['--socket', a.ready.rpcSocket, ...args])
    const waited = await cli('sync', 'now', '--wait', '--share', 'orders')
    expect(waited.code, waited.stderr).to.equal(1) // M's round failed
    expect(waited.stdout).to.include(`mallory ${m.node.peerId} FAILED NOT_AUTHORIZED`)
    expect(waited.stdout).to.include('refused-by-mallory')
    expect(waited.stdout).to.include('REDSAFElink') // the text stays, the sequences around it go
    expect(waited.stdout).to.not.include('owned') // a window title sequence goes whole
    expect(waited.stdout).to.match(new RegExp(`honest ${h.node.peerId} ok: received \\d+ \\(.*\\), sent \\d+`))
    expect(waited.stdout).to.not.match(CONTROLS)
    expect(waited.stderr).to.not.match(CONTROLS)

    // the honest partner has every change A serves (A's document, synced live and checked by the round)
    const { shares } = await a.client.call<{ shares: Array<{ servedSetSize: number }> }>('sync.status', { share: 'orders' })
    const stored = await (await h.tenant.openDB('orders')).getStore().getAllChangeHashes()
    expect(shares[0].servedSetSize).to.be.greaterThan(0)
    expect(stored.length).to.equal(shares[0].servedSetSize)

    for (const args of [['status'], ['partners'], ['rpc', 'sync.status'], ['--json', 'sync', 'now', '--wait', '--share', 'orders']]) {
      const out = await cli(...args)
      expect(out.stdout, args.join(' ')).to.not.match(CONTROLS)
      expect(out.stderr, args.join(' ')).to.not.match(CONTROLS)
    }
    // --json keeps M's text as data (escaped), so scripts see what M sent
    const json = await cli('--json', 'sync', 'now', '--wait', '--share', 'orders')
    const results = (JSON.parse(json.stdout) as { results: RoundResult[] }).results
    expect(results.find((r) => r.peerId === m.node.peerId)?.error?.message).to.include('refused-by-mallory \u001b]0;owned')
    expect(results.find((r) => r.peerId === h.node.peerId)?.ok).to.equal(true)
  })

  it('should give a DNS-rebinding page nothing from /metrics or the HTTP RPC, and still serve the operator', async () => {
    const evil = `evil.example:${metricsPort}`
    const attempts: Array<Record<string, string>> = [{ host: evil }, { host: evil, origin: 'http://evil.example' }, { host: 'evil.example' }, { host: evil, authorization: 'Bearer guess' }]
    for (const headers of attempts) {
      const res = await getMetrics(metricsPort, headers)
      expect(res.status, JSON.stringify(headers)).to.be.oneOf([421, 403])
      expect(res.body, JSON.stringify(headers)).to.equal('')
    }
    // the RPC over HTTP: no token, no answer (the page cannot know the token)
    const rpcPort = a.ready.rpcHttpPort as number
    const rpc = await rawRequest({ port: rpcPort, headers: { host: `evil.example:${rpcPort}` }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'node.info' }) })
    expect(rpc.status).to.equal(401)
    expect(rpc.body).to.not.include(a.ready.peerId)
    // the operator's scrape
    const own = await getMetrics(metricsPort, { host: `127.0.0.1:${metricsPort}` })
    expect(own.status).to.equal(200)
    expect(own.body).to.include('mindoodb_share_enabled{share="orders"} 1')
  })
})
