/**
 * Shares: the collaboration relationships a node keeps in sync.
 *
 * A share maps a topic (agreed by its participants, who alone hold its secret) to a local database, names the
 * partner participants, the direction, and what this side serves. Each side configures its own share; database
 * names may differ per side, filters are each side's own decision about what it serves.
 */
import { createHash } from 'node:crypto'
import type { MindooDoc, TenantPublicInfo } from '../core/index.js'
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
 * What a participant may write into this side's database through the share, enforced on each change's author
 * (relayed changes too). `'none'`: nothing.
 */
export type WritePolicy = 'none' | {
  created?: boolean   // may write documents it created (docId proves the creator). Default true
  served?: boolean    // may write documents this share serves to it (by this side's filter). Default true
  keyIds?: string[]   // and only under these key ids. Default: any
  types?: string[]    // and only documents whose current `type` here is one of these (checked on this side's
                      // state before the change; a document this side does not have yet passes only if the
                      // partner created it). Default: any
}

export interface SharePartner {
  /** The partner node's libp2p peer id. */
  peerId: string
  /** The partner tenant's id and signing key: its authors' changes are accepted on this share. */
  tenant: TenantPublicInfo
  /** Known multiaddrs of the partner node (optional; the DHT finds the rest). */
  addresses?: string[]
  /** What its tenant's authors may write. Default `{ created: true, served: true }`. */
  write?: WritePolicy
}

/** An author whose changes are accepted when relayed; no sessions with it. */
export interface ShareParticipant {
  tenant: TenantPublicInfo
  write?: WritePolicy
}

export interface ShareConfig {
  /** Local name of the share (unique on this node). */
  id: string
  /** The shared secret that identifies the topic; only participants hold it. At least 16 characters. */
  topicSecret: string
  /** The local database it maps to (names may differ per side). */
  database: string
  partners: SharePartner[]
  /** Authors accepted when relayed, besides the partners' tenants. */
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

/** The DHT key a topic is announced under (a different derivation from the session id). */
export function topicDhtKeyOf (topicSecret: string): Uint8Array {
  return createHash('sha256').update('mindoodb/topic/dht/v1\0').update(topicSecret).digest()
}

/** Checks a share config and returns a normalised copy. Throws InvalidArgumentError naming the field. */
export function validateShare (input: unknown): ShareConfig {
  const fail = (field: string, why: string): never => { throw new InvalidArgumentError(`share.${field}: ${why}`) }
  if (input == null || typeof input !== 'object') fail('', 'must be an object')
  const s = input as Record<string, unknown>
  if (!isValidId(s.id)) fail('id', 'must be an id of A-Z a-z 0-9 . _ : @ -')
  if (typeof s.topicSecret !== 'string' || s.topicSecret.length < 16) fail('topicSecret', 'must be a string of 16 or more characters')
  if (typeof s.database !== 'string' || !/^[A-Za-z0-9._-]{1,128}$/.test(s.database)) fail('database', 'must be a database name')
  if (!Array.isArray(s.partners)) fail('partners', 'must be an array')
  const partners = (s.partners as unknown[]).map((p, i): SharePartner => {
    const at = `partners[${i}]`
    if (p == null || typeof p !== 'object') fail(at, 'must be an object')
    const { peerId, tenant, addresses } = p as Record<string, unknown>
    if (typeof peerId !== 'string' || !/^[1-9A-HJ-NP-Za-km-z]{20,128}$/.test(peerId)) fail(`${at}.peerId`, 'must be a libp2p peer id')
    const t = tenant as Record<string, unknown> | undefined
    if (t == null || !isValidId(t.tenantId)) fail(`${at}.tenant.tenantId`, 'must be a tenant id')
    if (typeof t?.signingPublicKey !== 'string' || Buffer.from(t.signingPublicKey, 'base64url').length !== 32) {
      fail(`${at}.tenant.signingPublicKey`, 'must be a base64url Ed25519 public key')
    }
    if (addresses !== undefined && (!Array.isArray(addresses) || !addresses.every((a) => typeof a === 'string' && a.startsWith('/')))) {
      fail(`${at}.addresses`, 'must be an array of multiaddrs')
    }
    return {
      peerId: peerId as string,
      tenant: { tenantId: t?.tenantId as string, signingPublicKey: t?.signingPublicKey as string },
      addresses: addresses as string[] | undefined
    }
  })
  if (!DIRECTIONS.has(s.direction as ShareDirection)) fail('direction', 'must be both, serve or receive')
  if (typeof s.enabled !== 'boolean') fail('enabled', 'must be true or false')
  return {
    id: s.id as string,
    topicSecret: s.topicSecret as string,
    database: s.database as string,
    partners,
    direction: s.direction as ShareDirection,
    filter: validateFilter(s.filter),
    enabled: s.enabled as boolean
  }
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
      return { mode: 'byDoc', matches: (doc) => typeof doc.getData().type === 'string' && types.has(doc.getData().type) }
    }
    case 'selector': {
      const pred: DocPredicate = compileSelector(filter.selector)
      return { mode: 'byDoc', matches: (doc) => pred(doc.getData()) }
    }
  }
}
