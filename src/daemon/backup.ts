/**
 * Backups of a node: one file holding a consistent snapshot of everything a node needs to come back as itself,
 * and the restore that turns such a file into a data directory.
 *
 * What a backup holds: the tenant's LevelDB (every database's change store and state: documents, changefeed,
 * trust) taken from one LevelDB snapshot, and, read at that same point, the tenant's key file as it is at rest
 * (`tenants/<id>/tenant.json`: encrypted under the passphrase when the node has one, else protected by file
 * mode only), the node identity (`node/peer-key`), the shares added over RPC (`shares.json`), the revocation list
 * (`revoked.json`), the generated tenant password (`tenant-password`, when there is one), the config file, and the
 * audit trail (`audit/audit-NNNNNN.jsonl` and `audit/head.json`) as it is between two of its appends: a chain that
 * verifies. A restore adds a `backup.restored` record to that chain, and the restored node goes on from there.
 *
 * File format (version 1), all integers big-endian:
 * ```
 * magic "MINDOODB-BACKUP\n" (16 bytes) | version u32 | header: u32 length + JSON
 * records: type u8, then
 *   1 file:  name (u16 length + UTF-8, a path relative to the data directory, or "@config") | bytes (u32 length + bytes)
 *   2 entry: key (u32 length + bytes) | value (u32 length + bytes)    (a raw LevelDB pair)
 *   255 end: entry count (u64) | file count (u32)
 * SHA-256 of every byte before it (32 bytes)
 * ```
 * A backup is written to a temporary file beside the target (mode 0600), fsynced, renamed over the target and the
 * directory fsynced: a crash or kill -9 at any point leaves the previous backup file as it was.
 */
import { createHash } from 'node:crypto'
import { mkdir, open, readdir, readFile, rm, stat, writeFile, type FileHandle } from 'node:fs/promises'
import { dirname, isAbsolute, join, relative, resolve } from 'node:path'
import { Level } from 'level'
import { tenantPaths, type TenantSnapshot } from '../core/index.js'
import { AuditTamperedError, BackupCorruptError, BackupVersionError, InvalidParamsError, RestoreTargetNotEmptyError } from '../errors.js'
import { PEER_KEY_FILE } from '../p2p/constants.js'
import { writeAtomically } from '../util/atomic-file.js'
import { AuditLog, AUDIT_HEAD_FILE, type AuditCapture } from './audit.js'
import { AUDIT_DIR, GENERATED_PASSWORD_FILE, REVOKED_FILE } from './constants.js'

/** The first 16 bytes of every backup file. */
export const BACKUP_MAGIC = Buffer.from('MINDOODB-BACKUP\n', 'utf8')
/** Format version this build writes and reads. */
export const BACKUP_VERSION = 1
/** Name of the record holding the config file. */
const CONFIG_RECORD = '@config'
const FILE = 1
const ENTRY = 2
const END = 255
const HASH_BYTES = 32
/** Bytes buffered before a write. */
const WRITE_CHUNK = 1 << 20
/** Bytes read per step. */
const READ_CHUNK = 1 << 20
/** Pairs written per LevelDB batch on restore. */
const RESTORE_BATCH = 1000
/** Largest header or file record accepted (a key file, a share list): 64 MiB. */
const MAX_SMALL = 64 << 20

/** Files of the data directory a backup carries (relative paths), besides the tenant's key file. */
export function backupFilesOf (tenantId: string): string[] {
  return [
    join('tenants', tenantId, 'tenant.json'),
    join('node', PEER_KEY_FILE),
    'shares.json',
    REVOKED_FILE,
    GENERATED_PASSWORD_FILE
  ]
}

export interface BackupHeader {
  version: number
  createdAt: number
  tenantId: string
  peerId: string
  /** The data directory it was taken from. */
  dataDir: string
  /** The config file the daemon ran with, if any (its content is the `@config` record). */
  configFile?: string
  /** The tenant's LevelDB, relative to the data directory. */
  level: string
}

export interface BackupResult {
  path: string
  bytes: number
  sha256: string
  entries: number
  files: string[]
  createdAt: number
  tenantId: string
  peerId: string
}

/** The first `size` bytes of a file, read when the backup is written (a file that only grows: an audit file). */
export interface FileSlice {
  path: string
  size: number
}

/** What a backup reads at the snapshot's point in time: files by name (relative to the data directory). */
export type CapturedFiles = Map<string, Uint8Array | FileSlice>

