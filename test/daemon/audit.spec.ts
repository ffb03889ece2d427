/**
 * The audit trail's chain and rotation, on real files: records chain across rotated files, and an edited, removed,
 * inserted or reordered line anywhere (also in an older file), a removed file or removed last lines are reported
 * with their file and line as AUDIT_TAMPERED; an incomplete last line is AUDIT_TORN, and the next open cuts it off
 * and records that in the chain.
 */
import { expect } from 'chai'
import { appendFile, readFile, rm, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { AuditLog, auditFiles, readAudit, recordHash, verifyAudit, type AuditRecord } from '../../src/daemon/audit.js'
import { AuditFeed } from '../../src/daemon/audit-feed.js'
import { EventBus } from '../../src/daemon/events.js'
import { AuditTamperedError, AuditTornError } from '../../src/errors.js'
import { silentLogger } from '../../src/util/logger.js'
import { removeDir, tempDir } from '../utils/tmp.js'

async function failure (p: Promise<unknown>): Promise<AuditTamperedError | AuditTornError> {
  try {
    await p
  } catch (err) {
    if (err instanceof AuditTamperedError || err instanceof AuditTornError) return err
    throw err
  }
  throw new Error('verify passed')
}

async function lines (dir: string, file: string): Promise<string[]> {
  return (await readFile(join(dir, file), 'utf8')).split('\n').filter((l) => l !== '')
}

async function writeLines (dir: string, file: string, list: string[]): Promise<void> {
  await writeFile(join(dir, file), list.map((l) => l + '\n').join(''))
}

describe('audit trail: chain and rotation', () => {
  let dir: string
  let log: AuditLog

  beforeEach(async () => {
    dir = join(await tempDir('mindoodb-audit-'), 'audit')
    // small files: 30 records make several of them
    log = new AuditLog({ dir, maxFileBytes: 1200 })
    await log.open()
    for (let i = 0; i < 30; i++) await log.append('share.updated', { share: `s${i}`, fields: ['partners'] })
  })

  afterEach(async () => {
    await removeDir(join(dir, '..'))
  })

  it('should chain every record to the one before, across rotated files, and verify clean', async () => {
    const files = await auditFiles(dir)
    expect(files.length).to.be.greaterThan(2)
    const all: AuditRecord[] = []
    for await (const r of readAudit(dir)) all.push(r)
    expect(all.map((r) => r.seq)).to.deep.equal([...Array(30).keys()])
    expect(all[0].prev).to.equal('0'.repeat(64))
    for (let i = 1; i < all.length; i++) expect(all[i].prev).to.equal(all[i - 1].hash)
    for (const r of all) expect(recordHash(r)).to.equal(r.hash)
    // the first line of a file chains to the last line of the one before
    const second = JSON.parse((await lines(dir, files[1].name))[0]) as AuditRecord
    const firstFile = await lines(dir, files[0].name)
    expect(second.prev).to.equal((JSON.parse(firstFile[firstFile.length - 1]) as AuditRecord).hash)
    const result = await verifyAudit(dir)
    expect(result).to.include({ ok: true, records: 30, firstSeq: 0, lastSeq: 29 })
    expect(result.files.length).to.equal(files.length)
  })

  it('should go on with the chain after a reopen', async () => {
    const again = new AuditLog({ dir, maxFileBytes: 1200 })
    await again.open()
    const r = await again.append('config.reloaded', { shares: [] })
    expect(r.seq).to.equal(30)
    expect((await verifyAudit(dir)).records).to.equal(31)
  })

  it('should report an edited line in an older file where it is', async () => {
    const [first] = await auditFiles(dir)
    const list = await lines(dir, first.name)
    list[2] = list[2].replace('"s2"', '"sX"')
    await writeLines(dir, first.name, list)
    const err = await failure(verifyAudit(dir))
    expect(err).to.be.instanceOf(AuditTamperedError)
    expect(err.code).to.equal('AUDIT_TAMPERED')
    expect(err.location).to.deep.equal({ file: first.name, line: 3, seq: 2 })
  })

  it('should report an edited line whose hash was recomputed at the line after it', async () => {
    const [first] = await auditFiles(dir)
    const list = await lines(dir, first.name)
    const r = JSON.parse(list[1]) as AuditRecord
    r.data = { share: 'forged' }
    r.hash = recordHash(r)
    list[1] = JSON.stringify(r)
    await writeLines(dir, first.name, list)
    const err = await failure(verifyAudit(dir))
    expect(err.code).to.equal('AUDIT_TAMPERED')
    expect(err.location).to.include({ file: first.name, line: 3 })
  })

  it('should report a removed, an inserted and a reordered line', async () => {
    const files = await auditFiles(dir)
    const name = files[1].name
    const original = await lines(dir, name)

    await writeLines(dir, name, [original[0], ...original.slice(2)])
    expect((await failure(verifyAudit(dir))).location).to.include({ file: name, line: 2 })

    await writeLines(dir, name, [original[0], original[1], original[1], ...original.slice(2)])
    expect((await failure(verifyAudit(dir))).location).to.include({ file: name, line: 3 })

    await writeLines(dir, name, [original[1], original[0], ...original.slice(2)])
    const reordered = await failure(verifyAudit(dir))
    expect(reordered.code).to.equal('AUDIT_TAMPERED')
    expect(reordered.location).to.include({ file: name, line: 1 })

    await writeLines(dir, name, original)
    expect((await verifyAudit(dir)).records).to.equal(30)
  })

  it('should report a removed file, and lines removed at the end (the head names them)', async () => {
    const files = await auditFiles(dir)
    const middle = await readFile(join(dir, files[1].name))
    await rm(join(dir, files[1].name))
    expect((await failure(verifyAudit(dir))).location).to.include({ file: files[2].name, line: 1 })
    await writeFile(join(dir, files[1].name), middle)

    const last = files[files.length - 1].name
    const list = await lines(dir, last)
    await writeLines(dir, last, list.slice(0, -1))
    const err = await failure(verifyAudit(dir))
    expect(err.code).to.equal('AUDIT_TAMPERED')
    expect(err.location.file).to.equal(last)
    expect(err.location.line).to.equal(list.length)
  })

  it('should report an incomplete last line as torn, not as tampering, and cut it off at the next open', async () => {
    const files = await auditFiles(dir)
    const last = files[files.length - 1].name
    const count = (await lines(dir, last)).length
    await appendFile(join(dir, last), '{"seq":30,"time":"2026-')
    const err = await failure(verifyAudit(dir))
    expect(err).to.be.instanceOf(AuditTornError)
    expect(err.code).to.equal('AUDIT_TORN')
    expect(err.location).to.deep.equal({ file: last, line: count + 1, seq: 30 })

    const again = new AuditLog({ dir, maxFileBytes: 1200 })
    await again.open()
    const result = await verifyAudit(dir)
    expect(result.records).to.equal(31)
    const records: AuditRecord[] = []
    for await (const r of readAudit(dir, { since: 30 })) records.push(r)
    expect(records.map((r) => r.type)).to.deep.equal(['audit.recovered'])
    expect(records[0].data).to.deep.equal({ file: last, droppedBytes: 23 })
  })

  it('should refuse to open a trail whose newest complete line is no record (AUDIT_TAMPERED), and not change it', async () => {
    const files = await auditFiles(dir)
    const last = files[files.length - 1].name
    await appendFile(join(dir, last), 'not a record\n')
    const before = await readFile(join(dir, last), 'utf8')
    const err = await failure(new AuditLog({ dir }).open())
    expect(err.code).to.equal('AUDIT_TAMPERED')
    expect(err.location.file).to.equal(last)
    expect(await readFile(join(dir, last), 'utf8')).to.equal(before)
  })

  it('should show records from a seq or a time on', async () => {
    const bySeq: number[] = []
    for await (const r of readAudit(dir, { since: 25 })) bySeq.push(r.seq)
    expect(bySeq).to.deep.equal([25, 26, 27, 28, 29])
    const future: number[] = []
    for await (const r of readAudit(dir, { since: new Date(Date.now() + 60_000).toISOString() })) future.push(r.seq)
    expect(future).to.deep.equal([])
  })
})

describe('audit feed: what goes into the trail', () => {
  let dir: string

  beforeEach(async () => {
    dir = join(await tempDir('mindoodb-audit-feed-'), 'audit')
  })

  afterEach(async () => {
    await removeDir(join(dir, '..'))
  })

  it('should write a flood of refused sessions as one line per window and key, and leave rounds out', async () => {
    const log = new AuditLog({ dir })
    await log.open()
    const bus = new EventBus()
    const feed = new AuditFeed(log, { logger: silentLogger, windowMs: 60_000 })
    bus.subscribe((e) => { feed.accept(e) })
    for (let i = 0; i < 5000; i++) bus.publish('session.refused', { peerId: 'peer-x', share: 's', direction: 'inbound', code: 'SHARE_DISABLED' })
    for (let i = 0; i < 100; i++) bus.publish('round.started', { peerId: 'peer-x', share: 's', role: 'initiator' })
    bus.publish('key.created', { keyId: 'k', versions: 1 })
    await feed.flush()
    const records: AuditRecord[] = []
    for await (const r of readAudit(dir)) records.push(r)
    expect(records.map((r) => [r.type, r.data.count])).to.deep.equal([
      ['session.refused', 1], ['key.created', undefined], ['session.refused', 4999]
    ])
    expect((await verifyAudit(dir)).records).to.equal(3)
  })

  it('should bound the keys it counts: beyond them, sessions are counted under peer *', async () => {
    const log = new AuditLog({ dir })
    await log.open()
    const feed = new AuditFeed(log, { logger: silentLogger, maxKeys: 4 })
    const bus = new EventBus()
    bus.subscribe((e) => { feed.accept(e) })
    for (let i = 0; i < 1000; i++) bus.publish('session.refused', { peerId: `peer-${i}`, direction: 'inbound', code: 'NOT_AUTHORIZED' })
    await feed.flush()
    const records: AuditRecord[] = []
    for await (const r of readAudit(dir)) records.push(r)
    // four keys, the fifth peer opens the `*` window; the 995 after it are counted there
    expect(records.length).to.equal(6)
    expect(records[5].data).to.include({ peerId: '*', count: 995 })
  })
})
