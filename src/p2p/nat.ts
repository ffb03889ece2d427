/**
 * Reaching nodes behind firewalls, with libp2p's own stack: AutoNAT (is an address of ours dialable from
 * outside?), circuit relay v2 (a node with a public address relays for the partners of its shares; a node that
 * cannot be dialled listens through a reservation on such a relay), and DCUtR (a relayed connection is upgraded
 * to a direct one when hole punching works).
 *
 * The node builds one `Nat` from its init and hands its parts to `createLibp2p`: `transports()`, `services()`
 * and `gater()` (the relay hooks of the connection gater). `report()` is what `mindoodb doctor` shows.
 *
 * Who may use a relay this node serves: partners of its shares, and only them (`NatPolicy.isRelayClient`). A
 * stranger cannot even connect (the node's connection gater turns it away once Noise proves its peer id); a
 * peer that is admitted for another reason (bootstrap, allowPeers) but is no partner gets PERMISSION_DENIED for a
 * reservation and for a hop, and a hop needs both ends to be partners. What a relay learns: see SECURITY.md.
 *
 * @example
 * ```ts
 * const nat = new Nat({ relay: { serve: true } }, { isRelayClient: (id) => partners.has(id), isAdmitted })
 * const libp2p = await createLibp2p({ transports: [tcp(), ...nat.transports()], services: { ...nat.services() },
 *   connectionGater: { ...nat.gater(), denyDialPeer } })
 * nat.report(libp2p)
 * ```
 */
import { autoNAT } from '@libp2p/autonat'
import { circuitRelayServer, circuitRelayTransport, type CircuitRelayService } from '@libp2p/circuit-relay-v2'
import { dcutr } from '@libp2p/dcutr'
import type { Connection, Libp2p, PeerId } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import { isLinkLocal, isLoopback, isPrivate } from '@libp2p/utils'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { DialFailedError, InvalidArgumentError, MindooError, RelayLimitError, RelayRefusedError, StreamError, SyncProtocolError, SyncRemoteError } from '../errors.js'
import {
  RELAY_DATA_LIMIT_BYTES, RELAY_DURATION_LIMIT_MS, RELAY_LIMITED_FRAME_BYTES, RELAY_MAX_INBOUND_HOP_STREAMS, RELAY_MAX_RESERVATIONS
} from '../limits.js'
import type { AbortOptions } from '../store/types.js'
import { silentLogger, type Logger } from '../util/logger.js'
import type { RelayRefusedEvent, RelayReservationEvent } from './events.js'

/** Protocol prefix of AutoNAT among participants: `/mindoodb/autonat/1.0.0`. */
export const AUTONAT_PROTOCOL_PREFIX = 'mindoodb'
/** First retry of a reservation on a configured relay, ms (doubles per failure up to the max). */
export const RELAY_RETRY_BASE_MS = 1_000
/** Longest wait between reservation attempts on a configured relay, ms. */
export const RELAY_RETRY_MAX_MS = 300_000
/** How often the node checks that it still holds its reservations on configured relays, ms. */
export const RELAY_CHECK_INTERVAL_MS = 30_000
/** A reservation attempt (dial the relay, reserve) gives up after this long, ms. */
export const RELAY_RESERVE_TIMEOUT_MS = 10_000

/** Serving as a circuit relay v2 for the partners of this node's shares. */
export interface RelayServeInit {
  /** Reservations held for others at once. Default `RELAY_MAX_RESERVATIONS` (32, src/limits.ts). */
  maxReservations?: number
  /** Bytes one relayed connection may carry (both ways) before the relay resets it. Default 64 MiB. */
  dataLimitBytes?: number
  /** How long one relayed connection may stay open, ms. Default 30 min. */
  durationLimitMs?: number
}

