/**
 * What a partner can do through the event stream and the audit trail of a real daemon. Mallory is a partner of
 * A's share (a bare libp2p host with its own identity): it refuses every session A opens with an error message full
 * of newlines, a forged JSON record, terminal escape sequences and C1/line-separator characters, and it floods A
 * with hundreds of sessions for a topic A does not have.
 *
 * - Its text is recorded as data (clipped): the audit lines stay one JSON record each and the chain verifies; the
 *   CLI's human lines carry no escape sequence or control character, one event per line; --json lines parse.
 * - The flood is aggregated: one audit line for the first refusal and one with the count at the window's end (at
 *   the latest at stop), whatever the number of sessions.
 */
import { expect } from 'chai'
import type { Stream } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { randomBytes } from 'node:crypto'
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { AuditRecord } from '../../src/daemon/audit.js'
import type { DaemonEvent, SinceResult } from '../../src/daemon/events.js'
import { clip } from '../../src/p2p/events.js'
import { SYNC_PROTOCOL } from '../../src/p2p/constants.js'
import { killAll, runCli, startDaemon, testConfig, writeJson, type DaemonProcess } from '../utils/daemon-proc.js'
import { createRawNode, type RawLibp2p } from '../utils/raw-node.js'
import { RawPeer } from '../utils/raw-peer.js'
import { removeDir, tempDir, testFactory } from '../utils/tmp.js'

const TOPIC = 'mallory-topic-secret-0123456789abcdef'
const EVIL = 'no\n{"seq":0,"time":"x","type":"forged","data":{},"prev":"0","hash":"0"}\r\n\u001b]0;owned\u0007\u001b[2J\u009b31m\u0085\u2028\u2029\u202e' + 'x'.repeat(600)
const FLOOD = 150

