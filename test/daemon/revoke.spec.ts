/**
 * Revoking a partner with three organisations as real daemon processes: alpha (A), beta (B) and gamma (C) share one
 * database in a full mesh under a named key A created. A revokes C with `mindoodb partner revoke`. Then C's sessions
 * are refused at A, a change C makes afterwards never reaches A (B relays it, A rejects it), what C wrote before
 * stays at A, and a document A writes under the rotated key is readable by B once B imports the printed blob, never
 * by C, which receives it through B. A's share comes from its config file: SIGHUP and a restart do not re-admit C.
 */
import { expect } from 'chai'
import { stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { RevocationResult } from '../../src/daemon/daemon.js'
import type { RoundResult, ShareStatus } from '../../src/p2p/index.js'
import { eventually, killAll, rpcError, runCli, startDaemon, testConfig, writeJson, type DaemonProcess } from '../utils/daemon-proc.js'
import { removeDir, tempDir } from '../utils/tmp.js'

const KEY = 'mesh-key'
const KEY_PW = 'mesh-key-password-7'
const ROTATE_PW = 'rotated-key-password-9'
const TOPIC = 'revoke-mesh-topic-secret-0123456789'
const DB = 'mesh'

interface DocView { docId: string, data: Record<string, unknown>, keyId: string }

const partner = (d: DaemonProcess): Record<string, unknown> => ({ peerId: d.ready.peerId, tenant: d.ready.tenant, addresses: d.ready.addresses })
const share = (...partners: DaemonProcess[]): Record<string, unknown> => ({ id: DB, topicSecret: TOPIC, database: DB, partners: partners.map(partner) })

async function status (d: DaemonProcess): Promise<ShareStatus> {
  return (await d.client.call<{ shares: ShareStatus[] }>('sync.status', { share: DB })).shares[0]
}

async function syncWait (d: DaemonProcess): Promise<RoundResult[]> {
  return (await d.client.call<{ results: RoundResult[] }>('sync.now', { share: DB, wait: true })).results
}

const get = async (d: DaemonProcess, docId: string): Promise<DocView> => await d.client.call<DocView>('doc.get', { database: DB, docId })
const create = async (d: DaemonProcess, data: Record<string, unknown>): Promise<string> =>
  (await d.client.call<DocView>('doc.create', { database: DB, keyId: KEY, data })).docId

describe('daemon: partner revoke with three organisations', function () {
  this.timeout(180_000)
  let dir: string
  let a: DaemonProcess
  let b: DaemonProcess
  let c: DaemonProcess
  let configA: Record<string, unknown>
  let configFileA: string

  before(async () => {
    dir = await tempDir('mindoodb-revoke-')
    ;[b, c] = await Promise.all([
      startDaemon(await writeJson(join(dir, 'beta.json'), testConfig(dir, 'beta'))),
      startDaemon(await writeJson(join(dir, 'gamma.json'), testConfig(dir, 'gamma')))
    ])
    // A's share is in its config file, naming both partners (SIGHUP and restarts re-read it)
    configA = testConfig(dir, 'alpha', { shares: [share(b, c)] })
    configFileA = await writeJson(join(dir, 'alpha.json'), configA)
    a = await startDaemon(configFileA)
    const { blob } = await a.client.call<{ blob: string }>('key.create', { keyId: KEY, password: KEY_PW })
    for (const d of [b, c]) await d.client.call('key.import', { keyId: KEY, blob, password: KEY_PW })
    await b.client.call('share.add', { share: share(a, c) })
    await c.client.call('share.add', { share: share(a, b) })
  })

  after(async () => {
    await Promise.all([a?.dispose(), b?.dispose(), c?.dispose()])
    await killAll()
    await removeDir(dir)
  })

  it('should cut C off at A, keep what C wrote before, and keep documents under the rotated key from C', async () => {
    // before: C writes, A and B read it
    const before = await create(c, { type: 'note', text: 'gamma before revocation' })
    await eventually(async () => await get(a, before), 'C\'s first document at A')
    await eventually(async () => await get(b, before), 'C\'s first document at B')

    // A revokes C by peer id through the CLI; the password for the rotated key comes from a file
    const pwFile = join(dir, 'rotate-password')
    await writeFile(pwFile, ROTATE_PW + '\n', { mode: 0o600 })
    const out = await runCli(['--socket', a.ready.rpcSocket, '--json', 'partner', 'revoke', c.ready.peerId, '--password-file', pwFile])
    expect(out.code, out.stderr).to.equal(0)
    const result = JSON.parse(out.stdout) as RevocationResult
    expect(result.revoked).to.deep.equal([{ peerId: c.ready.peerId, tenantId: 'gamma', signingPublicKey: c.ready.tenant.signingPublicKey }])
    expect(result.shares).to.deep.equal([DB])
    expect(result.rotated.map((r) => r.keyId)).to.deep.equal([KEY])
    const rotated = result.rotated[0]
    expect(rotated.versions).to.equal(2)
    expect(rotated.importers).to.deep.equal([{ share: DB, tenantId: 'beta', peerId: b.ready.peerId }])

    // one log line, no secret in it; the list is in the data directory, 0600
    const logged = await a.waitForLog((l) => l.msg === 'partner revoked', 'the revocation log line')
    expect(a.lines.filter((l) => l.msg === 'partner revoked')).to.have.length(1)
    expect(JSON.stringify(logged)).to.not.include(ROTATE_PW).and.not.include(rotated.blob)
    expect((await stat(join(dir, 'alpha', 'revoked.json'))).mode & 0o777).to.equal(0o600)
    const listed = await a.client.call<{ partners: Array<{ peerId: string }> }>('share.get', { id: DB })
    expect(listed.partners.map((p) => p.peerId)).to.deep.equal([b.ready.peerId])

    // C's sessions with A are refused
    const fromC = await syncWait(c)
    const withA = fromC.find((r) => r.peerId === a.ready.peerId)
    expect(withA?.ok, JSON.stringify(withA)).to.equal(false)

    // what C writes now reaches B (B still trusts C), and B relays it to A, which rejects it
    const after = await create(c, { type: 'note', text: 'gamma after revocation' })
    await eventually(async () => await get(b, after), 'C\'s new document at B')
    // (nothing was rejected before the revocation: every change came from a trusted partner)
    await eventually(async () => {
      const rounds = await syncWait(a)
      if (!rounds.every((r) => r.ok)) return undefined
      return Object.values((await status(a)).totals.rejected).reduce((x, y) => x + y, 0) > 0 ? true : undefined
    }, 'A to reject the relayed change of C')
    expect((await rpcError(get(a, after))).dataCode).to.equal('DOCUMENT_NOT_FOUND')
    // what C wrote before stays
    expect((await get(a, before)).data).to.deep.equal({ type: 'note', text: 'gamma before revocation' })

    // A writes under the rotated key: B reads it once it imports the printed blob; C, holding only the old version,
    // receives it through B and cannot read it
    const [sizeA, sizeB] = [(await status(a)).servedSetSize, (await status(b)).servedSetSize]
    const secret = await create(a, { type: 'note', text: 'after the rotation' })
    const written = (await status(a)).servedSetSize - sizeA
    await eventually(async () => (await status(b)).servedSetSize === sizeB + written ? true : undefined, 'B to store A\'s new changes')
    expect((await rpcError(get(b, secret))).dataCode).to.equal('DOCUMENT_NOT_FOUND')
    const blobFile = join(dir, 'rotated.blob')
    await writeFile(blobFile, rotated.blob)
    const imported = await runCli(['--socket', b.ready.rpcSocket, 'key', 'import', KEY, '--blob-file', blobFile, '--password-file', pwFile])
    expect(imported.code, imported.stderr).to.equal(0)
    expect((await eventually(async () => await get(b, secret), 'A\'s new document readable at B')).data).to.deep.equal({ type: 'note', text: 'after the rotation' })
    await eventually(async () => {
      await syncWait(c)
      return (await status(c)).servedSetSize === (await status(b)).servedSetSize ? true : undefined
    }, 'C to store every change B has, A\'s new one included')
    expect((await rpcError(get(c, secret))).dataCode).to.equal('DOCUMENT_NOT_FOUND')
  })

  it('should not re-admit C when the config that still names it is re-read (SIGHUP, restart)', async () => {
    const from = a.lines.length
    a.signal('SIGHUP')
    await a.waitForLog((l) => l.msg === 'config reloaded', 'the reload', 15_000, from)
    const warned = a.lines.slice(from).find((l) => l.level === 'warn' && String(l.msg).includes('revoked partner'))
    expect(warned, 'a warning that the config still names C').to.not.equal(undefined)
    const partners = async (d: DaemonProcess): Promise<string[]> =>
      (await d.client.call<{ partners: Array<{ peerId: string }> }>('share.get', { id: DB })).partners.map((p) => p.peerId)
    expect(await partners(a)).to.deep.equal([b.ready.peerId])

    await a.stop()
    a = await startDaemon(configFileA)
    expect(await partners(a)).to.deep.equal([b.ready.peerId])
    expect(a.lines.some((l) => l.level === 'warn' && String(l.msg).includes('revoked partner'))).to.equal(true)
    const fromC = await syncWait(c)
    expect(fromC.find((r) => r.peerId === a.ready.peerId)?.ok).to.equal(false)
    // revoking again: nothing named it any more
    const again = await a.client.call<RevocationResult>('partner.revoke', { partner: 'gamma', password: ROTATE_PW })
    expect(again).to.include({ alreadyRevoked: true })
    expect((await rpcError(a.client.call('partner.revoke', { partner: 'nobody', password: ROTATE_PW }))).dataCode).to.equal('PARTNER_NOT_FOUND')
  })
})
