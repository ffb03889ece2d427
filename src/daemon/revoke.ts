/**
 * Partner revocation, the parts that need no running daemon: the persisted list of revoked partners (so a share
 * re-read from the config file never re-admits one), finding a partner on the shares by peer id, tenant id or
 * signing key, and working out which named keys a share let a partner hold and who else needs their new versions.
 * `Daemon.revokePartner` orchestrates them with the node's public API.
 */
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { MindooTenant, TenantPublicInfo } from '../core/index.js'
import { ConfigError, DocumentNotFoundError } from '../errors.js'
import { policyOf, type ShareConfig } from '../sync/share.js'
import { writeFileAtomic } from '../util/atomic-file.js'
import type { Logger } from '../util/logger.js'
import { REVOKED_FILE } from './constants.js'

/** One revoked partner identity: its tenant's signing key, and the node it ran on when known. */
export interface RevokedPartner {
  signingPublicKey: string
  tenantId: string
  /** The partner's peer id (absent when it was only a participant). */
  peerId?: string
  /** When it was revoked, ms since the epoch. */
  revokedAt: number
}

/**
 * A participant entry of a share (the share config's `participants`, see src/sync/share.ts). Declared here as the
 * daemon reads it, so this compiles whether or not the share type has the field yet.
 */
interface ParticipantEntry { tenant: TenantPublicInfo, [field: string]: unknown }

/** The fields of a share revocation reads and rewrites. */
export type ShareWithParticipants = ShareConfig & { participants?: ParticipantEntry[] }

/** Revoked partners, persisted in the data directory (written atomically, mode 0600). */
export class RevocationList {
  readonly #file: string
  #entries: RevokedPartner[] = []

  constructor (dataDir: string) {
    this.#file = join(dataDir, REVOKED_FILE)
  }

  get entries (): readonly RevokedPartner[] {
    return this.#entries
  }

