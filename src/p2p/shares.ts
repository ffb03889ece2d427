/**
 * The share registry of a node: each configured share's runtime (database, served set, partners, counters), by
 * id and by topic, and what `status()` reports about it. Activating a share opens its database, trusts its
 * participants and builds its served set; deactivating stops all of that and aborts its sessions.
 */
import type { Libp2p } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import type { MindooDB, MindooTenant } from '../core/index.js'
import { InvalidArgumentError } from '../errors.js'
import { createReconcileSet } from '../sync/reconcile/index.js'
import { Refusals } from '../sync/refusals.js'
import { SeenSet, seenIndexName } from '../sync/seen-index.js'
import { ServedSet, type ServedSetStartInfo } from '../sync/served-set.js'
import { ShareDisabledError, type SessionResult } from '../sync/session.js'
import { filterIdentity, participantKeysOf, policyOf, topicIdOf, type ShareConfig } from '../sync/share.js'
import type { Logger } from '../util/logger.js'
import type { ScheduledPartner, ScheduledShare } from './scheduler.js'

/** A partner's state on one share. */
export interface PartnerStatus {
  peerId: string
  tenantId: string
  connected: boolean
  /** This node dials the partner (`dial` in the share, default true). */
  dial: boolean
  /** Connected, or to be dialled and with a known address: a round can be run now. */
  reachable: boolean
  /** Rounds this node started with the partner, and how many of them failed. */
  rounds: number
  roundsFailed: number
  /** Sessions the partner started (its rounds) and long-lived sessions with it that failed. */
  sessionsFailed: number
  /** When the last round this node started began, and how it ended (absent while it runs). */
  lastRoundAt?: number
  lastRoundResult?: 'ok' | 'failed'
  /** The last session of any kind with the partner that succeeded, and the last error of any kind. */
  lastSuccessAt?: number
  lastError?: { code: string, message: string, at: number }
  /** Consecutive failures (drives the backoff). */
  failures: number
  /** While backing off after failures: when the next round is due (ms since the epoch). */
  retryAt?: number
  /** Changes of our served set the partner lacked at the last reconciliation with it (0 when in sync). */
  lag?: number
  /** The session running with this partner now, if any: what reconciliation found and what has moved. */
  current?: RoundProgress
  /** The long-lived session with this partner, when one is open (see README "Live sync"). */
  live?: LiveStatus
}

/** A long-lived session with a partner: what it has carried since it opened. */
export interface LiveStatus {
  since: number
  /** Announcements sent and received, and the hashes they named. */
  announcementsSent: number
  announcementsReceived: number
  hashesAnnounced: number
  hashesReceived: number
  /** Changes sent and received on it (pushed with an announcement or fetched after one). */
  changesSent: number
  changesReceived: number
}

/** Progress of a running session with a partner. */
export interface RoundProgress {
  startedAt: number
  /** Known once reconciliation ended. */
  toSend?: number
  toReceive?: number
  sent: number
  received: number
  bytesSent: number
  bytesReceived: number
}

export interface ShareTotals {
  changesSent: number
  bytesSent: number
  changesReceived: number
  bytesReceived: number
  /** Bytes of reconciliation messages sent and received. */
  reconcileBytes: number
  /** Changes rejected, by reason code. */
  rejected: Record<string, number>
  rounds: number
  roundsFailed: number
  /** Failed rounds and sessions, by error code. */
  errors: Record<string, number>
  /** What long-lived sessions carried (a part of the counters above); the node always reports it. */
  live?: LiveTotals
}

/** Counters of the long-lived sessions of a share. */
export interface LiveTotals {
  /** Long-lived sessions opened. */
  sessions: number
  announcementsSent: number
  announcementsReceived: number
  /** Changes moved on long-lived sessions (pushed with an announcement or fetched after one). */
  changesSent: number
  changesReceived: number
}

export interface ShareStatus {
  id: string
  database: string
  enabled: boolean
  direction: ShareConfig['direction']
  filter: ShareConfig['filter']['kind']
  /** Changes this side serves on the share. */
  servedSetSize: number
  /** How the served set got ready when the share started (restored from its persisted index, or built). */
  servedSetStart?: ServedSetStartInfo
  partners: PartnerStatus[]
  totals: ShareTotals
  lastSuccessAt?: number
  lastError?: { code: string, message: string, at: number }
  /** The latest rejected changes (at most 20), newest last. */
  recentRejections: Array<{ hash: string, code: string, at: number }>
}

