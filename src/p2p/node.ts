import type { Connection, Libp2p, PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import type { Registry } from 'prom-client'
import type { MindooTenant } from '../core/index.js'
import { InvalidArgumentError, NotStartedError, NodeStoppingError } from '../errors.js'
import type { AbortOptions } from '../store/types.js'
import { seenIndexName, seenIndexPrefix } from '../sync/seen-index.js'
import { validateShare, type ShareConfig, type ShareUpdate } from '../sync/share.js'
import { silentLogger, type Logger } from '../util/logger.js'
import {
  DEFAULT_ANNOUNCE_INTERVAL_MS, DEFAULT_DISCOVERY_INTERVAL_MS, DEFAULT_MAX_FRAME_BYTES, DEFAULT_SYNC_INTERVAL_MS,
  HELLO_TIMEOUT_MS, MAX_INBOUND_STREAMS, MAX_OUTBOUND_STREAMS, SYNC_PROTOCOL
} from './constants.js'
import { announceTopic, findTopicProviders } from './discovery.js'
import { NodeEvents } from './events.js'
import { createHost, peerIdOfAddress, type Services } from './host.js'
import { loadOrCreatePeerKey } from './identity.js'
import { InboundGate } from './inbound.js'
import { Nat, relayPeersOf, type NatInit, type NatReport } from './nat.js' // nat
import { SessionRunner } from './rounds.js'
import { RoundScheduler, type Clock } from './scheduler.js'
import {
  abortSessions, ShareRegistry, type PartnerState, type RoundResult, type ShareRuntime, type ShareStatus
} from './shares.js'

export { announceEpochs, dhtEpochOf, lookupEpochs, topicCidOf } from './discovery.js'
export type { LiveStatus, LiveTotals, PartnerStatus, RoundProgress, RoundResult, ShareStatus, ShareTotals } from './shares.js'

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
  /** Delay before live rounds start after a change, ms (partners without a long-lived session). Default 5. */
  liveDebounceMs?: number
  /**
   * Keep one long-lived session per partner and share after the first reconciliation, and announce (or push,
   * when small) each change entering the served set on it: one round trip instead of a new round per change.
   * Default true.
   */
  live?: boolean
  /** Reaching and being reached behind firewalls: AutoNAT, relays served and listened through, DCUtR (src/p2p/nat.ts). */
  nat?: NatInit
  /** A prom-client registry to publish libp2p's own metrics into (off when not given). */
  metricsRegistry?: Registry
  logger?: Logger
  /** Time and timers of round scheduling (tests drive them). Default the system clock. */
  clock?: Clock
}

