/**
 * SIGHUP reloads the shares of a running daemon from its config file: an added share appears in share.list and
 * starts syncing, a changed filter applies, a removed share goes, all without a restart. An invalid edit keeps
 * the running shares, logs an error line, and the daemon keeps serving. Shares added over RPC are left alone.
 */
import { expect } from 'chai'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { ShareStatus } from '../../src/p2p/index.js'
import { eventually, killAll, startDaemon, testConfig, writeJson, type DaemonProcess, type LogLine } from '../utils/daemon-proc.js'
import { removeDir, tempDir } from '../utils/tmp.js'

const TOPIC = 'reload-topic-secret-0123456789'
const RPC_TOPIC = 'reload-rpc-topic-secret-0123456789'

interface ShareView { id: string, origin: string, enabled: boolean, filter: { kind: string }, topicSecret?: string }

describe('daemon: SIGHUP reloads the shares', function () {
  this.timeout(60_000)
  let dir: string
  let a: DaemonProcess | undefined
  let b: DaemonProcess | undefined

  before(async () => { dir = await tempDir('mindoodb-daemon-reload-') })
  after(async () => {
    await Promise.all([a?.dispose(), b?.dispose()])
    await killAll()
    await removeDir(dir)
  })

  it('applies added, changed and removed shares without a restart; an invalid edit keeps the running ones', async () => {
    const bConfig = testConfig(dir, 'beta')
    const bFile = await writeJson(join(dir, 'beta.json'), bConfig)
    ;[a, b] = await Promise.all([startDaemon(await writeJson(join(dir, 'alpha.json'), testConfig(dir, 'alpha'))), startDaemon(bFile)])
    const A = a
    const B = b
    const partner = (d: DaemonProcess): Record<string, unknown> => ({ peerId: d.ready.peerId, tenant: d.ready.tenant, addresses: d.ready.addresses })
    const shares = async (): Promise<ShareView[]> => (await B.client.call<{ shares: ShareView[] }>('share.list')).shares
    const status = async (d: DaemonProcess, id: string): Promise<ShareStatus> => (await d.client.call<{ shares: ShareStatus[] }>('sync.status', { share: id })).shares[0]
    /** Rewrites B's config, sends SIGHUP and waits for the log line that says how it went. */
    const hup = async (content: string | Record<string, unknown>, expectMsg: string): Promise<LogLine> => {
      await writeFile(bFile, typeof content === 'string' ? content : JSON.stringify(content, null, 2))
      const from = B.lines.length
      B.signal('SIGHUP')
      return await B.waitForLog((l) => l.msg === 'config reloaded' || l.msg.startsWith('reload failed'), `the reload log line (${expectMsg})`, 10_000, from)
    }

    // A serves its database to B; B has no share yet
    await A.client.call('share.add', { share: { id: 'hup', topicSecret: TOPIC, database: 'hup', partners: [partner(B)] } })
    for (let i = 0; i < 3; i++) await A.client.call('doc.create', { database: 'hup', data: { n: i } })
    const served = (await status(A, 'hup')).servedSetSize
    expect(served).to.equal(6)
    // a share B adds over RPC is not the config's business
    await B.client.call('share.add', { share: { id: 'by-rpc', topicSecret: RPC_TOPIC, database: 'other', partners: [partner(A)] } })
    expect((await shares()).map((s) => s.id)).to.deep.equal(['by-rpc'])

    // 1. add a share to the file, SIGHUP: it appears and syncs
    const share = { id: 'hup', topicSecret: TOPIC, database: 'hup-at-beta', partners: [partner(A)] }
    const added = await hup({ ...bConfig, shares: [share] }, 'config reloaded')
    expect(added).to.include({ level: 'info', msg: 'config reloaded' })
    const listed = await shares()
    expect(listed.map((s) => s.id).sort()).to.deep.equal(['by-rpc', 'hup'])
    expect(listed.find((s) => s.id === 'hup')).to.include({ origin: 'config', enabled: true }).and.not.have.property('topicSecret')
    await eventually(async () => (await status(B, 'hup')).servedSetSize === served ? true : undefined, 'B to receive A\'s changes after SIGHUP')
    expect((await status(B, 'hup')).totals.changesReceived).to.equal(served)

    // 2. change its filter: applied in place
    const changed = await hup({ ...bConfig, shares: [{ ...share, filter: { kind: 'type', types: ['order'] } }] }, 'config reloaded')
    expect(changed.msg).to.equal('config reloaded')
    expect((await B.client.call<ShareView>('share.get', { id: 'hup' })).filter).to.deep.equal({ kind: 'type', types: ['order'] })

    // 3. invalid edits: an error line, the running shares stay, the daemon keeps serving
    const invalid = await hup({ ...bConfig, shares: [{ ...share, topicSecret: 'short' }] }, 'reload failed; keeping the running shares')
    expect(invalid).to.include({ level: 'error', code: 'INVALID_CONFIG' })
    expect(String(invalid.err)).to.include('/shares/0/topicSecret')
    const notJson = await hup('{ "shares": [', 'reload failed; keeping the running shares')
    expect(notJson).to.include({ level: 'error', code: 'INVALID_CONFIG' })
    expect(String(notJson.err)).to.include('not valid JSON')
    const unknownKey = await hup({ ...bConfig, shares: [share], colour: 'blue' }, 'reload failed; keeping the running shares')
    expect(String(unknownKey.err)).to.include('/colour')
    expect(B.exited).to.equal(undefined)
    expect(await B.client.call('health')).to.include({ status: 'ok' })
    const kept = await shares()
    expect(kept.map((s) => s.id).sort()).to.deep.equal(['by-rpc', 'hup'])
    expect(kept.find((s) => s.id === 'hup')?.filter).to.deep.equal({ kind: 'type', types: ['order'] })
    // ... and the kept share still syncs
    // (a changed share is a new share at the node: its totals started again at the filter change)
    const before = (await status(B, 'hup')).totals.changesReceived
    await A.client.call('doc.create', { database: 'hup', data: { n: 3 } })
    await eventually(async () => (await status(B, 'hup')).totals.changesReceived === before + 2 ? true : undefined, 'a new change to reach B after the failed reloads')

    // 4. remove it from the file: gone; the RPC share stays
    const removed = await hup(bConfig, 'config reloaded')
    expect(removed.msg).to.equal('config reloaded')
    expect((await shares()).map((s) => s.id)).to.deep.equal(['by-rpc'])

    // no secret in any log line, and a clean stop
    for (const d of [A, B]) {
      const log = JSON.stringify(d.lines)
      expect(log).to.not.include(TOPIC)
      expect(log).to.not.include(RPC_TOPIC)
    }
    expect(await B.stop('SIGTERM')).to.deep.equal({ code: 0, signal: null })
    expect(B.lines.map((l) => l.msg)).to.include('stopped')
  })
})