  async load (): Promise<void> {
    let text: string
    try {
      text = await readFile(this.#file, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
      throw new ConfigError('', `${REVOKED_FILE} in the data directory is unreadable: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { cause: err })
    }
    let parsed: unknown
    try {
      parsed = JSON.parse(text)
    } catch (err) {
      throw new ConfigError('', `${REVOKED_FILE} in the data directory is not valid JSON`, { cause: err })
    }
    const valid = Array.isArray(parsed) && parsed.every((e) => e !== null && typeof e === 'object' &&
      typeof e.signingPublicKey === 'string' && typeof e.tenantId === 'string' &&
      (e.peerId === undefined || typeof e.peerId === 'string') && typeof e.revokedAt === 'number')
    // a damaged list must stop the start: running without it would re-admit the revoked partners
    if (!valid) throw new ConfigError('', `${REVOKED_FILE} in the data directory is not a list of revoked partners`)
    this.#entries = parsed as RevokedPartner[]
  }

  /** Adds identities (those already listed are kept once) and writes the list before returning. */
  async add (partners: RevokedPartner[]): Promise<void> {
    const next = [...this.#entries]
    for (const p of partners) {
      if (!next.some((e) => e.signingPublicKey === p.signingPublicKey && e.peerId === p.peerId)) next.push(p)
    }
    await writeFileAtomic(this.#file, JSON.stringify(next, null, 2) + '\n', 0o600)
    this.#entries = next
  }

  /** Whether a signing key is revoked. */
  hasKey (signingPublicKey: string): boolean {
    return this.#entries.some((e) => e.signingPublicKey === signingPublicKey)
  }

  /** Whether a partner entry (node and tenant) is revoked: its peer id or its tenant's signing key is listed. */
  hasPartner (p: { peerId?: string, tenant: TenantPublicInfo }): boolean {
    return this.hasKey(p.tenant.signingPublicKey) || (p.peerId !== undefined && this.#entries.some((e) => e.peerId === p.peerId))
  }

  /** Whether `who` (peer id, tenant id or signing key) names a revoked partner. */
  names (who: string): boolean {
    return this.#entries.some((e) => e.peerId === who || e.tenantId === who || e.signingPublicKey === who)
  }

  /**
   * The share without its revoked partners and participants. `dropped` lists what was taken out (for the warning
   * a config that still names them gets).
   */
  apply (share: ShareConfig): { share: ShareConfig, dropped: Array<{ peerId?: string, tenantId: string }> } {
    const s = share as ShareWithParticipants
    const dropped: Array<{ peerId?: string, tenantId: string }> = []
    const partners = s.partners.filter((p) => {
      if (!this.hasPartner(p)) return true
      dropped.push({ peerId: p.peerId, tenantId: p.tenant.tenantId })
      return false
    })
    const participants = s.participants?.filter((p) => {
      if (!this.hasKey(p.tenant.signingPublicKey)) return true
      dropped.push({ tenantId: p.tenant.tenantId })
      return false
    })
    if (dropped.length === 0) return { share, dropped }
    return { share: { ...s, partners, ...(participants === undefined ? {} : { participants }) }, dropped }
  }
}

/** Filters revoked partners out of shares, with a warning per share that still names one. */
export function withoutRevoked (shares: ShareConfig[], list: RevocationList, log: Logger, origin: string): ShareConfig[] {
  return shares.map((share) => {
    const { share: kept, dropped } = list.apply(share)
    if (dropped.length > 0) {
      log.warn({ share: share.id, origin, revoked: dropped }, 'share names a revoked partner; it stays revoked (remove it from the share)')
    }
    return kept
  })
}

/** Whether a share entry (partner or participant) is the one `who` names. */
export function entryMatches (who: string, e: { peerId?: string, tenant: TenantPublicInfo }): boolean {
  return e.peerId === who || e.tenant.tenantId === who || e.tenant.signingPublicKey === who
}

/**
 * The named keys (never `tenant:` keys) a share lets its partners hold, as far as this side knows: the key ids of a
 * `keys` filter that this tenant holds; for document filters, the keys of the documents the filter serves now
 * (evaluated over the database's readable documents, tombstones included); nothing for a receive-only share.
 */
export async function servedNamedKeys (tenant: MindooTenant, share: ShareConfig): Promise<Set<string>> {
  const keys = new Set<string>()
  if (share.direction === 'receive') return keys
  const named = (keyId: string): boolean => !keyId.startsWith('tenant:') && tenant.hasNamedKey(keyId)
  const policy = policyOf(share.filter)
  if (policy.mode === 'byKey') {
    for (const k of policy.keyIds) if (named(k)) keys.add(k)
    return keys
  }
  const db = await tenant.openDB(share.database)
  for (const docId of await db.getAllDocumentIds()) {
    let doc
    try {
      doc = await db.getDocument(docId)
    } catch (err) {
      if (err instanceof DocumentNotFoundError) continue
      throw err
    }
    const keyId = doc.getKeyId()
    if (keys.has(keyId) || !named(keyId)) continue
    let served = policy.mode === 'all'
    if (policy.mode === 'byDoc') {
      try {
        served = policy.matches(doc)
      } catch {
        served = false // a filter that cannot evaluate a document does not serve it
      }
    }
    if (served) keys.add(keyId)
  }
  return keys
}

/** Who should import a rotated key: a partner (with its peer) or a participant of a share that serves the key. */
export interface KeyRecipient {
  share: string
  tenantId: string
  /** Absent for a participant (no sessions with it; it reads what partners relay). */
  peerId?: string
}

/** Per rotated key, the partners and participants of the shares that serve it (after the revocation). */
export async function recipientsOf (tenant: MindooTenant, shares: ShareConfig[], keyIds: Iterable<string>): Promise<Map<string, KeyRecipient[]>> {
  const wanted = new Set(keyIds)
  const out = new Map<string, KeyRecipient[]>([...wanted].map((k) => [k, []]))
  for (const share of shares) {
    const served = await servedNamedKeys(tenant, share)
    const s = share as ShareWithParticipants
    for (const keyId of served) {
      const list = out.get(keyId)
      if (list === undefined) continue
      for (const p of s.partners) list.push({ share: s.id, tenantId: p.tenant.tenantId, peerId: p.peerId })
      for (const p of s.participants ?? []) list.push({ share: s.id, tenantId: p.tenant.tenantId })
    }
  }
  return out
}