export interface NatInit {
  /**
   * Serve as a relay for the partners of this node's shares (needs an address they can dial). `true` takes the
   * defaults. Default off.
   */
  serve?: boolean | RelayServeInit
  /**
   * Relays to hold a reservation on and be reachable through (`/…/p2p/<relay peer id>`): a node that cannot be
   * dialled lists one or more; partners then dial it at `<relay address>/p2p-circuit/p2p/<its peer id>`. The
   * relays' peer ids are admitted by the connection gater. Default none.
   */
  relays?: string[]
  /** Run AutoNAT (ask partners to dial our public addresses back; answer theirs). Default true. */
  autonat?: boolean
  /** Run DCUtR (upgrade relayed connections to direct ones by hole punching). Default true. */
  dcutr?: boolean
}

/** Who the relay serves and who may reach this node through a relay; asked on every reservation and hop. */
export interface NatPolicy {
  /** A partner of some share of this node: may reserve on and hop through a relay this node serves. */
  isRelayClient: (peerId: string) => boolean
  /** Admitted by the node's connection gater: may reach this node through a relay. */
  isAdmitted: (peerId: string) => boolean
}

/** A reservation this node holds (or tries to hold) on a configured relay. */
export interface RelayReservationStatus {
  /** The relay's address as configured. */
  relay: string
  peerId: string
  /** `reserved`: partners can dial this node through it; `pending`: trying; `failed`: backing off after `lastError`. */
  state: 'reserved' | 'pending' | 'failed'
  /** The addresses partners dial this node at through this relay. */
  addresses: string[]
  failures: number
  retryAt?: number
  lastError?: { code: string, message: string, at: number }
}

/** One address of this node, as libp2p's address manager knows it. */
export interface AddressInfo {
  address: string
  /** `transport` (listened on), `observed` (what peers saw), `announce`, `ip-mapping`, `dns-mapping`. */
  type: string
  /** Confirmed dialable: private and relay addresses always; a public one once AutoNAT confirmed it. */
  verified: boolean
  public: boolean
  relayed: boolean
}

/** A refusal of the relay this node serves. */
export interface RelayRefusal {
  kind: 'reservation' | 'hop' | 'inbound-relayed'
  peerId: string
  /** For a hop: the peer it asked to reach. */
  destination?: string
  at: number
}

export interface NatReport {
  /**
   * `public`: a public address of ours is confirmed dialable (AutoNAT, or announced); `relayed`: no public address
   * is, but a relay reservation is held; `private`: no public address at all (loopback, private or no listen
   * addresses, and no reservation): only peers on the same network can dial it; `unknown`: public addresses
   * are not confirmed yet (AutoNAT is asking, or off).
   */
  reachability: 'public' | 'relayed' | 'private' | 'unknown'
  /**
   * `none`: this host listens on a confirmed public address; `behind-nat`: peers see it at a public address it does
   * not listen on; `unknown`: neither is known.
   */
  nat: 'none' | 'behind-nat' | 'unknown'
  autonat: boolean
  dcutr: boolean
  addresses: AddressInfo[]
  /** Reservations on configured relays. */
  reservations: RelayReservationStatus[]
  /** The relay this node serves, if it does. */
  relay?: {
    /** Peers holding a reservation on this node now. */
    clients: string[]
    maxReservations: number
    limits: { dataBytes: number, durationMs: number }
    refused: { reservations: number, hops: number, inboundRelayed: number, last?: RelayRefusal }
  }
}

/** A configured relay and this node's reservation on it. */
interface KeptRelay { addr: Multiaddr, status: RelayReservationStatus, timer?: NodeJS.Timeout, running: boolean }

/** libp2p's address metadata, the part read here. */
interface AddressMetadata { multiaddr: Multiaddr, verified: boolean, type: string }

/** What the reservation keeper needs from libp2p. */
export interface RelayKeeperComponents {
  transportManager: { listen: (addrs: Multiaddr[]) => Promise<void>, getAddrs: () => Multiaddr[], getTransports: () => unknown[] }
  addressManager: { getAddressesWithMetadata: () => AddressMetadata[] }
  connectionManager: { openConnection: (peer: Multiaddr, options?: AbortOptions) => Promise<Connection> }
  events: Pick<Libp2p, 'addEventListener' | 'removeEventListener'>
}

function isCircuit (ma: Multiaddr | string): boolean {
  return ma.toString().includes('/p2p-circuit')
}