/** Result of one round with one partner. */
export interface RoundResult {
  share: string
  peerId: string
  ok: boolean
  /** No round was run: the partner is not connected, and not to be dialled or without a known address. */
  skipped?: boolean
  /** The round failed after moving changes (cut by a relay's limit): retried at the base delay. */
  progressed?: boolean
  result?: SessionResult
  error?: { code: string, message: string }
}

/** A long-lived session as the node keeps it. */
export interface LiveHandle {
  /** Which side opened the stream it runs on (both sides agree on which of two to keep). */
  role: 'initiator' | 'responder'
  status: LiveStatus
  /** Ends it gracefully (the partner resumes with a reconciliation when it wants). */
  close: () => void
}

export interface PartnerState extends Omit<PartnerStatus, 'live'>, ScheduledPartner {
  /** Its peer store entry has an address (from the share, the DHT or identify). */
  addressKnown: boolean
  running?: Promise<RoundResult>
  /** The long-lived session with this partner on this share, if one is open. */
  live?: LiveHandle
  /** Hashes this partner is known to have (it revealed or announced them): never announced back to it. */
  peerHas: Set<string>
}

export interface ShareRuntime extends ScheduledShare<PartnerState> {
  config: ShareConfig
  topicKey: string
  db: MindooDB
  served: ServedSet
  participants: Set<string>
  partners: Map<string, PartnerState>
  totals: ShareTotals & { live: LiveTotals }
  sessions: Set<AbortController>
  offGrow: () => void
  recentRejections: Array<{ hash: string, code: string, at: number }>
  /** Changes refused on this share for reasons tied to their bytes, per peer (bounded; see src/sync/refusals.ts). */
  refusals: Refusals
  /** Direction `receive`: per peer, what it revealed, read from disk on first use (see seen-index.ts). */
  seen: Map<string, Promise<SeenSet>>
  /** Opens a peer's persisted seen set (direction `receive`). */
  openSeen: (peer: string) => Promise<SeenSet>
  lastSuccessAt?: number
  lastError?: { code: string, message: string, at: number }
}

export interface ShareRegistryComponents {
  tenant: MindooTenant
  libp2p: () => Libp2p
  logger: Logger
}

/** The shares of a node, by id and by topic. */
export class ShareRegistry {
  readonly #c: ShareRegistryComponents
  readonly #shares = new Map<string, ShareRuntime>()
  readonly #byTopic = new Map<string, ShareRuntime>()

  constructor (components: ShareRegistryComponents) {
    this.#c = components
  }

  get size (): number {
    return this.#shares.size
  }

  values (): IterableIterator<ShareRuntime> {
    return this.#shares.values()
  }

  /** The share, or InvalidArgumentError. */
  get (id: string): ShareRuntime {
    const rt = this.#shares.get(id)
    if (rt === undefined) throw new InvalidArgumentError(`no share ${id}`)
    return rt
  }

  has (id: string): boolean {
    return this.#shares.has(id)
  }

  /** The share with this topic id (hex), if any. */
  byTopic (topicKey: string): ShareRuntime | undefined {
    return this.#byTopic.get(topicKey)
  }

