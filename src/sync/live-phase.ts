/**
 * The live phase of a sync session (phase 5 in session.ts: after both transfers the stream stays open, and each
 * side announces what enters its served set).
 *
 * The session makes a LivePhase once both sides agreed to it at the opening exchange: from then on, if this side
 * announces, what enters the served set is noted (to be announced by hash only: it grew before the phase).
 * `start` begins the phase once both transfers are over: a reader of the peer's frames (`announce`, `ack`, `want`,
 * `changes`), the session's server answering its wants, and flushes of what grew, one announcement
 * unacknowledged at a time. What the phase shares with the transfer (sending, storing answers and pushes,
 * serving wants, the counters, the session's failure) the session lends it through LiveHost; the rest of the
 * phase's state is its own.
 *
 * Invariant I7 of the session (I2 and I4 are in intake.ts, the others in session.ts), cited where enforced:
 * I7. Live: only hashes of the served set are announced or pushed (checked again when sent, I1); a pushed change
 *     goes through the same checks as an answer to a want (I2: it must be one of the announcement's hashes);
 *     pushes are bounded per change and per frame (PushLimitError), and wasted pushes (refused or already
 *     stored) by a token bucket (PushFloodError); an announcement of hashes this side has costs a lookup each,
 *     as a want does; a wait for an `ack` or an answer has the idle deadline, an idle live session with nothing
 *     outstanding may stay open.
 */
import type { MindooDB } from '../core/index.js'
import { PushFloodError, PushLimitError, SessionIdleError, SyncProtocolError, SyncRemoteError } from '../errors.js'
import {
  LIVE_MAX_ANNOUNCE_HASHES, LIVE_MAX_PENDING, LIVE_MAX_PUSH_BYTES, LIVE_MAX_PUSH_CHANGE_BYTES, LIVE_PEER_HAS_MAX,
  LIVE_WASTE_BURST, LIVE_WASTE_REFILL_PER_S
} from '../limits.js'
import { decodeChange, encodeChange, type ChangeHash } from '../store/change.js'
import type { AbortOptions } from '../store/types.js'
import type { Logger } from '../util/logger.js'
import type { WantClaims } from './claims.js'
import {
  FRAME_OVERHEAD, isAck, isAnnounce, isChanges, isError, isWant, type AnnounceMessage, type ChangesMessage,
  type MessageChannel, type SyncMessage, type WantMessage
} from './messages.js'
import type { Refusals } from './refusals.js'
import type { ServedSet } from './served-set.js'

/** Offers the live phase to a session (`SessionInit.live`). */
export interface LiveInit {
  /** This tenant's signing key: only its own changes are pushed; relayed ones are announced by hash. */
  ownAuthor: string
  /** The clock of the waste bucket (I7). Default Date.now. */
  now?: () => number
  /**
   * Ends the live phase (the share disabled, the node stopping). Default: the signal `run` was given; pass one
   * when that signal only bounds the run (a caller's deadline).
   */
  signal?: AbortSignal
}

/** A session in its live phase, as handed to `SessionComponents.onLive`. */
export interface LiveSession {
  /** Settles when the live phase ends: resolves when it ended gracefully, rejects with the reason otherwise. */
  readonly ended: Promise<void>
  /** Ends the live phase gracefully: nothing more is announced, and this side closes once its answers are sent. */
  close: () => void
}

/** Counters the live phase reports into (part of `SessionStats`). */
export interface LiveStats {
  /** The live phase started: what moves from now on moves on the long-lived session. */
  liveStarted?: () => void
  /** An announcement was sent (hashes in it, changes pushed with it) or received. */
  announced?: (direction: 'sent' | 'received', hashes: number, pushed: number) => void
}

