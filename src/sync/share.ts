/**
 * Shares: the collaboration relationships a node keeps in sync.
 *
 * A share maps a topic (agreed by its participants, who alone hold its secret) to a local database, names the
 * partner participants, the direction, and what this side serves. Each side configures its own share; database
 * names may differ per side, filters are each side's own decision about what it serves.
 */
import { createHash, createHmac } from 'node:crypto'
import type { MindooDoc, TenantPublicInfo } from '../core/index.js'
import { plainValue } from '../core/values.js'
import { InvalidArgumentError } from '../errors.js'
import { isValidId } from '../store/change.js'
import { compileSelector, InvalidFilterError, type DocPredicate, type MangoSelector } from './filter.js'

/** Which way changes flow: `both`, `serve` (we only send), `receive` (we only take). */
export type ShareDirection = 'both' | 'serve' | 'receive'

/** What this side serves to the share's partners. */
export type ShareFilter =
  /** Every change of the database, readable here or not (relays forward what they cannot decrypt). */
  | { kind: 'all' }
  /** Documents whose content matches a Mango selector; documents this side cannot read are not served. */
  | { kind: 'selector', selector: MangoSelector }
  /** Shortcut: documents whose `type` field is one of these. */
  | { kind: 'type', types: string[] }
  /** Changes encrypted under these named keys (no need to read them: relays serve them too). */
  | { kind: 'keys', keyIds: string[] }
  /** Library API only: a predicate over readable documents. */
  | { kind: 'predicate', predicate: (doc: MindooDoc) => boolean }

/**
 * What a partner's or participant's authors may write on this share, checked by this side on every change it
 * receives (relayed changes too), on the change's author. `'none'`: nothing. Otherwise a change passes when it
 * is to a document the author created (`created`) or one this share serves to it (`served`), and then only
 * under the listed key ids and document types, when given.
 *
 * Default (no `write`): `{ created: true, served: true }` — a partner may write documents it created and
 * documents this share serves to it, nothing else.
 */
export type WritePolicy = 'none' | {
  /** May write documents it created (the document id proves the creator). Default true. */
  created?: boolean
  /** May write documents this share serves to it (by this side's filter). Default true. */
  served?: boolean
  /** And only under these key ids. Default: any. */
  keyIds?: string[]
  /**
   * And only documents whose current `type` here is one of these (checked on this side's state before the
   * change; a document this side does not have yet passes only if the author created it). Default: any.
   */
  types?: string[]
}

/** A node this node holds sessions with; its tenant's authors are participants of the share. */
export interface SharePartner {
  /** The partner node's libp2p peer id. */
  peerId: string
  /** The partner tenant's id and signing key: its authors' changes are accepted on this share. */
  tenant: TenantPublicInfo
  /** Known multiaddrs of the partner node (optional; the DHT finds the rest). */
  addresses?: string[]
  /**
   * Dial this partner (default true). `false`: accept its sessions and run rounds over a connection it opened,
   * but never dial it (a partner behind NAT, a spoke that calls in); it produces no failed rounds.
   */
  dial?: boolean
  /** What its authors may write. Default `{ created: true, served: true }`. */
  write?: WritePolicy
}

/**
 * An author whose changes are accepted on this share when a partner relays them; this node holds no sessions
 * with it (it may not even run a node). In a hub-and-spokes mesh a spoke lists the hub as its partner and the
 * other spokes as participants.
 */
export interface ShareParticipant {
  /** The participant tenant's id and signing key. */
  tenant: TenantPublicInfo
  /** What its authors may write. Default `{ created: true, served: true }`. */
  write?: WritePolicy
}

export interface ShareConfig {
  /** Local name of the share (unique on this node). */
  id: string
  /**
   * The shared secret that identifies the topic; only participants hold it. At least 22 characters (128 bits
   * of base64url, as `mindoodb share secret` prints).
   */
  topicSecret: string
  /** The local database it maps to (names may differ per side). */
  database: string
  /** The nodes this node syncs with (and whose tenants' authors it accepts). */
  partners: SharePartner[]
  /** Further authors accepted when relayed by a partner; no sessions with them. Default none. */
  participants?: ShareParticipant[]
  direction: ShareDirection
  filter: ShareFilter
  enabled: boolean
}

/** Fields a share update may change. */
export type ShareUpdate = Partial<Omit<ShareConfig, 'id'>>

const DIRECTIONS = new Set<ShareDirection>(['both', 'serve', 'receive'])

/**
 * The id a topic is known by in sessions: derived from the secret, so it reveals neither the secret nor a name.
 */
export function topicIdOf (topicSecret: string): Uint8Array {
  return createHash('sha256').update('mindoodb/topic/session/v1\0').update(topicSecret).digest()
}

/** Shortest topic secret accepted: 22 characters, 128 bits when they are random base64url. */
export const MIN_TOPIC_SECRET_LENGTH = 22

