/**
 * The daemon's event stream: every event of the node (src/p2p/events.ts) and of the daemon itself (shares, keys,
 * partners, config reloads, documents changed) gets a sequence number and a time and is kept in a bounded ring
 * buffer. `since(cursor)` long-polls, Syncthing-style: it answers at once with the events after the cursor, or
 * waits (bounded) for the next one, and returns a new cursor to resume from.
 *
 * A cursor is `<run>-<seq>`: `run` is random per start of the daemon, so a cursor from a previous run, like one
 * whose events fell out of the buffer, is refused with EventsCursorStaleError (resync, then call without a cursor).
 *
 * @example
 * ```ts
 * const bus = new EventBus()
 * bus.publish('share.added', { share: 'orders' })
 * const { events, cursor } = await bus.since({ timeoutMs: 0 })
 * ```
 */
import { randomBytes } from 'node:crypto'
import { EventsCursorStaleError, InvalidParamsError } from '../errors.js'
import { EVENTS_BUFFER_SIZE, EVENTS_DEFAULT_TIMEOUT_MS, EVENTS_MAX_PER_CALL, EVENTS_MAX_TIMEOUT_MS } from './constants.js'

/** Every event type, with what its `data` holds (the README's event table says the same). */
export const EVENT_TYPES = [
  // from the node
  'partner.connected', 'partner.disconnected', 'session.accepted', 'session.refused', 'round.started',
  'round.finished', 'changes.rejected', 'relay.reservation', 'relay.refused',
  // from the daemon
  'share.added', 'share.updated', 'share.enabled', 'share.disabled', 'share.removed', 'partner.revoked',
  'key.created', 'key.imported', 'key.rotated', 'key.exported', 'config.reloaded', 'documents.changed',
  'materialise.backlog', 'audit.recovered', 'backup.created'
] as const

export type EventType = typeof EVENT_TYPES[number]

export interface DaemonEvent {
  /** Position in this run of the daemon, from 1, without gaps. */
  seq: number
  /** ISO 8601. */
  time: string
  type: EventType
  data: Record<string, unknown>
}

export interface SinceOptions {
  /** Where the last answer ended; omitted: from the oldest event still buffered, answered at once (no wait). */
  cursor?: string
  /** How long to wait for an event when there is none after the cursor, ms (0: answer at once). */
  timeoutMs?: number
  /** Only these types (the cursor still moves past the others). */
  types?: readonly string[]
  signal?: AbortSignal
}

export interface SinceResult {
  events: DaemonEvent[]
  /** Pass it to the next call. */
  cursor: string
  /** More events are buffered after this answer (call again at once). */
  more: boolean
}

export interface EventBusInit {
  /** Events kept. Default EVENTS_BUFFER_SIZE. */
  size?: number
  clock?: () => number
}

export type EventSubscriber = (event: DaemonEvent) => void

const CURSOR = /^([0-9a-f]{16})-(\d{1,15})$/

export class EventBus {
  /** Random per run: cursors of another run are stale. */
  readonly run = randomBytes(8).toString('hex')
  readonly #size: number
  readonly #clock: () => number
  readonly #buffer: DaemonEvent[] = []
  #seq = 0
  readonly #waiters = new Set<() => void>()
  readonly #subscribers = new Set<EventSubscriber>()
  #closed = false

  constructor (init: EventBusInit = {}) {
    this.#size = init.size ?? EVENTS_BUFFER_SIZE
    this.#clock = init.clock ?? Date.now
  }

