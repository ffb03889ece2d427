/**
 * When rounds run: one decision for every reason a round may be wanted (a partner connected, the periodic
 * catch-up, a local change, a retry after failures, `syncNow`), with an injected clock so that it is tested
 * without sleeps.
 *
 * Rules (cited where enforced):
 * S1. One round at a time per partner and share. A request while one runs is answered by that round when its
 *     reconciliation has not begun yet and it succeeds (the round reconciles after the request, so it covers it);
 *     else the request makes exactly one more round after the running one (its callers get that round's result).
 * S2. A failed round (not a skipped one) backs off: the next automatic round is due after
 *     `min(backoffMax, backoffBase * 2^(failures-1)) * (0.5 + random())`; periodic and live triggers skip a
 *     partner until then, its retry timer runs it. A successful round (either direction) ends the backoff; a
 *     failed round that made progress (`progressed`: cut by a relay's limit after moving changes) is retried at
 *     the base delay, as a first failure.
 * S3. Live triggers run rounds only with connected partners, and coalesce: many triggers before the debounce
 *     delay passes make one round per partner.
 * S4. Nothing is scheduled for a disabled share or a stopped scheduler.
 * S5. A partner that connects gets one round, not one from each side (a session moves changes both ways): the
 *     side that dialled leads and runs it at once, unless a round with the partner runs already (most often the
 *     round that dialled: it covers the new connection); the side that was dialled runs it only if no session
 *     with the partner began within `connectGraceMs` (the dialler's round, or any other), and the partner is
 *     still connected.
 */
import { DEFAULT_BACKOFF_BASE_MS, DEFAULT_BACKOFF_MAX_MS, DEFAULT_CONNECT_GRACE_MS, DEFAULT_LIVE_DEBOUNCE_MS } from './constants.js'

/** Time and timers, injected so that tests can drive them. */
export interface Clock {
  now: () => number
  setTimeout: (fn: () => void, ms: number) => unknown
  clearTimeout: (handle: unknown) => void
  setInterval: (fn: () => void, ms: number) => unknown
  clearInterval: (handle: unknown) => void
}

/** The process's clock; its timers do not keep the process alive. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (h) => { clearTimeout(h as NodeJS.Timeout) },
  setInterval: (fn, ms) => setInterval(fn, ms).unref(),
  clearInterval: (h) => { clearInterval(h as NodeJS.Timeout) }
}

/** What the scheduler keeps per partner and share (the node's partner state extends it). */
export interface ScheduledPartner {
  peerId: string
  /** Consecutive failed rounds (S2). */
  failures: number
  /** While backing off: when the next automatic round is due, ms since the epoch (S2). */
  retryAt?: number
  running?: Promise<ScheduledResult>
  /** The running round's reconciliation has begun (set by the round, S1). */
  reconciling?: boolean
  again: boolean
  retryTimer?: unknown
  /** The round this side runs after a connection if the partner starts none (S5). */
  connectTimer?: unknown
  /** When the last session with the partner began, either side's (S5). */
  sessionAt?: number
}

/** What the scheduler keeps per share. */
export interface ScheduledShare<P extends ScheduledPartner> {
  readonly partners: ReadonlyMap<string, P>
  liveTimer?: unknown
}

/** The outcome of a round, as far as scheduling cares. */
export interface ScheduledResult {
  ok: boolean
  /** No round was run (nothing to dial): neither a success nor a failure. */
  skipped?: boolean
  /** A failed round that moved changes before it was cut (a relay's limit): retried at the base delay (S2). */
  progressed?: boolean
}

export interface RoundSchedulerComponents<S extends ScheduledShare<P>, P extends ScheduledPartner, R extends ScheduledResult> {
  clock?: Clock
  /** Jitter source in [0, 1). Default Math.random. */
  random?: () => number
  /** Runs one round with one partner. */
  run: (share: S, partner: P, options: { signal?: AbortSignal }) => Promise<R>
  /** The result of a round that was not run because the share is disabled or the scheduler stopped (S4). */
  notRun: (share: S, partner: P) => R
  enabled: (share: S) => boolean
  connected: (peerId: string) => boolean
  /** Whether live triggers should skip this partner (it is kept in sync another way, e.g. a live session). */
  liveCovered?: (share: S, partner: P) => boolean
}

export interface RoundSchedulerInit {
  /** Default DEFAULT_BACKOFF_BASE_MS. */
  backoffBaseMs?: number
  /** Default DEFAULT_BACKOFF_MAX_MS. */
  backoffMaxMs?: number
  /** Default DEFAULT_LIVE_DEBOUNCE_MS. */
  liveDebounceMs?: number
  /** Periodic catch-up interval, ms; 0 disables. Default 0 (the node passes its own). */
  intervalMs?: number
  /** Default DEFAULT_CONNECT_GRACE_MS (S5). */
  connectGraceMs?: number
}

export class RoundScheduler<S extends ScheduledShare<P>, P extends ScheduledPartner, R extends ScheduledResult> {
  readonly #c: RoundSchedulerComponents<S, P, R>
  readonly #clock: Clock
  readonly #random: () => number
  readonly #init: RoundSchedulerInit
  #interval: unknown
  #started = false
  #shares: () => Iterable<S> = () => []

  constructor (components: RoundSchedulerComponents<S, P, R>, init: RoundSchedulerInit = {}) {
    this.#c = components
    this.#clock = components.clock ?? systemClock
    this.#random = components.random ?? Math.random
    this.#init = init
  }