/**
 * The DHT key a topic is announced under in one epoch: HMAC-SHA256 keyed with the secret over
 * `"mindoodb/topic/dht/v2" ‖ epoch` (the epoch number as 8 bytes, big-endian). Keyed with the secret, so
 * it is a different derivation from the session id, cannot be computed without the secret, and changes every
 * epoch, so records of different epochs cannot be linked by anyone who lacks the secret.
 */
export function topicDhtKeyOf (topicSecret: string, epoch: number): Uint8Array {
  if (!Number.isSafeInteger(epoch) || epoch < 0) throw new TypeError('epoch must be a non-negative integer')
  const e = Buffer.alloc(8)
  e.writeBigUInt64BE(BigInt(epoch))
  return createHmac('sha256', topicSecret).update('mindoodb/topic/dht/v2').update(e).digest()
}

/** Checks a share config and returns a normalised copy. Throws InvalidArgumentError naming the field. */
export function validateShare (input: unknown): ShareConfig {
  const fail = (field: string, why: string): never => { throw new InvalidArgumentError(`share.${field}: ${why}`) }
  if (input == null || typeof input !== 'object') fail('', 'must be an object')
  const s = input as Record<string, unknown>
  if (!isValidId(s.id)) fail('id', 'must be an id of A-Z a-z 0-9 . _ : @ -')
  if (typeof s.topicSecret !== 'string' || s.topicSecret.length < MIN_TOPIC_SECRET_LENGTH) {
    fail('topicSecret', `must be a string of ${MIN_TOPIC_SECRET_LENGTH} or more characters (mindoodb share secret prints one)`)
  }
  if (typeof s.database !== 'string' || !/^[A-Za-z0-9._-]{1,128}$/.test(s.database)) fail('database', 'must be a database name')
  if (!Array.isArray(s.partners)) fail('partners', 'must be an array')
  const partners = (s.partners as unknown[]).map((p, i): SharePartner => {
    const at = `partners[${i}]`
    if (p == null || typeof p !== 'object') fail(at, 'must be an object')
    const { peerId, tenant, addresses, dial, write } = p as Record<string, unknown>
    if (typeof peerId !== 'string' || !/^[1-9A-HJ-NP-Za-km-z]{20,128}$/.test(peerId)) fail(`${at}.peerId`, 'must be a libp2p peer id')
    if (addresses !== undefined && (!Array.isArray(addresses) || !addresses.every((a) => typeof a === 'string' && a.startsWith('/')))) {
      fail(`${at}.addresses`, 'must be an array of multiaddrs')
    }
    if (dial !== undefined && typeof dial !== 'boolean') fail(`${at}.dial`, 'must be true or false')
    return {
      peerId: peerId as string,
      tenant: validateTenant(tenant, `${at}.tenant`),
      addresses: addresses as string[] | undefined,
      ...(dial === undefined ? {} : { dial: dial as boolean }),
      ...(write === undefined ? {} : { write: validateWritePolicy(write, `${at}.write`) })
    }
  })
  if (new Set(partners.map((p) => p.peerId)).size !== partners.length) fail('partners', 'lists a peer id twice')
  if (s.participants !== undefined && !Array.isArray(s.participants)) fail('participants', 'must be an array')
  const participants = ((s.participants ?? []) as unknown[]).map((p, i): ShareParticipant => {
    const at = `participants[${i}]`
    if (p == null || typeof p !== 'object') fail(at, 'must be an object')
    const { tenant, write, ...rest } = p as Record<string, unknown>
    const extra = Object.keys(rest)
    if (extra.length > 0) fail(`${at}.${extra[0]}`, 'is not a participant field (a node to sync with is a partner)')
    return {
      tenant: validateTenant(tenant, `${at}.tenant`),
      ...(write === undefined ? {} : { write: validateWritePolicy(write, `${at}.write`) })
    }
  })
  if (!DIRECTIONS.has(s.direction as ShareDirection)) fail('direction', 'must be both, serve or receive')
  if (typeof s.enabled !== 'boolean') fail('enabled', 'must be true or false')
  return {
    id: s.id as string,
    topicSecret: s.topicSecret as string,
    database: s.database as string,
    partners,
    ...(s.participants === undefined ? {} : { participants }),
    direction: s.direction as ShareDirection,
    filter: validateFilter(s.filter),
    enabled: s.enabled as boolean
  }
}

function validateTenant (tenant: unknown, at: string): TenantPublicInfo {
  const fail = (field: string, why: string): never => { throw new InvalidArgumentError(`share.${field}: ${why}`) }
  const t = tenant as Record<string, unknown> | undefined
  if (t == null || typeof t !== 'object' || !isValidId(t.tenantId)) fail(`${at}.tenantId`, 'must be a tenant id')
  if (typeof t?.signingPublicKey !== 'string' || Buffer.from(t.signingPublicKey, 'base64url').length !== 32) {
    fail(`${at}.signingPublicKey`, 'must be a base64url Ed25519 public key')
  }
  return { tenantId: t?.tenantId as string, signingPublicKey: t?.signingPublicKey as string }
}

const WRITE_FIELDS = new Set(['created', 'served', 'keyIds', 'types'])

/**
 * Checks a write policy and returns a normalised copy (only the fields given). Throws InvalidArgumentError
 * naming the field (`at` is where the policy sits, e.g. `partners[0].write`).
 */