/**
 * Reads the files a backup carries from a data directory (missing ones are left out), and takes the audit trail
 * as `audit` captured it (AuditLog.capture: at the same point, between two appends).
 */
export async function captureFiles (dataDir: string, tenantId: string, configFile: string | undefined, audit?: AuditCapture): Promise<CapturedFiles> {
  const files: CapturedFiles = new Map()
  for (const f of audit?.files ?? []) files.set(join(AUDIT_DIR, f.name), { path: f.path, size: f.size })
  if (audit?.head !== undefined) files.set(join(AUDIT_DIR, AUDIT_HEAD_FILE), audit.head)
  for (const name of backupFilesOf(tenantId)) {
    try {
      files.set(name, await readFile(join(dataDir, name)))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
  }
  if (configFile !== undefined) files.set(CONFIG_RECORD, await readFile(configFile))
  return files
}

/** Appends records to a file through a buffer, hashing every byte. */
class RecordWriter {
  readonly #handle: FileHandle
  readonly #hash = createHash('sha256')
  #chunks: Buffer[] = []
  #buffered = 0
  bytes = 0

  constructor (handle: FileHandle) {
    this.#handle = handle
  }

  async put (...parts: Uint8Array[]): Promise<void> {
    for (const p of parts) {
      this.#chunks.push(Buffer.from(p.buffer, p.byteOffset, p.byteLength))
      this.#buffered += p.byteLength
    }
    if (this.#buffered >= WRITE_CHUNK) await this.flush()
  }

  async flush (): Promise<void> {
    if (this.#buffered === 0) return
    const data = Buffer.concat(this.#chunks, this.#buffered)
    this.#chunks = []
    this.#buffered = 0
    this.#hash.update(data)
    await this.#handle.write(data)
    this.bytes += data.byteLength
  }

  /** Flushes, then writes the SHA-256 of everything written (not itself hashed). */
  async finish (): Promise<string> {
    await this.flush()
    const digest = this.#hash.digest()
    await this.#handle.write(digest)
    this.bytes += digest.byteLength
    return digest.toString('hex')
  }
}

const u8 = (n: number): Buffer => Buffer.from([n])
const u16 = (n: number): Buffer => { const b = Buffer.alloc(2); b.writeUInt16BE(n); return b }
const u32 = (n: number): Buffer => { const b = Buffer.alloc(4); b.writeUInt32BE(n); return b }
const u64 = (n: number): Buffer => { const b = Buffer.alloc(8); b.writeBigUInt64BE(BigInt(n)); return b }

/**
 * Writes a backup of `snapshot` (the tenant's LevelDB and the captured files) to `path`, atomically: a
 * temporary file (0600) beside it, fsync, rename, fsync of the directory. The snapshot is not closed here.
 */
export async function writeBackup (
  path: string, header: Omit<BackupHeader, 'version' | 'level'>, snapshot: TenantSnapshot<CapturedFiles>
): Promise<BackupResult> {
  if (typeof path !== 'string' || !isAbsolute(path)) throw new InvalidParamsError('params.path: must be an absolute path')
  const full: BackupHeader = {
    version: BACKUP_VERSION,
    ...header,
    level: relative(header.dataDir, tenantPaths(header.dataDir, header.tenantId).level)
  }
  await refuseToOverwrite(path)
  const openFailed = (err: unknown): unknown =>
    new InvalidParamsError(`params.path: cannot write ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { cause: err })
  const { entries, sha256, bytes } = await writeAtomically(path, 0o600, async (handle) => {
    let entries = 0
    const w = new RecordWriter(handle)
    const head = Buffer.from(JSON.stringify(full), 'utf8')
    await w.put(BACKUP_MAGIC, u32(BACKUP_VERSION), u32(head.byteLength), head)
    for (const [name, content] of snapshot.captured) {
      const n = Buffer.from(name, 'utf8')
      if (content instanceof Uint8Array) {
        await w.put(u8(FILE), u16(n.byteLength), n, u32(content.byteLength), content)
      } else {
        await w.put(u8(FILE), u16(n.byteLength), n, u32(content.size))
        await copySlice(w, name, content)
      }
    }
    for await (const [key, value] of snapshot.entries()) {
      await w.put(u8(ENTRY), u32(key.byteLength), key, u32(value.byteLength), value)
      entries++
    }
    await w.put(u8(END), u64(entries), u32(snapshot.captured.size))
    const sha256 = await w.finish()
    return { entries, sha256, bytes: w.bytes }
  }, openFailed)
  return {
    path,
    bytes,
    sha256,
    entries,
    files: [...snapshot.captured.keys()].filter((f) => f !== CONFIG_RECORD).sort(),
    createdAt: full.createdAt,
    tenantId: full.tenantId,
    peerId: full.peerId
  }
}

/** Copies the first `slice.size` bytes of a file into the backup, a chunk at a time. */
async function copySlice (w: RecordWriter, name: string, slice: FileSlice): Promise<void> {
  const handle = await open(slice.path, 'r')
  try {
    const buf = Buffer.alloc(Math.min(READ_CHUNK, Math.max(slice.size, 1)))
    for (let pos = 0; pos < slice.size;) {
      const { bytesRead } = await handle.read(buf, 0, Math.min(buf.byteLength, slice.size - pos), pos)
      // audit files only grow while the daemon runs: a shorter one was cut by someone else
      if (bytesRead === 0) throw new AuditTamperedError({ file: name, line: 0 }, `${name} became shorter during the backup`)
      await w.put(Buffer.from(buf.subarray(0, bytesRead)))
      pos += bytesRead
    }
  } finally {
    await handle.close()
  }
}

/** A backup replaces only a backup: an existing file that is not one (a key file, the config) is never overwritten. */
async function refuseToOverwrite (path: string): Promise<void> {
  let handle: FileHandle
  try {
    handle = await open(path, 'r')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
    throw new InvalidParamsError(`params.path: cannot use ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { cause: err })
  }
  try {
    const s = await handle.stat()
    const first = Buffer.alloc(BACKUP_MAGIC.byteLength)
    const { bytesRead } = s.isFile() ? await handle.read(first, 0, first.byteLength, 0) : { bytesRead: 0 }
    if (bytesRead !== first.byteLength || !first.equals(BACKUP_MAGIC)) {
      throw new InvalidParamsError(`params.path: ${path} exists and is not a MindooDB backup; it is not overwritten`)
    }
  } finally {
    await handle.close()
  }
}

// ---------------------------------------------------------------------------------------------- reading

/** Reads a file front to back with bounds checks: anything short or out of place is BackupCorruptError. */
class RecordReader {
  readonly #handle: FileHandle
  /** Where the records end (the hash follows). */
  readonly #end: number
  #pos = 0
  #buf = Buffer.alloc(0)
  #bufAt = 0

  constructor (handle: FileHandle, end: number) {
    this.#handle = handle
    this.#end = end
  }

  get pos (): number {
    return this.#pos
  }

  async take (n: number): Promise<Buffer> {
    if (n < 0 || this.#pos + n > this.#end) throw new BackupCorruptError('backup file is truncated or malformed')
    const offset = this.#pos - this.#bufAt
    if (offset + n > this.#buf.byteLength) {
      const size = Math.max(n, READ_CHUNK)
      const next = Buffer.alloc(Math.min(size, this.#end - this.#pos))
      const { bytesRead } = await this.#handle.read(next, 0, next.byteLength, this.#pos)
      if (bytesRead < n) throw new BackupCorruptError('backup file is truncated')
      this.#buf = next.subarray(0, bytesRead)
      this.#bufAt = this.#pos
    }
    const o = this.#pos - this.#bufAt
    this.#pos += n
    return this.#buf.subarray(o, o + n)
  }

  async u8 (): Promise<number> { return (await this.take(1))[0] }
  async u16 (): Promise<number> { return (await this.take(2)).readUInt16BE(0) }
  async u32 (): Promise<number> { return (await this.take(4)).readUInt32BE(0) }
  async u64 (): Promise<number> { return Number((await this.take(8)).readBigUInt64BE(0)) }
}

/** Checks magic, version and the SHA-256 of the whole file; returns the header. Reads the file once. */
export async function verifyBackup (path: string): Promise<{ header: BackupHeader, size: number, sha256: string }> {
  let handle: FileHandle
  try {
    handle = await open(path, 'r')
  } catch (err) {
    throw new InvalidParamsError(`cannot read backup ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { cause: err })
  }
  try {
    const { size } = await handle.stat()
    const prefix = BACKUP_MAGIC.byteLength + 8
    if (size < prefix + HASH_BYTES) throw new BackupCorruptError(`${path} is not a MindooDB backup (too short)`)
    const first = Buffer.alloc(prefix)
    await handle.read(first, 0, prefix, 0)
    if (!first.subarray(0, BACKUP_MAGIC.byteLength).equals(BACKUP_MAGIC)) throw new BackupCorruptError(`${path} is not a MindooDB backup`)
    const version = first.readUInt32BE(BACKUP_MAGIC.byteLength)
    if (version !== BACKUP_VERSION) throw new BackupVersionError(`${path} is a backup of format ${version}; this build reads format ${BACKUP_VERSION}`)
    const hash = createHash('sha256')
    const buf = Buffer.alloc(READ_CHUNK)
    const end = size - HASH_BYTES
    for (let pos = 0; pos < end;) {
      const { bytesRead } = await handle.read(buf, 0, Math.min(buf.byteLength, end - pos), pos)
      if (bytesRead === 0) throw new BackupCorruptError(`${path} is truncated`)
      hash.update(buf.subarray(0, bytesRead))
      pos += bytesRead
    }
    const stored = Buffer.alloc(HASH_BYTES)
    await handle.read(stored, 0, HASH_BYTES, end)
    const digest = hash.digest()
    if (!digest.equals(stored)) throw new BackupCorruptError(`${path} is truncated or altered: its SHA-256 does not match`)
    const reader = new RecordReader(handle, end)
    await reader.take(prefix)
    const headLen = first.readUInt32BE(BACKUP_MAGIC.byteLength + 4)
    if (headLen > MAX_SMALL) throw new BackupCorruptError(`${path}: header too large`)
    const header = parseHeader(await reader.take(headLen))
    return { header, size, sha256: digest.toString('hex') }
  } finally {
    await handle.close()
  }
}

function parseHeader (bytes: Buffer): BackupHeader {
  let h: BackupHeader
  try {
    h = JSON.parse(bytes.toString('utf8'))
  } catch (err) {
    throw new BackupCorruptError('backup header is not JSON', { cause: err })
  }
  if (h === null || typeof h !== 'object' || typeof h.tenantId !== 'string' || typeof h.peerId !== 'string' ||
    typeof h.level !== 'string' || typeof h.dataDir !== 'string' || !safeRelative(h.level)) {
    throw new BackupCorruptError('backup header is malformed')
  }
  return h
}

/** A relative path that stays inside the directory it is joined to. */
function safeRelative (name: string): boolean {
  if (name === '' || isAbsolute(name)) return false
  const r = relative('/x', resolve('/x', name))
  return r !== '' && !r.startsWith('..') && !isAbsolute(r)
}

export interface RestoreResult {
  dataDir: string
  /** The config file written for the restored node (dataDir pointing at the restored directory). */
  config: string
  tenantId: string
  peerId: string
  createdAt: number
  entries: number
  files: string[]
  sha256: string
  /**
   * The `backup.restored` record added to the restored audit trail (its seq and hash), or, when the backed-up
   * trail's newest line is not a record (the daemon would refuse to continue it), the code of that error.
   */
  audit: { seq: number, hash: string } | { error: string, message: string }
}

/** True when `dir` does not exist or is an empty directory. */
async function isEmptyDir (dir: string): Promise<boolean> {
  try {
    const s = await stat(dir)
    if (!s.isDirectory()) return false
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return true
    throw err
  }
  return (await readdir(dir)).length === 0
}

/**
 * Restores a backup into `dataDir`, which must not exist or be empty (RestoreTargetNotEmptyError). The whole
 * file is verified first (BackupCorruptError, BackupVersionError): a bad file writes nothing. Writes the files
 * (0600, directories 0700), the tenant's LevelDB, and `config.json` (the backed-up config with `dataDir`, and an
 * RPC socket that was inside the old data directory, pointing into the new one).
 */
export async function restoreBackup (path: string, dataDir: string): Promise<RestoreResult> {
  if (typeof dataDir !== 'string' || dataDir === '') throw new InvalidParamsError('--data-dir: is required')
  const target = resolve(dataDir)
  if (!await isEmptyDir(target)) throw new RestoreTargetNotEmptyError(`${target} is not empty: restore only into a new or empty directory`)
  const { header, size, sha256 } = await verifyBackup(path)
  const existed = await stat(target).then(() => true, () => false)
  await mkdir(target, { recursive: true, mode: 0o700 })
  try {
    const restored = await restoreInto(path, size, header, target)
    return { ...restored, sha256, audit: await recordRestore(target, header, sha256) }
  } catch (err) {
    // leave the target as it was found
    if (existed) {
      for (const name of await readdir(target)) await rm(join(target, name), { recursive: true, force: true })
    } else {
      await rm(target, { recursive: true, force: true })
    }
    throw err
  }
}

/**
 * Adds `backup.restored` to the restored audit trail (a new trail when the backup had none), so the chain shows
 * where this node's history continues from a backup. A trail whose newest line is not a record is left as it is
 * (the daemon refuses to start on it until it is moved away; see the README's audit trail).
 */
async function recordRestore (target: string, header: BackupHeader, sha256: string): Promise<RestoreResult['audit']> {
  const log = new AuditLog({ dir: join(target, AUDIT_DIR) })
  try {
    await log.open()
  } catch (err) {
    if (err instanceof AuditTamperedError) return { error: err.code, message: err.message }
    throw err
  }
  const record = await log.append('backup.restored', {
    backupCreatedAt: new Date(header.createdAt).toISOString(), sha256, tenantId: header.tenantId, peerId: header.peerId, from: header.dataDir
  })
  return { seq: record.seq, hash: record.hash }
}

async function restoreInto (path: string, size: number, header: BackupHeader, target: string): Promise<Omit<RestoreResult, 'sha256' | 'audit'>> {
  const handle = await open(path, 'r')
  const level = new Level<Uint8Array, Uint8Array>(join(target, header.level), { keyEncoding: 'view', valueEncoding: 'view' })
  const files: string[] = []
  let config: Buffer | undefined
  let entries = 0
  try {
    const r = new RecordReader(handle, size - HASH_BYTES)
    await r.take(BACKUP_MAGIC.byteLength + 4)
    await r.take(await r.u32())
    await mkdir(dirname(join(target, header.level)), { recursive: true, mode: 0o700 })
    await level.open()
    let batch = level.batch()
    let fileCount = 0
    while (true) {
      const type = await r.u8()
      if (type === FILE) {
        const name = (await r.take(await r.u16())).toString('utf8')
        const len = await r.u32()
        if (len > MAX_SMALL) throw new BackupCorruptError(`backup record ${name} is too large`)
        const content = Buffer.from(await r.take(len))
        fileCount++
        if (name === CONFIG_RECORD) {
          config = content
          continue
        }
        if (!safeRelative(name)) throw new BackupCorruptError(`backup names a file outside the data directory: ${name}`)
        await mkdir(dirname(join(target, name)), { recursive: true, mode: 0o700 })
        await writeFile(join(target, name), content, { mode: 0o600, flag: 'wx' })
        files.push(name)
      } else if (type === ENTRY) {
        const key = Buffer.from(await r.take(await r.u32()))
        const value = Buffer.from(await r.take(await r.u32()))
        batch.put(key, value)
        entries++
        if (batch.length >= RESTORE_BATCH) {
          await batch.write()
          batch = level.batch()
        }
      } else if (type === END) {
        if (await r.u64() !== entries || await r.u32() !== fileCount || r.pos !== size - HASH_BYTES) {
          throw new BackupCorruptError('backup file is malformed: its end record does not match its records')
        }
        break
      } else {
        throw new BackupCorruptError(`backup file is malformed: unknown record type ${type}`)
      }
    }
    await batch.write()
  } finally {
    await level.close()
    await handle.close()
  }
  const configPath = join(target, 'config.json')
  await writeFile(configPath, JSON.stringify(restoredConfig(config, header, target), null, 2) + '\n', { mode: 0o600, flag: 'wx' })
  return {
    dataDir: target,
    config: configPath,
    tenantId: header.tenantId,
    peerId: header.peerId,
    createdAt: header.createdAt,
    entries,
    files: files.sort()
  }
}

/** The backed-up config pointed at the restored directory (or a minimal one when the daemon ran without a file). */
function restoredConfig (raw: Buffer | undefined, header: BackupHeader, target: string): Record<string, unknown> {
  let config: Record<string, unknown> = { tenant: header.tenantId }
  if (raw !== undefined) {
    try {
      const parsed = JSON.parse(raw.toString('utf8'))
      if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) config = parsed
    } catch (err) {
      throw new BackupCorruptError('the config in the backup is not JSON', { cause: err })
    }
  }
  const rpc = config.rpc as { socket?: string } | undefined
  if (typeof rpc?.socket === 'string') {
    const base = header.configFile === undefined ? process.cwd() : dirname(header.configFile)
    const socket = resolve(base, rpc.socket)
    const inside = relative(header.dataDir, socket)
    if (!inside.startsWith('..') && !isAbsolute(inside)) config.rpc = { ...rpc, socket: join(target, inside) }
  }
  return { ...config, dataDir: target, tenant: header.tenantId }
}
