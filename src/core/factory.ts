import { mkdir, readFile, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import {
  createWrappedKey, decrypt, deriveKey, encrypt, generateSigningKeyPair, randomKey, Signer, unwrapKey, type ScryptParams
} from '../crypto/index.js'
import { InvalidArgumentError, InvalidKeyFormatError, TenantExistsError, TenantNotFoundError, WrongPasswordError } from '../errors.js'
import { isValidId } from '../store/change.js'
import { silentLogger, type Logger } from '../util/logger.js'
import { writeFileAtomic } from '../util/atomic-file.js'
import { KeyRing, type KeyRingJson } from './keyring.js'
import type { MaterialiseQueueLimits } from './materialiser.js'
import { MindooTenant, TENANT_KEY_PREFIX } from './tenant.js'

export interface TenantFactoryOptions {
  /** Directory under which every tenant keeps its files (`<dataDir>/tenants/<tenantId>/`). */
  dataDir: string
  /**
   * When given, each tenant's private keys are encrypted at rest under a key derived from it (scrypt).
   * Without it they are kept in a file of mode 0600, readable only by the owner.
   */
  passphrase?: string
  /** scrypt cost for wrapping keys. Default: N = 2^17, r = 8, p = 1. Lower it only in tests. */
  keyWrapping?: ScryptParams
  logger?: Logger
  /**
   * Bounds of the materialiser's in-memory queue of received changes. Default: MATERIALISE_QUEUE_MAX changes and
   * MATERIALISE_QUEUE_MAX_BYTES bytes (src/limits.ts). Lower them only in tests.
   */
  materialiseQueue?: MaterialiseQueueLimits
}

export interface CreateTenantOptions {
  tenantId: string
  /** Protects the tenant's own encryption key when it is exported (`exportTenantKey`). */
  tenantEncryptionKeyPassword: string
}

export interface OpenTenantOptions {
  /** When given, it is checked against the tenant's key (WrongPasswordError if it does not match). */
  tenantEncryptionKeyPassword?: string
}

interface SecretsJson {
  signingPrivateKey: string
  keys: KeyRingJson
}

interface TenantFile {
  version: 1
  tenantId: string
  signingPublicKey: string
  createdAt: number
  /** The tenant key wrapped under the tenantEncryptionKeyPassword. */
  tenantKey: string
  secrets: { protection: 'none', data: SecretsJson } |
  { protection: 'scrypt', N: number, r: number, p: number, salt: string, data: string }
}

/** Where a tenant's files live under a data directory: its directory, its key file and its LevelDB. */
export function tenantPaths (dataDir: string, tenantId: string): { dir: string, keyFile: string, level: string } {
  const dir = join(dataDir, 'tenants', tenantId)
  return { dir, keyFile: join(dir, 'tenant.json'), level: join(dir, 'level') }
}

/**
 * Creates and opens tenants under one data directory (MindooDB's tenant factory).
 *
 * @example
 * ```ts
 * const factory = await createTenantFactory({ dataDir: './data' })
 * const orgA = await factory.createTenant({ tenantId: 'org-a', tenantEncryptionKeyPassword: 'pw' })
 * const blob = await factory.createSymmetricEncryptedPrivateKey('collab-password')
 * await orgA.importNamedKey('collab-key', blob, 'collab-password')
 * ```
 */
export class TenantFactory {
  readonly #dataDir: string
  readonly #passphrase: string | undefined
  readonly #keyWrapping: ScryptParams
  readonly #materialiseQueue: MaterialiseQueueLimits | undefined
  readonly #log: Logger
  readonly #open = new Map<string, Promise<MindooTenant>>()

  constructor (options: TenantFactoryOptions) {
    if (options == null || typeof options.dataDir !== 'string' || options.dataDir === '') {
      throw new InvalidArgumentError('dataDir must be a non-empty path')
    }
    if (options.passphrase !== undefined && (typeof options.passphrase !== 'string' || options.passphrase === '')) {
      throw new InvalidArgumentError('passphrase must be a non-empty string')
    }
    this.#dataDir = options.dataDir
    this.#passphrase = options.passphrase
    this.#keyWrapping = options.keyWrapping ?? {}
    this.#materialiseQueue = options.materialiseQueue
    this.#log = (options.logger ?? silentLogger).child({ component: 'tenants' })
  }

  /** Creates a tenant: a new Ed25519 signing identity and a new tenant encryption key. */
  async createTenant (options: CreateTenantOptions): Promise<MindooTenant> {
    const { tenantId, tenantEncryptionKeyPassword } = options ?? {}
    this.#checkTenantId(tenantId)
    if (typeof tenantEncryptionKeyPassword !== 'string' || tenantEncryptionKeyPassword === '') {
      throw new InvalidArgumentError('tenantEncryptionKeyPassword must be a non-empty string')
    }
    const dir = this.#tenantDir(tenantId)
    await mkdir(join(this.#dataDir, 'tenants'), { recursive: true, mode: 0o700 })
    try {
      await mkdir(dir, { mode: 0o700 })
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new TenantExistsError(`tenant ${tenantId} exists`)
      throw err
    }
    const signing = generateSigningKeyPair()
    const tenantKey = randomKey()
    const keyring = new KeyRing()
    keyring.add(TENANT_KEY_PREFIX + tenantId, tenantKey)
    const secrets: SecretsJson = { signingPrivateKey: Buffer.from(signing.privateKeyDer).toString('base64'), keys: keyring.toJSON() }
    const file: TenantFile = {
      version: 1,
      tenantId,
      signingPublicKey: signing.publicKey,
      createdAt: Date.now(),
      tenantKey: await createWrappedKey(tenantKey, tenantEncryptionKeyPassword, this.#keyWrapping),
      secrets: { protection: 'none', data: secrets }
    }
    const protector = this.#passphrase === undefined ? undefined : await this.#newProtector()
    await this.#writeTenantFile(dir, file, secrets, protector)
    this.#log.info({ tenant: tenantId }, 'tenant created')
    return await this.openTenant(tenantId)
  }

  /** Opens an existing tenant (the same instance while it is open). */
  async openTenant (tenantId: string, options: OpenTenantOptions = {}): Promise<MindooTenant> {
    this.#checkTenantId(tenantId)
    let tenant = this.#open.get(tenantId)
    if (tenant === undefined) {
      tenant = this.#openTenant(tenantId)
      this.#open.set(tenantId, tenant)
      tenant.catch(() => this.#open.delete(tenantId))
    }
    const result = await tenant
    if (options.tenantEncryptionKeyPassword !== undefined) {
      await unwrapKey(result.exportTenantKey(), options.tenantEncryptionKeyPassword)
    }
    return result
  }

  /** Ids of the tenants under dataDir. */
  async listTenants (): Promise<string[]> {
    try {
      return (await readdir(join(this.#dataDir, 'tenants'))).filter(isValidId).sort()
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return []
      throw err
    }
  }

  /**
   * A new random 256-bit named key, wrapped under `password` (scrypt + AES-256-GCM). Hand the result and the
   * password to every tenant that should share the key; each imports it with `importNamedKey`.
   */
  async createSymmetricEncryptedPrivateKey (password: string): Promise<string> {
    if (typeof password !== 'string' || password === '') throw new InvalidArgumentError('password must be a non-empty string')
    return await createWrappedKey(randomKey(), password, this.#keyWrapping)
  }

  /** Closes every open tenant. */
  async close (): Promise<void> {
    const tenants = [...this.#open.values()]
    this.#open.clear()
    for (const t of tenants) {
      try {
        await (await t).close()
      } catch {
        // a tenant that failed to open has nothing to close
      }
    }
  }

  // ------------------------------------------------------------------ internals

  #checkTenantId (tenantId: unknown): asserts tenantId is string {
    if (!isValidId(tenantId) || tenantId.includes('/') || tenantId.startsWith('.')) {
      throw new InvalidArgumentError('tenantId must be 1-256 characters of A-Z a-z 0-9 . _ : @ -')
    }
  }

  #tenantDir (tenantId: string): string {
    return join(this.#dataDir, 'tenants', tenantId)
  }

  async #openTenant (tenantId: string): Promise<MindooTenant> {
    const dir = this.#tenantDir(tenantId)
    let file: TenantFile
    try {
      file = JSON.parse(await readFile(join(dir, 'tenant.json'), 'utf8'))
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new TenantNotFoundError(`no tenant ${tenantId}`)
      throw new InvalidKeyFormatError(`tenant file of ${tenantId} is unreadable`, { cause: err })
    }
    if (file.version !== 1 || file.tenantId !== tenantId) throw new InvalidKeyFormatError(`tenant file of ${tenantId} is invalid`)
    let secrets: SecretsJson
    let protector: Protector | undefined
    if (file.secrets.protection === 'scrypt') {
      if (this.#passphrase === undefined) throw new WrongPasswordError(`tenant ${tenantId} needs the factory passphrase`)
      const { N, r, p, salt } = file.secrets
      protector = { params: { N, r, p }, salt, key: await deriveKey(this.#passphrase, Buffer.from(salt, 'base64url'), { N, r, p }) }
      try {
        secrets = JSON.parse(Buffer.from(decrypt(protector.key, Buffer.from(file.secrets.data, 'base64'))).toString('utf8'))
      } catch (err) {
        throw new WrongPasswordError(`wrong passphrase for tenant ${tenantId}`, { cause: err })
      }
    } else {
      secrets = file.secrets.data
    }
    const keyring = KeyRing.fromJSON(secrets.keys)
    const signer = new Signer(Buffer.from(secrets.signingPrivateKey, 'base64'))
    const tenant = new MindooTenant(tenantId, {
      levelPath: tenantPaths(this.#dataDir, tenantId).level,
      signer,
      keyring,
      tenantKeyBlob: file.tenantKey,
      saveSecrets: async () => {
        await this.#writeTenantFile(dir, file, { signingPrivateKey: secrets.signingPrivateKey, keys: keyring.toJSON() }, protector)
      },
      keyWrapping: this.#keyWrapping,
      materialiseQueue: this.#materialiseQueue,
      logger: this.#log,
      onClose: () => { this.#open.delete(tenantId) }
    })
    await tenant.open()
    return tenant
  }

  async #newProtector (): Promise<Protector> {
    const salt = randomBytes(16).toString('base64url')
    const params = { N: 2 ** 17, r: 8, p: 1, ...this.#keyWrapping }
    return { params, salt, key: await deriveKey(this.#passphrase as string, Buffer.from(salt, 'base64url'), params) }
  }

  /** Writes tenant.json atomically (temp file, fsync, rename), mode 0600. */
  async #writeTenantFile (dir: string, file: TenantFile, secrets: SecretsJson, protector: Protector | undefined): Promise<void> {
    file.secrets = protector === undefined
      ? { protection: 'none', data: secrets }
      : {
          protection: 'scrypt',
          N: protector.params.N as number,
          r: protector.params.r as number,
          p: protector.params.p as number,
          salt: protector.salt,
          data: Buffer.from(encrypt(protector.key, Buffer.from(JSON.stringify(secrets)))).toString('base64')
        }
    await writeFileAtomic(join(dir, 'tenant.json'), JSON.stringify(file, null, 2), 0o600)
  }
}

interface Protector {
  params: ScryptParams
  salt: string
  key: Uint8Array
}

/** Creates a tenant factory over a data directory (created if missing). */
export async function createTenantFactory (options: TenantFactoryOptions): Promise<TenantFactory> {
  const factory = new TenantFactory(options)
  await mkdir(options.dataDir, { recursive: true, mode: 0o700 })
  return factory
}