/** What the session lends its live phase: the parts it shares with the transfer (phases 3 and 4). */
export interface LiveHost {
  /** Sends a frame; a peer that does not read for the idle timeout fails the session (I5). */
  send: (message: SyncMessage, options: AbortOptions) => Promise<void>
  /** Ends this side's writes, within the idle timeout. */
  close: (options: AbortOptions) => Promise<void>
  /** The peer made progress (I5). */
  progress: () => void
  /** A frame that moved nothing; too many end the session (I5). */
  noop: () => void
  /** A `want`: queued for the server. */
  onWant: (m: WantMessage) => void
  /** A `changes` frame: stored as (part of) the answer to the oldest outstanding want (I2). */
  onChanges: (m: ChangesMessage) => Promise<void>
  /** Answers the peer's wants from the served set only (I1), until `endServe`. */
  serve: (options: AbortOptions) => Promise<void>
  /** No more wants are taken: the server ends once it answered those queued. */
  endServe: () => void
  /**
   * Verifies, admits and stores the changes of `frame` that are among `wanted` (I2), taking them out of it; the
   * others are rejected. The claims of what it settles are released (I4). Returns how many were among `wanted`
   * (`taken`), and how many of those this call stored (`added`: not refused, and not stored before or meanwhile).
   */
  store: (wanted: Set<ChangeHash>, frame: Uint8Array[]) => Promise<{ taken: number, added: number }>
  /** Changes sent (into the result and the stats). */
  sent: (changes: number, bytes: number) => void
  /** A want for `hashes` (claimed) is about to be sent: its answer is taken like the transfer's. */
  expect: (hashes: ChangeHash[]) => void
  /** Wants sent and not fully answered. */
  outstanding: () => number
  /** Waits for the answer frames being stored; the first failure is thrown once all have settled. */
  drainStoring: () => Promise<void>
  /** Releases the claims of the wants not answered (I4). */
  releaseWants: () => void
  /** Why the session failed, if it did. */
  failed: () => Error | undefined
  /** The reader failed: fails the session, and settles once nothing of it is still writing. */
  fail: (err: Error) => Promise<void>
  /** Fails the session and tells the peer why, if it should know (an error frame, bounded in time). */
  end: (err: Error) => Promise<void>
}

export interface LivePhaseComponents {
  session: LiveHost
  /** The session's channel: the live phase reads it (it sends and closes through the session). */
  channel: Pick<MessageChannel, 'receive'>
  db: Pick<MindooDB, 'getStore'>
  served: Pick<ServedSet, 'includes' | 'onGrow'>
  claims: Pick<WantClaims, 'claim' | 'release'>
  stats: LiveStats
  logger: Logger
  /** Called when the phase starts. */
  onLive?: (live: LiveSession) => void
}

export interface LivePhaseInit extends LiveInit {
  /** The remote peer id (for refusals). */
  peer: string
  /** The session's identity for claims (I4). */
  owner: object
  /** Changes refused before for reasons tied to their bytes, per peer: not asked for again from that peer. */
  refusals?: Refusals
  /** Hashes the peer is known to have: never announced to it (see `SessionInit.peerHas`). */
  peerHas?: Set<ChangeHash>
  /** This side announces what enters its served set (it serves, and the peer wants announcements). */
  sendsAnnouncements: boolean
  /** This side is announced to (it receives). */
  receivesAnnouncements: boolean
  /** The frame limit both sides agreed on. */
  maxFrameBytes: number
  /** The deadline of a wait for the peer (an ack, an answer, its end), ms. */
  idleTimeoutMs: number
}

/** Notes hashes the peer has, so they are never announced to it; bounded, oldest dropped first. */
export function notePeerHas (has: Set<ChangeHash> | undefined, hashes: Iterable<ChangeHash>): void {
  if (has === undefined) return
  for (const h of hashes) {
    has.delete(h)
    has.add(h)
  }
  if (has.size <= LIVE_PEER_HAS_MAX) return
  let drop = has.size - LIVE_PEER_HAS_MAX
  for (const h of has) {
    if (drop-- <= 0) break
    has.delete(h)
  }
}

/** The hash of a change's bytes, or undefined when they are not a change (the store then says why). */
function hashOf (bytes: Uint8Array): ChangeHash | undefined {
  try {
    return decodeChange(bytes).hash
  } catch {
    return undefined
  }
}

