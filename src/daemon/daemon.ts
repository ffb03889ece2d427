/**
 * The daemon: one organisation's node as a long-running service. Start order: data directory and its lock (keeps
 * a second daemon off the directory, whatever tenant it is configured for), tenant, node, JSON-RPC server,
 * metrics, readiness. Stop goes in reverse: no new requests, sessions closed, the batch in flight finished,
 * LevelDB closed, the socket removed, the lock released.
 */
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { Level } from 'level'
import { createTenantFactory, type MindooDB, type MindooTenant, type TenantFactory } from '../core/index.js'
import { InvalidParamsError, LockedError, NotStartedError, PartnerNotFoundError, TenantNotFoundError } from '../errors.js'
import { createMindooNode, type MindooNode } from '../p2p/index.js'
import { validateShare, type ShareConfig, type ShareUpdate } from '../sync/share.js'
import { writeFileAtomic } from '../util/atomic-file.js'
import { silentLogger, type Logger } from '../util/logger.js'
import { loadConfig, ConfigError, type DaemonConfig } from './config.js'
import { AuditLog } from './audit.js'
import { AuditFeed } from './audit-feed.js'
import { BacklogWatch } from './backlog.js'
import { AUDIT_DIR, EVENTS_BACKLOG_POLL_MS, EVENTS_MAX_DOC_IDS, GENERATED_PASSWORD_FILE, LOCK_FILE } from './constants.js'
import { EventBus, type EventType } from './events.js'
import { createShareMetrics, MetricsServer } from './metrics.js'
import type { Registry } from 'prom-client'
import type { RpcContext } from './rpc-methods.js'
import { entryMatches, recipientsOf, RevocationList, servedNamedKeys, withoutRevoked, type KeyRecipient, type RevokedPartner, type ShareWithParticipants } from './revoke.js'
import { RpcServer } from './rpc-server.js'
import { captureFiles, writeBackup, type BackupResult } from './backup.js'
import { Mutex } from '../util/mutex.js'
import { previewShare, type SharePreview } from '../sync/preview.js'

/** What `partner.revoke` returns: who was revoked, on which shares, and per rotated key what the others need. */
export interface RevocationResult {
  revoked: Array<Omit<RevokedPartner, 'revokedAt'>>
  shares: string[]
  rotated: Array<{ keyId: string, versions: number, blob: string, importers: KeyRecipient[] }>
  /** `who` was revoked before and no share names it now: nothing was done. */
  alreadyRevoked?: boolean
}

/** Shares added over RPC are kept here, in the data directory (the config file may be read-only). */
const RPC_SHARES_FILE = 'shares.json'

export interface DaemonInit {
  config: DaemonConfig
  logger?: Logger
  version?: string
}

