import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import type { Connection, Libp2p, PeerId, Stream } from '@libp2p/interface'
import { kadDHT, type KadDHT } from '@libp2p/kad-dht'
import { peerIdFromString } from '@libp2p/peer-id'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { isLinkLocal, isLoopback, isPrivate } from '@libp2p/utils'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import { prometheusMetrics } from '@libp2p/prometheus-metrics'
import type { Registry } from 'prom-client'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import type { MindooDB, MindooTenant } from '../core/index.js'
import {
  InvalidArgumentError, MindooError, NotStartedError, NodeStoppingError, PeerNotDialledError, RelayLimitError, SessionRefusedError,
  TimeoutError, TooManySessionsError
} from '../errors.js'
import type { AbortOptions } from '../store/types.js'
import { SYNC_PROTOCOL_VERSION, SyncProtocolError, SyncRemoteError, isHello, type MessageChannel, type SyncErrorCode } from '../sync/messages.js'
import { createInitiator, createReconcileSet, createResponder, type ReconcileSet } from '../sync/reconcile/index.js'
import { Refusals } from '../sync/refusals.js'
import { ServedSet } from '../sync/served-set.js'
import { runSession, ShareDisabledError, WantClaims, type SessionResult, type SessionStats } from '../sync/session.js'
import { participantKeysOf, policyOf, topicDhtKeyOf, topicIdOf, validateShare, type ShareConfig, type ShareUpdate } from '../sync/share.js'
import { createWritePolicy } from '../sync/write-policy.js'
import { silentLogger, type Logger } from '../util/logger.js'
import { streamChannel } from './channel.js'
import {
  DEFAULT_ANNOUNCE_INTERVAL_MS, DEFAULT_BACKOFF_BASE_MS, DEFAULT_BACKOFF_MAX_MS, DEFAULT_DISCOVERY_INTERVAL_MS,
  DEFAULT_LISTEN, DEFAULT_LIVE_DEBOUNCE_MS, DEFAULT_MAX_FRAME_BYTES, DEFAULT_SYNC_INTERVAL_MS, DHT_EPOCH_LEAD_MS,
  DHT_EPOCH_MS, DHT_PROTOCOL, HELLO_TIMEOUT_MS, INBOUND_UPGRADE_TIMEOUT_MS, MAX_CONNECTIONS, MAX_HELLO_FRAME_BYTES,
  MAX_INBOUND_STREAMS, MAX_MUXED_STREAMS, MAX_OUTBOUND_STREAMS, MAX_PENDING_INBOUND_CONNECTIONS, MAX_PENDING_SESSIONS,
  MAX_PENDING_SESSIONS_PER_PEER, MAX_RECENT_REJECTIONS, MAX_RECONCILE_MESSAGE_BYTES, MAX_STREAM_WINDOW_BYTES, SYNC_PROTOCOL
} from './constants.js'
import { clip, NodeEvents } from './events.js'
import { loadOrCreatePeerKey } from './identity.js'
import { dialError, Nat, relayLimitError, relayPeersOf, sessionFrameLimit, type NatInit, type NatReport } from './nat.js' // nat

export interface MindooNodeInit {
  /** The organisation's tenant: its databases are the ones shares map to. */
  tenant: MindooTenant
  /** Where the node keeps its libp2p identity (`peer-key`, mode 0600). */
  dataDir: string
  /** Multiaddrs to listen on. Default: a random TCP port on 127.0.0.1. */
  listen?: string[]
  /**
   * Multiaddrs (with /p2p/<peer id>) of participants to connect to at start (DHT bootstrap). Their peer ids are
   * admitted by the connection gater.
   */
  bootstrap?: string[]
  /**
   * Further peer ids the connection gater admits (DHT-only peers, for example). Besides these and the bootstrap
   * peers, only partners of some share may connect to this node or be dialled by it. Default none.
   */
  allowPeers?: string[]
  /**
   * Announce loopback, private (RFC 1918, CGNAT...) and link-local addresses to peers (identify, DHT provider
   * records). Default false: only public addresses are announced. Tests and LAN-only meshes that rely on DHT
   * discovery set it.
   */
  announcePrivateAddresses?: boolean
  /** Inbound sync streams not yet authorised, over all peers. Default `MAX_PENDING_SESSIONS` (src/limits.ts). */
  maxPendingSessions?: number
  /** Inbound sync streams not yet authorised, per peer. Default `MAX_PENDING_SESSIONS_PER_PEER` (src/limits.ts). */
  maxPendingSessionsPerPeer?: number
  /** Shares to start with. */
  shares?: ShareConfig[]
  /** Periodic catch-up round per partner, ms. Default 30 000; 0 disables. */
  syncIntervalMs?: number
  /** First retry delay after a failed round, ms (doubles per failure, ±50 % jitter). Default 1 000. */
  backoffBaseMs?: number
  /** Longest retry delay, ms. Default 300 000. */
  backoffMaxMs?: number
  /** Re-announce topics on the DHT, ms. Default 3 600 000. */
  announceIntervalMs?: number
  /** Look for unconnected partners on the DHT, ms. Default 60 000. */
  discoveryIntervalMs?: number
  /** Use the DHT to announce topics and find partners. Default true. */
  dht?: boolean
  /** Largest frame sent or accepted. Default 4 MiB. */
  maxFrameBytes?: number
  /** Delay before live rounds start after a change, ms. Default 5. */
  liveDebounceMs?: number
  /** Reaching and being reached behind firewalls: AutoNAT, relays served and listened through, DCUtR (src/p2p/nat.ts). */
  nat?: NatInit
  /** A prom-client registry to publish libp2p's own metrics into (off when not given). */
  metricsRegistry?: Registry
  logger?: Logger
}

