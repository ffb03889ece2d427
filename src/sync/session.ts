/**
 * One sync session of one share between two peers, over a MessageChannel, transport-free.
 *
 * Phases:
 * 1. Opening: the initiator sends `hello` (topic, version, capabilities, frame limit); the responder's owner
 *    authorises it (see `authorizeHello`) and answers `welcome` or an `error` frame, before any hash is revealed.
 * 2. Reconciliation: range-based set reconciliation over each side's *served set* (direction `receive`: over
 *    what this peer revealed before, `components.seen`); at its end both sides know which hashes the other has
 *    that they lack.
 * 3. Transfer, in both directions at once: each side asks for what it lacks with `want` frames (a bounded number
 *    in flight, so a slow receiver slows the sender) and answers the other's wants with `changes` frames. A want
 *    is answered only with changes of the served set: a hash outside it is neither sent nor acknowledged. Asking
 *    and storing the answers is the session's Intake (intake.ts).
 * 4. Close: once both sides sent `want{done}` and answered every want, each closes its side.
 * 5. Live (only when both sides offered LIVE_CAPABILITY; live-phase.ts): instead of closing, each side sends `live`
 *    and the stream stays open. Each side announces what enters its served set (`announce`; its own small changes
 *    pushed with it), never a hash the peer revealed or announced (`peerHas`); the receiver stores the pushed
 *    changes, asks for the others it lacks with one `want`, and `ack`s; one announcement is unacknowledged at a
 *    time, and what grows meanwhile goes out in the next one (bursts coalesce). Either side ends the phase by
 *    closing its side; the owner resumes with a reconciliation when it wants.
 *
 * Invariants (cited where enforced):
 * I1. No hash outside this side's served set is ever sent (reconciliation runs over the served set; wants are
 *     answered from it only). With direction `receive` reconciliation runs over `seen`, which holds only hashes
 *     this peer itself revealed, so nothing of the local set is revealed; error frames carry fixed texts only.
 * I2. A received change is stored only if it was asked for in this session, by a participant, admitted by the
 *     write policy and verified by the store; stated in full, and enforced, in intake.ts.
 * I3. At most `pipeline` wants are outstanding (intake.ts); frames sent stay below the peer's frame limit.
 * I4. A hash another session of the same database is fetching is not asked for again, unless it is held past
 *     SESSION_CLAIM_WAIT_MS; claims are given back only once settled; stated in full, and enforced, in intake.ts.
 * I5. Idle means no progress: only frames that move the session on reset the idle deadline (an answer frame
 *     when it arrives); a bounded number of frames that move nothing (SESSION_MAX_NOOP_FRAMES) ends it. Every
 *     wait (a receive, a send blocked by the peer not reading, another session's claim) has a deadline and
 *     honours the abort signal.
 * I6. Reconciliation work is bounded by the set's size and what was found (the reconciler's BUDGET).
 * I7. Live: only the served set is announced or pushed, a push is checked like an answer and bounded, and the
 *     live phase's waits have deadlines; stated in full, and enforced, in live-phase.ts.
 */
import type { MindooDB } from '../core/index.js'
import {
  InternalError, ReconcileProtocolError, SessionIdleError, ShareDisabledError, SyncProtocolError, SyncRemoteError,
  UnrequestedChangeError
} from '../errors.js'
import { SESSION_MAX_NOOP_FRAMES } from '../limits.js'
import { readChangeTime, type ChangeHash } from '../store/change.js'
import type { AbortOptions } from '../store/types.js'
import { silentLogger, type Logger } from '../util/logger.js'
import {
  isChanges, isError, isLive, isReconcile, isWant, isWelcome, SYNC_PROTOCOL_VERSION, CAPABILITIES, FRAME_OVERHEAD,
  LIVE_ANNOUNCE_CAPABILITY, LIVE_CAPABILITY, RECONCILE_LARGE_CAPABILITY, type MessageChannel, type SyncErrorCode,
  type SyncMessage, type WantMessage
} from './messages.js'
import type { WantClaims } from './claims.js'
import { Intake, type AdmitChange, type IntakeHost } from './intake.js'
import { LivePhase, notePeerHas, type LiveHost, type LiveInit, type LiveSession, type LiveStats } from './live-phase.js'
import { createReconcileSet, type ReconcileItem, type ReconcileSession, type ReconcileSet } from './reconcile/index.js'
import type { Refusals } from './refusals.js'
import type { ServedSet } from './served-set.js'
import type { ShareDirection } from './share.js'