export function validateWritePolicy (input: unknown, at = 'write'): WritePolicy {
  const fail = (field: string, why: string): never => { throw new InvalidArgumentError(`share.${field}: ${why}`) }
  if (input === 'none') return 'none'
  if (input == null || typeof input !== 'object' || Array.isArray(input)) return fail(at, 'must be "none" or an object')
  const w = input as Record<string, unknown>
  for (const key of Object.keys(w)) {
    if (!WRITE_FIELDS.has(key)) fail(`${at}.${key}`, 'is not a write policy field (created, served, keyIds, types)')
  }
  const out: Exclude<WritePolicy, 'none'> = {}
  for (const key of ['created', 'served'] as const) {
    if (w[key] === undefined) continue
    if (typeof w[key] !== 'boolean') fail(`${at}.${key}`, 'must be true or false')
    out[key] = w[key] as boolean
  }
  if (w.keyIds !== undefined) {
    if (!Array.isArray(w.keyIds) || !w.keyIds.every(isValidId)) fail(`${at}.keyIds`, 'must be an array of key ids')
    out.keyIds = [...w.keyIds as string[]]
  }
  if (w.types !== undefined) {
    if (!Array.isArray(w.types) || !w.types.every((t) => typeof t === 'string' && t.length > 0)) {
      fail(`${at}.types`, 'must be an array of non-empty strings')
    }
    out.types = [...w.types as string[]]
  }
  return out
}

/** The signing keys whose changes a share accepts: this tenant's, its partners' and its participants'. */
export function participantKeysOf (config: ShareConfig, ownSigningKey: string): Set<string> {
  return new Set([
    ownSigningKey,
    ...config.partners.map((p) => p.tenant.signingPublicKey),
    ...(config.participants ?? []).map((p) => p.tenant.signingPublicKey)
  ])
}

function validateFilter (f: unknown): ShareFilter {
  const fail = (why: string): never => { throw new InvalidArgumentError(`share.filter: ${why}`) }
  if (f == null || typeof f !== 'object') return fail('must be an object')
  const filter = f as Record<string, unknown>
  switch (filter.kind) {
    case 'all': return { kind: 'all' }
    case 'selector':
      try {
        compileSelector(filter.selector as MangoSelector)
      } catch (err) {
        if (err instanceof InvalidFilterError) fail(err.message)
        throw err
      }
      return { kind: 'selector', selector: filter.selector as MangoSelector }
    case 'type':
      if (!Array.isArray(filter.types) || filter.types.length === 0 || !filter.types.every((t) => typeof t === 'string')) {
        fail('types must be a non-empty array of strings')
      }
      return { kind: 'type', types: [...filter.types as string[]] }
    case 'keys':
      if (!Array.isArray(filter.keyIds) || filter.keyIds.length === 0 || !filter.keyIds.every(isValidId)) {
        fail('keyIds must be a non-empty array of key ids')
      }
      return { kind: 'keys', keyIds: [...filter.keyIds as string[]] }
    case 'predicate':
      if (typeof filter.predicate !== 'function') fail('predicate must be a function')
      return { kind: 'predicate', predicate: filter.predicate as (doc: MindooDoc) => boolean }
    default:
      return fail('kind must be all, selector, type, keys or predicate')
  }
}

/**
 * How a filter decides. `byKey` filters decide per change from its key id alone; `byDoc` filters decide per
 * readable document; `all` serves everything.
 */
export type FilterPolicy =
  | { mode: 'all' }
  | { mode: 'byKey', keyIds: Set<string> }
  | { mode: 'byDoc', matches: (doc: MindooDoc) => boolean }

export function policyOf (filter: ShareFilter): FilterPolicy {
  switch (filter.kind) {
    case 'all': return { mode: 'all' }
    case 'keys': return { mode: 'byKey', keyIds: new Set(filter.keyIds) }
    case 'predicate': return { mode: 'byDoc', matches: filter.predicate }
    case 'type': {
      const types = new Set(filter.types)
      return {
        mode: 'byDoc',
        matches: (doc) => {
          const type = plainValue(doc.getData().type) // a scalar string (as the RPC writes) or text alike
          return typeof type === 'string' && types.has(type)
        }
      }
    }
    case 'selector': {
      const pred: DocPredicate = compileSelector(filter.selector)
      return { mode: 'byDoc', matches: (doc) => pred(doc.getData()) }
    }
  }
}

/**
 * A stable text naming what a filter decides (canonical JSON: object keys sorted), under which a share's served
 * set is persisted; undefined for a predicate function, which has none (its served set is rebuilt at each start).
 */
export function filterIdentity (filter: ShareFilter): string | undefined {
  if (filter.kind === 'predicate') return undefined
  const canonical = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(canonical)
    if (value !== null && typeof value === 'object') {
      return Object.fromEntries(Object.keys(value).sort().map((k) => [k, canonical((value as Record<string, unknown>)[k])]))
    }
    return value
  }
  return JSON.stringify(canonical(filter))
}
