/**
 * Backups with real daemon processes: `mindoodb backup` while a partner syncs into the node, `mindoodb restore`
 * into an empty directory, the restored daemon coming back with the same peer id, tenant, keys and shares and
 * converging with its partner by fetching only what it lacked; a kill -9 during a backup leaving the previous
 * backup file and the store good; corrupt, truncated and foreign files and non-empty targets refused with typed
 * errors and nothing written.
 */
import { expect } from 'chai'
import { watch } from 'node:fs'
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { createTenantFactory } from '../../src/core/index.js'
import { BACKUP_MAGIC, restoreBackup, verifyBackup } from '../../src/daemon/backup.js'
import { BackupCorruptError, BackupVersionError, RestoreTargetNotEmptyError } from '../../src/errors.js'
import type { ShareStatus } from '../../src/p2p/index.js'
import { eventually, killAll, rpcBatch, rpcError, runCli, startDaemon, testConfig, writeJson, type DaemonProcess } from '../utils/daemon-proc.js'
import { removeDir, tempDir } from '../utils/tmp.js'

interface NodeInfo { peerId: string, addresses: string[], tenant: { tenantId: string, signingPublicKey: string } }
interface DocView { docId: string, data: Record<string, unknown> }
interface AuditRecord { seq: number, type: string, data: Record<string, unknown>, prev: string, hash: string }

/** The records `mindoodb audit show --json` prints. */
async function auditRecords (args: string[]): Promise<AuditRecord[]> {
  const out = await runCli(args)
  expect(out.code, out.stderr).to.equal(0)
  return (JSON.parse(out.stdout) as { records: AuditRecord[] }).records
}

const TOPIC = 'backup-orders-topic-secret-0123456789'
const NOTES_TOPIC = 'backup-notes-topic-secret-0123456789'
const partnerOf = (info: NodeInfo): Record<string, unknown> => ({ peerId: info.peerId, tenant: info.tenant, addresses: info.addresses })

async function shareStatus (d: DaemonProcess, id: string): Promise<ShareStatus> {
  const { shares } = await d.client.call<{ shares: ShareStatus[] }>('sync.status', { share: id })
  return shares[0]
}

async function storeHashes (dataDir: string, tenantId: string, database: string): Promise<string[]> {
  const factory = await createTenantFactory({ dataDir })
  try {
    const tenant = await factory.openTenant(tenantId)
    return await (await tenant.openDB(database)).getStore().getAllChangeHashes()
  } finally {
    await factory.close()
  }
}