describe('adversary: a partner against the event stream and the audit trail', function () {
  this.timeout(120_000)
  let dir: string
  let a: DaemonProcess
  let mallory: RawLibp2p
  let cleanupTenant: () => Promise<void>

  before(async () => {
    dir = await tempDir('mindoodb-adv-events-')
    const t = await testFactory()
    cleanupTenant = t.cleanup
    const tenant = await t.factory.createTenant({ tenantId: 'mallory', tenantEncryptionKeyPassword: 'mallory-password-1' })
    mallory = await createRawNode({ listen: true })
    await mallory.start()
    // every session A opens is refused with the evil text
    await mallory.handle(SYNC_PROTOCOL, async (stream: Stream) => {
      const peer = new RawPeer(stream)
      try {
        await peer.frame()
        await peer.send({ type: 'error', code: 'SHARE_DISABLED', message: EVIL })
        await peer.closeWrite()
      } catch {
        peer.abort()
      }
    })
    const share = {
      id: 'mallory-share',
      topicSecret: TOPIC,
      database: 'shared',
      partners: [{ peerId: mallory.peerId.toString(), tenant: tenant.getPublicInfo(), addresses: mallory.getMultiaddrs().map((m) => m.toString()) }]
    }
    a = await startDaemon(await writeJson(join(dir, 'alpha.json'), testConfig(dir, 'alpha', { shares: [share] })))
  })

  after(async () => {
    await a?.dispose()
    await mallory?.stop()
    await killAll()
    await cleanupTenant?.()
    await removeDir(dir)
  })

  it('should record a partner\'s error text as data: one JSON record per line, a chain that verifies, clean CLI lines', async () => {
    // A dials Mallory on its own (start, then every second): wait for the refusal in the event stream
    let refused: DaemonEvent | undefined
    let cursor: string | undefined
    const end = Date.now() + 30_000
    while (refused === undefined) {
      if (Date.now() > end) throw new Error('no outbound session.refused event')
      const r = await a.client.call<SinceResult>('events.since', { ...(cursor === undefined ? {} : { cursor }), timeoutMs: 2_000, types: ['session.refused'] })
      refused = r.events.find((e) => e.data.direction === 'outbound')
      cursor = r.cursor
    }
    expect(refused.data).to.include({ peerId: mallory.peerId.toString(), share: 'mallory-share', code: 'SHARE_DISABLED' })
    // the node clips the text the codec let through (1000 characters) to MAX_EVENT_TEXT
    expect(refused.data.message).to.equal(clip('peer refused: SHARE_DISABLED: ' + EVIL.slice(0, 1000)))

    // the first refusal, in both forms (Mallory goes on being dialled and refusing meanwhile)
    const human = await runCli(['--socket', a.ready.rpcSocket, 'events', '--types', 'session.refused', '--max', '1'])
    expect(human.code, human.stderr).to.equal(0)
    expect(human.stdout).not.to.match(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/) // eslint-disable-line no-control-regex
    const humanLines = human.stdout.trim().split('\n')
    const json = await runCli(['--socket', a.ready.rpcSocket, '--json', 'events', '--types', 'session.refused', '--max', '1'])
    const jsonLines = json.stdout.trim().split('\n')
    const parsed = jsonLines.map((l) => JSON.parse(l) as DaemonEvent)
    // one event, one line, in both forms
    expect(humanLines.length).to.equal(1)
    expect(parsed.length).to.equal(1)
    expect(humanLines[0]).to.match(/ session\.refused /)
    expect(parsed[0].data.message).to.equal(refused.data.message)

    const records = (await a.client.call<{ records: AuditRecord[] }>('audit.show', {})).records
    const outbound = records.filter((r) => r.type === 'session.refused' && r.data.direction === 'outbound')
    expect(outbound.length).to.equal(1)
    expect(outbound[0].data.message).to.equal(refused.data.message)
    expect(records.some((r) => r.type === 'forged')).to.equal(false)
    expect((await a.client.call<{ ok: boolean }>('audit.verify', {})).ok).to.equal(true)
  })

  it('should aggregate a flood of refused sessions: the audit trail stays bounded', async () => {
    const target = multiaddr(a.ready.addresses[0])
    const start = (await a.client.call<SinceResult>('events.since', { timeoutMs: 0, types: ['session.refused'] })).cursor
    for (let i = 0; i < FLOOD; i++) {
      const stream = await mallory.dialProtocol(target, SYNC_PROTOCOL, { signal: AbortSignal.timeout(10_000) })
      const peer = new RawPeer(stream)
      // the answer (an error frame, or a reset) does not matter: A read the hello and refused it
      await peer.hello(randomBytes(32)).then(async () => await peer.drain(), () => {})
      peer.abort() // frees A's inbound stream slot on this connection

    }
    // every session was refused (the event stream has each one), the flood is A's to count
    let refusedInbound = 0
    let cursor = start
    const end = Date.now() + 30_000
    while (refusedInbound < FLOOD && Date.now() < end) {
      const r = await a.client.call<SinceResult>('events.since', { cursor, timeoutMs: 1_000, types: ['session.refused'] })
      refusedInbound += r.events.filter((e) => e.data.direction === 'inbound' && e.data.peerId === mallory.peerId.toString()).length
      cursor = r.cursor
    }
    expect(refusedInbound).to.equal(FLOOD)
    const inbound = async (): Promise<AuditRecord[]> => (await a.client.call<{ records: AuditRecord[] }>('audit.show', {})).records
      .filter((r) => r.type === 'session.refused' && r.data.direction === 'inbound' && r.data.peerId === mallory.peerId.toString())
    const during = await inbound()
    expect(during.length).to.equal(1)
    expect(during[0].data).to.include({ code: 'NOT_AUTHORIZED', count: 1 })
    expect(during[0].data.share).to.equal(undefined)

    // at stop the open windows are written with their counts; the chain still verifies
    const exit = await a.stop()
    expect(exit.code).to.equal(0)
    const auditDir = join(dir, 'alpha', 'audit')
    let text = ''
    for (const f of (await readdir(auditDir)).filter((n) => n.endsWith('.jsonl')).sort()) text += await readFile(join(auditDir, f), 'utf8')
    const all = text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as AuditRecord)
    const flood = all.filter((r) => r.type === 'session.refused' && r.data.direction === 'inbound')
    expect(flood.map((r) => r.data.count)).to.deep.equal([1, FLOOD - 1])
    // besides the share and the outbound refusals (at most one line per window and key), nothing else
    expect(all.length).to.be.lessThan(10)
    const verified = await runCli(['audit', 'verify', '--data-dir', join(dir, 'alpha')])
    expect(verified.code, verified.stderr).to.equal(0)
  })
})