  get clock (): Clock {
    return this.#clock
  }

  /** Starts the periodic catch-up over `shares()` (a second start is harmless). */
  start (shares: () => Iterable<S>): void {
    if (this.#started) return
    this.#started = true
    this.#shares = shares
    const ms = this.#init.intervalMs ?? 0
    if (ms > 0) this.#interval = this.#clock.setInterval(() => { this.periodic() }, ms)
  }

  stop (): void {
    if (!this.#started) return
    this.#started = false
    this.#clock.clearInterval(this.#interval)
    this.#interval = undefined
    for (const s of this.#shares()) this.forget(s)
  }

  /** Clears a share's timers (it is being removed or the node stops). */
  forget (share: S): void {
    this.#clock.clearTimeout(share.liveTimer)
    share.liveTimer = undefined
    for (const p of share.partners.values()) {
      this.#clock.clearTimeout(p.retryTimer)
      this.#clock.clearTimeout(p.connectTimer)
      p.retryTimer = p.connectTimer = undefined
    }
  }

  /** The partner connected: a round now if this side leads, else one later if the partner starts none (S5). */
  connected (share: S, p: P, leads: boolean): void {
    if (!this.#started || !this.#c.enabled(share)) return // (S4)
    if (leads) {
      if (p.running === undefined) void this.request(share, p)
      return
    }
    const at = this.#clock.now()
    this.#clock.clearTimeout(p.connectTimer)
    p.connectTimer = this.#clock.setTimeout(() => {
      p.connectTimer = undefined
      if ((p.sessionAt ?? -Infinity) >= at || p.running !== undefined || !this.#c.connected(p.peerId)) return
      void this.request(share, p)
    }, this.#init.connectGraceMs ?? DEFAULT_CONNECT_GRACE_MS)
  }

  /** A session with the partner began, started by either side (S5); a round skipped for want of a connection is none. */
  began (p: P): void {
    p.sessionAt = this.#clock.now()
  }

  /** The periodic catch-up: a round with every partner not backing off (S2). */
  periodic (): void {
    const now = this.#clock.now()
    for (const s of this.#shares()) {
      if (!this.#c.enabled(s)) continue
      for (const p of s.partners.values()) {
        if (p.retryAt === undefined || p.retryAt <= now) void this.request(s, p)
      }
    }
  }

  /** The share's served set grew: rounds with its connected partners, after the debounce delay (S3). */
  live (share: S): void {
    if (share.liveTimer !== undefined || !this.#started || !this.#c.enabled(share)) return
    share.liveTimer = this.#clock.setTimeout(() => {
      share.liveTimer = undefined
      const now = this.#clock.now()
      for (const p of share.partners.values()) {
        if (this.#c.liveCovered?.(share, p) === true) continue
        // a partner in backoff after failures is retried by its timer, not by every local change (S2)
        if (this.#c.connected(p.peerId) && (p.retryAt === undefined || p.retryAt <= now)) void this.request(share, p)
      }
    }, this.#init.liveDebounceMs ?? DEFAULT_LIVE_DEBOUNCE_MS)
  }

  /** A round with the partner now, or after the one running (S1). */
  async request (share: S, p: P, options: { signal?: AbortSignal } = {}): Promise<R> {
    if (!this.#started || !this.#c.enabled(share)) return this.#c.notRun(share, p) // (S4)
    if (p.running !== undefined) {
      if (p.reconciling !== true) {
        // (S1) a round that has not begun reconciling covers this request, unless it fails
        const joined = await (p.running as Promise<R>)
        if (joined.ok || joined.skipped === true) return joined
        return await this.request(share, p, options)
      }
      p.again = true
      await p.running.catch(() => {})
      return await ((p.running as Promise<R> | undefined) ?? this.request(share, p, options))
    }
    const run = this.#run(share, p, options).finally(() => {
      p.running = undefined
      if (p.again) {
        p.again = false
        void this.request(share, p)
      }
    })
    p.running = run
    return await run
  }

  /** A session with the partner worked (also one it started): its backoff ends (S2). */
  succeeded (p: P): void {
    p.failures = 0
    p.retryAt = undefined
    this.#clock.clearTimeout(p.retryTimer)
    p.retryTimer = undefined
  }

  async #run (share: S, p: P, options: { signal?: AbortSignal }): Promise<R> {
    this.#clock.clearTimeout(p.retryTimer)
    p.retryTimer = undefined
    p.reconciling = false // (S1) until this round begins reconciling
    const result = await this.#c.run(share, p, options)
    if (result.ok) {
      this.succeeded(p)
    } else if (result.skipped !== true) {
      if (result.progressed === true) p.failures = 0 // (S2) it made progress: the base delay again
      p.failures++
      this.#retry(share, p)
    }
    return result
  }

  /** Schedules the retry after a failure (S2). */
  #retry (share: S, p: P): void {
    if (!this.#started || !this.#c.enabled(share)) return
    const base = this.#init.backoffBaseMs ?? DEFAULT_BACKOFF_BASE_MS
    const max = this.#init.backoffMaxMs ?? DEFAULT_BACKOFF_MAX_MS
    const delay = Math.min(max, base * 2 ** Math.min(p.failures - 1, 30)) * (0.5 + this.#random())
    p.retryAt = this.#clock.now() + delay
    this.#clock.clearTimeout(p.retryTimer)
    p.retryTimer = this.#clock.setTimeout(() => {
      p.retryTimer = undefined
      void this.request(share, p)
    }, delay)
  }
}