/** A partner's state on one share. */
export interface PartnerStatus {
  peerId: string
  tenantId: string
  connected: boolean
  /** This node dials the partner (`dial` in the share, default true). */
  dial: boolean
  /** Connected, or to be dialled and with a known address: a round can be run now. */
  reachable: boolean
  rounds: number
  roundsFailed: number
  lastRoundAt?: number
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
  /** Changes rejected, by reason code. */
  rejected: Record<string, number>
  rounds: number
  roundsFailed: number
  /** Failed rounds and sessions, by error code. */
  errors: Record<string, number>
}

export interface ShareStatus {
  id: string
  database: string
  enabled: boolean
  direction: ShareConfig['direction']
  filter: ShareConfig['filter']['kind']
  /** Changes this side serves on the share. */
  servedSetSize: number
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
  result?: SessionResult
  error?: { code: string, message: string }
}

interface PartnerState extends PartnerStatus {
  /** Its peer store entry has an address (from the share, the DHT or identify). */
  addressKnown: boolean
  running?: Promise<RoundResult>
  again: boolean
  retryTimer?: NodeJS.Timeout
  retryAt?: number
}

interface ShareRuntime {
  config: ShareConfig
  topicKey: string
  db: MindooDB
  served: ServedSet
  participants: Set<string>
  partners: Map<string, PartnerState>
  totals: ShareTotals
  sessions: Set<AbortController>
  liveTimer?: NodeJS.Timeout
  offGrow: () => void
  recentRejections: Array<{ hash: string, code: string, at: number }>
  /** Changes refused on this share for reasons tied to their bytes, per peer (bounded; see src/sync/refusals.ts). */
  refusals: Refusals
  /** Direction `receive`: per peer, what it revealed (in memory only: after a restart a peer sends its ids again). */
  seen: Map<string, ReconcileSet>
  lastSuccessAt?: number
  lastError?: { code: string, message: string, at: number }
}

type Services = { dht?: KadDHT, identify: unknown, ping: unknown }

/** Runs `fn` with a signal that aborts after `ms` or with `parent`; the timer is cleared when `fn` settles. */
async function withTimeout<T> (ms: number, parent: AbortSignal, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController()
  const timer = setTimeout(() => { controller.abort(new TimeoutError(`timed out after ${ms} ms`)) }, ms)
  try {
    return await fn(AbortSignal.any([controller.signal, parent]))
  } finally {
    clearTimeout(timer)
  }
}

function errorInfo (err: unknown): { code: string, message: string } {
  if (err instanceof SyncRemoteError) return { code: err.remoteCode, message: err.message }
  const e = err as { code?: string, name?: string, message?: string }
  return { code: e?.code ?? e?.name ?? 'ERROR', message: String(e?.message ?? err) }
}

/** The DHT epoch a time falls in (see DHT_EPOCH_MS). */
export function dhtEpochOf (time: number): number {
  return Math.floor(time / DHT_EPOCH_MS)
}

/** The DHT content id a topic is announced under in one epoch. */
export function topicCidOf (topicSecret: string, epoch: number): CID {
  return CID.createV1(0x55, Digest.create(0x12, topicDhtKeyOf(topicSecret, epoch)))
}

/** Epochs a node announces a topic under at `time`: the current one, and the next one near its end. */
export function announceEpochs (time: number): number[] {
  const epoch = dhtEpochOf(time)
  return (epoch + 1) * DHT_EPOCH_MS - time <= DHT_EPOCH_LEAD_MS ? [epoch, epoch + 1] : [epoch]
}

/** Epochs a node looks a topic up under at `time`: the current one and the previous one. */
export function lookupEpochs (time: number): number[] {
  const epoch = dhtEpochOf(time)
  return epoch > 0 ? [epoch, epoch - 1] : [epoch]
}

/** Addresses worth announcing to peers: public ones only, unless private ones are wanted too. */
function isPublicAddress (ma: Multiaddr): boolean {
  return !isPrivate(ma) && !isLoopback(ma) && !isLinkLocal(ma)
}

/** The peer id at the end of a multiaddr (`/p2p/<id>`), if any. */
function peerIdOfAddress (addr: string): string | undefined {
  return multiaddr(addr).getComponents().findLast((c) => c.name === 'p2p')?.value
}

/**
 * One organisation's peer-to-peer node: a libp2p host (TCP, Noise, Yamux, identify, ping, a private Kad-DHT)
 * that keeps the tenant's shared databases in sync with partner organisations over `/mindoodb/sync/1.0.0`,
 * serving each partner only its share's served set.
 *
 * Start order: libp2p, shares (databases, served sets), protocol handler, partner dials, discovery, timers;
 * stop goes in reverse.
 *
 * @example
 * ```ts
 * const node = await createMindooNode({ tenant, dataDir, shares: [share] })
 * await node.start()
 * await node.syncNow('orders')
 * await node.stop()
 * ```
 */
export class MindooNode {
  #init: MindooNodeInit
  readonly #log: Logger
  readonly #shares = new Map<string, ShareRuntime>()
  readonly #byTopic = new Map<string, ShareRuntime>()
  readonly #claims = new Map<string, WantClaims>()
  readonly #maxFrame: number
  #libp2p: Libp2p<Services> | undefined
  #timers: NodeJS.Timeout[] = []
  #stopping = new AbortController()
  #started = false
  /** Peer ids the connection gater admits: partners of some share, bootstrap peers, allowPeers. */
  #allowed = new Set<string>()
  /** The configured shares while start() is adding them. */
  #starting: ShareConfig[] = []
  /** Inbound sync streams whose hello is not authorised yet, per peer, and their total. */
  readonly #pending = new Map<string, number>()
  #pendingTotal = 0
  /** nat: AutoNAT, relays and DCUtR (src/p2p/nat.ts); partners of some share may use the relay this node serves. */
  #nat: Nat | undefined
  #relayClients = new Set<string>()
  /** Every address the node has (the last list libp2p filtered for announcement). */
  #allAddrs: Multiaddr[] = []
  /** What happens on the node, for the daemon's event stream and audit trail (see src/p2p/events.ts). */
  readonly events: NodeEvents