/** Public: neither private, loopback nor link-local (the address of a relayed one is its relay's). */
export function isPublicAddress (ma: Multiaddr): boolean {
  try {
    return !isPrivate(ma) && !isLoopback(ma) && !isLinkLocal(ma)
  } catch {
    return false
  }
}

/** The peer id at the end of a multiaddr (`/p2p/<id>`), if any. */
function lastPeerId (ma: Multiaddr): string | undefined {
  return ma.getComponents().findLast((c) => c.name === 'p2p')?.value
}

/** The relay's answer in one of libp2p's circuit relay errors (`... with status PERMISSION_DENIED`), if any. */
function relayStatusOf (err: unknown): string | undefined {
  const message = String((err as Error)?.message ?? err)
  return /(?:failed to connect via relay|reservation failed) with status ([A-Z_]+)/.exec(message)?.[1]
}

/**
 * libp2p's failure to dial a partner, as a typed error: a relay's refusal becomes RelayRefusedError with the
 * relay's status; anything else DialFailedError. `what` says what was tried.
 */
export function dialError (err: unknown, what: string): MindooError {
  const e = err as Error
  const detail = `${e?.name ?? 'Error'}: ${e?.message ?? String(err)}`
  const status = relayStatusOf(err)
  if (status !== undefined) return new RelayRefusedError(status, `${what}: the relay refused (${status})`, { cause: err })
  return new DialFailedError(`${what}: ${detail}`, { cause: err })
}

/**
 * A session failure over a relayed connection with limits becomes RelayLimitError when that connection is gone:
 * the relay cut it (its data or time limit was reached, or the relay went away; libp2p resets every stream of it
 * then, so the session sees a reset or an early end). `undefined` for any other failure: over a connection that
 * is still open, a refusal the peer sent, or an abort keep their own type.
 */