export type { AdmitChange, LiveInit, LiveSession }

/** Counters a session reports into (the share's status); the live phase's are in LiveStats. */
export interface SessionStats extends LiveStats {
  sent: (changes: number, bytes: number) => void
  received: (changes: number, bytes: number) => void
  rejected: (code: string, hash: string) => void
  /**
   * The initiator is about to reconcile: from here on, what this side's set holds is what the round covers (the
   * scheduler's S1; the served set has taken up every change stored before this call by then).
   */
  reconciling?: () => void
  /** Reconciliation ended: how many changes the peer lacks and how many this side lacks (for progress), and the bytes of its messages. */
  reconciled?: (peerLacks: number, weLack: number, bytes: number) => void
}

export interface SessionComponents {
  channel: MessageChannel
  db: MindooDB
  served: ServedSet
  /**
   * Makes the reconciliation engine over `set` once both frame limits are known (both sides pass the same size).
   * The session picks the set: the served set's index, or for direction `receive` `seen`.
   */
  reconciler: (set: ReconcileSet, maxMessageBytes: number) => ReconcileSession
  /**
   * Direction `receive`: what this peer revealed before and this side stores, kept per share and peer by the
   * owner; the session reconciles over it and adds what the peer revealed once it is stored. Missing: an empty
   * set (the peer then sends its whole id list).
   */
  seen?: ReconcileSet
  /** Direction `receive`: called with what entered `seen` (to persist it); the session waits for it. */
  onSeen?: (added: ReconcileItem[]) => Promise<void>
  claims: WantClaims
  stats?: SessionStats
  logger?: Logger
  /** Called when the session enters its live phase (run() then resolves; the phase goes on). */
  onLive?: (live: LiveSession) => void
}

export interface SessionInit {
  role: 'initiator' | 'responder'
  /** The remote peer id (for refusals and logs). */
  peer: string
  /** This side's direction on the share. */
  direction: ShareDirection
  /** Signing keys of the share's participants (this tenant included): the authors accepted (I2). */
  participants: ReadonlySet<string>
  /** Initiator: the share's topic id, sent in the hello. */
  topic?: Uint8Array
  /** Responder: the frame limit the initiator's hello declared. */
  peerMaxFrameBytes?: number
  /** Largest reconciliation message. Default 64 KiB. */
  reconcileMessageBytes?: number
  /** Largest frame this side sends and accepts. Default 4 MiB. */
  maxFrameBytes?: number
  /** Hashes per want. Default WANT_HASHES. */
  wantBatch?: number
  /** Wants in flight. Default WANTS_IN_FLIGHT. */
  pipeline?: number
  /** Changes refused before for reasons tied to their bytes, per peer: not asked for again from that peer. */
  refusals?: Refusals
  /** The share's write policy, called per received change after the participant check and before the store. */
  admit?: AdmitChange
  /**
   * `admit` reads what is stored (a `types` rule): each answer frame is judged once the frames before it are
   * stored, so that a change is judged with what it depends on. Otherwise frames are judged as they arrive.
   */
  admitReadsStore?: boolean
  /** The session fails when the peer sends nothing for this long, ms. Default 60 000. */
  idleTimeoutMs?: number
  /**
   * Hashes the peer is known to have (it revealed them in a reconciliation or announced them), shared by the
   * owner across the sessions with that peer on the share: never announced to it (no echo). The session adds to
   * it, at most LIVE_PEER_HAS_MAX (oldest dropped first).
   */
  peerHas?: Set<ChangeHash>
  /** Offer the live phase (phase 5). Responder: offered only if the hello offered it too. */
  live?: LiveInit
  /** Responder: the capabilities the initiator's hello offered. */
  peerCapabilities?: readonly string[]
}

export interface SessionResult {
  /** Changes received and stored. */
  received: number
  /** Changes sent. */
  sent: number
  /** Changes refused, by reason code. */
  rejected: Record<string, number>
  /** Bytes of change data sent and received. */
  bytesSent: number
  bytesReceived: number
  /** Reconciliation messages exchanged (both directions), and their bytes. */
  reconcileMessages: number
  reconcileBytes: number
  /** Changes of this side's served set the peer lacked when reconciliation ended (its lag). */
  peerLacked: number
}

