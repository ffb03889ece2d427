/**
 * Running rounds and sessions of a node: a round with a partner as initiator (the scheduler decides when: see
 * scheduler.ts), an inbound stream answered as responder once the gate authorised it (inbound.ts), what each
 * session counts into its share and partner and tells the node's events, and the long-lived sessions that outlive
 * their round (one per partner and share).
 *
 * The node makes one SessionRunner. What it needs of the node (its peer id, whether it runs, its stop signal,
 * libp2p, the connection to a partner) the node lends it through RunnerHost; the share registry, the scheduler and
 * the gate are handed in, each narrowed to the calls made on it. The want claims of each database (shared by the
 * sessions of all its shares) are its own.
 */
import type { Connection, Libp2p, Stream } from '@libp2p/interface'
import { peerIdFromString } from '@libp2p/peer-id'
import type { MindooTenant } from '../core/index.js'
import { MindooError, PeerNotDialledError, RelayLimitError } from '../errors.js'
import type { AbortOptions } from '../store/types.js'
import { SyncRemoteError, type MessageChannel } from '../sync/messages.js'
import { createInitiator, createResponder } from '../sync/reconcile/index.js'
import { WantClaims } from '../sync/claims.js'
import { runSession, type LiveSession, type SessionResult, type SessionStats } from '../sync/session.js'
import { createWritePolicy, readsStore } from '../sync/write-policy.js'
import { LIVE_SESSIONS_PER_PEER } from '../limits.js'
import type { Logger } from '../util/logger.js'
import { streamChannel } from './channel.js'
import { MAX_RECENT_REJECTIONS, SYNC_PROTOCOL } from './constants.js'
import { clip, type NodeEvents } from './events.js'
import type { InboundGate } from './inbound.js'
import { dialError, relayLimitError, sessionFrameLimit } from './nat.js' // nat
import type { RoundScheduler } from './scheduler.js'
import {
  seenOf, type LiveHandle, type LiveStatus, type PartnerState, type RoundProgress, type RoundResult, type ShareRegistry,
  type ShareRuntime
} from './shares.js'

function errorInfo (err: unknown): { code: string, message: string } {
  if (err instanceof SyncRemoteError) return { code: err.remoteCode, message: err.message }
  const e = err as { code?: string, name?: string, message?: string }
  return { code: e?.code ?? e?.name ?? 'ERROR', message: String(e?.message ?? err) }
}

/** What the node lends its runner: the parts of its own state that rounds and sessions read. */
export interface RunnerHost {
  /** This node's peer id (of two long-lived sessions, the one the smaller id opened is kept). */
  peerId: () => string
  /** The node is started: a failed long-lived session is logged, a closed one resumes with a round. */
  started: () => boolean
  /** Aborts when the node stops (a new signal at each start). */
  stopping: () => AbortSignal
  /** The caller's signal, aborted when the node stops too. */
  signal: (options: AbortOptions) => AbortSignal
  /** The libp2p node (NotStartedError when stopped): a round's stream is dialled through it. */
  libp2p: () => Pick<Libp2p, 'dialProtocol' | 'getConnections'>
  /** The open connection to the peer a round runs over, if any (nat: direct first, one with limits last). */
  connectionTo: (peerId: string) => Connection | undefined
  /** Whether the peer store holds an address of the partner (kept in `addressKnown` for status). */
  addressKnown: (p: PartnerState) => Promise<boolean>
}

export interface SessionRunnerComponents {
  node: RunnerHost
  /** The organisation's tenant: its signing key is this side's author. */
  tenant: Pick<MindooTenant, 'getPublicInfo'>
  shares: Pick<ShareRegistry, 'values' | 'has'>
  scheduler: Pick<RoundScheduler<ShareRuntime, PartnerState, RoundResult>, 'began' | 'succeeded' | 'request'>
  /** Authorises inbound streams (inbound.ts). */
  gate: Pick<InboundGate, 'accept'>
  events: Pick<NodeEvents, 'emit'>
  logger: Logger
}

export interface SessionRunnerInit {
  /** Largest frame sent or accepted (the node's `maxFrameBytes`, checked by the node). */
  maxFrameBytes: number
  /** Offer a long-lived session after the first reconciliation (the node's `live`). Default true. */
  live?: boolean
}

/** Runs a node's rounds (as initiator) and inbound sessions (as responder), and keeps their long-lived sessions. */
export class SessionRunner {
  readonly #c: SessionRunnerComponents
  readonly #init: SessionRunnerInit
  readonly #node: RunnerHost
  readonly #log: Logger
  readonly #claims = new Map<string, WantClaims>()