  /** Adds an event (a no-op once closed); subscribers are called at once, then waiting `since` calls wake. */
  publish (type: EventType, data: Record<string, unknown>): DaemonEvent | undefined {
    if (this.#closed) return undefined
    const event: DaemonEvent = { seq: ++this.#seq, time: new Date(this.#clock()).toISOString(), type, data }
    this.#buffer.push(event)
    if (this.#buffer.length > this.#size) this.#buffer.splice(0, this.#buffer.length - this.#size)
    for (const s of this.#subscribers) s(event)
    this.#wake()
    return event
  }

  /** Calls `fn` for every event from now on; returns the function that stops it. */
  subscribe (fn: EventSubscriber): () => void {
    this.#subscribers.add(fn)
    return () => { this.#subscribers.delete(fn) }
  }

  /** The cursor of the newest event (where a caller that wants only new events starts). */
  get cursor (): string {
    return `${this.run}-${this.#seq}`
  }

  /** Wakes every waiting call (they answer with what they have) and takes no more events. */
  close (): void {
    this.#closed = true
    this.#wake()
  }

  /** Events after `cursor` (validated: InvalidParamsError, EventsCursorStaleError), waiting for one when there is none. */
  async since (options: SinceOptions = {}): Promise<SinceResult> {
    const timeoutMs = options.timeoutMs ?? EVENTS_DEFAULT_TIMEOUT_MS
    if (!Number.isInteger(timeoutMs) || timeoutMs < 0 || timeoutMs > EVENTS_MAX_TIMEOUT_MS) {
      throw new InvalidParamsError(`params.timeoutMs: must be an integer from 0 to ${EVENTS_MAX_TIMEOUT_MS}`)
    }
    const after = this.#parseCursor(options.cursor)
    const types = options.types === undefined ? undefined : new Set(options.types)
    // without a cursor the caller is (re)starting: it gets what is buffered and a cursor at once, never a wait
    return await this.#since(after, options.cursor === undefined ? 0 : timeoutMs, types, options.signal)
  }

  #parseCursor (cursor: string | undefined): number {
    const oldest = this.#buffer[0]?.seq ?? this.#seq + 1
    if (cursor === undefined) return oldest - 1
    const m = CURSOR.exec(cursor)
    if (m === null) throw new InvalidParamsError('params.cursor: not a cursor of events.since')
    const seq = Number(m[2])
    if (m[1] !== this.run) throw new EventsCursorStaleError('the cursor is from a previous run of the daemon: resync, then call events.since without a cursor')
    if (seq > this.#seq) throw new InvalidParamsError('params.cursor: names an event that does not exist yet')
    // the event right after the cursor must still be buffered
    if (seq < oldest - 1) throw new EventsCursorStaleError(`events after ${seq} fell out of the buffer (the oldest kept is ${oldest}): resync, then call events.since without a cursor`)
    return seq
  }

  async #since (after: number, timeoutMs: number, types: Set<string> | undefined, signal: AbortSignal | undefined): Promise<SinceResult> {
    const deadline = this.#clock() + timeoutMs
    while (true) {
      const answer = this.#collect(after, types)
      if (answer.events.length > 0 || this.#closed || signal?.aborted === true || this.#clock() >= deadline) return answer
      // nothing of interest yet: the cursor moves past what was filtered out, and we wait for the next event
      after = this.#seq
      await this.#wait(deadline - this.#clock(), signal)
      // the buffer may have moved past `after` while we waited (a burst larger than it): that is staleness too
      const oldest = this.#buffer[0]?.seq ?? this.#seq + 1
      if (after < oldest - 1) throw new EventsCursorStaleError('events fell out of the buffer while waiting: resync, then call events.since without a cursor')
    }
  }

  #collect (after: number, types: Set<string> | undefined): SinceResult {
    const events: DaemonEvent[] = []
    let last = after
    let more = false
    const start = this.#buffer.findIndex((e) => e.seq > after)
    if (start >= 0) {
      for (let i = start; i < this.#buffer.length; i++) {
        const e = this.#buffer[i]
        if (events.length === EVENTS_MAX_PER_CALL) {
          more = true
          break
        }
        last = e.seq
        if (types === undefined || types.has(e.type)) events.push(e)
      }
    }
    return { events, cursor: `${this.run}-${last}`, more }
  }

  async #wait (ms: number, signal: AbortSignal | undefined): Promise<void> {
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer)
        this.#waiters.delete(done)
        signal?.removeEventListener('abort', done)
        resolve()
      }
      const timer = setTimeout(done, Math.max(0, ms))
      this.#waiters.add(done)
      signal?.addEventListener('abort', done)
    })
  }

  #wake (): void {
    for (const w of [...this.#waiters]) w()
  }
}
