/**
 * The audit trail in a backup, in one process with a real tenant, real LevelDB and real files: the backup holds the
 * chain as it was captured (a record appended after the capture is not in it, none is cut in half), the restore
 * copies it and appends `backup.restored` so the copy verifies and goes on from there; a backup without a trail
 * (an older one) restores to a new trail; a trail whose newest line is not a record is restored as it is and not
 * continued; a trail cut short during the backup fails the backup with AUDIT_TAMPERED.
 */
import { expect } from 'chai'
import { appendFile, readFile, truncate } from 'node:fs/promises'
import { join } from 'node:path'
import type { MindooTenant, TenantFactory } from '../../src/index.js'
import { AuditLog, readAudit, verifyAudit, type AuditCapture, type AuditRecord } from '../../src/daemon/audit.js'
import { captureFiles, restoreBackup, writeBackup, type BackupResult } from '../../src/daemon/backup.js'
import { AuditTamperedError } from '../../src/errors.js'
import { removeDir, tempDir, testFactory } from '../utils/tmp.js'

async function records (dir: string): Promise<AuditRecord[]> {
  const out: AuditRecord[] = []
  for await (const r of readAudit(dir)) out.push(r)
  return out
}

describe('daemon: the audit trail in backups', () => {
  let factory: TenantFactory
  let dataDir: string
  let cleanup: () => Promise<void>
  let tenant: MindooTenant
  let out: string
  let log: AuditLog

  beforeEach(async () => {
    ({ factory, dataDir, cleanup } = await testFactory())
    tenant = await factory.createTenant({ tenantId: 'org-a', tenantEncryptionKeyPassword: 'pw-a' })
    await (await tenant.openDB('notes')).createDocument()
    out = await tempDir('mindoodb-backup-audit-')
    // small files, so the chain spans several
    log = new AuditLog({ dir: join(dataDir, 'audit'), maxFileBytes: 600 })
    await log.open()
  })

  afterEach(async () => {
    await cleanup()
    await removeDir(out)
  })

  async function backup (capture: AuditCapture | undefined, between?: () => Promise<void>): Promise<BackupResult> {
    const snapshot = await tenant.openSnapshot(async () => await captureFiles(dataDir, 'org-a', undefined, capture))
    try {
      await between?.()
      return await writeBackup(join(out, 'a.bak'), { createdAt: Date.now(), tenantId: 'org-a', peerId: 'peer-a', dataDir }, snapshot)
    } finally {
      await snapshot.close()
    }
  }

  it('should carry the chain as captured across rotated files, restore it and continue it with backup.restored', async () => {
    for (let i = 0; i < 8; i++) await log.append('key.created', { keyId: `k${i}` })
    const capture = await log.capture()
    expect(capture.files.length).to.be.greaterThan(1)
    expect(capture.lastSeq).to.equal(7)
    // appended after the capture, before the backup is written: not in it
    const result = await backup(capture, async () => { await log.append('key.created', { keyId: 'late' }) })
    expect(result.files).to.include.members(['audit/audit-000001.jsonl', 'audit/head.json'])
    const restored = await restoreBackup(join(out, 'a.bak'), join(out, 'restored'))
    const dir = join(out, 'restored', 'audit')
    const copy = await records(dir)
    expect(copy.slice(0, 8)).to.deep.equal((await records(join(dataDir, 'audit'))).slice(0, 8))
    expect(copy.map((r) => r.data.keyId)).to.not.include('late')
    expect(copy[8]).to.deep.include({ seq: 8, type: 'backup.restored', prev: capture.lastHash })
    expect(copy[8].data).to.include({ sha256: result.sha256, peerId: 'peer-a', tenantId: 'org-a' })
    expect(restored.audit).to.deep.equal({ seq: 8, hash: copy[8].hash })
    expect(await verifyAudit(dir)).to.include({ ok: true, records: 9, lastSeq: 8 })
    // the restored trail goes on from there
    const next = new AuditLog({ dir, maxFileBytes: 600 })
    await next.open()
    expect(await next.append('key.created', { keyId: 'after' })).to.include({ seq: 9, prev: copy[8].hash })
    expect(await verifyAudit(dir)).to.include({ ok: true, lastSeq: 9 })
  })

  it('should start a new trail with backup.restored when the backup has none', async () => {
    await backup(undefined)
    const restored = await restoreBackup(join(out, 'a.bak'), join(out, 'restored'))
    const dir = join(out, 'restored', 'audit')
    expect((await records(dir)).map((r) => [r.seq, r.type])).to.deep.equal([[0, 'backup.restored']])
    expect(restored.audit).to.include({ seq: 0 })
    expect(await verifyAudit(dir)).to.include({ ok: true, records: 1 })
  })

  it('should restore a trail whose newest line is not a record as it is, without continuing it', async () => {
    await log.append('key.created', { keyId: 'k' })
    const file = join(dataDir, 'audit', 'audit-000001.jsonl')
    await appendFile(file, 'not a record\n')
    const capture = await log.capture()
    await backup(capture)
    const restored = await restoreBackup(join(out, 'a.bak'), join(out, 'restored'))
    expect(restored.audit).to.include({ error: 'AUDIT_TAMPERED' })
    expect(await readFile(join(out, 'restored', 'audit', 'audit-000001.jsonl'), 'utf8')).to.equal(await readFile(file, 'utf8'))
  })

  it('should fail a backup with AUDIT_TAMPERED when an audit file is cut short while it is written, keeping the previous file', async () => {
    for (let i = 0; i < 3; i++) await log.append('key.created', { keyId: `k${i}` })
    await backup(await log.capture())
    const previous = await readFile(join(out, 'a.bak'))
    const capture = await log.capture()
    let err: unknown
    try {
      await backup(capture, async () => { await truncate(join(dataDir, 'audit', 'audit-000001.jsonl'), 10) })
    } catch (e) {
      err = e
    }
    expect(err).to.be.instanceOf(AuditTamperedError)
    expect((await readFile(join(out, 'a.bak'))).equals(previous)).to.equal(true)
  })
})