/** Phase 5 of one session: made when both sides agreed to it, started when both transfers are over. */
export class LivePhase {
  readonly #c: LivePhaseComponents
  readonly #init: LivePhaseInit
  readonly #session: LiveHost
  #started = false
  /** Hashes that entered the served set and wait to be announced; true: may be pushed (grew during the live phase). */
  readonly #pending = new Map<ChangeHash, boolean>()
  /** Stops following the served set. */
  #off: (() => void) | undefined
  #flushScheduled = false
  #flushing: Promise<void> = Promise.resolve()
  #awaitingAck = false
  #closing: Promise<void> | undefined
  #server: Promise<void> = Promise.resolve()
  /** Aborts the live phase's reads: a missed deadline (I7) or a failure outside the reader. */
  readonly #abort = new AbortController()
  #timer: NodeJS.Timeout | undefined
  #waste = { tokens: LIVE_WASTE_BURST, at: 0 }
  /** More grew than LIVE_MAX_PENDING: the live phase ends as soon as it starts. */
  #overflowed = false
  /** The live phase's abort options (the caller's signal and #abort). */
  #options: AbortOptions = {}

  /** From now on what enters the served set is noted (announced once the phase starts, by hash only for what grew before it). */
  constructor (components: LivePhaseComponents, init: LivePhaseInit) {
    this.#c = components
    this.#init = init
    this.#session = components.session
    if (init.sendsAnnouncements) this.#off = components.served.onGrow((hashes) => { this.#grew(hashes) })
  }

  get started (): boolean {
    return this.#started
  }

  /** The session ends without going live: what enters the served set is no longer noted. */
  unfollow (): void {
    this.#off?.()
  }