  /** Checks that the share can be added: a new id and a topic no other share uses. Returns its topic key. */
  checkNew (config: ShareConfig): string {
    if (this.#shares.has(config.id)) throw new InvalidArgumentError(`share ${config.id} exists`)
    const topicKey = Buffer.from(topicIdOf(config.topicSecret)).toString('hex')
    const clash = this.#byTopic.get(topicKey)
    if (clash !== undefined) throw new InvalidArgumentError(`share ${clash.config.id} already uses this topic`)
    return topicKey
  }

  add (rt: ShareRuntime): void {
    this.#shares.set(rt.config.id, rt)
    this.#byTopic.set(rt.topicKey, rt)
  }

  delete (rt: ShareRuntime): void {
    this.#shares.delete(rt.config.id)
    this.#byTopic.delete(rt.topicKey)
  }

  clear (): void {
    this.#shares.clear()
    this.#byTopic.clear()
  }

  /** Opens the share's database, trusts its participants, builds its served set and its partners' state. */
  async activate (config: ShareConfig, topicKey: string): Promise<ShareRuntime> {
    const { tenant, logger } = this.#c
    const db = await tenant.openDB(config.database)
    for (const p of [...config.partners, ...config.participants ?? []]) await db.trustPartner(p.tenant)
    const served = new ServedSet({
      db, index: createReconcileSet(), state: tenant.openIndexState(config.database, config.id), logger: logger.child({ share: config.id })
    }, {
      policy: policyOf(config.filter),
      identity: filterIdentity(config.filter),
      direction: config.direction,
      ownAuthor: tenant.getPublicInfo().signingPublicKey
    })
    await served.start()
    const partners = new Map<string, PartnerState>()
    for (const p of config.partners) {
      const addressKnown = p.addresses !== undefined && p.addresses.length > 0
      partners.set(p.peerId, {
        peerId: p.peerId, tenantId: p.tenant.tenantId, connected: false, dial: p.dial ?? true, reachable: false, addressKnown,
        rounds: 0, roundsFailed: 0, sessionsFailed: 0, failures: 0, again: false, peerHas: new Set()
      })
      if (p.addresses !== undefined && addressKnown) {
        await this.#c.libp2p().peerStore.merge(peerIdFromString(p.peerId), { multiaddrs: p.addresses.map((a) => multiaddr(a)) })
      }
    }
    return {
      config,
      topicKey,
      db,
      served,
      participants: participantKeysOf(config, tenant.getPublicInfo().signingPublicKey),
      partners,
      totals: {
        changesSent: 0, bytesSent: 0, changesReceived: 0, bytesReceived: 0, reconcileBytes: 0, rejected: {}, rounds: 0,
        roundsFailed: 0, errors: {},
        live: { sessions: 0, announcementsSent: 0, announcementsReceived: 0, changesSent: 0, changesReceived: 0 }
      },
      sessions: new Set(),
      offGrow: () => {},
      recentRejections: [],
      refusals: new Refusals(),
      seen: new Map(),
      openSeen: async (peer) => await SeenSet.open(
        tenant.openIndexState(config.database, seenIndexName(config.id, peer)), logger.child({ share: config.id, peer }))
    }
  }

  /** Stops following the database, closes long-lived sessions and aborts every session of the share. */
  deactivate (rt: ShareRuntime): void {
    rt.offGrow()
    rt.served.stop()
    for (const p of rt.partners.values()) p.live?.close()
    abortSessions(rt)
  }

  /** What `status()` reports for one share. */
  statusOf (rt: ShareRuntime, connected: (peerId: string) => boolean): ShareStatus {
    return {
      id: rt.config.id,
      database: rt.config.database,
      enabled: rt.config.enabled,
      direction: rt.config.direction,
      filter: rt.config.filter.kind,
      servedSetSize: rt.served.size,
      servedSetStart: rt.served.startInfo,
      partners: [...rt.partners.values()].map((p) => ({
        peerId: p.peerId,
        tenantId: p.tenantId,
        connected: connected(p.peerId),
        dial: p.dial,
        reachable: connected(p.peerId) || (p.dial && p.addressKnown),
        rounds: p.rounds,
        roundsFailed: p.roundsFailed,
        sessionsFailed: p.sessionsFailed,
        lastRoundAt: p.lastRoundAt,
        lastRoundResult: p.lastRoundResult,
        lastSuccessAt: p.lastSuccessAt,
        lastError: p.lastError,
        failures: p.failures,
        retryAt: p.retryAt,
        lag: p.lag,
        current: p.current === undefined ? undefined : { ...p.current },
        live: p.live === undefined ? undefined : { ...p.live.status }
      })),
      totals: { ...rt.totals, rejected: { ...rt.totals.rejected }, errors: { ...rt.totals.errors }, live: { ...rt.totals.live } },
      lastSuccessAt: rt.lastSuccessAt,
      lastError: rt.lastError,
      recentRejections: [...rt.recentRejections]
    }
  }
}

/** Aborts every running session of the share (it was disabled or removed). */
export function abortSessions (rt: ShareRuntime): void {
  for (const s of rt.sessions) s.abort(new ShareDisabledError(`share ${rt.config.id} disabled`))
  rt.sessions.clear()
}

/**
 * What `peer` revealed on a receive-only share, per share and peer: read from disk once (sessions asking at once
 * share the read; a failed read is tried again by the next session).
 */
export async function seenOf (rt: ShareRuntime, peer: string): Promise<SeenSet> {
  let seen = rt.seen.get(peer)
  if (seen === undefined) {
    seen = rt.openSeen(peer)
    rt.seen.set(peer, seen)
    seen.catch(() => { if (rt.seen.get(peer) === seen) rt.seen.delete(peer) })
  }
  return await seen
}