export const DEFAULT_MAX_FRAME_BYTES = 4 * 1024 * 1024
export const DEFAULT_RECONCILE_MESSAGE_BYTES = 64 * 1024
/** Reconciliation message size when both sides offer RECONCILE_LARGE_CAPABILITY (1 MiB: about 26,000 ids). */
export const RECONCILE_LARGE_MESSAGE_BYTES = 1024 * 1024
/** A session fails when the peer makes no progress for this long (see I5). */
export const DEFAULT_IDLE_TIMEOUT_MS = 60_000
/** Time allowed to tell a peer why its session ends. */
const GOODBYE_TIMEOUT_MS = 2_000
/** Time allowed to find the peer's error frame after a failed write (the reader may first store frames already received). */
const PEER_REASON_WAIT_MS = 5_000

const noStats: SessionStats = { sent: () => {}, received: () => {}, rejected: () => {} }

export { ShareDisabledError, SessionIdleError, UnrequestedChangeError }

/**
 * Runs one session to its end. Resolves with what moved; rejects with SyncRemoteError when the peer refused,
 * SyncProtocolError on a broken frame sequence, or the channel's error.
 */
export async function runSession (components: SessionComponents, init: SessionInit, options: AbortOptions = {}): Promise<SessionResult> {
  return await new SyncSession(components, init).run(options)
}

class SyncSession {
  readonly #c: SessionComponents
  readonly #init: SessionInit
  readonly #log: Logger
  readonly #stats: SessionStats
  /** This session's identity for claims (I4). */
  readonly #owner = {}
  readonly #idleMs: number
  #maxFrame: number
  #reconciler: ReconcileSession | undefined
  readonly #result: SessionResult = { received: 0, sent: 0, rejected: {}, bytesSent: 0, bytesReceived: 0, reconcileMessages: 0, reconcileBytes: 0, peerLacked: 0 }
  /** Asks for what this side lacks and stores the answers (phases 3 and 5; I2, I3, I4). */
  readonly #intake: Intake
  /** Wants received and not answered yet. */
  readonly #toServe: WantMessage[] = []
  #serveWake: (() => void) | undefined
  #peerDone = false
  #failed: Error | undefined
  /** When the session is idle unless the peer makes progress before (I5). */
  #idleAt = 0
  /** Frames that moved nothing since the last progress (I5). */
  #noops = 0
  /** Both sides offered the live phase (phase 5): made at the opening exchange, started after the transfer. */
  #live: LivePhase | undefined
  /** The peer sent `live`: its transfer is over. */
  #peerLive = false

