import type { Level } from 'level'
import { createWrappedKey, randomKey, unwrapKey, type ScryptParams, type Signer } from '../crypto/index.js'
import { ClosedError, InvalidArgumentError, KeyNotFoundError, LockedError, throwIfAborted } from '../errors.js'
import { isValidId } from '../store/change.js'
import { closeLevel, LevelStore, newLevel } from '../store/level-store.js'
import type { AbortOptions } from '../store/types.js'
import type { Logger } from '../util/logger.js'
import { Mutex } from '../util/mutex.js'
import { MindooDB, type KV, type OpenDBOptions, type TenantContext, type TenantPublicInfo } from './db.js'
import type { KeyInfo, KeyRing } from './keyring.js'
import type { MaterialiseQueueLimits } from './materialiser.js'

const DB_NAME = /^[A-Za-z0-9._-]{1,128}$/
/** Entries read per step of a snapshot walk. */
const SNAPSHOT_CHUNK = 256

/** See `MindooTenant.openSnapshot`. */
export interface TenantSnapshot<T> {
  /** What the capture function returned, read at the snapshot's point in time. */
  captured: T
  /** The raw key/value pairs of the tenant's LevelDB at that point, in key order. */
  entries: (options?: AbortOptions) => AsyncGenerator<[Uint8Array, Uint8Array]>
  close: () => Promise<void>
}

/** See `MindooTenant.openIndexState`. */
export interface IndexState {
  kv: KV
  /** Encrypts a value under the tenant's own key. */
  seal: (plain: Uint8Array) => Uint8Array
  /** Decrypts what `seal` made; throws DecryptionError for anything else. */
  unseal: (sealed: Uint8Array) => Uint8Array
}

/** What a tenant needs from the factory that created it: where it lives and how its secrets are saved. */
export interface TenantComponents {
  /** Directory of the tenant's LevelDB. */
  levelPath: string
  signer: Signer
  keyring: KeyRing
  /** The tenant's own key wrapped under its tenantEncryptionKeyPassword (what `exportTenantKey` hands out). */
  tenantKeyBlob: string
  /** Persists the key ring after it changed. */
  saveSecrets: () => Promise<void>
  keyWrapping: ScryptParams
  /** See TenantFactoryOptions.materialiseQueue. */
  materialiseQueue?: MaterialiseQueueLimits
  logger: Logger
  onClose: () => void
}

/** Prefix of the key id under which each tenant's own key is kept. */
export const TENANT_KEY_PREFIX = 'tenant:'

/**
 * An organisation: its signing identity, its keys, and its databases, isolated from every other tenant.
 *
 * @example
 * ```ts
 * const db = await tenant.openDB('collaboration')
 * await tenant.importNamedKey('collab-key', blob, 'password')
 * partnerDB.trustPartner(tenant.getPublicInfo())
 * ```
 */
export class MindooTenant {
  readonly #tenantId: string
  readonly #components: TenantComponents
  readonly #context: TenantContext
  readonly #dbs = new Map<string, Promise<MindooDB>>()
  readonly #keyMutex = new Mutex()
  readonly #log: Logger
  #level: Level<string, Uint8Array> | undefined
  #closed = false