describe('daemon: backup and restore', function () {
  this.timeout(180_000)
  let dir: string
  const procs: DaemonProcess[] = []
  const start = async (config: string): Promise<DaemonProcess> => {
    const d = await startDaemon(config)
    procs.push(d)
    return d
  }

  beforeEach(async () => {
    dir = await tempDir('mindoodb-backup-')
  })

  afterEach(async () => {
    await Promise.all(procs.splice(0).map(async (p) => { await p.dispose() }))
    await killAll()
    await removeDir(dir)
  })

  it('should back up while a partner syncs in, restore into an empty directory, and converge fetching only what it lacked', async () => {
    const a = await start(await writeJson(join(dir, 'alpha.json'), testConfig(dir, 'alpha')))
    const infoA = await a.client.call<NodeInfo>('node.info')
    // B: one share from its config file, one added over RPC (kept in shares.json)
    const bConfig = await writeJson(join(dir, 'beta.json'), testConfig(dir, 'beta', {
      shares: [{ id: 'orders', topicSecret: TOPIC, database: 'orders', partners: [partnerOf(infoA)] }]
    }))
    let b = await start(bConfig)
    const infoB = await b.client.call<NodeInfo>('node.info')
    await a.client.call('share.add', { share: { id: 'orders', topicSecret: TOPIC, database: 'orders', partners: [partnerOf(infoB)] } })
    await a.client.call('share.add', { share: { id: 'notes', topicSecret: NOTES_TOPIC, database: 'notes', partners: [partnerOf(infoB)] } })
    await b.client.call('share.add', { share: { id: 'notes', topicSecret: NOTES_TOPIC, database: 'notes', partners: [partnerOf(infoA)] } })
    const pwFile = join(dir, 'pw')
    await writeFile(pwFile, 'key-password-of-beta-0123\n', { mode: 0o600 })
    expect((await runCli(['--socket', b.ready.rpcSocket, 'key', 'create', 'beta-key', '--password-file', pwFile])).code).to.equal(0)
    await b.client.call('doc.create', { database: 'notes', keyId: 'beta-key', data: { text: 'kept by beta' } })
    // the orders are under a key both hold (B's copy must come back with the restore)
    const { blob } = await a.client.call<{ blob: string }>('key.create', { keyId: 'orders-key', password: 'orders-key-password-0123' })
    await b.client.call('key.import', { keyId: 'orders-key', blob, password: 'orders-key-password-0123' })

    // A writes orders; B receives them live; the backup is taken while A keeps writing
    const create = async (n: number, tag: string): Promise<string[]> => (await rpcBatch(a.ready.rpcSocket,
      Array.from({ length: n }, (_, i) => ({ method: 'doc.create', params: { database: 'orders', keyId: 'orders-key', data: { type: 'order', tag, i } } })))).map((d) => (d as DocView).docId)
    await create(20, 'first')
    await eventually(async () => (await shareStatus(b, 'orders')).totals.changesReceived >= 20 ? true : undefined, 'B to receive the first orders')
    let writing = true
    const writer = (async () => {
      let k = 0
      while (writing) await create(5, `during-${k++}`)
    })()
    // audited operations on B go on during the backup too (each key.created is an audit line)
    const auditedDuring: string[] = []
    const auditWriter = (async () => {
      while (writing) {
        const keyId = `during-key-${auditedDuring.length}`
        await b.client.call('key.create', { keyId, password: 'during-key-password-0123' })
        auditedDuring.push(keyId)
      }
    })()
    const backupFile = join(dir, 'beta.bak')
    const made = await runCli(['--socket', b.ready.rpcSocket, '--json', 'backup', backupFile])
    writing = false
    await writer
    await auditWriter
    expect(made.code, made.stderr).to.equal(0)
    const result = JSON.parse(made.stdout) as { path: string, entries: number, files: string[], peerId: string, tenantId: string, sha256: string }
    expect(result).to.include({ path: backupFile, peerId: infoB.peerId, tenantId: 'beta' })
    expect(result.files).to.include.members(['node/peer-key', 'shares.json', 'tenants/beta/tenant.json', 'audit/audit-000001.jsonl', 'audit/head.json'])
    expect((await stat(backupFile)).mode & 0o777).to.equal(0o600)
    expect((await verifyBackup(backupFile)).sha256).to.equal(result.sha256)
    expect((await readdir(dir)).filter((f) => f.endsWith('.tmp'))).to.deep.equal([])

    await b.stop()
    const bDataDir = join(dir, 'beta')
    const originalTrail = await auditRecords(['--json', 'audit', 'show', '--data-dir', bDataDir])
    // the original trail records the backup itself (after the point the backup was taken)
    expect(originalTrail.filter((x) => x.type === 'backup.created').map((x) => x.data.sha256)).to.deep.equal([result.sha256])
    const late = await create(5, 'after')
    const ordersAtA = (await shareStatus(a, 'orders')).servedSetSize

    // restore into an empty directory (CLI, no daemon)
    const target = join(dir, 'restored')
    await mkdir(target)
    const restored = await runCli(['--json', 'restore', backupFile, '--data-dir', target])
    expect(restored.code, restored.stderr).to.equal(0)
    const r = JSON.parse(restored.stdout) as { config: string, peerId: string, audit: { seq: number, hash: string } }
    expect(r.peerId).to.equal(infoB.peerId)
    // the audit trail came along: its chain verifies on the copy, ends with the restore's own record, and holds
    // what happened before the backup (a line written during it may or may not be in it)
    expect((await stat(join(target, 'audit', 'audit-000001.jsonl'))).mode & 0o777).to.equal(0o600)
    const verified = await runCli(['--json', 'audit', 'verify', '--data-dir', target])
    expect(verified.code, verified.stderr).to.equal(0)
    expect(JSON.parse(verified.stdout)).to.include({ ok: true, lastSeq: r.audit.seq, lastHash: r.audit.hash })
    const restoredTrail = await auditRecords(['--json', 'audit', 'show', '--data-dir', target])
    const last = restoredTrail[restoredTrail.length - 1]
    expect(last).to.deep.include({ seq: r.audit.seq, type: 'backup.restored' })
    expect(last.data).to.include({ sha256: result.sha256, peerId: infoB.peerId, tenantId: 'beta' })
    // every record before it is the original's, line for line, up to the point of the backup
    const copied = restoredTrail.slice(0, -1)
    expect(copied.length).to.be.greaterThan(0)
    expect(copied).to.deep.equal(originalTrail.slice(0, copied.length))
    expect(last.prev).to.equal(copied[copied.length - 1].hash)
    const keysIn = (trail: AuditRecord[]): string[] => trail.filter((x) => x.type === 'key.created').map((x) => String(x.data.keyId))
    expect(keysIn(copied)).to.include.members(['beta-key'])
    expect(copied.filter((x) => x.type === 'share.added').map((x) => x.data.share)).to.include('notes')
    // keys created during the backup: a prefix of them is in the copy, in order, and nothing else
    const duringInCopy = keysIn(copied).filter((k) => k.startsWith('during-key-'))
    expect(duringInCopy).to.deep.equal(auditedDuring.slice(0, duringInCopy.length))
    expect(copied.some((x) => x.type === 'backup.created')).to.equal(false)
    expect((await stat(join(target, 'node', 'peer-key'))).mode & 0o777).to.equal(0o600)
    expect((await stat(join(target, 'tenants', 'beta', 'tenant.json'))).mode & 0o777).to.equal(0o600)
    const had = await storeHashes(target, 'beta', 'orders')
    expect(had.length).to.be.greaterThan(20)
    expect(had.length).to.be.lessThan(ordersAtA)

    // the restored node: same identity, tenant, keys and shares
    const sentBefore = (await shareStatus(a, 'orders')).totals.changesSent
    b = await start(r.config)
    expect(b.ready.peerId).to.equal(infoB.peerId)
    expect(b.ready.tenant).to.deep.equal(infoB.tenant)
    const shares = (await b.client.call<{ shares: Array<{ id: string, origin: string }> }>('share.list')).shares
    expect(shares.map((s) => `${s.id}:${s.origin}`).sort()).to.deep.equal(['notes:rpc', 'orders:config'])
    expect((await b.client.call<{ keys: Array<{ keyId: string }> }>('key.list')).keys.map((k) => k.keyId)).to.include.members(['beta-key', 'orders-key'])
    const notes = await b.client.call<{ documents: DocView[] }>('doc.list', { database: 'notes' })
    expect(notes.documents.map((d) => d.data.text)).to.deep.equal(['kept by beta'])
    // the restored node continues the restored chain: its next records link onto the restore's record
    await b.client.call('key.create', { keyId: 'after-restore-key', password: 'after-restore-password-0123' })
    const continued = await eventually(async () => {
      const { records } = await b.client.call<{ records: AuditRecord[] }>('audit.show', { since: r.audit.seq })
      return records.some((x) => x.type === 'key.created') ? records : undefined
    }, 'the restored node to audit its new key')
    expect(continued[0]).to.deep.include({ seq: r.audit.seq, hash: r.audit.hash, type: 'backup.restored' })
    expect(continued[1].prev).to.equal(r.audit.hash)
    expect(continued[1].seq).to.equal(r.audit.seq + 1)
    const verifiedLive = await runCli(['--socket', b.ready.rpcSocket, '--json', 'audit', 'verify'])
    expect(verifiedLive.code, verifiedLive.stderr).to.equal(0)
    expect((JSON.parse(verifiedLive.stdout) as { lastSeq: number }).lastSeq).to.be.at.least(r.audit.seq + 1)

    // it converges with A and receives exactly what it lacked
    const status = await eventually(async () => {
      const s = await shareStatus(b, 'orders')
      return s.servedSetSize === ordersAtA ? s : undefined
    }, 'the restored B to converge with A', 60_000)
    expect(status.totals.changesReceived).to.equal(ordersAtA - had.length)
    expect((await shareStatus(a, 'orders')).totals.changesSent - sentBefore).to.equal(ordersAtA - had.length)
    // every order is readable there (each doc.create with data is two changes)
    await eventually(async () => (await b.client.call<{ documents: DocView[] }>('doc.list', { database: 'orders', limit: 1000 })).documents.length === ordersAtA / 2 ? true : undefined, 'every order readable at the restored B')
    for (const docId of late) {
      // stored is safe; materialising follows off the receive path
      const doc = await eventually(async () => await b.client.call<DocView>('doc.get', { database: 'orders', docId }), `order ${docId} readable`)
      expect(doc.data).to.include({ tag: 'after' })
    }
  })

  it('should leave the previous backup file and the store good when the daemon is killed -9 during a backup', async () => {
    const config = await writeJson(join(dir, 'gamma.json'), testConfig(dir, 'gamma'))
    let d = await start(config)
    // enough data that writing a backup takes a while
    const body = 'x'.repeat(4000)
    for (let round = 0; round < 8; round++) {
      await rpcBatch(d.ready.rpcSocket, Array.from({ length: 250 }, (_, i) => ({ method: 'doc.create', params: { database: 'bulk', data: { round, i, body } } })))
    }
    const backupDir = join(dir, 'backups')
    await mkdir(backupDir)
    const file = join(backupDir, 'gamma.bak')
    await d.client.call('backup.create', { path: file })
    let previous = await readFile(file)
    await d.client.call('doc.create', { database: 'bulk', data: { after: 'the first backup' } })

    // kill -9 as soon as the next backup's temporary file appears; retry (bounded) if a backup outran the kill
    let killedMidway = false
    for (let attempt = 0; attempt < 5 && !killedMidway; attempt++) {
      const victim = d
      const watcher = watch(backupDir, (_event, name) => {
        if (name !== null && name.endsWith('.tmp')) victim.signal('SIGKILL')
      })
      const call = victim.client.call('backup.create', { path: file }).then(() => 'done', () => 'failed')
      const exit = await victim.waitExit(60_000).catch(() => undefined)
      watcher.close()
      const outcome = await call
      killedMidway = exit?.signal === 'SIGKILL' && outcome === 'failed'
      if (process.env.BACKUP_TEST_DEBUG !== undefined) console.log({ attempt, killedMidway, outcome, exit })
      const current = await readFile(file)
      if (killedMidway) {
        expect(current.equals(previous), 'the previous backup file is untouched').to.equal(true)
      } else {
        // the backup finished first: it is good, and the previous one of the next attempt
        await victim.dispose()
        previous = current
      }
      await verifyBackup(file)
      if (!killedMidway) d = await start(config)
    }
    expect(killedMidway, 'a kill landed during a backup').to.equal(true)
    // the previous backup restores; the store opens and serves every document
    const target = join(dir, 'from-previous')
    const r = await restoreBackup(file, target)
    expect(r.tenantId).to.equal('gamma')
    expect((await storeHashes(target, 'gamma', 'bulk')).length).to.be.greaterThanOrEqual(2000)
    d = await start(config)
    const list = await d.client.call<{ documents: unknown[], more: boolean }>('doc.list', { database: 'bulk', limit: 1000 })
    expect(list.documents).to.have.length(1000)
    expect(list.more).to.equal(true)
    const dbs = await d.client.call<{ databases: string[] }>('db.list')
    expect(dbs.databases).to.include('bulk')
  })

  it('should refuse corrupt, truncated, foreign and newer backup files and non-empty targets with typed errors, writing nothing', async () => {
    const d = await start(await writeJson(join(dir, 'delta.json'), testConfig(dir, 'delta')))
    for (let i = 0; i < 5; i++) await d.client.call('doc.create', { database: 'db', data: { i } })
    const good = join(dir, 'good.bak')
    await d.client.call('backup.create', { path: good })
    const bytes = await readFile(good)

    const variants: Record<string, { data: Buffer, code: string }> = {
      flipped: { data: Buffer.from(bytes), code: 'BACKUP_CORRUPT' },
      truncated: { data: bytes.subarray(0, bytes.byteLength - 100), code: 'BACKUP_CORRUPT' },
      foreign: { data: Buffer.from('{"not":"a backup"}'.repeat(10)), code: 'BACKUP_CORRUPT' },
      newer: { data: Buffer.from(bytes), code: 'BACKUP_VERSION_UNSUPPORTED' }
    }
    variants.flipped.data[Math.floor(bytes.byteLength / 2)] ^= 0x01
    variants.newer.data.writeUInt32BE(99, BACKUP_MAGIC.byteLength)
    for (const [name, v] of Object.entries(variants)) {
      const file = join(dir, `${name}.bak`)
      await writeFile(file, v.data)
      const target = join(dir, `target-${name}`)
      const out = await runCli(['restore', file, '--data-dir', target])
      expect(out.code, `${name}: ${out.stderr}`).to.equal(1)
      expect(out.stderr, name).to.include(v.code)
      await stat(target).then(() => { throw new Error(`${name}: ${target} was created`) }, (err: NodeJS.ErrnoException) => { expect(err.code).to.equal('ENOENT') })
      const err = await restoreBackup(file, target).then(() => undefined, (e: unknown) => e)
      expect(err, name).to.be.instanceOf(v.code === 'BACKUP_CORRUPT' ? BackupCorruptError : BackupVersionError)
      expect((err as BackupCorruptError).code).to.equal(v.code)
    }

    // a target that is not empty: refused, and what is there stays
    const busy = join(dir, 'busy')
    await mkdir(busy)
    await writeFile(join(busy, 'keep.txt'), 'mine')
    const out = await runCli(['restore', good, '--data-dir', busy])
    expect(out.code).to.equal(1)
    expect(out.stderr).to.include('RESTORE_TARGET_NOT_EMPTY')
    const err = await restoreBackup(good, busy).then(() => undefined, (e: unknown) => e)
    expect(err).to.be.instanceOf(RestoreTargetNotEmptyError)
    expect(await readdir(busy)).to.deep.equal(['keep.txt'])
    expect(await readFile(join(busy, 'keep.txt'), 'utf8')).to.equal('mine')

    // bad RPC parameters: a relative path, a directory the daemon cannot write into
    expect((await rpcError(d.client.call('backup.create', { path: 'relative.bak' }))).rpcCode).to.equal(-32602)
    const nowhere = await rpcError(d.client.call('backup.create', { path: join(dir, 'missing-dir', 'x.bak') }))
    expect(nowhere.rpcCode).to.equal(-32602)
    expect(nowhere.dataCode).to.equal('INVALID_PARAMS')
    // a backup never replaces a file that is not a backup (the config, a key file)
    const configFile = join(dir, 'delta.json')
    const configBefore = await readFile(configFile)
    const overwrite = await rpcError(d.client.call('backup.create', { path: configFile }))
    expect(overwrite.rpcCode).to.equal(-32602)
    expect(await readFile(configFile)).to.deep.equal(configBefore)
    // the good file still restores
    expect((await restoreBackup(good, join(dir, 'ok'))).tenantId).to.equal('delta')
  })
})