  /** Starts phase 5: a live reader, the server answering the peer's wants, and the first flush. */
  start (options: AbortOptions): void {
    this.#started = true
    this.#c.stats.liveStarted?.()
    const outer = this.#init.signal ?? options.signal
    const signal = outer === undefined ? this.#abort.signal : AbortSignal.any([outer, this.#abort.signal])
    const live: AbortOptions = { signal }
    this.#options = live
    const reader = this.#read(live)
    this.#server = this.#session.serve(live)
    reader.catch(() => {})
    this.#server.catch(() => {})
    const ended = (async (): Promise<void> => {
      try {
        await reader
        await this.#close(live)
      } catch (caught) {
        const err = outer?.aborted === true ? outer.reason as Error : caught as Error
        await this.#session.end(err)
        throw err
      } finally {
        this.#off?.()
        clearTimeout(this.#timer)
        this.#session.releaseWants()
      }
    })()
    ended.catch(() => {})
    if (this.#overflowed) void this.#close(live).catch(() => {})
    this.#scheduleFlush()
    this.#c.onLive?.({ ended, close: () => { void this.#close(live).catch(() => {}) } })
  }

  /** Ends the live phase gracefully: no more announcements, the answers in progress go out, then this side closes. */
  async #close (options: AbortOptions): Promise<void> {
    this.#closing ??= (async () => {
      this.#off?.()
      this.#pending.clear()
      this.#session.endServe()
      this.#watch()
      await this.#server
      await this.#flushing
      await this.#session.close(options)
    })()
    await this.#closing
  }

  /** Reads the live phase's frames until the peer ends its side. */
  async #read (options: AbortOptions): Promise<void> {
    const session = this.#session
    try {
      while (true) {
        const m = await this.#c.channel.receive(options)
        if (m === undefined) break
        if (isError(m)) throw new SyncRemoteError(m.code, m.message)
        if (isChanges(m)) {
          await session.onChanges(m)
          this.#watch(true)
        } else if (this.#closing !== undefined) {
          // closing: announcements and wants are no longer answered; only our own wants' answers are taken
          session.noop()
        } else if (isAnnounce(m)) {
          await this.#onAnnounce(m, options)
        } else if (isAck(m)) {
          if (!this.#awaitingAck) throw new SyncProtocolError('ack without an announcement')
          this.#awaitingAck = false
          session.progress()
          this.#watch(true)
          this.#scheduleFlush()
        } else if (isWant(m) && !m.done) {
          session.onWant(m)
        } else {
          throw new SyncProtocolError(`unexpected ${m.type} frame in the live phase`)
        }
      }
      // the peer ended: what it did not answer is not being fetched any more (the next round asks again)
      await session.drainStoring()
      session.releaseWants()
    } catch (err) {
      await session.fail(err as Error)
      throw err
    } finally {
      session.endServe()
    }
  }

  /** An announcement: pushed changes are stored like answers (I2, I7), the rest it lacks asked for, then `ack`. */
  async #onAnnounce (m: AnnounceMessage, options: AbortOptions): Promise<void> {
    if (!this.#init.receivesAnnouncements) throw new SyncProtocolError('an announcement this side did not ask for')
    let pushedBytes = 0
    for (const c of m.changes) {
      if (c.length > LIVE_MAX_PUSH_CHANGE_BYTES) throw new PushLimitError(`a pushed change of ${c.length} bytes`)
      pushedBytes += c.length
    }
    if (pushedBytes > LIVE_MAX_PUSH_BYTES) throw new PushLimitError(`${pushedBytes} bytes pushed in one announcement`)
    this.#c.stats.announced?.('received', m.hashes.length, m.changes.length)
    const hashes = m.hashes.map((h) => Buffer.from(h).toString('hex'))
    notePeerHas(this.#init.peerHas, hashes)
    const store = this.#c.db.getStore()
    const { peer, refusals, owner } = this.#init
    // what may be pushed: the announcement's hashes this side lacks, less those refused from this peer before
    const offered = new Set<ChangeHash>()
    const stored = new Set<ChangeHash>()
    const candidates = hashes.filter((h) => refusals?.has(peer, h) !== true)
    const have = await store.hasMany(candidates)
    candidates.forEach((h, i) => { (have[i] ? stored : offered).add(h) })
    // claimed at once, so that a round running meanwhile waits for this announcement instead of asking too (I4);
    // a hash another session is fetching is left to it
    const { mine } = this.#c.claims.claim([...offered], owner)
    try {
      await this.#settleAnnounced(m, offered, stored, mine, options)
    } catch (err) {
      this.#c.claims.release(mine, owner)
      throw err
    }
    await this.#session.send({ type: 'ack' }, options)
    this.#session.progress()
  }

  /** Stores an announcement's pushes and asks for the rest this side lacks (its claims taken, `mine`). */
  async #settleAnnounced (m: AnnounceMessage, offered: Set<ChangeHash>, stored: Set<ChangeHash>, mine: ChangeHash[], options: AbortOptions): Promise<void> {
    const store = this.#c.db.getStore()
    if (m.changes.length > 0) {
      // an announced change this side has already is a late push (it came another way first, e.g. through a
      // relay that announced it sooner): skipped unverified and uncounted
      const fresh = m.changes.filter((bytes) => !stored.has(hashOf(bytes) ?? ''))
      // a push is an answer to a want for the announcement's hashes: the same checks, one by one (I2); the
      // store releases the claims of what it settles
      const pushed = new Set(offered)
      const { added } = await this.#session.store(pushed, fresh)
      // refused, unannounced or stored meanwhile: wasted (I7); counted from this call alone, so an answer frame
      // stored meanwhile does not hide waste
      this.#wasted(fresh.length - added)
      // what the push delivered (stored or refused) is settled
      for (const h of offered) {
        if (!pushed.has(h)) offered.delete(h)
      }
    }
    // the rest this side lacks is asked for in one want (claimed above); what arrived meanwhile is released
    const lacking: ChangeHash[] = []
    const settled: ChangeHash[] = []
    const have = await store.hasMany(mine)
    mine.forEach((h, i) => { (offered.has(h) && !have[i] ? lacking : settled).push(h) })
    this.#c.claims.release(settled, this.#init.owner)
    if (lacking.length > 0) {
      this.#session.expect(lacking)
      this.#watch()
      await this.#session.send({ type: 'want', hashes: lacking.map((h) => Buffer.from(h, 'hex')), done: false }, options)
    }
  }

  /** Takes tokens from the waste bucket (I7): a partner that wastes more than it allows is cut off. */
  #wasted (n: number): void {
    if (n <= 0) return
    const now = (this.#init.now ?? Date.now)()
    const w = this.#waste
    w.tokens = Math.min(LIVE_WASTE_BURST, w.tokens + (w.at === 0 ? 0 : (now - w.at) * LIVE_WASTE_REFILL_PER_S / 1000))
    w.at = now
    w.tokens -= n
    if (w.tokens < 0) throw new PushFloodError('too many pushed changes that were refused or already stored')
  }

  /** The served set grew: note what the peer does not have, to announce it (no echo: I7). */
  #grew (hashes: ChangeHash[]): void {
    if (this.#closing !== undefined || this.#session.failed() !== undefined) return
    const has = this.#init.peerHas
    for (const h of hashes) {
      // the peer sent or announced it: never back to it (kept: another session with the peer may ask too)
      if (has?.has(h) === true) continue
      this.#pending.set(h, this.#started)
    }
    if (this.#pending.size > LIVE_MAX_PENDING) {
      // a backlog this large moves cheaper by reconciliation: end the live phase (once it started: a transfer
      // in progress goes on), the owner resumes with a round
      this.#c.logger.info({ pending: this.#pending.size }, 'live backlog too large; ending the live phase')
      this.#pending.clear()
      this.#off?.()
      this.#overflowed = true
      if (this.#started) void this.#close(this.#options).catch(() => {})
      return
    }
    this.#scheduleFlush()
  }

  /** Flushes what grew on the next turn of the event loop, unless an announcement awaits its ack (bursts coalesce). */
  #scheduleFlush (): void {
    if (!this.#started || this.#flushScheduled || this.#awaitingAck || this.#pending.size === 0) return
    if (this.#closing !== undefined || this.#session.failed() !== undefined) return
    // one flush at a time: it ends by scheduling the next if more grew meanwhile
    this.#flushScheduled = true
    setImmediate(() => {
      this.#flushing = this.#flush().catch((err: unknown) => { this.#abort.abort(err) }).finally(() => {
        this.#flushScheduled = false
        this.#scheduleFlush()
      })
    })
  }

  /** Announces what grew since the last announcement: served-set changes only (I1, I7), the own small ones pushed. */
  async #flush (): Promise<void> {
    if (this.#awaitingAck || this.#closing !== undefined || this.#session.failed() !== undefined) return
    const batch: Array<[ChangeHash, boolean]> = []
    for (const entry of this.#pending) {
      batch.push(entry)
      this.#pending.delete(entry[0])
      if (batch.length >= LIVE_MAX_ANNOUNCE_HASHES) break
    }
    if (batch.length === 0) return
    const { db, served } = this.#c
    const changes = await db.getStore().getChanges(batch.map(([h]) => h))
    const hashes: Uint8Array[] = []
    const pushed: Uint8Array[] = []
    // the frame stays below both frame limits: hashes, then pushes within what is left
    let room = Math.min(LIVE_MAX_PUSH_BYTES, this.#init.maxFrameBytes - FRAME_OVERHEAD - batch.length * 40)
    let pushedBytes = 0
    for (let i = 0; i < changes.length; i++) {
      const change = changes[i]
      // checked again now: a document filter may have dropped it since it grew (I1)
      if (!served.includes(change)) continue
      hashes.push(Buffer.from(change.hash, 'hex'))
      if (!batch[i][1] || change.author !== this.#init.ownAuthor) continue
      const bytes = encodeChange(change)
      if (bytes.length > LIVE_MAX_PUSH_CHANGE_BYTES || bytes.length + 8 > room) continue
      pushed.push(bytes)
      room -= bytes.length + 8
      pushedBytes += bytes.length
    }
    if (hashes.length > 0) {
      this.#awaitingAck = true
      this.#watch()
      await this.#session.send({ type: 'announce', hashes, changes: pushed }, this.#options)
      this.#c.stats.announced?.('sent', hashes.length, pushed.length)
      if (pushed.length > 0) this.#session.sent(pushed.length, pushedBytes)
    }
  }

  /** Arms the deadline while this side waits for the peer (an ack, an answer, its end); disarms it otherwise (I7). */
  #watch (reset = false): void {
    const waiting = this.#awaitingAck || this.#session.outstanding() > 0 || this.#closing !== undefined
    if (reset || !waiting) {
      clearTimeout(this.#timer)
      this.#timer = undefined
    }
    if (waiting && this.#timer === undefined) {
      const ms = this.#init.idleTimeoutMs
      this.#timer = setTimeout(() => { this.#abort.abort(new SessionIdleError(`peer made no progress for ${ms} ms`)) }, ms)
    }
  }
}
