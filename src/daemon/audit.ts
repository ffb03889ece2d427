/**
 * The audit trail: an append-only, hash-chained log per node, as JSON lines in `<dataDir>/audit/`.
 *
 * Each line is one record `{ seq, time, type, data, prev, hash }`: `seq` counts from 0 without gaps over all
 * files, `prev` is the `hash` of the line before (64 zeros for the very first), and `hash` is the SHA-256 of the
 * record's other fields, as JSON in that order. Files are `audit-000001.jsonl`, `audit-000002.jsonl`...: when the
 * next line would make the current file larger than `maxFileBytes`, a new file starts, and its first line chains
 * to the last line of the one before. `head.json` names the newest record (seq and hash), so removing lines at the
 * end is seen too.
 *
 * Invariants:
 * 1. A line is written with one `write` of the line and its newline, then fdatasync, before the append resolves;
 *    `head.json` is replaced (atomically) after it. A crash leaves at most an incomplete last line (no newline),
 *    and a head one record behind.
 * 2. An incomplete last line is reported by `verifyAudit` as AUDIT_TORN, never as tampering; `open()` cuts it off
 *    and records `audit.recovered` in the chain.
 * 3. Records carry no secrets and no document content: the daemon only writes ids, codes and counts (see the
 *    daemon's audit feed), and partner-supplied text only clipped and as JSON string data.
 *
 * This makes the trail tamper-evident, not tamper-proof: anyone who can write the files can rewrite the whole
 * chain and its head (see SECURITY.md).
 */
import { createHash } from 'node:crypto'
import { mkdir, open, readdir, readFile, stat, truncate } from 'node:fs/promises'
import { join } from 'node:path'
import { AuditTamperedError, AuditTornError, InvalidArgumentError } from '../errors.js'
import { writeFileAtomic } from '../util/atomic-file.js'
import { Mutex } from '../util/mutex.js'
import { AUDIT_MAX_FILE_BYTES } from './constants.js'

export interface AuditRecord {
  seq: number
  time: string
  type: string
  data: Record<string, unknown>
  prev: string
  hash: string
}

export const AUDIT_GENESIS = '0'.repeat(64)
const FILE = /^audit-(\d{6})\.jsonl$/
/** The file naming the newest record, in the audit directory. */
export const AUDIT_HEAD_FILE = 'head.json'
const HEAD_FILE = AUDIT_HEAD_FILE

/** The audit trail at one point between two appends (see AuditLog.capture). */
export interface AuditCapture {
  /** Every audit file, oldest first, with its size at that point and its path. */
  files: Array<{ name: string, path: string, size: number }>
  /** The bytes of `head.json` at that point (absent before the first record). */
  head?: Uint8Array
  /** Seq and hash of the newest record (-1 and AUDIT_GENESIS when there is none). */
  lastSeq: number
  lastHash: string
}

export function auditFileName (index: number): string {
  return `audit-${String(index).padStart(6, '0')}.jsonl`
}

/** The hash of a record: SHA-256 over its fields but `hash`, as JSON in a fixed order. */
export function recordHash (r: Omit<AuditRecord, 'hash'>): string {
  return createHash('sha256').update(JSON.stringify({ seq: r.seq, time: r.time, type: r.type, data: r.data, prev: r.prev })).digest('hex')
}

/** The audit files of a directory, oldest first. */
export async function auditFiles (dir: string): Promise<Array<{ name: string, index: number }>> {
  let names: string[]
  try {
    names = await readdir(dir)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw err
  }
  return names.flatMap((name) => {
    const m = FILE.exec(name)
    return m === null ? [] : [{ name, index: Number(m[1]) }]
  }).sort((a, b) => a.index - b.index)
}

export interface AuditLogInit {
  /** The audit directory (`<dataDir>/audit`). */
  dir: string
  /** Default AUDIT_MAX_FILE_BYTES. */
  maxFileBytes?: number
  clock?: () => number
}

/** Appends records to the chain; one append at a time. */
export class AuditLog {
  readonly #dir: string
  readonly #max: number
  readonly #clock: () => number
  readonly #mutex = new Mutex()
  #index = 1
  #size = 0
  #seq = -1
  #prev = AUDIT_GENESIS
  #open = false

  constructor (init: AuditLogInit) {
    this.#dir = init.dir
    this.#max = init.maxFileBytes ?? AUDIT_MAX_FILE_BYTES
    this.#clock = init.clock ?? Date.now
  }

  get dir (): string {
    return this.#dir
  }