  constructor (tenantId: string, components: TenantComponents) {
    this.#tenantId = tenantId
    this.#components = components
    this.#log = components.logger.child({ tenant: tenantId })
    this.#context = {
      tenantId,
      signer: components.signer,
      keyring: components.keyring,
      localKeyId: TENANT_KEY_PREFIX + tenantId
    }
  }

  /** Opens the tenant's LevelDB. Throws LockedError when another process has it open. */
  async open (): Promise<void> {
    if (this.#level !== undefined) return
    const level = newLevel(this.#components.levelPath)
    try {
      await level.open()
    } catch (err) {
      const code = (err as { cause?: { code?: string } }).cause?.code ?? (err as { code?: string }).code
      if (code === 'LEVEL_LOCKED') {
        throw new LockedError(`tenant ${this.#tenantId} is in use by another process`, { cause: err })
      }
      throw err
    }
    this.#level = level
  }

  getTenantId (): string {
    return this.#tenantId
  }

  /** The tenant id and signing public key: what partners need to trust this tenant's changes. */
  getPublicInfo (): TenantPublicInfo {
    return { tenantId: this.#tenantId, signingPublicKey: this.#context.signer.publicKey }
  }

  /**
   * Opens a database of this tenant, creating it on first open. The same name gives the same instance.
   * `defaultKeyId`, when given, becomes the database's (persisted) key for new documents.
   */
  async openDB (name: string, options: OpenDBOptions = {}): Promise<MindooDB> {
    const level = this.#checkOpen()
    if (typeof name !== 'string' || !DB_NAME.test(name)) {
      throw new InvalidArgumentError('database names are 1-128 characters of A-Z a-z 0-9 . _ -')
    }
    if (options.defaultKeyId !== undefined && !isValidId(options.defaultKeyId)) {
      throw new InvalidArgumentError('invalid defaultKeyId')
    }
    let db = this.#dbs.get(name)
    if (db === undefined) {
      db = this.#openDB(level, name)
      this.#dbs.set(name, db)
      db.catch(() => this.#dbs.delete(name))
    }
    const opened = await db
    if (options.defaultKeyId !== undefined) await opened.setDefaultKeyId(options.defaultKeyId)
    return opened
  }

  async #openDB (level: Level<string, Uint8Array>, name: string): Promise<MindooDB> {
    const sub = (part: string): KV => level.sublevel<string, Uint8Array>(['db', name, part], { valueEncoding: 'view' }) as unknown as KV
    await level.put('dbs!' + name, new Uint8Array(0))
    const store = new LevelStore({ db: sub('store') })
    await store.open()
    const db = new MindooDB({
      store,
      state: sub('state'),
      tenant: this.#context,
      logger: this.#log
    }, { name, materialiseQueue: this.#components.materialiseQueue })
    await db.open()
    return db
  }

  /**
   * A key-value space beside database `database` for an index derived from it that can always be rebuilt (a
   * share's served-set index): `name` (any string) tells the indexes of one database apart. It lives in the
   * tenant's LevelDB, so backups and snapshots hold it consistent with the database; `seal`/`unseal` encrypt its
   * values under the tenant's own key, like the materialised documents.
   */
  openIndexState (database: string, name: string): IndexState {
    const { level, hex } = this.#indexName(database, name)
    const kv = level.sublevel<string, Uint8Array>(['db', database, 'index', hex], { valueEncoding: 'view' }) as unknown as KV
    const aad = new TextEncoder().encode(`mindoodb/index/v1\0${database}\0${hex}`)
    const { keyring, localKeyId } = this.#context
    return {
      kv,
      seal: (plain) => keyring.encrypt(localKeyId, plain, aad),
      unseal: (sealed) => keyring.decrypt(localKeyId, sealed, aad)
    }
  }

  /**
   * Drops every index state of `database` whose name starts with `namePrefix` (e.g. those of a share's partners,
   * named `<share>\0seen\0<peer>`).
   */
  async dropIndexStates (database: string, namePrefix: string): Promise<void> {
    const { level, hex } = this.#indexName(database, namePrefix)
    // each index is a sublevel `!<hex of its name>!` of this one: the names with the prefix are one key range
    // ('g' sorts after every hex digit)
    const indexes = level.sublevel<string, Uint8Array>(['db', database, 'index'], { valueEncoding: 'view' })
    await indexes.clear({ gte: `!${hex}`, lt: `!${hex}g` })
  }

  /**
   * The open LevelDB and the sublevel name of index `name` of `database` (hex: sublevel names are limited to a few
   * printable bytes). Throws ClosedError, or InvalidArgumentError for a bad database or an empty name.
   */
  #indexName (database: string, name: string): { level: Level<string, Uint8Array>, hex: string } {
    const level = this.#checkOpen()
    if (typeof database !== 'string' || !DB_NAME.test(database)) throw new InvalidArgumentError('invalid database name')
    if (typeof name !== 'string' || name === '') throw new InvalidArgumentError('index name must be a non-empty string')
    return { level, hex: Buffer.from(name).toString('hex') }
  }

  /** Names of the databases this tenant has opened at least once. */
  async listDatabases (): Promise<string[]> {
    const level = this.#checkOpen()
    return (await level.keys({ gt: 'dbs!', lt: 'dbs!~' }).all()).map((k) => k.slice(4))
  }

  // ------------------------------------------------------------------ named keys

  /**
   * Imports a named key from a blob made by `createSymmetricEncryptedPrivateKey` (or an export), unwrapping it
   * with its password. Importing a further version of a key id adds it (rotation: the newest encrypts, all
   * decrypt). Changes already stored under that key become readable. WrongPasswordError on a wrong password.
   */
  async importNamedKey (keyId: string, blob: string, password: string): Promise<void> {
    this.#checkOpen()
    if (!isValidId(keyId)) throw new InvalidArgumentError('invalid keyId')
    const material = await unwrapKey(blob, password)
    // the key file and what the databases do with the new key happen under one lock, so a snapshot (backup)
    // sees both or neither
    const added = await this.#keyMutex.run(async () => {
      const n = this.#context.keyring.add(keyId, material)
      if (n === 0) return n
      await this.#components.saveSecrets()
      for (const db of this.#dbs.values()) await (await db).keyAdded(keyId)
      return n
    })
    if (added === 0) return
    this.#log.info({ keyId, versions: added }, 'named key imported')
  }

  /**
   * A consistent snapshot of the tenant for a backup: the LevelDB (every database's store and state) at one
   * point in time, and whatever `capture` reads at that same point (the key file, the daemon's files). Key
   * changes wait while the snapshot is taken (not while it is read). `entries()` yields the raw key/value pairs of
   * the snapshot; `close()` releases it (call it however the read ends).
   */
  async openSnapshot<T> (capture: () => Promise<T>): Promise<TenantSnapshot<T>> {
    const level = this.#checkOpen()
    return await this.#keyMutex.run(async () => {
      const snapshot = level.snapshot()
      let captured: T
      try {
        captured = await capture()
      } catch (err) {
        await snapshot.close()
        throw err
      }
      return {
        captured,
        entries: async function * (options: AbortOptions = {}) {
          const it = level.iterator<Uint8Array, Uint8Array>({ snapshot, keyEncoding: 'view', valueEncoding: 'view' })
          try {
            while (true) {
              throwIfAborted(options.signal)
              const chunk = await it.nextv(SNAPSHOT_CHUNK)
              if (chunk.length === 0) return
              yield * chunk
            }
          } finally {
            await it.close()
          }
        },
        close: async () => { await snapshot.close() }
      }
    })
  }

  /** Creates a fresh named key (or a new version of an existing one: rotation) and returns it wrapped. */
  async createNamedKey (keyId: string, password: string): Promise<string> {
    this.#checkOpen()
    const blob = await createWrappedKey(randomKey(), password, this.#components.keyWrapping)
    await this.importNamedKey(keyId, blob, password)
    return await this.exportNamedKey(keyId, password)
  }

  /** Adds a new version of a named key; the new version encrypts from now on. Returns all versions wrapped. */
  async rotateNamedKey (keyId: string, password: string): Promise<string> {
    if (!this.hasNamedKey(keyId)) throw new KeyNotFoundError(`unknown key ${keyId}`)
    return await this.createNamedKey(keyId, password)
  }

  /** All versions of a named key wrapped under `password`, for a partner to import. */
  async exportNamedKey (keyId: string, password: string): Promise<string> {
    this.#checkOpen()
    return await createWrappedKey(this.#context.keyring.material(keyId), password, this.#components.keyWrapping)
  }

  hasNamedKey (keyId: string): boolean {
    return this.#context.keyring.has(keyId)
  }

  /** Key ids this tenant holds (its own `tenant:<id>` key included) and how many versions each has. */
  listNamedKeys (): KeyInfo[] {
    return this.#context.keyring.list()
  }

  /**
   * The tenant's own encryption key, wrapped under the tenantEncryptionKeyPassword given at creation. A partner
   * that imports it (`importNamedKey('tenant:<id>', blob, password)`) can read this tenant's documents.
   */
  exportTenantKey (): string {
    return this.#components.tenantKeyBlob
  }

  /** Closes the tenant's databases and its LevelDB. */
  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    for (const db of this.#dbs.values()) {
      try {
        await (await db).close()
      } catch {
        // a database that failed to open has nothing to close
      }
    }
    this.#dbs.clear()
    if (this.#level !== undefined) await closeLevel(this.#level)
    this.#components.onClose()
  }

  #checkOpen (): Level<string, Uint8Array> {
    if (this.#closed || this.#level === undefined) throw new ClosedError(`tenant ${this.#tenantId} is closed`)
    return this.#level
  }
}