/** Reads a secret from a file named in the config; errors name the config key (`key`, a JSON pointer). */
async function readSecretFile (path: string, what: string, key: string): Promise<string> {
  try {
    const value = (await readFile(path, 'utf8')).trim()
    if (value === '') throw new ConfigError(key, `${what} file ${path} is empty`)
    return value
  } catch (err) {
    if (err instanceof ConfigError) throw err
    throw new ConfigError(key, `cannot read ${what} file ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { cause: err })
  }
}

/**
 * Takes the data directory: a small LevelDB whose LOCK the operating system releases when the process ends,
 * however it ends (no stale lock after a crash). A second daemon on the directory gets LockedError, even when it
 * is configured for another tenant (it would share the node identity and the RPC socket).
 */
async function lockDataDir (dataDir: string): Promise<Level<string, string>> {
  const lock = new Level<string, string>(join(dataDir, LOCK_FILE))
  try {
    await lock.open()
  } catch (err) {
    const code = (err as { cause?: { code?: string } }).cause?.code ?? (err as { code?: string }).code
    if (code === 'LEVEL_LOCKED') throw new LockedError(`data directory ${dataDir} is in use by another daemon`, { cause: err })
    throw new ConfigError('/dataDir', `cannot open ${dataDir}: ${code ?? String(err)}`, { cause: err })
  }
  return lock
}

/** Opens the tenant, creating it on first start with a generated password kept in the data directory. */
export async function openOrCreateTenant (factory: TenantFactory, tenantId: string, dataDir: string, log: Logger): Promise<MindooTenant> {
  try {
    return await factory.openTenant(tenantId)
  } catch (err) {
    if (!(err instanceof TenantNotFoundError)) throw err
  }
  const password = randomBytes(24).toString('base64url')
  await writeFileAtomic(join(dataDir, GENERATED_PASSWORD_FILE), password + '\n')
  const tenant = await factory.createTenant({ tenantId, tenantEncryptionKeyPassword: password })
  log.info({ tenant: tenantId, passwordFile: join(dataDir, GENERATED_PASSWORD_FILE) }, 'tenant encryption key password generated')
  return tenant
}

/**
 * Node options of the connection boundary (see MindooNodeInit): whether loopback and private addresses are
 * announced, and which peers the connection gater admits besides partners and bootstrap peers. Passed as a spread
 * so this compiles against a node that does not take them yet (they are then ignored).
 */
export interface NodeSecurityOptions {
  announcePrivateAddresses: boolean
  allowPeers: string[]
}

function nodeSecurityOptions (config: DaemonConfig): NodeSecurityOptions {
  return { announcePrivateAddresses: config.announcePrivateAddresses, allowPeers: [...config.allowPeers] }
}

export class Daemon {
  #config: DaemonConfig
  readonly #log: Logger
  readonly #version: string
  #factory: TenantFactory | undefined
  #tenant: MindooTenant | undefined
  #node: MindooNode | undefined
  #rpc: RpcServer | undefined
  #metrics: MetricsServer | undefined
  #lock: Level<string, string> | undefined
  #rpcShares: ShareConfig[] = []
  #revoked: RevocationList | undefined
  #configShareIds = new Set<string>()
  #startedAt = 0
  #events = new EventBus()
  #audit: AuditLog | undefined
  #feed: AuditFeed | undefined
  /** Listeners to remove at stop: the node's events, the databases' documents-changed. */
  #offs: Array<() => void> = []
  /** The databases of the shares, opened once per run (documents-changed listeners, the backlog). */
  readonly #watched = new Map<string, MindooDB>()
  /** Per watched database, the materialisation backlog last published. */
  readonly #backlog = new BacklogWatch()
  /** Changes to shares and revocations, and the moment a backup is taken, run one at a time. */
  readonly #admin = new Mutex()

  constructor (init: DaemonInit) {
    this.#config = init.config
    this.#log = init.logger ?? silentLogger
    this.#version = init.version ?? '0.0.0'
  }

  get node (): MindooNode {
    if (this.#node === undefined) throw new NotStartedError('daemon is not started')
    return this.#node
  }

  get rpcSocket (): string {
    return this.#config.rpc.socket
  }

  get httpPort (): number | undefined {
    return this.#rpc?.httpPort
  }

  get metricsPort (): number | undefined {
    return this.#metrics?.port
  }

  /** The event stream of this run (a new one per start). */
  get events (): EventBus {
    return this.#events
  }

  /** Publishes a daemon event (and, for audited types, writes it to the audit trail). */
  emit (type: EventType, data: Record<string, unknown>): void {
    this.#events.publish(type, data)
  }

  async start (): Promise<void> {
    const config = this.#config
    this.#startedAt = Date.now()
    await mkdir(config.dataDir, { recursive: true, mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
      throw new ConfigError('/dataDir', `cannot create ${config.dataDir}: ${err.code ?? String(err)}`, { cause: err })
    })
    const passphrase = config.passphraseFile === undefined ? undefined : await readSecretFile(config.passphraseFile, 'passphrase', '/passphraseFile')
    const token = config.rpc.http === undefined ? undefined : await readSecretFile(config.rpc.http.tokenFile, 'token', '/rpc/http/tokenFile')
    this.#lock = await lockDataDir(config.dataDir)
    try {
      this.#events = new EventBus()
      this.#audit = new AuditLog({ dir: join(config.dataDir, AUDIT_DIR) })
      const feed = this.#feed = new AuditFeed(this.#audit, { logger: this.#log })
      this.#offs.push(this.#events.subscribe((e) => { feed.accept(e) }))
      const recovered = await this.#audit.open()
      if (recovered !== undefined) this.emit('audit.recovered', recovered)
      this.#revoked = new RevocationList(config.dataDir)
      await this.#revoked.load()
      this.#rpcShares = withoutRevoked(await this.#loadRpcShares(), this.#revoked, this.#log, 'rpc')
      this.#factory = await createTenantFactory({ dataDir: config.dataDir, passphrase, logger: this.#log })
      this.#tenant = await openOrCreateTenant(this.#factory, config.tenant, config.dataDir, this.#log)
      const configShares = withoutRevoked(config.shares.filter((s) => !this.#rpcShares.some((r) => r.id === s.id)), this.#revoked, this.#log, 'config')
      this.#configShareIds = new Set(configShares.map((s) => s.id))
      const registry: Registry | undefined = config.metrics === undefined ? undefined : createShareMetrics(() => this.#node, undefined, () => this.materialiseBacklog())
      this.#node = await createMindooNode({
        tenant: this.#tenant,
        dataDir: join(config.dataDir, 'node'),
        listen: config.listen,
        bootstrap: config.bootstrap,
        dht: config.dht,
        shares: [...configShares, ...this.#rpcShares],
        syncIntervalMs: config.sync.intervalMs,
        backoffBaseMs: config.sync.backoffBaseMs,
        backoffMaxMs: config.sync.backoffMaxMs,
        maxFrameBytes: config.sync.maxFrameBytes,
        metricsRegistry: registry,
        nat: config.nat,
        logger: this.#log,
        ...nodeSecurityOptions(config)
      })
      this.#offs.push(this.#node.events.on(({ type, ...data }) => { this.emit(type, data) }))
      await this.#node.start()
      await this.#watchDatabases()
      const backlogTimer = setInterval(() => { this.#publishBacklog() }, EVENTS_BACKLOG_POLL_MS)
      backlogTimer.unref()
      this.#offs.push(() => { clearInterval(backlogTimer) })
      this.#rpc = new RpcServer(this.#context(), {
        socketPath: config.rpc.socket,
        http: config.rpc.http === undefined || token === undefined ? undefined : { port: config.rpc.http.port, token },
        logger: this.#log
      })
      await mkdir(join(config.rpc.socket, '..'), { recursive: true, mode: 0o700 })
      await this.#rpc.start()
      if (config.metrics !== undefined) {
        this.#metrics = new MetricsServer({ port: config.metrics.port, registry, token })
        await this.#metrics.start()
      }
    } catch (err) {
      await this.stop()
      throw err
    }
    this.#log.info({
      peerId: this.#node.peerId,
      addresses: this.#node.getMultiaddrs(),
      tenant: this.#tenant.getPublicInfo(),
      rpcSocket: config.rpc.socket,
      rpcHttpPort: this.#rpc.httpPort,
      metricsPort: this.#metrics?.port
    }, 'ready')
    await this.#notifyReady()
  }

  async stop (): Promise<void> {
    await this.#metrics?.stop()
    this.#metrics = undefined
    this.#events.close()
    await this.#rpc?.stop()
    this.#rpc = undefined
    await this.#node?.stop()
    this.#node = undefined
    for (const off of this.#offs.splice(0)) off()
    this.#watched.clear()
    this.#backlog.clear()
    await this.#feed?.flush()
    this.#feed = undefined
    this.#audit = undefined
    await this.#factory?.close()
    this.#factory = undefined
    this.#tenant = undefined
    await this.#lock?.close()
    this.#lock = undefined
  }

  /** SIGHUP: re-reads the config file and applies its shares (added, changed, removed) without a restart. */
  async reload (): Promise<void> {
    await this.#admin.run(async () => { await this.#reload() })
  }

  async #reload (): Promise<void> {
    if (this.#config.file === undefined) {
      this.#log.info({}, 'reload: no config file, nothing to do')
      return
    }
    const next = await loadConfig(this.#config.file)
    const node = this.node
    const current = new Map(node.listShares().map((s) => [s.id, s]))
    const wanted = withoutRevoked(next.shares.filter((s) => !this.#rpcShares.some((r) => r.id === s.id)), this.#revocations(), this.#log, 'config')
    const changes = { added: [] as string[], updated: [] as string[], removed: [] as string[] }
    for (const id of this.#configShareIds) {
      if (!wanted.some((s) => s.id === id) && current.has(id)) {
        await node.removeShare(id)
        changes.removed.push(id)
        this.emit('share.removed', { share: id, origin: 'config' })
      }
    }
    for (const share of wanted) {
      const existing = current.get(share.id)
      if (existing === undefined) {
        await node.addShare(share)
        changes.added.push(share.id)
        this.emit('share.added', shareEventData(share, 'config'))
      } else if (JSON.stringify(existing) !== JSON.stringify(share)) {
        await node.updateShare(share.id, share)
        changes.updated.push(share.id)
        this.emit('share.updated', { ...shareEventData(share, 'config'), fields: changedFields(existing, share) })
      }
    }
    this.#configShareIds = new Set(wanted.map((s) => s.id))
    this.#config = { ...next, rpc: this.#config.rpc, dataDir: this.#config.dataDir }
    await this.#watchDatabases()
    this.emit('config.reloaded', { shares: [...this.#configShareIds], ...changes })
    this.#log.info({ shares: [...this.#configShareIds] }, 'config reloaded')
  }

  #context (): RpcContext {
    const tenant = this.#tenant as MindooTenant
    const node = this.#node as MindooNode
    return {
      tenant,
      node,
      dataDir: this.#config.dataDir,
      startedAt: this.#startedAt,
      version: this.#version,
      events: this.#events,
      auditDir: join(this.#config.dataDir, AUDIT_DIR),
      emit: (type, data) => { this.emit(type, data) },
      addShare: async (share) => await this.#admin.run(async () => {
        const valid = validateShare(share)
        this.#refuseRevoked(valid, 'params.share')
        await node.addShare(valid)
        this.#rpcShares.push(valid)
        await this.#saveRpcShares()
        this.emit('share.added', shareEventData(valid, 'rpc'))
        await this.#watchDatabases()
      }),
      updateShare: async (id, update: ShareUpdate) => await this.#admin.run(async () => {
        const before = node.getShare(id)
        if (update.enabled === true && Object.keys(update).length === 1) await node.enableShare(id)
        else if (update.enabled === false && Object.keys(update).length === 1) await node.disableShare(id)
        else {
          this.#refuseRevoked(validateShare({ ...node.getShare(id), ...update, id }), 'params.update')
          await node.updateShare(id, update)
        }
        const i = this.#rpcShares.findIndex((s) => s.id === id)
        if (i >= 0) {
          this.#rpcShares[i] = node.getShare(id)
          await this.#saveRpcShares()
        } else {
          this.#log.info({ share: id, enabled: before.enabled }, 'config share changed over RPC until the next reload')
        }
        const origin = i >= 0 ? 'rpc' : 'config'
        if (update.enabled !== undefined && Object.keys(update).length === 1) {
          if (update.enabled !== before.enabled) this.emit(update.enabled ? 'share.enabled' : 'share.disabled', { share: id, origin })
        } else {
          this.emit('share.updated', { ...shareEventData(node.getShare(id), origin), fields: changedFields(before, node.getShare(id)) })
          await this.#watchDatabases()
        }
      }),
      removeShare: async (id) => await this.#admin.run(async () => {
        await node.removeShare(id)
        this.#rpcShares = this.#rpcShares.filter((s) => s.id !== id)
        this.#configShareIds.delete(id)
        await this.#saveRpcShares()
        this.emit('share.removed', { share: id, origin: 'rpc' })
      }),
      configShareIds: () => this.#configShareIds,
      revokePartner: async (who, password) => await this.#admin.run(async () => await this.revokePartner(who, password)),
      backup: async (path) => await this.backup(path),
      materialiseBacklog: () => this.materialiseBacklog(),
      previewShare: async (share, options) => await this.previewShare(share, options)
    }
  }

  #revocations (): RevocationList {
    if (this.#revoked === undefined) throw new NotStartedError('daemon is not started')
    return this.#revoked
  }

  /** A share given over RPC must not name a revoked partner (the list is the operator's decision). */
  #refuseRevoked (share: ShareConfig, at: string): void {
    const list = this.#revocations()
    const s = share as ShareWithParticipants
    s.partners.forEach((p, i) => {
      if (list.hasPartner(p)) throw new InvalidParamsError(`${at}.partners[${i}]: partner ${p.tenant.tenantId} ${p.peerId} was revoked`)
    })
    s.participants?.forEach((p, i) => {
      if (list.hasKey(p.tenant.signingPublicKey)) throw new InvalidParamsError(`${at}.participants[${i}]: ${p.tenant.tenantId} was revoked`)
    })
  }

  /**
   * Revokes a partner, named by peer id, tenant id or signing key, on every share: it is recorded in the data
   * directory's revocation list first (a share re-read from the config never re-admits it), its tenant's signing key
   * is untrusted on those shares' databases (what it authored and this node stored stays valid; anything new from it
   * is rejected, whatever time it signs), it leaves the partners and participants of every share (which closes its
   * sessions), and the named keys those shares let it hold are rotated. Returns, per rotated key, all its versions
   * wrapped under `password` and the remaining partners that should import it.
   */
  async revokePartner (who: string, password: string): Promise<RevocationResult> {
    const node = this.node
    const tenant = this.#tenant as MindooTenant
    const list = this.#revocations()
    if (typeof who !== 'string' || who === '') throw new InvalidParamsError('params.partner: must name a peer id, tenant id or signing key')
    const own = tenant.getPublicInfo()
    if (who === own.tenantId || who === own.signingPublicKey || who === node.peerId) throw new InvalidParamsError('params.partner: this node\'s own tenant cannot be revoked')
    const shares = node.listShares() as ShareWithParticipants[]
    // the identities `who` names, then everything that carries one of their signing keys or peer ids
    const found = new Map<string, RevokedPartner>()
    const at = Date.now()
    for (const s of shares) {
      for (const p of s.partners) if (entryMatches(who, p)) found.set(`${p.tenant.signingPublicKey} ${p.peerId}`, { signingPublicKey: p.tenant.signingPublicKey, tenantId: p.tenant.tenantId, peerId: p.peerId, revokedAt: at })
      for (const p of s.participants ?? []) if (entryMatches(who, p)) found.set(`${p.tenant.signingPublicKey} `, { signingPublicKey: p.tenant.signingPublicKey, tenantId: p.tenant.tenantId, revokedAt: at })
    }
    if (found.size === 0) {
      if (list.names(who)) return { revoked: [], shares: [], rotated: [], alreadyRevoked: true }
      throw new PartnerNotFoundError(`no share names a partner ${who}`)
    }
    if ([...found.values()].some((p) => p.signingPublicKey === own.signingPublicKey)) throw new InvalidParamsError('params.partner: this node\'s own tenant cannot be revoked')
    await list.add([...found.values()])
    const affected = shares.filter((s) => s.partners.some((p) => list.hasPartner(p)) || (s.participants ?? []).some((p) => list.hasKey(p.tenant.signingPublicKey)))
    // the keys it could hold, from what the shares served it (before it leaves them)
    const keyIds = new Set<string>()
    for (const s of affected) for (const k of await servedNamedKeys(tenant, s)) keyIds.add(k)
    // untrust first, so no change of it is stored from here on, whichever share or relay brings it
    const keys = [...new Set([...found.values()].map((p) => p.signingPublicKey))]
    for (const database of new Set(affected.map((s) => s.database))) {
      const db = await tenant.openDB(database)
      for (const key of keys) await db.untrustPartner(key)
    }
    for (const s of affected) {
      const { share: kept } = list.apply(s)
      const k = kept as ShareWithParticipants
      const update = { partners: k.partners, ...(k.participants === undefined ? {} : { participants: k.participants }) } as ShareUpdate
      await node.updateShare(s.id, update)
      const i = this.#rpcShares.findIndex((r) => r.id === s.id)
      if (i >= 0) this.#rpcShares[i] = node.getShare(s.id)
    }
    if (affected.some((s) => this.#rpcShares.some((r) => r.id === s.id))) await this.#saveRpcShares()
    const rotated: RevocationResult['rotated'] = []
    const recipients = await recipientsOf(tenant, node.listShares(), keyIds)
    for (const keyId of [...keyIds].sort()) {
      const blob = await tenant.rotateNamedKey(keyId, password)
      const versions = tenant.listNamedKeys().find((k) => k.keyId === keyId)?.versions ?? 0
      rotated.push({ keyId, versions, blob, importers: recipients.get(keyId) ?? [] })
    }
    const result: RevocationResult = {
      revoked: [...found.values()].map(({ revokedAt: _at, ...p }) => p),
      shares: affected.map((s) => s.id),
      rotated
    }
    for (const r of rotated) this.emit('key.rotated', { keyId: r.keyId, versions: r.versions, reason: 'partner.revoked' })
    this.emit('partner.revoked', {
      partner: who,
      revoked: result.revoked,
      shares: result.shares,
      rotatedKeys: rotated.map((r) => ({ keyId: r.keyId, versions: r.versions, importers: r.importers.length }))
    })
    this.#log.info({
      partner: who,
      revoked: result.revoked,
      shares: result.shares,
      rotatedKeys: rotated.map((r) => ({ keyId: r.keyId, versions: r.versions, importers: r.importers.length }))
    }, 'partner revoked')
    return result
  }

  /** Publishes `documents.changed` for the databases of the shares (each watched once per run). */
  async #watchDatabases (): Promise<void> {
    const tenant = this.#tenant as MindooTenant
    for (const database of new Set(this.node.listShares().map((s) => s.database))) {
      if (this.#watched.has(database)) continue
      const db = await tenant.openDB(database)
      this.#watched.set(database, db)
      this.#offs.push(db.onDocumentsChanged(({ docIds }) => {
        this.emit('documents.changed', { database, docIds: docIds.slice(0, EVENTS_MAX_DOC_IDS), count: docIds.length })
      }))
    }
  }

  /**
   * Per database of a share (watched since it first had one this run), the changes stored but not yet
   * materialised, read now. A database that cannot tell (closed while stopping) is left out.
   */
  materialiseBacklog (): Array<{ database: string, backlog: number }> {
    const out: Array<{ database: string, backlog: number }> = []
    for (const [database, db] of this.#watched) {
      try {
        out.push({ database, backlog: db.getMaterialiseBacklog() })
      } catch (err) {
        this.#log.debug({ database, err: String(err) }, 'backlog not known')
      }
    }
    return out
  }

  /** Publishes `materialise.backlog` for each watched database whose backlog changed enough since the last event (backlog.ts). */
  #publishBacklog (): void {
    for (const reading of this.#backlog.look(this.materialiseBacklog())) this.emit('materialise.backlog', reading)
  }

  /**
   * Writes a backup of this node to `path` (absolute; the daemon writes it, as its own user, mode 0600): one
   * LevelDB snapshot of the tenant's databases, and at that same point (no share, key or revocation change in
   * between) the key file as at rest, the node identity, the RPC shares, the revocation list, the config file and
   * the audit trail as it is between two appends (its chain verifies; a record written after is not in it).
   * See backup.ts for the format. Written atomically: a crash leaves the previous file at `path`.
   */
  async backup (path: string): Promise<BackupResult> {
    const tenant = this.#tenant
    const node = this.node
    if (tenant === undefined) throw new NotStartedError('daemon is not started')
    const config = this.#config
    const tenantId = tenant.getTenantId()
    const audit = this.#audit
    if (audit === undefined) throw new NotStartedError('daemon is not started')
    const snapshot = await this.#admin.run(async () =>
      await tenant.openSnapshot(async () => await captureFiles(config.dataDir, tenantId, config.file, await audit.capture())))
    try {
      const result = await writeBackup(path, { createdAt: Date.now(), tenantId, peerId: node.peerId, dataDir: config.dataDir, configFile: config.file }, snapshot)
      this.#log.info({ path, bytes: result.bytes, entries: result.entries, sha256: result.sha256 }, 'backup written')
      this.emit('backup.created', { path, bytes: result.bytes, sha256: result.sha256, entries: result.entries, files: result.files.length })
      return result
    } finally {
      await snapshot.close()
    }
  }

  /**
   * What a share would serve, without starting it or contacting anyone: a share config (not added) or the id
   * of an existing share. A database that does not exist yet is not created (it would serve nothing).
   */
  async previewShare (share: ShareConfig | undefined, options: { id?: string, sample?: number }): Promise<SharePreview & { share: string, database: string }> {
    const tenant = this.#tenant
    const node = this.node
    if (tenant === undefined) throw new NotStartedError('daemon is not started')
    const config = options.id !== undefined ? node.getShare(options.id) : share
    if (config === undefined) throw new InvalidParamsError('params: give share or id')
    const exists = (await tenant.listDatabases()).includes(config.database)
    const db = exists ? await tenant.openDB(config.database) : undefined
    const preview = await previewShare({ db, hasKey: (keyId) => tenant.hasNamedKey(keyId) }, {
      filter: config.filter,
      direction: config.direction,
      ownAuthor: tenant.getPublicInfo().signingPublicKey,
      sample: options.sample
    })
    return { share: config.id, database: config.database, ...preview }
  }

  async #loadRpcShares (): Promise<ShareConfig[]> {
    try {
      const list = JSON.parse(await readFile(join(this.#config.dataDir, RPC_SHARES_FILE), 'utf8')) as unknown[]
      return list.map((s) => validateShare(s))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
      throw new ConfigError('', `${RPC_SHARES_FILE} in the data directory is unreadable: ${(err as Error).message}`, { cause: err })
    }
  }

  async #saveRpcShares (): Promise<void> {
    await writeFileAtomic(join(this.#config.dataDir, RPC_SHARES_FILE), JSON.stringify(this.#rpcShares, null, 2))
  }

  /** Tells systemd (Type=notify) that the daemon is ready, when it runs under systemd. */
  async #notifyReady (): Promise<void> {
    if (process.env.NOTIFY_SOCKET === undefined) return
    await new Promise<void>((resolve) => {
      execFile('systemd-notify', ['--ready', `--pid=${process.pid}`, `--status=serving ${this.#node?.peerId ?? ''}`], (err) => {
        if (err != null) this.#log.warn({ err: String(err) }, 'systemd-notify failed')
        resolve()
      })
    })
  }
}

/** What events and the audit trail tell of a share: ids and settings, never its topic secret or filter values. */
function shareEventData (share: ShareConfig, origin: 'config' | 'rpc'): Record<string, unknown> {
  return {
    share: share.id,
    database: share.database,
    enabled: share.enabled,
    direction: share.direction,
    filter: share.filter.kind,
    partners: share.partners.map((p) => ({ peerId: p.peerId, tenantId: p.tenant.tenantId })),
    origin
  }
}

/** Names of the top-level fields that differ (the topic secret by name only). */
function changedFields (before: ShareConfig, after: ShareConfig): string[] {
  const keys = new Set([...Object.keys(before), ...Object.keys(after)])
  const b = before as unknown as Record<string, unknown>
  const a = after as unknown as Record<string, unknown>
  return [...keys].filter((k) => JSON.stringify(b[k]) !== JSON.stringify(a[k])).sort()
}