export function relayLimitError (err: unknown, connection: Connection | undefined): RelayLimitError | undefined {
  if (connection === undefined || connection.limits === undefined || connection.status === 'open') return undefined
  if (err instanceof RelayLimitError || err instanceof SyncRemoteError || (err instanceof MindooError && !(err instanceof StreamError) && !(err instanceof SyncProtocolError))) return undefined
  const left = connection.limits.bytes
  return new RelayLimitError(`the relayed connection ${connection.remoteAddr.toString()} was cut by the relay (its data or time limit${left === undefined ? '' : `; ${left} bytes were left by this side's count`}); retried`, { cause: err })
}

/**
 * The largest frame a session declares over a connection: `RELAY_LIMITED_FRAME_BYTES` (64 KiB) over one with a
 * data limit (a relayed connection), so that each frame received is stored before the relay may cut the
 * connection and a retry goes on from there; the node's own limit otherwise. Both sides use the smaller of the
 * two frame limits, so it takes one side to declare it.
 */
export function sessionFrameLimit (connection: Connection | undefined, maxFrameBytes: number): number {
  return connection?.limits?.bytes === undefined ? maxFrameBytes : Math.min(maxFrameBytes, RELAY_LIMITED_FRAME_BYTES)
}

/** The verdicts of a NatReport (see there) from the node's addresses and its reservations. */
export function reachabilityOf (addresses: AddressInfo[], reservations: RelayReservationStatus[]): Pick<NatReport, 'reachability' | 'nat'> {
  const direct = addresses.filter((a) => !a.relayed && a.public)
  const reachability: NatReport['reachability'] = direct.some((a) => a.verified)
    ? 'public'
    : reservations.some((r) => r.state === 'reserved') || addresses.some((a) => a.relayed)
      ? 'relayed'
      : direct.length === 0 ? 'private' : 'unknown'
  const nat: NatReport['nat'] = direct.some((a) => a.verified && a.type === 'transport')
    ? 'none'
    : direct.some((a) => a.type === 'observed') && !direct.some((a) => a.type === 'transport') ? 'behind-nat' : 'unknown'
  return { reachability, nat }
}

/** The peer ids of the relays in circuit addresses (`<relay>/p2p/<relay id>/p2p-circuit/p2p/<peer>`); others are skipped. */
export function relayPeersOf (addresses: string[]): string[] {
  const ids: string[] = []
  for (const a of addresses) {
    if (!isCircuit(a)) continue
    try {
      const id = lastPeerId(multiaddr(a.slice(0, a.indexOf('/p2p-circuit'))))
      if (id !== undefined) ids.push(id)
    } catch {
      // not a multiaddr: libp2p refuses it where it is used
    }
  }
  return ids
}

/** Whether libp2p can dial an address (direct) or reaches a peer through a relay at it. */
export function addressKind (address: string): 'direct' | 'relayed' {
  return isCircuit(address) ? 'relayed' : 'direct'
}

/**
 * Keeps a reservation on each configured relay: reserves after start, watches the relay connection, and
 * reserves again (backing off on failures) when the reservation is lost. A libp2p service (it needs the
 * transport manager to listen on `/p2p-circuit` addresses).
 *
 * Not through `addresses.listen`: libp2p fails its start when a listen address fails, and a relay that is down
 * must not keep the node from starting. Each attempt that reaches the relay opens a new circuit listener in
 * libp2p (one that was refused, or whose reservation was lost, stays, empty): one small object per refused attempt
 * (at most one per `RELAY_RETRY_MAX_MS` once backing off) and per lost reservation, until restart.
 */
export class RelayKeeper {
  readonly #components: RelayKeeperComponents
  readonly #log: Logger
  readonly #relays: KeptRelay[]
  #check: NodeJS.Timeout | undefined
  #started = false
  #stopping = new AbortController()

  readonly #emit: (event: RelayReservationEvent) => void

  constructor (components: RelayKeeperComponents, init: { relays: string[], logger?: Logger, onEvent?: (event: RelayReservationEvent) => void }) {
    this.#components = components
    this.#log = (init.logger ?? silentLogger).child({ component: 'relay-keeper' })
    this.#emit = init.onEvent ?? (() => {})
    this.#relays = init.relays.map((r) => {
      const addr = multiaddr(r)
      const peerId = lastPeerId(addr)
      if (peerId === undefined || isCircuit(addr)) throw new InvalidArgumentError(`relay address ${r} must end with /p2p/<relay peer id> and not be a circuit address`)
      return { addr, running: false, status: { relay: r, peerId, state: 'pending', addresses: [], failures: 0 } }
    })
  }

  readonly #onClose = (evt: CustomEvent<Connection>): void => {
    const peer = evt.detail.remotePeer.toString()
    for (const r of this.#relays) {
      if (r.status.peerId === peer && r.status.state === 'reserved') this.#schedule(r, RELAY_RETRY_BASE_MS)
    }
  }

  start (): void {
    if (this.#started) return
    this.#started = true
    this.#stopping = new AbortController()
  }

  afterStart (): void {
    if (this.#relays.length === 0) return
    this.#components.events.addEventListener('connection:close', this.#onClose)
    for (const r of this.#relays) void this.#ensure(r)
    this.#check = setInterval(() => { for (const r of this.#relays) void this.#ensure(r) }, RELAY_CHECK_INTERVAL_MS)
    this.#check.unref()
  }

  stop (): void {
    if (!this.#started) return
    this.#started = false
    this.#stopping.abort()
    this.#components.events.removeEventListener('connection:close', this.#onClose)
    clearInterval(this.#check)
    for (const r of this.#relays) clearTimeout(r.timer)
  }

  status (): RelayReservationStatus[] {
    return this.#relays.map((r) => {
      const addresses = this.#addressesThrough(r.status.peerId)
      return { ...r.status, state: addresses.length > 0 ? 'reserved' : r.status.state === 'reserved' ? 'pending' : r.status.state, addresses }
    })
  }

  /** Our circuit addresses through the relay with this peer id. */
  #addressesThrough (relayId: string): string[] {
    const ours = this.#components.transportManager.getAddrs().map((a) => a.toString()).filter((a) => a.includes(`/p2p/${relayId}/p2p-circuit`))
    return [...new Set(ours)]
  }

  #schedule (r: KeptRelay, delay: number): void {
    if (!this.#started) return
    clearTimeout(r.timer)
    r.status.retryAt = Date.now() + delay
    r.timer = setTimeout(() => {
      r.timer = undefined
      r.status.retryAt = undefined
      void this.#ensure(r)
    }, delay)
    r.timer.unref()
  }

  /**
   * libp2p's circuit transport marks a relay whose reservation failed on a dial error as invalid until the node
   * restarts ("The relay was previously invalid"): a relay that refused this node once (say, before its operator
   * added this node's share) would never be tried again. Each attempt of the keeper forgets that mark first. Reads
   * a field of the transport that is not part of its typed API: should it change, the mark simply stays.
   */
  #forgetRefusal (r: KeptRelay): void {
    const transport = this.#components.transportManager.getTransports().find((t) => (t as { [Symbol.toStringTag]?: string })?.[Symbol.toStringTag] === '@libp2p/circuit-relay-v2-transport')
    const filter = (transport as { reservationStore?: { relayFilter?: { remove?: (item: Uint8Array) => boolean } } } | undefined)?.reservationStore?.relayFilter
    try {
      filter?.remove?.(peerIdFromString(r.status.peerId).toMultihash().bytes)
    } catch (err) {
      this.#log.debug({ relay: r.status.relay, err: String(err) }, 'could not clear the relay mark')
    }
  }

  async #ensure (r: KeptRelay): Promise<void> {
    if (!this.#started || r.running) return
    if (this.#addressesThrough(r.status.peerId).length > 0) {
      r.status.state = 'reserved'
      return
    }
    if (r.status.state === 'reserved') {
      r.status.state = 'pending'
      this.#log.warn({ relay: r.status.relay }, 'relay reservation lost; reserving again')
      this.#emit({ type: 'relay.reservation', relay: r.status.relay, peerId: r.status.peerId, state: 'lost' })
    }
    // backing off: the timer tries again (a periodic check does not cut the backoff short)
    if (r.timer !== undefined) return
    r.running = true
    r.status.retryAt = undefined
    const signal = AbortSignal.any([AbortSignal.timeout(RELAY_RESERVE_TIMEOUT_MS), this.#stopping.signal])
    try {
      this.#forgetRefusal(r)
      // dial first: a relay that cannot be reached leaves no listener behind in libp2p
      await this.#components.connectionManager.openConnection(r.addr, { signal })
      await this.#components.transportManager.listen([r.addr.encapsulate('/p2p-circuit')])
      if (this.#addressesThrough(r.status.peerId).length === 0) throw new DialFailedError(`relay ${r.status.relay} gave no address`)
      r.status.state = 'reserved'
      r.status.failures = 0
      const addresses = this.#addressesThrough(r.status.peerId)
      this.#log.info({ relay: r.status.relay, addresses }, 'listening through relay')
      this.#emit({ type: 'relay.reservation', relay: r.status.relay, peerId: r.status.peerId, state: 'reserved', addresses })
    } catch (err) {
      if (!this.#started) return
      const typed = err instanceof MindooError ? err : dialError(err, `cannot reserve on relay ${r.status.relay}`)
      r.status.state = 'failed'
      r.status.failures++
      r.status.lastError = { code: typed.code, message: typed.message, at: Date.now() }
      if (r.status.failures === 1) this.#emit({ type: 'relay.reservation', relay: r.status.relay, peerId: r.status.peerId, state: 'failed', code: typed.code, message: typed.message })
      const delay = Math.min(RELAY_RETRY_MAX_MS, RELAY_RETRY_BASE_MS * 2 ** Math.min(r.status.failures - 1, 30)) * (0.5 + Math.random())
      this.#log.warn({ relay: r.status.relay, code: typed.code, err: typed.message, retryInMs: Math.round(delay) }, 'relay reservation failed')
      this.#schedule(r, delay)
    } finally {
      r.running = false
    }
  }
}

/** The libp2p service that keeps the reservations (see RelayKeeper). */
export function relayKeeper (init: { relays: string[], logger?: Logger, onEvent?: (event: RelayReservationEvent) => void }): (components: RelayKeeperComponents) => RelayKeeper {
  return (components) => new RelayKeeper(components, init)
}

/** Checks a NatInit (a programming or config mistake is an InvalidArgumentError naming the field). */
export function validateNatInit (init: NatInit): void {
  const serve = typeof init.serve === 'object' ? init.serve : {}
  const positive = (v: number | undefined, name: string): void => {
    if (v !== undefined && (!Number.isSafeInteger(v) || v < 1)) throw new InvalidArgumentError(`relay ${name} must be a positive integer`)
  }
  positive(serve.maxReservations, 'maxReservations')
  positive(serve.dataLimitBytes, 'dataLimitBytes')
  positive(serve.durationLimitMs, 'durationLimitMs')
  // libp2p sends the duration in a uint32 field
  if (serve.durationLimitMs !== undefined && serve.durationLimitMs > 0xffffffff) throw new InvalidArgumentError('relay durationLimitMs is too large')
  for (const r of init.relays ?? []) {
    let addr: Multiaddr
    try {
      addr = multiaddr(r)
    } catch (err) {
      throw new InvalidArgumentError(`relay address ${r} is not a multiaddr`, { cause: err })
    }
    if (lastPeerId(addr) === undefined || isCircuit(addr)) throw new InvalidArgumentError(`relay address ${r} must end with /p2p/<relay peer id> and not be a circuit address`)
  }
}

/**
 * This node's part of libp2p's connectivity stack, built from its init: what to add to `createLibp2p` and what
 * the doctor reports. Start order is libp2p's (services start with it); nothing here runs before that.
 */
export class Nat {
  readonly #init: NatInit
  readonly #policy: NatPolicy
  readonly #log: Logger
  readonly #serve: Required<RelayServeInit> | undefined
  #keeper: RelayKeeper | undefined
  #server: CircuitRelayService | undefined
  readonly #refused = { reservations: 0, hops: 0, inboundRelayed: 0, last: undefined as RelayRefusal | undefined }
  #addressManager: RelayKeeperComponents['addressManager'] | undefined
  readonly #onEvent: (event: RelayReservationEvent | RelayRefusedEvent) => void

  /** `onEvent` hears of reservations gained, lost or failing, and of peers the served relay refused. */
  constructor (init: NatInit, policy: NatPolicy, logger?: Logger, onEvent?: (event: RelayReservationEvent | RelayRefusedEvent) => void) {
    validateNatInit(init)
    this.#init = init
    this.#policy = policy
    this.#onEvent = onEvent ?? (() => {})
    this.#log = (logger ?? silentLogger).child({ component: 'nat' })
    const serve = init.serve === true ? {} : init.serve === false || init.serve === undefined ? undefined : init.serve
    this.#serve = serve === undefined
      ? undefined
      : {
          maxReservations: serve.maxReservations ?? RELAY_MAX_RESERVATIONS,
          dataLimitBytes: serve.dataLimitBytes ?? RELAY_DATA_LIMIT_BYTES,
          durationLimitMs: serve.durationLimitMs ?? RELAY_DURATION_LIMIT_MS
        }
  }

  /** Peer ids of the configured relays: the connection gater admits them. */
  relayPeers (): string[] {
    return (this.#init.relays ?? []).map((r) => lastPeerId(multiaddr(r))).filter((id): id is string => id !== undefined)
  }

  /** Transports besides TCP: the circuit relay transport (dial `/p2p-circuit` addresses, accept relayed connections). */
  transports (): Array<ReturnType<typeof circuitRelayTransport>> {
    return [circuitRelayTransport({ reservationCompletionTimeout: RELAY_RESERVE_TIMEOUT_MS })]
  }

  /** Services to add to libp2p's: AutoNAT, DCUtR, the relay server, the reservation keeper, as configured. */
  services (): Record<string, (components: any) => unknown> { // eslint-disable-line @typescript-eslint/no-explicit-any
    const services: Record<string, (components: any) => unknown> = {} // eslint-disable-line @typescript-eslint/no-explicit-any
    if (this.#init.autonat ?? true) services.autonat = autoNAT({ protocolPrefix: AUTONAT_PROTOCOL_PREFIX })
    if (this.#init.dcutr ?? true) services.dcutr = dcutr()
    const serve = this.#serve
    if (serve !== undefined) {
      const server = circuitRelayServer({
        maxInboundHopStreams: RELAY_MAX_INBOUND_HOP_STREAMS,
        reservations: {
          maxReservations: serve.maxReservations,
          applyDefaultLimit: true,
          defaultDataLimit: BigInt(serve.dataLimitBytes),
          defaultDurationLimit: serve.durationLimitMs
        }
      })
      services.relay = (components: Parameters<typeof server>[0]) => (this.#server = server(components))
    }
    const keeper = relayKeeper({ relays: this.#init.relays ?? [], logger: this.#log, onEvent: this.#onEvent })
    services.relayKeeper = (components: RelayKeeperComponents) => {
      this.#addressManager = components.addressManager
      return (this.#keeper = keeper(components))
    }
    return services
  }

  /** The relay hooks of the connection gater (the node's own hooks admit or refuse the peers themselves). */
  gater (): {
    denyInboundRelayReservation: (source: PeerId) => boolean
    denyOutboundRelayedConnection: (source: PeerId, destination: PeerId) => boolean
    denyInboundRelayedConnection: (relay: PeerId, remote: PeerId) => boolean
  } {
    return {
      // only partners of our shares reserve on the relay we serve
      denyInboundRelayReservation: (source) => {
        if (this.#serve !== undefined && this.#policy.isRelayClient(source.toString())) return false
        this.#refuse({ kind: 'reservation', peerId: source.toString(), at: Date.now() })
        return true
      },
      // and only between two of them
      denyOutboundRelayedConnection: (source, destination) => {
        if (this.#serve !== undefined && this.#policy.isRelayClient(source.toString()) && this.#policy.isRelayClient(destination.toString())) return false
        this.#refuse({ kind: 'hop', peerId: source.toString(), destination: destination.toString(), at: Date.now() })
        return true
      },
      // through any relay, only admitted peers reach this node (the encrypted-connection hook checks again)
      denyInboundRelayedConnection: (_relay, remote) => {
        if (this.#policy.isAdmitted(remote.toString())) return false
        this.#refuse({ kind: 'inbound-relayed', peerId: remote.toString(), at: Date.now() })
        return true
      }
    }
  }

  #refuse (r: RelayRefusal): void {
    if (r.kind === 'reservation') this.#refused.reservations++
    else if (r.kind === 'hop') this.#refused.hops++
    else this.#refused.inboundRelayed++
    this.#refused.last = r
    this.#log.warn({ kind: r.kind, peer: r.peerId, destination: r.destination }, 'relay refused a peer that is not a partner')
    this.#onEvent({ type: 'relay.refused', kind: r.kind, peerId: r.peerId, ...(r.destination === undefined ? {} : { destination: r.destination }) })
  }

  /** What the doctor shows: addresses, reachability, NAT, reservations held and served. */
  report (): NatReport {
    const addresses: AddressInfo[] = (this.#addressManager?.getAddressesWithMetadata() ?? []).map((a) => ({
      address: a.multiaddr.toString(),
      type: a.type,
      verified: a.verified,
      public: isPublicAddress(a.multiaddr),
      relayed: isCircuit(a.multiaddr)
    }))
    const reservations = this.#keeper?.status() ?? []
    const serve = this.#serve
    return {
      ...reachabilityOf(addresses, reservations),
      autonat: this.#init.autonat ?? true,
      dcutr: this.#init.dcutr ?? true,
      addresses,
      reservations,
      ...(serve === undefined
        ? {}
        : {
            relay: {
              clients: [...(this.#server?.reservations.keys() ?? [])].map((p) => p.toString()),
              maxReservations: serve.maxReservations,
              limits: { dataBytes: serve.dataLimitBytes, durationMs: serve.durationLimitMs },
              refused: { ...this.#refused }
            }
          })
    }
  }
}