  /**
   * Finds the end of the chain; cuts off an incomplete last line and records that (`audit.recovered`, invariant 2),
   * returning what was cut off.
   */
  async open (): Promise<{ file: string, droppedBytes: number } | undefined> {
    if (this.#open) return undefined
    await mkdir(this.#dir, { recursive: true, mode: 0o700 })
    const files = await auditFiles(this.#dir)
    let torn: { file: string, bytes: number } | undefined
    for (let i = files.length - 1; i >= 0; i--) {
      const file = join(this.#dir, files[i].name)
      const text = await readFile(file, 'utf8')
      const end = text.lastIndexOf('\n') + 1
      if (end < text.length && torn === undefined) {
        torn = { file: files[i].name, bytes: Buffer.byteLength(text.slice(end)) }
        await truncate(file, Buffer.byteLength(text.slice(0, end)))
      }
      if (i === files.length - 1) {
        this.#index = files[i].index
        this.#size = Buffer.byteLength(text.slice(0, end))
      }
      const lines = text.slice(0, end).split('\n').filter((l) => l !== '')
      if (lines.length === 0) continue
      const lineNo = lines.length
      let last: AuditRecord
      try {
        last = JSON.parse(lines[lines.length - 1]) as AuditRecord
      } catch {
        throw new AuditTamperedError({ file: files[i].name, line: lineNo }, 'the last record is not JSON: run `mindoodb audit verify`')
      }
      if (!Number.isInteger(last.seq) || typeof last.hash !== 'string') throw new AuditTamperedError({ file: files[i].name, line: lineNo }, 'the last record has no seq or hash')
      this.#seq = last.seq
      this.#prev = last.hash
      break
    }
    this.#open = true
    if (torn === undefined) return undefined
    const recovered = { file: torn.file, droppedBytes: torn.bytes }
    await this.append('audit.recovered', recovered)
    return recovered
  }

  /** Appends one record (durable when this resolves: invariant 1). */
  async append (type: string, data: Record<string, unknown>): Promise<AuditRecord> {
    if (!this.#open) throw new InvalidArgumentError('the audit log is not open')
    return await this.#mutex.run(async () => await this.#append(type, data))
  }

  async #append (type: string, data: Record<string, unknown>): Promise<AuditRecord> {
    const body = { seq: this.#seq + 1, time: new Date(this.#clock()).toISOString(), type, data, prev: this.#prev }
    const record: AuditRecord = { ...body, hash: recordHash(body) }
    const line = Buffer.from(JSON.stringify(record) + '\n')
    if (this.#size > 0 && this.#size + line.length > this.#max) {
      this.#index++
      this.#size = 0
    }
    const handle = await open(join(this.#dir, auditFileName(this.#index)), 'a', 0o600)
    try {
      await handle.write(line)
      await handle.datasync()
    } finally {
      await handle.close()
    }
    this.#size += line.length
    this.#seq = record.seq
    this.#prev = record.hash
    await writeFileAtomic(join(this.#dir, HEAD_FILE), JSON.stringify({ seq: record.seq, hash: record.hash, file: auditFileName(this.#index) }) + '\n')
    return record
  }

  /**
   * The chain as it is between two appends, for a backup: every audit file with its size now, and the head's
   * bytes. Files only grow (and only the newest), so the first `size` bytes of each, read later, are this chain:
   * a line appended after the capture is not in it, and no line is cut in half.
   */
  async capture (): Promise<AuditCapture> {
    if (!this.#open) throw new InvalidArgumentError('the audit log is not open')
    return await this.#mutex.run(async () => {
      const files: AuditCapture['files'] = []
      for (const { name } of await auditFiles(this.#dir)) {
        const path = join(this.#dir, name)
        files.push({ name, path, size: (await stat(path)).size })
      }
      let head: Uint8Array | undefined
      try {
        head = await readFile(join(this.#dir, HEAD_FILE))
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
      }
      return { files, head, lastSeq: this.#seq, lastHash: this.#prev }
    })
  }

  /** Waits for the appends in flight. */
  async flush (): Promise<void> {
    await this.#mutex.run(async () => {})
  }
}

export interface AuditVerifyResult {
  ok: true
  files: Array<{ file: string, lines: number }>
  records: number
  /** Seq of the first and the newest record (undefined when the trail is empty). */
  firstSeq?: number
  lastSeq?: number
  lastHash?: string
}

/**
 * Checks the whole chain in `dir`, across files: every record's hash, its link to the one before, gapless seq
 * numbers and file numbers, and the head. Throws AuditTamperedError at the first break (file, line, seq), or
 * AuditTornError when only the newest line is incomplete.
 */
export async function verifyAudit (dir: string): Promise<AuditVerifyResult> {
  const files = await auditFiles(dir)
  const result: AuditVerifyResult = { ok: true, files: [], records: 0 }
  let prev = AUDIT_GENESIS
  let expected = 0
  let lastFile = ''
  let lastLine = 0
  for (let f = 0; f < files.length; f++) {
    const { name, index } = files[f]
    if (index !== f + 1) throw new AuditTamperedError({ file: name, line: 1 }, `audit file ${auditFileName(f + 1)} is missing`)
    const text = await readFile(join(dir, name), 'utf8')
    const lines = text.split('\n')
    const tail = lines.pop() ?? ''
    if (tail !== '') {
      const at = { file: name, line: lines.length + 1, seq: expected + lines.length }
      if (f < files.length - 1) throw new AuditTamperedError(at, 'a line without its newline in a file that is not the newest')
    }
    lines.forEach((line, i) => {
      const at = { file: name, line: i + 1, seq: expected }
      let r: AuditRecord
      try {
        r = JSON.parse(line) as AuditRecord
      } catch {
        throw new AuditTamperedError(at, 'not a JSON record')
      }
      if (r === null || typeof r !== 'object' || typeof r.hash !== 'string' || typeof r.prev !== 'string') throw new AuditTamperedError(at, 'not an audit record')
      if (r.seq !== expected) throw new AuditTamperedError(at, `seq ${String(r.seq)} where ${expected} was expected: a line was removed, inserted or moved here`)
      if (recordHash(r) !== r.hash) throw new AuditTamperedError(at, 'the record does not match its hash: it was edited')
      if (r.prev !== prev) throw new AuditTamperedError(at, 'the record does not chain to the line before it: a line was removed, inserted or moved here')
      prev = r.hash
      expected++
    })
    result.files.push({ file: name, lines: lines.length })
    result.records += lines.length
    if (lines.length > 0) {
      lastFile = name
      lastLine = lines.length
    }
    if (tail !== '') throw new AuditTornError({ file: name, line: lines.length + 1, seq: expected }, `the newest line is incomplete (a crash during its write); the ${expected} records before it verify`)
  }
  if (result.records > 0) {
    result.firstSeq = 0
    result.lastSeq = expected - 1
    result.lastHash = prev
  }
  // the head names the newest record written: a chain that ends before it lost its last lines
  let head: { seq?: unknown, hash?: unknown } | undefined
  try {
    head = JSON.parse(await readFile(join(dir, HEAD_FILE), 'utf8')) as { seq?: unknown, hash?: unknown }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new AuditTamperedError({ file: HEAD_FILE, line: 1 }, 'the head is not JSON')
    if (result.records > 0) throw new AuditTamperedError({ file: HEAD_FILE, line: 1 }, 'the head file is missing')
  }
  if (head !== undefined) {
    const seq = head.seq
    if (typeof seq !== 'number' || !Number.isInteger(seq)) throw new AuditTamperedError({ file: HEAD_FILE, line: 1 }, 'the head names no seq')
    const at = { file: lastFile === '' ? HEAD_FILE : lastFile, line: lastLine + 1, seq: expected }
    if (seq > expected - 1) throw new AuditTamperedError(at, `the chain ends at seq ${expected - 1} but the head names seq ${seq}: lines were removed at the end`)
    // a crash between a line and its head leaves the head one record behind (invariant 1)
    if (seq < expected - 2) throw new AuditTamperedError({ file: HEAD_FILE, line: 1 }, `the head names seq ${seq}, the chain goes on to ${expected - 1}`)
    if (seq === expected - 1 && head.hash !== prev) throw new AuditTamperedError(at, 'the newest record is not the one the head names')
  }
  return result
}

export interface ReadAuditOptions {
  /** Records from this seq, or from this time (ISO 8601) on. */
  since?: number | string
}

/** Records of the trail in order (without checking the chain: `verifyAudit` does); lines that do not parse are skipped. */
export async function * readAudit (dir: string, options: ReadAuditOptions = {}): AsyncGenerator<AuditRecord> {
  const since = options.since
  const from = typeof since === 'string' ? Date.parse(since) : undefined
  if (typeof since === 'string' && Number.isNaN(from)) throw new InvalidArgumentError(`since: ${since} is neither a seq number nor an ISO time`)
  for (const { name } of await auditFiles(dir)) {
    // a file that ends before `since` is still read: its size says nothing of its seq range
    const text = await readFile(join(dir, name), 'utf8').catch(() => '')
    for (const line of text.split('\n')) {
      if (line === '') continue
      let r: AuditRecord
      try {
        r = JSON.parse(line) as AuditRecord
      } catch {
        continue
      }
      if (typeof since === 'number' && r.seq < since) continue
      if (from !== undefined && Date.parse(r.time) < from) continue
      yield r
    }
  }
}

/** The audit directory exists and holds at least one file (for a clear message when it does not). */
export async function hasAudit (dir: string): Promise<boolean> {
  return await stat(dir).then(async () => (await auditFiles(dir)).length > 0, () => false)
}