  constructor (init: MindooNodeInit) {
    this.#init = init
    this.#log = (init.logger ?? silentLogger).child({ component: 'node' })
    this.#maxFrame = init.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES
    this.events = new NodeEvents((err) => { this.#log.error({ err: String(err) }, 'event listener failed') })
    if (!Number.isInteger(this.#maxFrame) || this.#maxFrame < 64 * 1024) throw new InvalidArgumentError('maxFrameBytes must be at least 65536')
  }

  get peerId (): string {
    return this.#node().peerId.toString()
  }

  /** Every address the node can be reached at (loopback and private ones too), with /p2p/<peer id>. */
  getMultiaddrs (): string[] {
    this.#node().getMultiaddrs()
    return this.#allAddrs.map((a) => a.toString())
  }

  /** The addresses announced to peers (identify, DHT records): public ones only unless announcePrivateAddresses. */
  getAnnouncedMultiaddrs (): string[] {
    return this.#node().getMultiaddrs().map((a) => a.toString())
  }

  /** nat: reachability, NAT status, relay reservations held and served (for the doctor). */
  natReport (): NatReport {
    this.#node()
    return (this.#nat as Nat).report()
  }

  /** True when the connection gater admits the peer (a partner of some share, bootstrap or allowPeers). */
  isAdmitted (peerId: string): boolean {
    return this.#allowed.has(peerId)
  }

  /** Connected peers (any protocol). */
  getPeers (): Array<{ peerId: string, addresses: string[] }> {
    return this.#node().getConnections().map((c) => ({ peerId: c.remotePeer.toString(), addresses: [c.remoteAddr.toString()] }))
  }

  get libp2p (): Libp2p<Services> {
    return this.#node()
  }

  async start (): Promise<void> {
    if (this.#started) return
    this.#started = true
    this.#stopping = new AbortController()
    const useDht = this.#init.dht ?? true
    const privateKey = await loadOrCreatePeerKey(this.#init.dataDir)
    this.#starting = [...this.#init.shares ?? []]
    const nat = this.#nat = new Nat(this.#init.nat ?? {}, { isRelayClient: (id) => this.#relayClients.has(id), isAdmitted: (id) => this.#allowed.has(id) }, this.#log, (e) => { this.events.emit(e) }) // nat
    this.#refreshAllowed()
    const denied = (peerId: PeerId): boolean => !this.#allowed.has(peerId.toString())
    const announcePrivate = this.#init.announcePrivateAddresses ?? false
    this.#libp2p = await createLibp2p({
      privateKey,
      start: false,
      metrics: this.#init.metricsRegistry === undefined ? undefined : prometheusMetrics({ registry: this.#init.metricsRegistry, collectDefaultMetrics: false }),
      addresses: {
        listen: this.#init.listen ?? DEFAULT_LISTEN,
        announceFilter: (addrs) => {
          this.#allAddrs = addrs
          return announcePrivate ? addrs : addrs.filter(isPublicAddress)
        }
      },
      transports: [tcp(), ...nat.transports()], // nat: + circuit relay
      connectionEncrypters: [noise()],
      streamMuxers: [yamux({ maxInboundStreams: MAX_MUXED_STREAMS, streamOptions: { maxStreamWindowSize: MAX_STREAM_WINDOW_BYTES } })],
      // only partners of some share, bootstrap peers and allowPeers connect, in either direction: a stranger is
      // turned away as soon as Noise proves its peer id, so it can open no stream, DHT queries included; and
      // peers learned from the DHT outside that list are never dialled
      connectionGater: {
        ...nat.gater(), // nat: who may reserve on, hop through and reach us through a relay
        denyDialPeer: denied,
        denyInboundEncryptedConnection: denied,
        denyOutboundEncryptedConnection: denied
      },
      connectionManager: {
        maxConnections: MAX_CONNECTIONS,
        maxIncomingPendingConnections: MAX_PENDING_INBOUND_CONNECTIONS,
        inboundUpgradeTimeout: INBOUND_UPGRADE_TIMEOUT_MS
      },
      services: {
        identify: identify(),
        ping: ping(),
        // without the DHT the node takes no part in it at all: it answers no queries, runs none, and libp2p
        // cannot look up the address of a peer it was not given, so it only reaches configured addresses
        ...(useDht ? { dht: kadDHT({ protocol: DHT_PROTOCOL, clientMode: false, peerInfoMapper: (p) => p, allowQueryWithZeroPeers: true }) } : {}),
        ...nat.services() // nat: AutoNAT, DCUtR, relay server, relay reservations
      }
    })
    await this.#libp2p.start()
    try {
      for (const share of this.#init.shares ?? []) await this.addShare(share)
    } finally {
      this.#starting = []
      this.#refreshAllowed()
    }
    await this.#libp2p.handle(SYNC_PROTOCOL, (stream, connection) => this.#onInbound(stream, connection), {
      maxInboundStreams: MAX_INBOUND_STREAMS, maxOutboundStreams: MAX_OUTBOUND_STREAMS,
      runOnLimitedConnection: true // nat: sessions run over relayed connections too (a cut one fails with RELAY_LIMIT)
    })
    this.#libp2p.addEventListener('peer:connect', (evt) => { this.#onPeerConnect(evt.detail) })
    this.#libp2p.addEventListener('peer:disconnect', (evt) => { this.#emitPartner('partner.disconnected', evt.detail.toString()) })
    for (const addr of this.#init.bootstrap ?? []) void this.#dial(multiaddr(addr))
    const every = (ms: number, fn: () => void): void => {
      if (ms > 0) this.#timers.push(setInterval(fn, ms).unref())
    }
    every(this.#init.syncIntervalMs ?? DEFAULT_SYNC_INTERVAL_MS, () => { this.#periodic() })
    if (useDht) {
      every(this.#init.announceIntervalMs ?? DEFAULT_ANNOUNCE_INTERVAL_MS, () => { this.#announceAll() })
      every(this.#init.discoveryIntervalMs ?? DEFAULT_DISCOVERY_INTERVAL_MS, () => { void this.discover() })
      this.#announceAll()
    }
    this.#log.info({ peerId: this.peerId, addresses: this.getMultiaddrs() }, 'node started')
  }

  async stop (): Promise<void> {
    if (!this.#started) return
    this.#started = false
    this.#stopping.abort(new NodeStoppingError('node stopping'))
    for (const t of this.#timers) clearInterval(t)
    this.#timers = []
    for (const rt of this.#shares.values()) this.#deactivate(rt)
    const running = [...this.#shares.values()].flatMap((rt) => [...rt.partners.values()].map((p) => p.running))
    await Promise.allSettled(running)
    // a later start() picks the shares up again
    this.#init = { ...this.#init, shares: [...this.#shares.values()].map((rt) => ({ ...rt.config })) }
    this.#shares.clear()
    this.#byTopic.clear()
    await this.#libp2p?.stop()
    this.#libp2p = undefined
    this.#log.info({}, 'node stopped')
  }

  // ------------------------------------------------------------------ shares

  /** Adds a share (validated) and starts keeping it in sync. */
  async addShare (input: ShareConfig): Promise<void> {
    this.#node()
    const config = validateShare(input)
    if (this.#shares.has(config.id)) throw new InvalidArgumentError(`share ${config.id} exists`)
    const topicKey = Buffer.from(topicIdOf(config.topicSecret)).toString('hex')
    const clash = this.#byTopic.get(topicKey)
    if (clash !== undefined) throw new InvalidArgumentError(`share ${clash.config.id} already uses this topic`)
    const rt = await this.#activate(config, topicKey)
    this.#shares.set(config.id, rt)
    this.#byTopic.set(topicKey, rt)
    this.#refreshAllowed()
    if (config.enabled) this.#onShareEnabled(rt)
  }

  /** Changes a share. A changed filter, database or direction rebuilds its served set; sessions are restarted. */
  async updateShare (id: string, update: ShareUpdate): Promise<void> {
    const rt = this.#share(id)
    const next = validateShare({ ...rt.config, ...update, id })
    await this.#removeShare(id)
    await this.addShare(next)
    await this.#hangUpDenied()
  }

  async enableShare (id: string): Promise<void> {
    const rt = this.#share(id)
    if (rt.config.enabled) return
    rt.config = { ...rt.config, enabled: true }
    this.#onShareEnabled(rt)
  }

  /** Stops serving the share at once: its open sessions are closed, new ones refused. */
  async disableShare (id: string): Promise<void> {
    const rt = this.#share(id)
    rt.config = { ...rt.config, enabled: false }
    this.#abortSessions(rt)
    this.#log.info({ share: id }, 'share disabled')
  }

  /** Removes a share; its partners that are no partner of another share are disconnected. */
  async removeShare (id: string): Promise<void> {
    await this.#removeShare(id)
    await this.#hangUpDenied()
  }

  async #removeShare (id: string): Promise<void> {
    const rt = this.#share(id)
    rt.config = { ...rt.config, enabled: false }
    this.#deactivate(rt)
    await Promise.allSettled([...rt.partners.values()].map((p) => p.running))
    this.#shares.delete(id)
    this.#byTopic.delete(rt.topicKey)
    this.#refreshAllowed()
  }

  getShare (id: string): ShareConfig {
    return { ...this.#share(id).config }
  }

  /** The shares, also while stopped (a start picks them up). */
  listShares (): ShareConfig[] {
    if (!this.#started) return (this.#init.shares ?? []).map((c) => ({ ...c }))
    return [...this.#shares.values()].map((rt) => ({ ...rt.config }))
  }

  status (id?: string): ShareStatus[] {
    const list = id === undefined ? [...this.#shares.values()] : [this.#share(id)]
    return list.map((rt) => ({
      id: rt.config.id,
      database: rt.config.database,
      enabled: rt.config.enabled,
      direction: rt.config.direction,
      filter: rt.config.filter.kind,
      servedSetSize: rt.served.size,
      partners: [...rt.partners.values()].map((p) => ({
        peerId: p.peerId,
        tenantId: p.tenantId,
        connected: this.#connected(p.peerId),
        dial: p.dial,
        reachable: this.#connected(p.peerId) || (p.dial && p.addressKnown),
        rounds: p.rounds,
        roundsFailed: p.roundsFailed,
        lastRoundAt: p.lastRoundAt,
        lastSuccessAt: p.lastSuccessAt,
        lastError: p.lastError,
        failures: p.failures,
        retryAt: p.retryAt,
        lag: p.lag,
        current: p.current === undefined ? undefined : { ...p.current }
      })),
      totals: { ...rt.totals, rejected: { ...rt.totals.rejected }, errors: { ...rt.totals.errors } },
      lastSuccessAt: rt.lastSuccessAt,
      lastError: rt.lastError,
      recentRejections: [...rt.recentRejections]
    }))
  }

  /** Runs a round with every partner of the share (or of every enabled share) now, and waits for them. */
  async syncNow (id?: string, options: AbortOptions = {}): Promise<RoundResult[]> {
    const list = id === undefined ? [...this.#shares.values()].filter((rt) => rt.config.enabled) : [this.#share(id)]
    const rounds: Array<Promise<RoundResult>> = []
    for (const rt of list) {
      for (const p of rt.partners.values()) rounds.push(this.#requestRound(rt, p, options))
    }
    return await Promise.all(rounds)
  }

  /** Announces every enabled topic and looks for unconnected partners on the DHT. */
  async discover (options: AbortOptions = {}): Promise<void> {
    const node = this.#node()
    for (const rt of this.#shares.values()) {
      if (!rt.config.enabled) continue
      const missing = [...rt.partners.values()].filter((p) => p.dial && !this.#connected(p.peerId))
      if (missing.length === 0) continue
      for (const epoch of lookupEpochs(Date.now())) {
        try {
          for await (const provider of node.contentRouting.findProviders(topicCidOf(rt.config.topicSecret, epoch), { signal: this.#signal(options) })) {
            const id = provider.id.toString()
            const p = rt.partners.get(id)
            // a provider that is not a partner of this share to dial is never dialled (the gater agrees)
            if (id === this.peerId || p === undefined || !p.dial || this.#connected(id)) continue
            if (provider.multiaddrs.length > 0) {
              await node.peerStore.merge(provider.id, { multiaddrs: provider.multiaddrs })
              p.addressKnown = true
            }
            void this.#dialPeer(provider.id)
          }
        } catch (err) {
          this.#log.debug({ share: rt.config.id, err: String(err) }, 'provider lookup failed')
        }
      }
    }
  }

  // ------------------------------------------------------------------ internals

  #node (): Libp2p<Services> {
    if (this.#libp2p === undefined) throw new NotStartedError('node is not started')
    return this.#libp2p
  }

  #share (id: string): ShareRuntime {
    const rt = this.#shares.get(id)
    if (rt === undefined) throw new InvalidArgumentError(`no share ${id}`)
    return rt
  }

  #signal (options: AbortOptions): AbortSignal {
    return options.signal === undefined ? this.#stopping.signal : AbortSignal.any([options.signal, this.#stopping.signal])
  }

  #connected (peerId: string): boolean {
    return this.#connectionTo(peerId) !== undefined
  }

  #connectionTo (peerId: string): Connection | undefined {
    // nat: a direct (or unlimited) connection first, a relayed one with limits last
    const open = this.#libp2p?.getConnections(peerIdFromString(peerId)).filter((c) => c.status === 'open') ?? []
    return open.find((c) => c.limits === undefined && c.direct) ?? open.find((c) => c.limits === undefined) ?? open[0]
  }

  /** Whether the peer store holds an address of the partner (kept in `addressKnown` for status). */
  async #addressKnown (p: PartnerState): Promise<boolean> {
    try {
      p.addressKnown = (await this.#node().peerStore.get(peerIdFromString(p.peerId))).addresses.length > 0
    } catch {
      p.addressKnown = false
    }
    return p.addressKnown
  }

  /** Recomputes the peers the connection gater admits: partners of every share, bootstrap peers, allowPeers. */
  #refreshAllowed (): void {
    const allowed = new Set<string>(this.#init.allowPeers ?? [])
    for (const addr of this.#init.bootstrap ?? []) {
      const id = peerIdOfAddress(addr)
      if (id !== undefined) allowed.add(id)
    }
    // while start() adds the configured shares, their partners are admitted already
    const relayClients = new Set<string>()
    for (const config of [...[...this.#shares.values()].map((rt) => rt.config), ...this.#starting]) {
      for (const p of config.partners) {
        allowed.add(p.peerId)
        relayClients.add(p.peerId)
        // nat: the relays a partner is reached through (`<relay>/p2p-circuit/p2p/<partner>`) are dialled too
        for (const id of relayPeersOf(p.addresses ?? [])) allowed.add(id)
      }
    }
    for (const id of this.#nat?.relayPeers() ?? []) allowed.add(id) // nat: the relays this node listens through
    this.#relayClients = relayClients
    this.#allowed = allowed
  }

  /** Closes the connections of peers the gater no longer admits (a partner removed from every share). */
  async #hangUpDenied (): Promise<void> {
    const node = this.#libp2p
    if (node === undefined) return
    const denied = node.getConnections().filter((c) => !this.#allowed.has(c.remotePeer.toString()))
    await Promise.allSettled(denied.map(async (c) => { await c.close({ signal: AbortSignal.timeout(HELLO_TIMEOUT_MS) }) }))
  }

  async #activate (config: ShareConfig, topicKey: string): Promise<ShareRuntime> {
    const tenant = this.#init.tenant
    const db = await tenant.openDB(config.database)
    for (const p of [...config.partners, ...config.participants ?? []]) await db.trustPartner(p.tenant)
    const served = new ServedSet({ db, index: createReconcileSet(), logger: this.#log.child({ share: config.id }) }, {
      policy: policyOf(config.filter),
      direction: config.direction,
      ownAuthor: tenant.getPublicInfo().signingPublicKey
    })
    await served.start()
    const partners = new Map<string, PartnerState>()
    for (const p of config.partners) {
      const addressKnown = p.addresses !== undefined && p.addresses.length > 0
      partners.set(p.peerId, {
        peerId: p.peerId, tenantId: p.tenant.tenantId, connected: false, dial: p.dial ?? true, reachable: false, addressKnown,
        rounds: 0, roundsFailed: 0, failures: 0, again: false
      })
      if (p.addresses !== undefined && addressKnown) {
        await this.#node().peerStore.merge(peerIdFromString(p.peerId), { multiaddrs: p.addresses.map((a) => multiaddr(a)) })
      }
    }
    const rt: ShareRuntime = {
      config,
      topicKey,
      db,
      served,
      participants: participantKeysOf(config, tenant.getPublicInfo().signingPublicKey),
      partners,
      totals: { changesSent: 0, bytesSent: 0, changesReceived: 0, bytesReceived: 0, rejected: {}, rounds: 0, roundsFailed: 0, errors: {} },
      sessions: new Set(),
      offGrow: () => {},
      recentRejections: [],
      refusals: new Refusals(),
      seen: new Map()
    }
    rt.offGrow = served.onGrow(() => { this.#scheduleLive(rt) })
    return rt
  }

  #deactivate (rt: ShareRuntime): void {
    rt.offGrow()
    rt.served.stop()
    clearTimeout(rt.liveTimer)
    for (const p of rt.partners.values()) clearTimeout(p.retryTimer)
    this.#abortSessions(rt)
  }

  #abortSessions (rt: ShareRuntime): void {
    for (const s of rt.sessions) s.abort(new ShareDisabledError(`share ${rt.config.id} disabled`))
    rt.sessions.clear()
  }

  #onShareEnabled (rt: ShareRuntime): void {
    if (this.#init.dht ?? true) this.#announce(rt)
    for (const p of rt.partners.values()) void this.#requestRound(rt, p)
  }

  #announceAll (): void {
    for (const rt of this.#shares.values()) {
      if (rt.config.enabled) this.#announce(rt)
    }
  }

  #announce (rt: ShareRuntime): void {
    const node = this.#libp2p
    if (node === undefined) return
    for (const epoch of announceEpochs(Date.now())) {
      node.contentRouting.provide(topicCidOf(rt.config.topicSecret, epoch), { signal: this.#stopping.signal }).catch((err: unknown) => {
        this.#log.debug({ share: rt.config.id, err: String(err) }, 'announce failed; retried on the next announce')
      })
    }
  }

  async #dial (addr: Multiaddr): Promise<void> {
    try {
      await this.#node().dial(addr, { signal: this.#stopping.signal })
    } catch (err) {
      this.#log.warn({ address: addr.toString(), err: String(err) }, 'dial failed')
    }
  }

  async #dialPeer (peerId: PeerId): Promise<void> {
    try {
      await this.#node().dial(peerId, { signal: this.#stopping.signal })
    } catch (err) {
      this.#log.debug({ peer: peerId.toString(), err: String(err) }, 'dial failed')
    }
  }

  /** Tells listeners that a peer that is a partner of some share connected or left. */
  #emitPartner (type: 'partner.connected' | 'partner.disconnected', peerId: string): void {
    const shares = [...this.#shares.values()].filter((rt) => rt.partners.has(peerId)).map((rt) => rt.config.id)
    if (shares.length > 0) this.events.emit({ type, peerId, shares })
  }

  #onPeerConnect (peerId: PeerId): void {
    const id = peerId.toString()
    this.#emitPartner('partner.connected', id)
    for (const rt of this.#shares.values()) {
      const p = rt.partners.get(id)
      if (p !== undefined && rt.config.enabled) void this.#requestRound(rt, p)
    }
  }

  #periodic (): void {
    const now = Date.now()
    for (const rt of this.#shares.values()) {
      if (!rt.config.enabled) continue
      for (const p of rt.partners.values()) {
        if (p.retryAt === undefined || p.retryAt <= now) void this.#requestRound(rt, p)
      }
    }
  }

  /** Live sync: the served set grew, so start rounds with the partners that are connected now. */
  #scheduleLive (rt: ShareRuntime): void {
    if (rt.liveTimer !== undefined || !rt.config.enabled) return
    rt.liveTimer = setTimeout(() => {
      rt.liveTimer = undefined
      const now = Date.now()
      for (const p of rt.partners.values()) {
        // a partner in backoff after failures is retried by its timer, not by every local change
        if (this.#connected(p.peerId) && (p.retryAt === undefined || p.retryAt <= now)) void this.#requestRound(rt, p)
      }
    }, this.#init.liveDebounceMs ?? DEFAULT_LIVE_DEBOUNCE_MS)
  }

  /** One round at a time per partner; a request during a round makes one more round after it. */
  async #requestRound (rt: ShareRuntime, p: PartnerState, options: AbortOptions = {}): Promise<RoundResult> {
    if (!rt.config.enabled || !this.#started) {
      return { share: rt.config.id, peerId: p.peerId, ok: false, error: { code: 'SHARE_DISABLED', message: 'share is disabled or node stopped' } }
    }
    if (p.running !== undefined) {
      p.again = true
      await p.running.catch(() => {})
      return await (p.running ?? this.#requestRound(rt, p, options))
    }
    const run = this.#round(rt, p, options).finally(() => {
      p.running = undefined
      if (p.again) {
        p.again = false
        void this.#requestRound(rt, p)
      }
    })
    p.running = run
    return await run
  }

  async #round (rt: ShareRuntime, p: PartnerState, options: AbortOptions): Promise<RoundResult> {
    clearTimeout(p.retryTimer)
    p.retryTimer = undefined
    const connection = this.#connectionTo(p.peerId)
    if (connection === undefined && !(p.dial && await this.#addressKnown(p))) {
      // nothing to dial (or not to be dialled): no round, no failure; it syncs when it connects
      const why = p.dial ? 'not connected and no known address' : 'not connected and not to be dialled'
      const error = new PeerNotDialledError(why)
      return { share: rt.config.id, peerId: p.peerId, ok: false, skipped: true, error: { code: error.code, message: why } }
    }
    const controller = new AbortController()
    rt.sessions.add(controller)
    p.rounds++
    rt.totals.rounds++
    p.lastRoundAt = Date.now()
    let stream: Stream | undefined
    let via: Connection | undefined // nat: the connection the session runs over
    let progress: RoundProgress | undefined
    try {
      const signal = AbortSignal.any([controller.signal, this.#signal(options)])
      // over a connection the partner opened, if any: a partner with dial: false is never dialled
      try {
        stream = connection !== undefined && connection.status === 'open'
          ? await connection.newStream(SYNC_PROTOCOL, { signal, runOnLimitedConnection: true })
          : await this.#node().dialProtocol(peerIdFromString(p.peerId), SYNC_PROTOCOL, { signal, runOnLimitedConnection: true })
      } catch (err) {
        // libp2p's own failures (no address, refused, a connection closed by a simultaneous dial, negotiation)
        // become one typed error (a relay's refusal: RELAY_REFUSED); an abort keeps its reason
        if (signal.aborted || err instanceof MindooError) throw err
        throw dialError(err, `cannot open a sync stream to ${p.peerId}`)
      }
      const opened = stream
      via = connection ?? this.#node().getConnections(peerIdFromString(p.peerId)).find((c) => c.streams.includes(opened))
      const channel = streamChannel(stream, this.#maxFrame)
      const session = this.#runSession(rt, p, channel, 'initiator', undefined, signal, via)
      progress = p.current
      const result = await session
      p.failures = 0
      p.retryAt = undefined
      p.lag = result.peerLacked
      p.lastSuccessAt = rt.lastSuccessAt = Date.now()
      return { share: rt.config.id, peerId: p.peerId, ok: true, result }
    } catch (err) {
      stream?.abort(err as Error)
      const info = errorInfo(err)
      p.roundsFailed++
      rt.totals.roundsFailed++
      // nat: a round cut by a relay's limit after it moved changes is retried at the base delay (it made progress)
      if (err instanceof RelayLimitError && progress !== undefined && progress.sent + progress.received > 0) p.failures = 0
      p.failures++
      p.lastError = rt.lastError = { ...info, at: Date.now() }
      rt.totals.errors[info.code] = (rt.totals.errors[info.code] ?? 0) + 1
      this.#log.warn({ share: rt.config.id, peer: p.peerId, code: info.code, err: info.message }, 'sync round failed')
      if (err instanceof SyncRemoteError) {
        this.events.emit({ type: 'session.refused', peerId: p.peerId, share: rt.config.id, direction: 'outbound', code: clip(info.code, 64), message: clip(info.message) })
      }
      this.#scheduleRetry(rt, p)
      return { share: rt.config.id, peerId: p.peerId, ok: false, error: info }
    } finally {
      rt.sessions.delete(controller)
    }
  }

  #scheduleRetry (rt: ShareRuntime, p: PartnerState): void {
    if (!this.#started || !rt.config.enabled) return
    const base = this.#init.backoffBaseMs ?? DEFAULT_BACKOFF_BASE_MS
    const max = this.#init.backoffMaxMs ?? DEFAULT_BACKOFF_MAX_MS
    const delay = Math.min(max, base * 2 ** Math.min(p.failures - 1, 30)) * (0.5 + Math.random())
    p.retryAt = Date.now() + delay
    clearTimeout(p.retryTimer)
    p.retryTimer = setTimeout(() => {
      p.retryTimer = undefined
      void this.#requestRound(rt, p)
    }, delay)
    p.retryTimer.unref()
  }

  async #runSession (rt: ShareRuntime, partner: PartnerState | undefined, channel: MessageChannel, role: 'initiator' | 'responder', peerMaxFrameBytes: number | undefined, signal: AbortSignal, connection?: Connection): Promise<SessionResult> {
    const progress: RoundProgress = { startedAt: Date.now(), sent: 0, received: 0, bytesSent: 0, bytesReceived: 0 }
    if (partner !== undefined) partner.current = progress
    const rejected: Record<string, number> = {}
    const round = { share: rt.config.id, peerId: partner?.peerId ?? '', role }
    this.events.emit({ type: 'round.started', ...round })
    const finished = (error?: { code: string, message: string }): void => {
      const { sent, received, bytesSent, bytesReceived } = progress
      if (Object.keys(rejected).length > 0) this.events.emit({ type: 'changes.rejected', share: round.share, peerId: round.peerId, counts: { ...rejected } })
      this.events.emit({ type: 'round.finished', ...round, ok: error === undefined, sent, received, bytesSent, bytesReceived, rejected: { ...rejected }, ...(error === undefined ? {} : { error: { code: clip(error.code, 64), message: clip(error.message) } }) })
    }
    const stats: SessionStats = {
      sent: (n, bytes) => {
        rt.totals.changesSent += n
        rt.totals.bytesSent += bytes
        progress.sent += n
        progress.bytesSent += bytes
      },
      received: (n, bytes) => {
        rt.totals.changesReceived += n
        rt.totals.bytesReceived += bytes
        progress.received += n
        progress.bytesReceived += bytes
      },
      reconciled: (peerLacks, weLack) => {
        progress.toSend = peerLacks
        progress.toReceive = weLack
      },
      rejected: (code, hash) => {
        rejected[code] = (rejected[code] ?? 0) + 1
        rt.totals.rejected[code] = (rt.totals.rejected[code] ?? 0) + 1
        rt.recentRejections.push({ hash, code, at: Date.now() })
        if (rt.recentRejections.length > MAX_RECENT_REJECTIONS) rt.recentRejections.shift()
      }
    }
    try {
      // nat: over a connection with a data limit, small frames, so each one stored is progress kept after a cut
      const result = await this.#startSession(rt, partner?.peerId ?? '', channel, role, peerMaxFrameBytes, stats, signal, sessionFrameLimit(connection, this.#maxFrame))
      finished()
      return result
    } catch (caught) {
      const err = relayLimitError(caught, connection) ?? caught // nat: a relay's limit cut the connection
      finished(errorInfo(err))
      throw err
    } finally {
      if (partner !== undefined && partner.current === progress) partner.current = undefined
    }
  }

  async #startSession (rt: ShareRuntime, peer: string, channel: MessageChannel, role: 'initiator' | 'responder', peerMaxFrameBytes: number | undefined, stats: SessionStats, signal: AbortSignal, maxFrameBytes: number): Promise<SessionResult> {
    let claims = this.#claims.get(rt.config.database)
    if (claims === undefined) {
      claims = new WantClaims()
      this.#claims.set(rt.config.database, claims)
    }
    return await runSession({
      channel,
      db: rt.db,
      served: rt.served,
      reconciler: (set, maxMessageBytes) => (role === 'initiator' ? createInitiator : createResponder)({ set }, { maxMessageBytes }),
      seen: rt.config.direction === 'receive' ? seenOf(rt, peer) : undefined,
      claims,
      stats,
      logger: this.#log.child({ share: rt.config.id })
    }, {
      role,
      peer,
      direction: rt.config.direction,
      participants: rt.participants,
      topic: role === 'initiator' ? Buffer.from(rt.topicKey, 'hex') : undefined,
      peerMaxFrameBytes,
      maxFrameBytes,
      reconcileMessageBytes: MAX_RECONCILE_MESSAGE_BYTES,
      refusals: rt.refusals,
      admit: createWritePolicy({
        served: rt.served,
        db: rt.db,
        ownAuthor: this.#init.tenant.getPublicInfo().signingPublicKey,
        participants: new Map([...rt.config.partners, ...rt.config.participants ?? []].map((p) => [p.tenant.signingPublicKey, p.write]))
      })
    }, { signal })
  }

  /** An inbound sync stream: authorise the hello before anything else, then answer as responder. */
  async #onInbound (stream: Stream, connection: Connection): Promise<void> {
    const remote = connection.remotePeer.toString()
    // bounded before authorisation: over the caps the stream is reset before a byte of it is read
    const pendingOfPeer = this.#pending.get(remote) ?? 0
    if (this.#pendingTotal >= (this.#init.maxPendingSessions ?? MAX_PENDING_SESSIONS) ||
      pendingOfPeer >= (this.#init.maxPendingSessionsPerPeer ?? MAX_PENDING_SESSIONS_PER_PEER)) {
      this.#log.warn({ peer: remote, pending: pendingOfPeer, total: this.#pendingTotal }, 'too many sync streams not yet authorised; reset')
      stream.abort(new TooManySessionsError('too many sync streams not yet authorised'))
      return
    }
    this.#pending.set(remote, pendingOfPeer + 1)
    this.#pendingTotal++
    let counted = true
    const authorised = (): void => {
      if (!counted) return
      counted = false
      this.#pendingTotal--
      const left = (this.#pending.get(remote) ?? 1) - 1
      if (left > 0) this.#pending.set(remote, left)
      else this.#pending.delete(remote)
    }
    try {
      await this.#onInboundCounted(stream, remote, authorised, connection)
    } finally {
      authorised()
    }
  }

  /** The inbound stream once it holds a pending slot; `authorised` frees the slot once the hello is decided. */
  async #onInboundCounted (stream: Stream, remote: string, authorised: () => void, connection?: Connection): Promise<void> {
    // until the hello is authorised the peer is unknown on the topic: a few KiB only
    const channel = streamChannel(stream, { maxFrameBytes: this.#maxFrame, receiveLimit: Math.min(MAX_HELLO_FRAME_BYTES, this.#maxFrame) })
    let rt: ShareRuntime | undefined
    const refuse = async (code: SyncErrorCode, message: string): Promise<void> => {
      this.#log.warn({ peer: remote, code }, 'sync session refused')
      this.events.emit({ type: 'session.refused', peerId: remote, ...(rt === undefined ? {} : { share: rt.config.id }), direction: 'inbound', code })
      try {
        await withTimeout(HELLO_TIMEOUT_MS, this.#stopping.signal, async (signal) => {
          await channel.send({ type: 'error', code, message }, { signal })
          await channel.close({ signal })
        })
      } catch {
        stream.abort(new SessionRefusedError(code))
      }
    }
    let peerMaxFrameBytes: number
    try {
      const hello = await withTimeout(HELLO_TIMEOUT_MS, this.#stopping.signal, async (signal) => await channel.receive({ signal }))
      if (hello === undefined || !isHello(hello)) {
        await refuse('PROTOCOL_ERROR', 'expected hello')
        return
      }
      rt = this.#byTopic.get(Buffer.from(hello.topic).toString('hex'))
      // the same answer for an unknown topic and for a peer that is not a partner: nothing is revealed
      if (rt === undefined || !rt.partners.has(remote)) {
        await refuse('NOT_AUTHORIZED', 'not a partner of this topic')
        return
      }
      if (!rt.config.enabled) {
        await refuse('SHARE_DISABLED', 'share is disabled')
        return
      }
      if (hello.version !== SYNC_PROTOCOL_VERSION) {
        await refuse('VERSION_UNSUPPORTED', `version ${SYNC_PROTOCOL_VERSION} only`)
        return
      }
      peerMaxFrameBytes = hello.maxFrameBytes
    } catch (err) {
      if (err instanceof SyncProtocolError) await refuse('PROTOCOL_ERROR', err.message)
      else stream.abort(err as Error)
      return
    } finally {
      authorised()
    }
    channel.setReceiveLimit(this.#maxFrame)
    this.events.emit({ type: 'session.accepted', peerId: remote, share: rt.config.id, direction: 'inbound' })
    const controller = new AbortController()
    rt.sessions.add(controller)
    try {
      const result = await this.#runSession(rt, rt.partners.get(remote), channel, 'responder', peerMaxFrameBytes, AbortSignal.any([controller.signal, this.#stopping.signal]), connection)
      const p = rt.partners.get(remote)
      if (p !== undefined) {
        p.lastSuccessAt = rt.lastSuccessAt = Date.now()
        p.lag = result.peerLacked
        // a session that worked (both ways: it moves changes in both directions) ends this partner's backoff;
        // otherwise live rounds to it stay suppressed until the retry timer fires (up to backoffMaxMs)
        p.failures = 0
        p.retryAt = undefined
        clearTimeout(p.retryTimer)
        p.retryTimer = undefined
      }
    } catch (err) {
      const info = errorInfo(err)
      rt.lastError = { ...info, at: Date.now() }
      rt.totals.errors[info.code] = (rt.totals.errors[info.code] ?? 0) + 1
      // the session has told the peer why (or torn the stream down) already
      this.#log.warn({ share: rt.config.id, peer: remote, code: info.code, err: info.message }, 'inbound session failed')
    } finally {
      rt.sessions.delete(controller)
    }
  }
}

/** The ReconcileSet of what `peer` revealed on a receive-only share (kept in memory, per share and peer). */
function seenOf (rt: ShareRuntime, peer: string): ReconcileSet {
  let seen = rt.seen.get(peer)
  if (seen === undefined) {
    seen = createReconcileSet()
    rt.seen.set(peer, seen)
  }
  return seen
}

/** Creates a node (not started). */
export async function createMindooNode (init: MindooNodeInit): Promise<MindooNode> {
  return new MindooNode(init)
}