  constructor (components: SessionRunnerComponents, init: SessionRunnerInit) {
    this.#c = components
    this.#init = init
    this.#node = components.node
    this.#log = components.logger
  }

  /** One round with one partner, as initiator (the scheduler decides when: see src/p2p/scheduler.ts). */
  async round (rt: ShareRuntime, p: PartnerState, options: AbortOptions): Promise<RoundResult> {
    const connection = this.#node.connectionTo(p.peerId)
    if (connection === undefined && !(p.dial && await this.#node.addressKnown(p))) {
      // nothing to dial (or not to be dialled): no round, no failure; it syncs when it connects
      const why = p.dial ? 'not connected and no known address' : 'not connected and not to be dialled'
      const error = new PeerNotDialledError(why)
      return { share: rt.config.id, peerId: p.peerId, ok: false, skipped: true, error: { code: error.code, message: why } }
    }
    const controller = new AbortController()
    const slot: SessionSlot = { controller, live: false }
    rt.sessions.add(controller)
    this.#c.scheduler.began(p)
    p.rounds++
    rt.totals.rounds++
    p.lastRoundAt = Date.now()
    p.lastRoundResult = undefined
    let stream: Stream | undefined
    let via: Connection | undefined // nat: the connection the session runs over
    let progress: RoundProgress | undefined
    try {
      const signal = AbortSignal.any([controller.signal, this.#node.signal(options)])
      // over a connection the partner opened, if any: a partner with dial: false is never dialled
      try {
        stream = connection !== undefined && connection.status === 'open'
          ? await connection.newStream(SYNC_PROTOCOL, { signal, runOnLimitedConnection: true })
          : await this.#node.libp2p().dialProtocol(peerIdFromString(p.peerId), SYNC_PROTOCOL, { signal, runOnLimitedConnection: true })
      } catch (err) {
        // libp2p's own failures (no address, refused, a connection closed by a simultaneous dial, negotiation)
        // become one typed error (a relay's refusal: RELAY_REFUSED); an abort keeps its reason
        if (signal.aborted || err instanceof MindooError) throw err
        throw dialError(err, `cannot open a sync stream to ${p.peerId}`)
      }
      const opened = stream
      via = connection ?? this.#node.libp2p().getConnections(peerIdFromString(p.peerId)).find((c) => c.streams.includes(opened))
      const channel = streamChannel(stream, this.#init.maxFrameBytes)
      const session = this.#runSession(rt, p, channel, 'initiator', undefined, undefined, slot, signal, via)
      progress = p.current
      const result = await session
      p.lag = result.peerLacked
      p.lastSuccessAt = rt.lastSuccessAt = Date.now()
      p.lastRoundResult = 'ok'
      return { share: rt.config.id, peerId: p.peerId, ok: true, result }
    } catch (err) {
      stream?.abort(err as Error)
      const info = errorInfo(err)
      p.roundsFailed++
      rt.totals.roundsFailed++
      p.lastRoundResult = 'failed'
      recordError(rt, p, info)
      this.#log.warn({ share: rt.config.id, peer: p.peerId, code: info.code, err: info.message }, 'sync round failed')
      if (err instanceof SyncRemoteError) {
        this.#c.events.emit({ type: 'session.refused', peerId: p.peerId, share: rt.config.id, direction: 'outbound', code: clip(info.code, 64), message: clip(info.message) })
      }
      // nat: a round cut by a relay's limit after it moved changes is retried at the base delay (it made progress)
      const progressed = err instanceof RelayLimitError && progress !== undefined && progress.sent + progress.received > 0
      return { share: rt.config.id, peerId: p.peerId, ok: false, error: info, ...(progressed ? { progressed } : {}) }
    } finally {
      if (!slot.live) rt.sessions.delete(controller)
    }
  }

  async #runSession (rt: ShareRuntime, partner: PartnerState | undefined, channel: MessageChannel, role: 'initiator' | 'responder', peerMaxFrameBytes: number | undefined, peerCapabilities: readonly string[] | undefined, slot: SessionSlot, signal: AbortSignal, connection?: Connection): Promise<SessionResult> {
    const progress: RoundProgress = { startedAt: Date.now(), sent: 0, received: 0, bytesSent: 0, bytesReceived: 0 }
    if (partner !== undefined) partner.current = progress
    const rejected: Record<string, number> = {}
    const round = { share: rt.config.id, peerId: partner?.peerId ?? '', role }
    this.#c.events.emit({ type: 'round.started', ...round })
    const finished = (error?: { code: string, message: string }): void => {
      const { sent, received, bytesSent, bytesReceived } = progress
      if (Object.keys(rejected).length > 0) this.#c.events.emit({ type: 'changes.rejected', share: round.share, peerId: round.peerId, counts: { ...rejected } })
      this.#c.events.emit({ type: 'round.finished', ...round, ok: error === undefined, sent, received, bytesSent, bytesReceived, rejected: { ...rejected }, ...(error === undefined ? {} : { error: { code: clip(error.code, 64), message: clip(error.message) } }) })
    }
    // once live, what moves is counted for the long-lived session as well
    let live: LiveStatus | undefined
    /** Counts changes and bytes that moved one way into the share, the round and, once live, the live session. */
    const moved = (way: 'Sent' | 'Received') => (n: number, bytes: number): void => {
      rt.totals[`changes${way}`] += n
      rt.totals[`bytes${way}`] += bytes
      progress[way === 'Sent' ? 'sent' : 'received'] += n
      progress[`bytes${way}`] += bytes
      if (live !== undefined) {
        live[`changes${way}`] += n
        rt.totals.live[`changes${way}`] += n
      }
    }
    const stats: SessionStats = {
      sent: moved('Sent'),
      received: moved('Received'),
      liveStarted: () => {
        live = { since: Date.now(), announcementsSent: 0, announcementsReceived: 0, hashesAnnounced: 0, hashesReceived: 0, changesSent: 0, changesReceived: 0 }
        rt.totals.live.sessions++
      },
      announced: (direction, hashes) => {
        if (live === undefined) return
        if (direction === 'sent') {
          live.announcementsSent++
          live.hashesAnnounced += hashes
          rt.totals.live.announcementsSent++
        } else {
          live.announcementsReceived++
          live.hashesReceived += hashes
          rt.totals.live.announcementsReceived++
        }
      },
      reconciling: () => {
        // only a round (this side initiates) reconciles as initiator: what it covers from here on is fixed (S1)
        if (partner !== undefined) partner.reconciling = true
      },
      reconciled: (peerLacks, weLack, bytes) => {
        rt.totals.reconcileBytes += bytes
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
    const onLive = (session: LiveSession): void => {
      if (partner === undefined || live === undefined) {
        // closed at once: the slot stays a round's, so the round's end removes its controller from the share
        session.close()
        return
      }
      slot.live = true
      this.#onLive(rt, partner, { role, status: live, close: session.close }, session.ended, slot.controller)
    }
    try {
      // nat: over a connection with a data limit, small frames, so each one stored is progress kept after a cut
      const result = await this.#startSession(rt, partner, channel, role, peerMaxFrameBytes, peerCapabilities, stats, slot, onLive, signal, connection)
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

  async #startSession (rt: ShareRuntime, partner: PartnerState | undefined, channel: MessageChannel, role: 'initiator' | 'responder', peerMaxFrameBytes: number | undefined, peerCapabilities: readonly string[] | undefined, stats: SessionStats, slot: SessionSlot, onLive: (live: LiveSession) => void, signal: AbortSignal, connection?: Connection): Promise<SessionResult> {
    const peer = partner?.peerId ?? ''
    const ownAuthor = this.#c.tenant.getPublicInfo().signingPublicKey
    // a long-lived session is offered when this partner has none yet (a race of two is settled in #onLive)
    // nat: never over a connection with limits (a relay's data and time limit would cut it; rounds carry changes)
    const offerLive = (this.#init.live ?? true) && partner !== undefined && partner.live === undefined &&
      connection?.limits === undefined && this.#liveSessionsWith(partner.peerId) < LIVE_SESSIONS_PER_PEER
    // the live phase outlives the round's caller (its deadline): it ends with the share or the node only
    const liveSignal = AbortSignal.any([slot.controller.signal, this.#node.stopping()])
    const seen = rt.config.direction === 'receive' ? await seenOf(rt, peer) : undefined
    // every author's write policy on this share, by signing key
    const writers = new Map([...rt.config.partners, ...rt.config.participants ?? []].map((p) => [p.tenant.signingPublicKey, p.write]))
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
      seen: seen?.set,
      onSeen: seen === undefined ? undefined : async (added) => { await seen.persist(added) },
      claims,
      stats,
      logger: this.#log.child({ share: rt.config.id }),
      onLive
    }, {
      role,
      peer,
      direction: rt.config.direction,
      participants: rt.participants,
      topic: role === 'initiator' ? Buffer.from(rt.topicKey, 'hex') : undefined,
      peerMaxFrameBytes,
      maxFrameBytes: sessionFrameLimit(connection, this.#init.maxFrameBytes),
      refusals: rt.refusals,
      peerHas: partner?.peerHas,
      live: offerLive ? { ownAuthor, signal: liveSignal } : undefined,
      peerCapabilities,
      admit: createWritePolicy({ served: rt.served, db: rt.db, ownAuthor, participants: writers }),
      admitReadsStore: readsStore(writers)
    }, { signal })
  }

  /** An inbound sync stream: authorised by the gate (src/p2p/inbound.ts), then answered as responder. */
  async inbound (stream: Stream, connection: Connection): Promise<void> {
    const inbound = await this.#c.gate.accept(stream, connection)
    if (inbound === undefined) return
    const { rt, remote, channel, peerMaxFrameBytes, capabilities } = inbound
    const partner = rt.partners.get(remote)
    if (partner !== undefined) this.#c.scheduler.began(partner)
    // nat: the inbound session receives its connection (frame limit, RELAY_LIMIT, no live phase over a limited one)
    const controller = new AbortController()
    const slot: SessionSlot = { controller, live: false }
    rt.sessions.add(controller)
    try {
      const result = await this.#runSession(rt, partner, channel, 'responder', peerMaxFrameBytes, capabilities, slot, AbortSignal.any([controller.signal, this.#node.stopping()]), connection)
      if (partner !== undefined) {
        partner.lastSuccessAt = rt.lastSuccessAt = Date.now()
        partner.lag = result.peerLacked
        // a session that worked (both ways: it moves changes in both directions) ends this partner's backoff;
        // otherwise live rounds to it stay suppressed until the retry timer fires (up to backoffMaxMs)
        this.#c.scheduler.succeeded(partner)
      }
    } catch (err) {
      const info = errorInfo(err)
      // a partner's failed session shows on the partner; a participant that is not one counts on the share only
      if (partner !== undefined) partner.sessionsFailed++
      recordError(rt, partner, info)
      // the session has told the peer why (or torn the stream down) already
      this.#log.warn({ share: rt.config.id, peer: remote, code: info.code, err: info.message }, 'inbound session failed')
    } finally {
      if (!slot.live) rt.sessions.delete(controller)
    }
  }

  /** Long-lived sessions with a peer, over all shares. */
  #liveSessionsWith (peerId: string): number {
    let n = 0
    for (const rt of this.#c.shares.values()) {
      if (rt.partners.get(peerId)?.live !== undefined) n++
    }
    return n
  }

  /**
   * A session went live. One long-lived session per partner and share: of two (both sides opened one at once),
   * both sides keep the one opened by the peer with the smaller id. When it ends (the partner closed it, the
   * stream failed, the connection went) the partner resumes with a reconciliation round.
   */
  #onLive (rt: ShareRuntime, p: PartnerState, handle: LiveHandle, ended: Promise<void>, controller: AbortController): void {
    const preferred = (role: 'initiator' | 'responder'): boolean => role === 'initiator' ? this.#node.peerId() < p.peerId : p.peerId < this.#node.peerId()
    const current = p.live
    if (current !== undefined && !(preferred(handle.role) && !preferred(current.role))) {
      handle.close()
    } else {
      p.live = handle
      current?.close()
    }
    let closedHere = false
    const close = handle.close
    handle.close = () => {
      closedHere = true
      close()
    }
    ended.then(() => undefined, (err: unknown) => {
      if (!this.#node.started()) return undefined
      const info = errorInfo(err)
      p.sessionsFailed++
      recordError(rt, p, info)
      this.#log.warn({ share: rt.config.id, peer: p.peerId, code: info.code, err: info.message }, 'live session failed')
      return undefined
    }).then(() => {
      rt.sessions.delete(controller)
      if (p.live !== handle) return
      p.live = undefined
      // a closed stream resumes with a reconciliation (unless this side closed it on purpose)
      if (!closedHere && this.#node.started() && rt.config.enabled && this.#c.shares.has(rt.config.id)) void this.#c.scheduler.request(rt, p)
    }, () => {})
  }
}

/** A failed round or session: its error becomes the share's last (and the partner's, when known), counted by code. */
function recordError (rt: ShareRuntime, p: PartnerState | undefined, info: { code: string, message: string }): void {
  rt.lastError = { ...info, at: Date.now() }
  if (p !== undefined) p.lastError = rt.lastError
  rt.totals.errors[info.code] = (rt.totals.errors[info.code] ?? 0) + 1
}

/** What a session's runner needs to know about its live phase: it keeps its controller until the phase ends. */
interface SessionSlot {
  controller: AbortController
  /** The session went live: its controller stays in the share's sessions until the live phase ends. */
  live: boolean
}