  constructor (components: SessionComponents, init: SessionInit) {
    this.#c = components
    this.#init = init
    this.#log = (components.logger ?? silentLogger).child({ role: init.role, peer: init.peer })
    this.#stats = components.stats ?? noStats
    this.#maxFrame = init.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES
    this.#idleMs = init.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS
    const { peer, participants, refusals, admit, admitReadsStore, wantBatch, pipeline } = init
    this.#intake = new Intake({ session: this.#intakeHost(), db: components.db, claims: components.claims, logger: this.#log }, {
      peer, owner: this.#owner, participants, refusals, admit, admitReadsStore, wantBatch, pipeline, idleTimeoutMs: this.#idleMs
    })
  }

  async run (options: AbortOptions): Promise<SessionResult> {
    const { channel } = this.#c
    let reader: Promise<void> | undefined
    this.#progress()
    try {
      await this.#open(options)
      await this.#reconcile(options)
      // transfer: a reader dispatching frames, a server answering wants, a fetcher asking for what we lack
      reader = this.#read(options)
      const server = this.#serve(options)
      reader.catch(() => {})
      server.catch(() => {})
      await this.#intake.fetch(this.#init.direction === 'serve' ? [] : this.#rec.need.map((item) => item.id), options)
      await this.#rememberSeen()
      await server
      const live = this.#live
      if (live !== undefined) {
        // phase 5: instead of closing, say so and wait for the peer's end of its transfer
        await this.#send({ type: 'live' }, options)
        await reader
        if (this.#peerLive) {
          live.start(options)
          return this.#result
        }
      }
      // this side asked for everything and answered every want: end our writes, then wait for the peer's end
      await this.#bounded(options, async (signal) => { await channel.close({ signal }) })
      await reader
      return this.#result
    } catch (caught) {
      // an abort through the signal (share disabled, node stopping) reports its reason, not the stream's error
      const err = options.signal?.aborted === true ? options.signal.reason as Error : await this.#peerReason(caught as Error, reader)
      this.#fail(err)
      await this.#goodbye(err)
      throw err
    } finally {
      // claims still held (a failed want, a taken-over hash) are released for the other sessions
      this.#intake.releaseWants()
      // a session that did not go live stops following the served set
      if (this.#live?.started === false) this.#live.unfollow()
    }
  }

  /** The peer made progress: the idle deadline moves on and the no-op count restarts (I5). */
  #progress (): void {
    this.#idleAt = Date.now() + this.#idleMs
    this.#noops = 0
  }

  /** A frame that moved nothing: it does not move the idle deadline, and only a few are accepted (I5). */
  #noop (): void {
    if (++this.#noops > SESSION_MAX_NOOP_FRAMES) throw new SyncProtocolError('too many frames that move nothing')
  }

  /**
   * Runs `fn` with a signal that aborts at the idle deadline (SessionIdleError) or with the caller's signal (I5).
   */
  async #bounded<T> (options: AbortOptions, fn: (signal: AbortSignal) => Promise<T>, deadline = this.#idleAt): Promise<T> {
    const idle = new AbortController()
    const ms = Math.max(0, deadline - Date.now())
    const timer = setTimeout(() => { idle.abort(new SessionIdleError(`peer made no progress for ${this.#idleMs} ms`)) }, ms)
    const signal = options.signal === undefined ? idle.signal : AbortSignal.any([options.signal, idle.signal])
    try {
      return await fn(signal)
    } catch (err) {
      if (idle.signal.aborted && options.signal?.aborted !== true) throw idle.signal.reason as Error
      throw err
    } finally {
      clearTimeout(timer)
    }
  }

  /** Sends a frame; a peer that does not read for the idle timeout fails the session (I5). */
  async #send (message: SyncMessage, options: AbortOptions): Promise<void> {
    // a send in progress is this side's progress, not the peer's: it has its own full idle period
    await this.#bounded(options, async (signal) => { await this.#c.channel.send(message, { signal }) }, Date.now() + this.#idleMs)
  }

  /**
   * A failed write often means the peer ended the session, and its error frame may be waiting unread: give the
   * reader (or one receive) a moment to find it, so the failure carries the peer's code.
   */
  async #peerReason (err: Error, reader: Promise<void> | undefined): Promise<Error> {
    if (err instanceof SyncRemoteError || err instanceof SyncProtocolError || err instanceof ReconcileProtocolError || err instanceof SessionIdleError) return err
    const timer = new AbortController()
    const t = setTimeout(() => { timer.abort() }, PEER_REASON_WAIT_MS)
    try {
      if (reader !== undefined) {
        await Promise.race([reader, new Promise((resolve) => timer.signal.addEventListener('abort', resolve))])
      } else {
        const m = await this.#c.channel.receive({ signal: timer.signal })
        if (m !== undefined && isError(m)) return new SyncRemoteError(m.code, m.message)
      }
    } catch (found) {
      if (found instanceof SyncRemoteError) return found
    } finally {
      clearTimeout(t)
    }
    return this.#failed instanceof SyncRemoteError ? this.#failed : err
  }

  /**
   * Ends a failed session: for failures the peer should know about (a broken frame, a disabled share) an
   * error frame and a graceful close, bounded in time; otherwise (or if that fails) the channel is torn down.
   * The frame's text is fixed per failure: it carries no hash, id or count (I1).
   */
  async #goodbye (err: Error): Promise<void> {
    const { channel } = this.#c
    let code: SyncErrorCode | undefined
    let message = ''
    if (err instanceof ReconcileProtocolError) {
      code = 'PROTOCOL_ERROR'
      message = `invalid reconcile message (${err.reason})`
    } else if (err instanceof SyncProtocolError) {
      code = 'PROTOCOL_ERROR'
      message = 'unexpected or malformed frame'
    } else if (err instanceof ShareDisabledError) {
      code = 'SHARE_DISABLED'
      message = 'share is disabled'
    }
    if (code === undefined) {
      channel.abort(err)
      return
    }
    const timer = new AbortController()
    const t = setTimeout(() => { timer.abort() }, GOODBYE_TIMEOUT_MS)
    try {
      await channel.send({ type: 'error', code, message }, { signal: timer.signal })
      await channel.close({ signal: timer.signal })
    } catch {
      channel.abort(err)
    } finally {
      clearTimeout(t)
    }
  }

  /**
   * Receives the next frame, failing with SessionIdleError when the peer made no progress for the idle timeout
   * (a peer cannot hold a session open by saying nothing, nor by saying nothing useful: I5).
   */
  async #receive (options: AbortOptions): Promise<SyncMessage | undefined> {
    return await this.#bounded(options, async (signal) => await this.#c.channel.receive({ signal }))
  }

  async #recv (options: AbortOptions): Promise<SyncMessage> {
    const m = await this.#receive(options)
    if (m === undefined) throw new SyncProtocolError('peer closed the session early')
    if (isError(m)) throw new SyncRemoteError(m.code, m.message)
    return m
  }

  async #open (options: AbortOptions): Promise<void> {
    let peerCaps: readonly string[]
    if (this.#init.role === 'initiator') {
      if (this.#init.topic === undefined) throw new TypeError('an initiator needs a topic')
      await this.#send({ type: 'hello', topic: this.#init.topic, version: SYNC_PROTOCOL_VERSION, capabilities: this.#capabilities(true), maxFrameBytes: this.#maxFrame }, options)
      const m = await this.#recv(options)
      if (!isWelcome(m)) throw new SyncProtocolError(`expected welcome, got ${m.type}`)
      this.#progress()
      this.#maxFrame = Math.min(this.#maxFrame, m.maxFrameBytes)
      peerCaps = m.capabilities
      this.#agreeLive(peerCaps)
    } else {
      peerCaps = this.#init.peerCapabilities ?? []
      await this.#send({ type: 'welcome', version: SYNC_PROTOCOL_VERSION, capabilities: this.#capabilities(peerCaps.includes(LIVE_CAPABILITY)), maxFrameBytes: this.#maxFrame }, options)
      this.#maxFrame = Math.min(this.#maxFrame, this.#init.peerMaxFrameBytes ?? this.#maxFrame)
      this.#agreeLive(peerCaps)
    }
    // both sides now know both limits and both capability lists, so both pick the same reconciliation message size
    const large = peerCaps.includes(RECONCILE_LARGE_CAPABILITY)
    const wanted = this.#init.reconcileMessageBytes ?? (large ? RECONCILE_LARGE_MESSAGE_BYTES : DEFAULT_RECONCILE_MESSAGE_BYTES)
    const size = Math.min(wanted, this.#maxFrame - FRAME_OVERHEAD)
    this.#reconciler = this.#c.reconciler(this.#reconcileSet(), size)
  }

  /** What this side offers: the live phase only when asked to (and, for a responder, when the hello offered it). */
  #capabilities (offerLive: boolean): string[] {
    const caps: string[] = [...CAPABILITIES]
    if (this.#init.live !== undefined && offerLive) {
      caps.push(LIVE_CAPABILITY)
      if (this.#init.direction !== 'serve') caps.push(LIVE_ANNOUNCE_CAPABILITY)
    }
    return caps
  }

  /**
   * Both sides offered the live phase: from now on what enters the served set is noted (announced once the phase
   * starts, by hash only for what grew before it), if the peer wants announcements and this side serves.
   */
  #agreeLive (peerCaps: readonly string[]): void {
    const { live, direction, peer, refusals, peerHas } = this.#init
    if (live === undefined || !peerCaps.includes(LIVE_CAPABILITY)) return
    const { channel, db, served, claims, onLive } = this.#c
    this.#live = new LivePhase({ session: this.#liveHost(), channel, db, served, claims, stats: this.#stats, logger: this.#log, onLive }, {
      ...live,
      peer,
      owner: this.#owner,
      refusals,
      peerHas,
      sendsAnnouncements: direction !== 'receive' && peerCaps.includes(LIVE_ANNOUNCE_CAPABILITY),
      receivesAnnouncements: direction !== 'serve',
      maxFrameBytes: this.#maxFrame,
      idleTimeoutMs: this.#idleMs
    })
  }

  /** What the live phase shares with the transfer: this session lends it (phase 5). */
  #liveHost (): LiveHost {
    return {
      send: (message, options) => this.#send(message, options),
      close: (options) => this.#bounded(options, async (signal) => { await this.#c.channel.close({ signal }) }, Date.now() + this.#idleMs),
      progress: () => { this.#progress() },
      noop: () => { this.#noop() },
      onWant: (m) => { this.#onWant(m) },
      onChanges: (m) => this.#intake.onChanges(m),
      serve: (options) => {
        // the peer's transfer ended with its `want{done}`: in the live phase it asks again
        this.#peerDone = false
        return this.#serve(options)
      },
      endServe: () => {
        this.#peerDone = true
        this.#serveWake?.()
      },
      store: (wanted, frame) => this.#intake.store(wanted, frame),
      sent: (changes, bytes) => { this.#sent(changes, bytes) },
      expect: (hashes) => { this.#intake.expect(hashes) },
      outstanding: () => this.#intake.outstanding,
      drainStoring: () => this.#intake.drainStoring(),
      releaseWants: () => { this.#intake.releaseWants() },
      failed: () => this.#failed,
      fail: async (err) => {
        this.#fail(err)
        await this.#intake.settle()
      },
      end: async (err) => {
        this.#fail(err)
        await this.#goodbye(err)
      }
    }
  }

  /** What the intake shares with the rest of the session: this session lends it (phases 3 and 5). */
  #intakeHost (): IntakeHost {
    return {
      send: (message, options) => this.#send(message, options),
      progress: () => { this.#progress() },
      noop: () => { this.#noop() },
      arrived: () => { this.#idleAt = Math.max(this.#idleAt, Date.now() + this.#idleMs) },
      bounded: (options, fn, deadline) => this.#bounded(options, fn, deadline),
      failed: () => this.#failed,
      received: (changes, bytes) => {
        this.#result.received += changes
        this.#result.bytesReceived += bytes
        this.#stats.received(changes, bytes)
      },
      rejected: (code, hash) => {
        this.#result.rejected[code] = (this.#result.rejected[code] ?? 0) + 1
        this.#stats.rejected(code, hash)
      }
    }
  }

  /** The set reconciled over: the served set, or with direction `receive` only what the peer revealed (I1). */
  #reconcileSet (): ReconcileSet {
    if (this.#init.direction !== 'receive') return this.#c.served.index
    this.#c.seen ??= createReconcileSet()
    return this.#c.seen
  }

  get #rec (): ReconcileSession {
    if (this.#reconciler === undefined) throw new InternalError('reconciler used before the opening exchange')
    return this.#reconciler
  }

  /**
   * Direction `receive`: what the peer revealed, and this side now stores, is what later rounds reconcile over
   * (I1). Only stored hashes enter: one revealed here but fetched by no session (another session held its claim
   * and failed, or this one failed) stays out, so the next round asks for it again.
   */
  async #rememberSeen (): Promise<void> {
    if (this.#init.direction !== 'receive') return
    const seen = this.#reconcileSet()
    const need = this.#rec.need
    const stored = await this.#c.db.getStore().hasMany(need.map((item) => item.id))
    const added = need.filter((item, i) => stored[i] && seen.insert(item.timestamp, item.id))
    if (added.length > 0) await this.#c.onSeen?.(added)
  }

  /** Runs reconciliation until this side's reconciler is done (it knows then what the peer lacks and has). */
  async #reconcile (options: AbortOptions): Promise<void> {
    const reconciler = this.#rec
    if (this.#init.role === 'initiator') {
      // a change stored before this point is in the set reconciled: the served set follows the store through its
      // own queue, which is drained first
      this.#stats.reconciling?.()
      await this.#c.served.settled()
    }
    let out: Uint8Array | null = this.#init.role === 'initiator' ? reconciler.initiate() : null
    while (true) {
      if (out !== null) {
        await this.#send({ type: 'reconcile', data: out }, options)
        this.#result.reconcileMessages++
      }
      if (reconciler.done) {
        this.#result.reconcileBytes = reconciler.stats.bytesSent + reconciler.stats.bytesReceived
        // what the peer revealed it has is never announced back to it (phase 5)
        if (this.#init.direction !== 'serve') notePeerHas(this.#init.peerHas, reconciler.need.map((item) => item.id))
        this.#result.peerLacked = this.#init.direction === 'receive' ? 0 : reconciler.have.length
        this.#stats.reconciled?.(this.#result.peerLacked, this.#init.direction === 'serve' ? 0 : reconciler.need.length, this.#result.reconcileBytes)
        return
      }
      const m = await this.#recv(options)
      if (!isReconcile(m)) throw new SyncProtocolError(`expected reconcile, got ${m.type}`)
      this.#result.reconcileMessages++
      // the reconciler bounds its work and its messages (I6): each message it accepts is progress
      out = reconciler.reconcile(m.data)
      this.#progress()
    }
  }

  #fail (err: Error): void {
    this.#failed ??= err
    this.#intake.fail(err)
    this.#serveWake?.()
  }

  /** Reads frames until the peer closes: wants go to the server, changes to the oldest outstanding want. */
  async #read (options: AbortOptions): Promise<void> {
    try {
      while (true) {
        const m = await this.#receive(options)
        if (m === undefined) break
        if (isError(m)) throw new SyncRemoteError(m.code, m.message)
        if (isWant(m)) this.#onWant(m)
        else if (isChanges(m)) await this.#intake.onChanges(m)
        else if (isLive(m) && this.#live !== undefined && this.#peerDone && this.#intake.outstanding === 0) {
          // the peer's transfer is over; the live phase reads from here on (phase 5)
          this.#peerLive = true
          break
        } else throw new SyncProtocolError(`unexpected ${m.type} frame during transfer`)
      }
      if (!this.#peerDone || this.#intake.outstanding > 0) throw new SyncProtocolError('peer closed the session early')
    } catch (err) {
      this.#fail(err as Error)
      // a session ends with nothing of it still writing
      await this.#intake.settle()
      throw err
    } finally {
      this.#serveWake?.()
    }
  }

  #onWant (m: WantMessage): void {
    if (this.#peerDone) throw new SyncProtocolError('want after done')
    if (m.hashes.some((h) => h.length !== 32)) throw new SyncProtocolError('a wanted hash must have 32 bytes')
    if (m.hashes.length === 0 && !m.done) {
      this.#noop() // (I5)
      return
    }
    this.#progress()
    if (m.hashes.length > 0) {
      if (this.#toServe.length >= 8) throw new SyncProtocolError('too many wants in flight')
      this.#toServe.push(m)
    }
    if (m.done) this.#peerDone = true
    this.#serveWake?.()
  }

  /** Answers wants in order, from the served set only (I1), in frames below the frame limit (I3). */
  async #serve (options: AbortOptions): Promise<void> {
    const { db, served } = this.#c
    const mayServe = this.#init.direction !== 'receive'
    while (true) {
      if (this.#failed !== undefined) throw this.#failed
      const want = this.#toServe.shift()
      if (want === undefined) {
        if (this.#peerDone) return
        // woken by the reader: a want, the peer's done, or the session's failure (the reader's waits are bounded)
        await new Promise<void>((resolve) => { this.#serveWake = resolve })
        this.#serveWake = undefined
        continue
      }
      const hashes = want.hashes.map((h) => Buffer.from(h).toString('hex'))
      let frame: Uint8Array[] = []
      let frameBytes = 0
      // one batched read per want, of the bytes as stored: nothing decoded or re-encoded; the served-set check
      // needs only the hash (the key read) and the time (read from the bytes' header): only served changes go out (I1)
      const stored = mayServe ? await db.getStore().getEncodedMany(hashes, options) : []
      for (let i = 0; i < stored.length; i++) {
        const hash = hashes[i]
        const bytes = stored[i]
        if (bytes === undefined || !served.includes({ hash, time: readChangeTime(bytes) })) continue
        if (bytes.length + FRAME_OVERHEAD > this.#maxFrame) {
          this.#log.warn({ hash }, 'change larger than the frame limit; not sent')
          continue
        }
        if (frameBytes + bytes.length + FRAME_OVERHEAD > this.#maxFrame) {
          await this.#send({ type: 'changes', changes: frame, last: false }, options)
          frame = []
          frameBytes = 0
        }
        frame.push(bytes)
        frameBytes += bytes.length + 8
        this.#sent(1, bytes.length)
      }
      await this.#send({ type: 'changes', changes: frame, last: true }, options)
    }
  }

  /** Changes sent: counted in the result and the stats. */
  #sent (changes: number, bytes: number): void {
    this.#result.sent += changes
    this.#result.bytesSent += bytes
    this.#stats.sent(changes, bytes)
  }
}
