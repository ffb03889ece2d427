/**
 * Event stream and audit trail with two organisations as real daemon processes: B follows its events with
 * repeated `events.since` calls (what `events --follow` does) while A and B set up a share under a named key and A
 * writes a document; the CLI prints events as JSON lines and follows them; stale and malformed cursors get their
 * typed errors; the audit trail holds the key, share, session and reload records, verifies clean, holds no secret
 * and no document content, and an edited, removed or reordered line in a copy is reported with file and line.
 */
import { expect } from 'chai'
import { spawn } from 'node:child_process'
import { cp, readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { AuditRecord } from '../../src/daemon/audit.js'
import type { DaemonEvent, SinceResult } from '../../src/daemon/events.js'
import { CLI, eventually, killAll, rpcError, runCli, startDaemon, testConfig, writeJson, type DaemonProcess } from '../utils/daemon-proc.js'
import { removeDir, tempDir } from '../utils/tmp.js'

const KEY = 'events-key'
const KEY_PW = 'events-key-password-31'
const TOPIC = 'events-topic-secret-0123456789abcdef'
const DB = 'events'
const FIELD_VALUE = 'confidential-field-value-7f3a'

interface NodeInfo { peerId: string, addresses: string[], tenant: Record<string, unknown> }

const partnerOf = (info: NodeInfo): Record<string, unknown> => ({ peerId: info.peerId, tenant: info.tenant, addresses: info.addresses })

/** Calls events.since from `cursor` until `done` holds for the events seen so far (bounded), like `events --follow`. */
async function follow (d: DaemonProcess, cursor: string | undefined, done: (seen: DaemonEvent[]) => boolean, what: string, timeoutMs = 30_000): Promise<{ seen: DaemonEvent[], cursor: string }> {
  const seen: DaemonEvent[] = []
  const end = Date.now() + timeoutMs
  let at = cursor
  while (!done(seen)) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}; saw ${seen.map((e) => e.type).join(', ')}`)
    const r = await d.client.call<SinceResult>('events.since', { ...(at === undefined ? {} : { cursor: at }), timeoutMs: 2_000 })
    seen.push(...r.events)
    at = r.cursor
  }
  return { seen, cursor: at as string }
}

/** The newest cursor (drains what is buffered). */
async function latest (d: DaemonProcess): Promise<string> {
  let r = await d.client.call<SinceResult>('events.since', { timeoutMs: 0 })
  while (r.more) r = await d.client.call<SinceResult>('events.since', { cursor: r.cursor, timeoutMs: 0 })
  return r.cursor
}

async function auditText (dataDir: string): Promise<string> {
  const dir = join(dataDir, 'audit')
  let text = ''
  for (const f of (await readdir(dir)).sort()) text += await readFile(join(dir, f), 'utf8')
  return text
}

describe('daemon: event stream and audit trail', function () {
  this.timeout(120_000)
  let dir: string
  let a: DaemonProcess
  let b: DaemonProcess
  let infoA: NodeInfo
  let infoB: NodeInfo
  let blob: string
  let docId: string
  let configFileA: string

  before(async () => {
    dir = await tempDir('mindoodb-events-')
    configFileA = await writeJson(join(dir, 'alpha.json'), testConfig(dir, 'alpha'))
    ;[a, b] = await Promise.all([
      startDaemon(configFileA),
      startDaemon(await writeJson(join(dir, 'beta.json'), testConfig(dir, 'beta')))
    ])
    ;[infoA, infoB] = await Promise.all([a.client.call<NodeInfo>('node.info'), b.client.call<NodeInfo>('node.info')])
  })

  after(async () => {
    await Promise.all([a?.dispose(), b?.dispose()])
    await killAll()
    await removeDir(dir)
  })

  it('should stream partner, session, round, key, share and documents-changed events in order while two organisations sync', async () => {
    const startB = await latest(b)
    blob = (await a.client.call<{ blob: string }>('key.create', { keyId: KEY, password: KEY_PW })).blob
    await b.client.call('key.import', { keyId: KEY, blob, password: KEY_PW })
    await a.client.call('share.add', { share: { id: DB, topicSecret: TOPIC, database: DB, partners: [partnerOf(infoB)] } })
    await b.client.call('share.add', { share: { id: DB, topicSecret: TOPIC, database: DB, partners: [partnerOf(infoA)] } })
    docId = (await a.client.call<{ docId: string }>('doc.create', { database: DB, keyId: KEY, data: { title: FIELD_VALUE } })).docId

    const { seen } = await follow(b, startB, (s) => s.some((e) => e.type === 'documents.changed' && (e.data.docIds as string[]).includes(docId)) && s.some((e) => e.type === 'round.finished' && e.data.ok === true), 'documents.changed and a finished round at B')
    const types = new Set(seen.map((e) => e.type))
    for (const t of ['key.imported', 'share.added', 'partner.connected', 'round.started', 'round.finished', 'documents.changed']) expect(types, t).to.include(t)
    // ordered, without gaps (no type filter)
    seen.forEach((e, i) => { if (i > 0) expect(e.seq).to.equal(seen[i - 1].seq + 1) })
    const changed = seen.find((e) => e.type === 'documents.changed' && (e.data.docIds as string[]).includes(docId))
    expect(changed?.data).to.include({ database: DB })
    const share = seen.find((e) => e.type === 'share.added')
    expect(share?.data).to.include({ share: DB, database: DB, origin: 'rpc' })
    expect(JSON.stringify(seen)).not.to.include(TOPIC)
    expect(JSON.stringify(seen)).not.to.include(FIELD_VALUE)
    expect(JSON.stringify(seen)).not.to.include(blob)
    // A accepted B's session or B accepted A's: one of them saw the other's hello
    const accepted = await a.client.call<SinceResult>('events.since', { timeoutMs: 0, types: ['session.accepted'] })
    const acceptedB = seen.filter((e) => e.type === 'session.accepted')
    expect(accepted.events.length + acceptedB.length).to.be.greaterThan(0)
    // a type filter returns only those types from the same cursor
    const filtered = await b.client.call<SinceResult>('events.since', { cursor: startB, timeoutMs: 0, types: ['documents.changed'] })
    expect(filtered.events.length).to.be.greaterThan(0)
    expect(filtered.events.every((e) => e.type === 'documents.changed')).to.equal(true)
  })

  it('should print events as JSON lines and follow new ones with the CLI', async () => {
    const listed = await runCli(['--socket', a.ready.rpcSocket, '--json', 'events', '--types', 'key.created,share.added'])
    expect(listed.code, listed.stderr).to.equal(0)
    const lines = listed.stdout.trim().split('\n').map((l) => JSON.parse(l) as DaemonEvent & { cursor: string })
    expect(lines.map((l) => l.type)).to.deep.equal(['key.created', 'share.added'])
    expect(lines[0].data).to.deep.equal({ keyId: KEY, versions: 1 })

    const human = await runCli(['--socket', a.ready.rpcSocket, 'events', '--types', 'key.created'])
    expect(human.code, human.stderr).to.equal(0)
    expect(human.stdout).to.match(/^\S+Z #\d+ key\.created keyId=events-key versions=1\n$/)

    // --follow waits for the next event: a rotation after it started
    const cursor = await latest(a)
    const child = spawn(process.execPath, [CLI, '--socket', a.ready.rpcSocket, '--json', 'events', '--follow', '--types', 'key.rotated', '--cursor', cursor, '--max', '1'], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    let err = ''
    child.stdout.setEncoding('utf8').on('data', (c: string) => { out += c })
    child.stderr.setEncoding('utf8').on('data', (c: string) => { err += c })
    const exited = new Promise<number | null>((resolve) => child.on('close', resolve))
    try {
      await a.client.call('key.rotate', { keyId: KEY, password: KEY_PW })
      const code = await Promise.race([exited, new Promise<'timeout'>((resolve) => setTimeout(() => { resolve('timeout') }, 30_000))])
      expect(code, err).to.equal(0)
    } finally {
      child.kill('SIGKILL')
    }
    const followed = out.trim().split('\n').map((l) => JSON.parse(l) as DaemonEvent)
    expect(followed.map((e) => [e.type, e.data.keyId, e.data.versions])).to.deep.equal([['key.rotated', KEY, 2]])
  })

  it('should refuse a stale cursor with EVENTS_CURSOR_STALE and bad params with -32602', async () => {
    const stale = await rpcError(a.client.call('events.since', { cursor: '0123456789abcdef-1', timeoutMs: 0 }))
    expect(stale.rpcCode).to.equal(-32000)
    expect(stale.dataCode).to.equal('EVENTS_CURSOR_STALE')
    const cli = await runCli(['--socket', a.ready.rpcSocket, 'events', '--cursor', '0123456789abcdef-1'])
    expect(cli.code).to.equal(1)
    expect(cli.stderr).to.include('EVENTS_CURSOR_STALE')
    for (const params of [{ timeoutMs: -1 }, { timeoutMs: 10 ** 7 }, { types: ['no.such.type'] }, { cursor: 'garbage' }, { cursor: 5 }, { since: 1 }]) {
      const bad = await rpcError(a.client.call('events.since', params))
      expect(bad.rpcCode, JSON.stringify(params)).to.equal(-32602)
    }
    expect((await runCli(['--socket', a.ready.rpcSocket, 'events', '--types', 'nope'])).code).to.equal(2)
  })

  it('should record keys, shares, sessions and reloads in an audit trail that verifies and holds no secret', async () => {
    a.signal('SIGHUP')
    await eventually(async () => {
      const r = await a.client.call<{ records: AuditRecord[] }>('audit.show', {})
      return r.records.some((x) => x.type === 'config.reloaded') ? true : undefined
    }, 'config.reloaded in the audit trail')
    const shown = await runCli(['--socket', a.ready.rpcSocket, '--json', 'audit', 'show'])
    expect(shown.code, shown.stderr).to.equal(0)
    const records = (JSON.parse(shown.stdout) as { records: AuditRecord[] }).records
    const types = records.map((r) => r.type)
    for (const t of ['key.created', 'key.rotated', 'share.added', 'config.reloaded']) expect(types, t).to.include(t)
    expect(types.filter((t) => t === 'session.accepted' || t === 'session.refused').length + (await b.client.call<{ records: AuditRecord[] }>('audit.show', {})).records.filter((r) => r.type === 'session.accepted').length).to.be.greaterThan(0)
    const since = await runCli(['--socket', a.ready.rpcSocket, 'audit', 'show', '--since', String(records[1].seq)])
    expect(since.code, since.stderr).to.equal(0)
    expect(since.stdout.split('\n')[0]).to.match(/^#1 \S+Z /)

    const verified = await runCli(['--socket', a.ready.rpcSocket, 'audit', 'verify'])
    expect(verified.code, verified.stderr).to.equal(0)
    expect(verified.stdout).to.match(/^audit trail ok: \d+ records/)

    // no topic secret, key blob, password, tenant password or document content, at either side
    for (const d of [join(dir, 'alpha'), join(dir, 'beta')]) {
      const text = await auditText(d)
      const tenantPassword = (await readFile(join(d, 'tenant-password'), 'utf8')).trim()
      for (const secret of [TOPIC, blob, blob.slice(10, 50), KEY_PW, tenantPassword, FIELD_VALUE]) expect(text).not.to.include(secret)
      for (const line of text.split('\n').filter((l) => l !== '')) JSON.parse(line)
    }
  })

  it('should report an edited, a removed and a reordered line of a copy with its file and line', async () => {
    const copy = join(dir, 'alpha-copy')
    await cp(join(dir, 'alpha', 'audit'), join(copy, 'audit'), { recursive: true })
    const clean = await runCli(['audit', 'verify', '--data-dir', copy])
    expect(clean.code, clean.stderr).to.equal(0)
    const file = join(copy, 'audit', 'audit-000001.jsonl')
    const original = (await readFile(file, 'utf8')).split('\n').filter((l) => l !== '')
    expect(original.length).to.be.greaterThan(3)
    const check = async (list: string[], line: number): Promise<void> => {
      await writeFile(file, list.map((l) => l + '\n').join(''))
      const r = await runCli(['audit', 'verify', '--data-dir', copy])
      expect(r.code).to.equal(1)
      expect(r.stderr).to.include('AUDIT_TAMPERED')
      expect(r.stderr).to.include(`audit-000001.jsonl line ${line}:`)
    }
    await check(original.map((l, i) => i === 1 ? l.replace('"time":"20', '"time":"19') : l), 2)
    await check([original[0], ...original.slice(2)], 2)
    await check([original[0], original[2], original[1], ...original.slice(3)], 2)

    // the daemon's own check says the same over RPC
    const live = join(dir, 'alpha', 'audit', 'audit-000001.jsonl')
    const first = (await readFile(live, 'utf8')).split('\n')[0]
    const edit = async (from: string, to: string): Promise<void> => {
      // only the first line changes: lines the daemon appends meanwhile stay
      const lines = (await readFile(live, 'utf8')).split('\n')
      expect(lines[0]).to.equal(from)
      lines[0] = to
      await writeFile(live, lines.join('\n'))
    }
    const forged = first.replace('"versions":1', '"versions":7')
    expect(forged).not.to.equal(first)
    await edit(first, forged)
    const err = await rpcError(a.client.call('audit.verify', {}))
    expect(err.dataCode).to.equal('AUDIT_TAMPERED')
    expect(err.message).to.include('audit-000001.jsonl line 1:')
    await edit(forged, first)
    expect((await a.client.call<{ ok: boolean }>('audit.verify', {})).ok).to.equal(true)
  })
})