/**
 * One organisation's peer-to-peer node: a libp2p host (TCP, Noise, Yamux, identify, ping, a private Kad-DHT)
 * that keeps the tenant's shared databases in sync with partner organisations over `/mindoodb/sync/1.0.0`,
 * serving each partner only its share's served set.
 *
 * The node is a facade over its parts: the host (`host.ts`), inbound authorisation (`inbound.ts`), the share
 * registry (`shares.ts`), round scheduling (`scheduler.ts`), running rounds and sessions (`rounds.ts`) and
 * discovery (`discovery.ts`).
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
  readonly #shares: ShareRegistry
  readonly #scheduler: RoundScheduler<ShareRuntime, PartnerState, RoundResult>
  /** Runs the rounds the scheduler asks for and the sessions the gate lets in (src/p2p/rounds.ts). */
  readonly #runner: SessionRunner
  #libp2p: Libp2p<Services> | undefined
  #timers: NodeJS.Timeout[] = []
  #stopping = new AbortController()
  #started = false
  /** Peer ids the connection gater admits: partners of some share, bootstrap peers, allowPeers. */
  #allowed = new Set<string>()
  /** The configured shares while start() is adding them. */
  #starting: ShareConfig[] = []
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
    const maxFrame = init.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES
    this.events = new NodeEvents((err) => { this.#log.error({ err: String(err) }, 'event listener failed') })
    if (!Number.isInteger(maxFrame) || maxFrame < 64 * 1024) throw new InvalidArgumentError('maxFrameBytes must be at least 65536')
    this.#shares = new ShareRegistry({ tenant: init.tenant, libp2p: () => this.#node(), logger: this.#log })
    const gate = new InboundGate({
      byTopic: (topicKey) => this.#shares.byTopic(topicKey),
      events: this.events,
      logger: this.#log,
      stopping: () => this.#stopping.signal
    }, { maxFrameBytes: maxFrame, maxPendingSessions: init.maxPendingSessions, maxPendingSessionsPerPeer: init.maxPendingSessionsPerPeer })
    this.#scheduler = new RoundScheduler<ShareRuntime, PartnerState, RoundResult>({
      clock: init.clock,
      run: async (rt, p, options) => await this.#runner.round(rt, p, options),
      notRun: (rt, p) => ({ share: rt.config.id, peerId: p.peerId, ok: false, error: { code: 'SHARE_DISABLED', message: 'share is disabled or node stopped' } }),
      enabled: (rt) => rt.config.enabled && this.#started,
      connected: (peerId) => this.#connected(peerId),
      // a partner with a long-lived session gets announcements on it, not rounds
      liveCovered: (_rt, p) => p.live !== undefined
    }, {
      backoffBaseMs: init.backoffBaseMs,
      backoffMaxMs: init.backoffMaxMs,
      liveDebounceMs: init.liveDebounceMs,
      intervalMs: init.syncIntervalMs ?? DEFAULT_SYNC_INTERVAL_MS
    })
    this.#runner = new SessionRunner({
      node: {
        peerId: () => this.peerId,
        started: () => this.#started,
        stopping: () => this.#stopping.signal,
        signal: (options) => this.#signal(options),
        libp2p: () => this.#node(),
        connectionTo: (peerId) => this.#connectionTo(peerId),
        addressKnown: async (p) => await this.#addressKnown(p)
      },
      tenant: init.tenant,
      shares: this.#shares,
      scheduler: this.#scheduler,
      gate,
      events: this.events,
      logger: this.#log
    }, { maxFrameBytes: maxFrame, live: init.live })
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
    this.#starting = [...this.#init.shares ?? []]
    this.#nat = new Nat(this.#init.nat ?? {}, { isRelayClient: (id) => this.#relayClients.has(id), isAdmitted: (id) => this.#allowed.has(id) }, this.#log, (e) => { this.events.emit(e) }) // nat
    this.#refreshAllowed()
    this.#libp2p = await createHost({
      privateKey: await loadOrCreatePeerKey(this.#init.dataDir),
      listen: this.#init.listen,
      announcePrivateAddresses: this.#init.announcePrivateAddresses,
      dht: useDht,
      metricsRegistry: this.#init.metricsRegistry,
      admits: (peerId) => this.#allowed.has(peerId),
      onAddresses: (addrs) => { this.#allAddrs = addrs },
      nat: this.#nat
    })
    await this.#libp2p.start()
    this.#scheduler.start(() => this.#shares.values())
    try {
      for (const share of this.#init.shares ?? []) await this.addShare(share)
    } finally {
      this.#starting = []
      this.#refreshAllowed()
    }
    await this.#libp2p.handle(SYNC_PROTOCOL, (stream, connection) => this.#runner.inbound(stream, connection), {
      maxInboundStreams: MAX_INBOUND_STREAMS, maxOutboundStreams: MAX_OUTBOUND_STREAMS,
      runOnLimitedConnection: true // nat: sessions run over relayed connections too (a cut one fails with RELAY_LIMIT)
    })
    this.#libp2p.addEventListener('peer:connect', (evt) => { this.#onPeerConnect(evt.detail) })
    this.#libp2p.addEventListener('peer:disconnect', (evt) => { this.#emitPartner('partner.disconnected', evt.detail.toString()) })
    for (const addr of this.#init.bootstrap ?? []) void this.#dial(multiaddr(addr))
    const every = (ms: number, fn: () => void): void => {
      if (ms > 0) this.#timers.push(setInterval(fn, ms).unref())
    }
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
    this.#scheduler.stop()
    for (const rt of this.#shares.values()) this.#shares.deactivate(rt)
    const running = [...this.#shares.values()].flatMap((rt) => [...rt.partners.values()].map((p) => p.running))
    await Promise.allSettled([...running, ...[...this.#shares.values()].map(async (rt) => { await rt.served.idle() })])
    // a later start() picks the shares up again
    this.#init = { ...this.#init, shares: [...this.#shares.values()].map((rt) => ({ ...rt.config })) }
    this.#shares.clear()
    await this.#libp2p?.stop()
    this.#libp2p = undefined
    this.#log.info({}, 'node stopped')
  }

  // ------------------------------------------------------------------ shares

  /** Adds a share (validated) and starts keeping it in sync. */
  async addShare (input: ShareConfig): Promise<void> {
    this.#node()
    const config = validateShare(input)
    const topicKey = this.#shares.checkNew(config)
    const rt = await this.#shares.activate(config, topicKey)
    rt.offGrow = rt.served.onGrow(() => { this.#scheduler.live(rt) })
    this.#shares.add(rt)
    this.#refreshAllowed()
    if (config.enabled) this.#onShareEnabled(rt)
  }

  /** Changes a share. A changed filter, database or direction rebuilds its served set; sessions are restarted. */
  async updateShare (id: string, update: ShareUpdate): Promise<void> {
    const rt = this.#shares.get(id)
    const next = validateShare({ ...rt.config, ...update, id })
    await this.#removeShare(id)
    await this.addShare(next)
    // the seen sets of partners it no longer receives from (all of them when it no longer only receives, or
    // moves to another database) go: nothing reads them again (the new share opens those it keeps), and they
    // hold what those partners revealed
    const kept = next.direction === 'receive' && next.database === rt.config.database ? new Set(next.partners.map((p) => p.peerId)) : new Set()
    for (const p of rt.config.partners) {
      if (!kept.has(p.peerId)) await this.#init.tenant.openIndexState(rt.config.database, seenIndexName(id, p.peerId)).kv.clear()
    }
    await this.#hangUpDenied()
  }

  async enableShare (id: string): Promise<void> {
    const rt = this.#shares.get(id)
    if (rt.config.enabled) return
    rt.config = { ...rt.config, enabled: true }
    this.#onShareEnabled(rt)
  }

  /** Stops serving the share at once: its open sessions are closed, new ones refused. */
  async disableShare (id: string): Promise<void> {
    const rt = this.#shares.get(id)
    rt.config = { ...rt.config, enabled: false }
    abortSessions(rt)
    this.#log.info({ share: id }, 'share disabled')
  }

  /** Removes a share; its partners that are no partner of another share are disconnected. */
  async removeShare (id: string): Promise<void> {
    const { database } = this.#shares.get(id).config
    await this.#removeShare(id)
    // its persisted served set and its partners' seen sets go with it (a share added again under this id builds
    // them anew)
    await this.#init.tenant.openIndexState(database, id).kv.clear()
    await this.#init.tenant.dropIndexStates(database, seenIndexPrefix(id))
    await this.#hangUpDenied()
  }

  async #removeShare (id: string): Promise<void> {
    const rt = this.#shares.get(id)
    rt.config = { ...rt.config, enabled: false }
    this.#scheduler.forget(rt)
    this.#shares.deactivate(rt)
    await Promise.allSettled([...[...rt.partners.values()].map((p) => p.running), rt.served.idle()])
    this.#shares.delete(rt)
    this.#refreshAllowed()
  }

  getShare (id: string): ShareConfig {
    return { ...this.#shares.get(id).config }
  }

  /** The shares, also while stopped (a start picks them up). */
  listShares (): ShareConfig[] {
    if (!this.#started) return (this.#init.shares ?? []).map((c) => ({ ...c }))
    return [...this.#shares.values()].map((rt) => ({ ...rt.config }))
  }

  status (id?: string): ShareStatus[] {
    const list = id === undefined ? [...this.#shares.values()] : [this.#shares.get(id)]
    return list.map((rt) => this.#shares.statusOf(rt, (peerId) => this.#connected(peerId)))
  }

  /** Runs a round with every partner of the share (or of every enabled share) now, and waits for them. */
  async syncNow (id?: string, options: AbortOptions = {}): Promise<RoundResult[]> {
    const list = id === undefined ? [...this.#shares.values()].filter((rt) => rt.config.enabled) : [this.#shares.get(id)]
    const rounds: Array<Promise<RoundResult>> = []
    for (const rt of list) {
      for (const p of rt.partners.values()) rounds.push(this.#scheduler.request(rt, p, options))
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
      const log = this.#log.child({ share: rt.config.id })
      try {
        for await (const provider of findTopicProviders(node, rt.config.topicSecret, Date.now(), this.#signal(options), log)) {
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
        log.debug({ err: String(err) }, 'provider lookup failed')
      }
    }
  }

  // ------------------------------------------------------------------ internals

  #node (): Libp2p<Services> {
    if (this.#libp2p === undefined) throw new NotStartedError('node is not started')
    return this.#libp2p
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

  #onShareEnabled (rt: ShareRuntime): void {
    if (this.#init.dht ?? true) this.#announce(rt)
    for (const p of rt.partners.values()) void this.#scheduler.request(rt, p)
  }

  #announceAll (): void {
    for (const rt of this.#shares.values()) {
      if (rt.config.enabled) this.#announce(rt)
    }
  }

  #announce (rt: ShareRuntime): void {
    const node = this.#libp2p
    if (node === undefined) return
    announceTopic(node, rt.config.topicSecret, Date.now(), this.#stopping.signal, this.#log.child({ share: rt.config.id }))
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
    // the side that dialled leads the round the connection calls for (S5 in scheduler.ts)
    const dialled = this.#libp2p?.getConnections(peerId).some((c) => c.direction === 'outbound') ?? false
    for (const rt of this.#shares.values()) {
      const p = rt.partners.get(id)
      if (p !== undefined) this.#scheduler.connected(rt, p, dialled)
    }
  }
}

/** Creates a node (not started). */
export async function createMindooNode (init: MindooNodeInit): Promise<MindooNode> {
  return new MindooNode(init)
}
