/**
 * The messages of the sync protocol, as a union on `type`, transport-free. The p2p layer encodes them as
 * length-prefixed protobuf frames; tests pass them through an in-memory channel.
 */
import { InternalError, SyncProtocolError, SyncRemoteError } from '../errors.js'
import type { AbortOptions } from '../store/types.js'

/**
 * Protocol version spoken here. 2 since issue 8: reconciliation messages of format version 2 (packed range heads,
 * short fingerprints); a version-1 peer is refused at the hello with VERSION_UNSUPPORTED instead of reconciling.
 */
export const SYNC_PROTOCOL_VERSION = 2
/**
 * Offered by a side that accepts reconciliation messages of RECONCILE_LARGE_MESSAGE_BYTES: when both offer it,
 * both use that size (else 64 KiB), so a large difference (a cold sync) takes a few round trips, not one per
 * 64 KiB of ids.
 */
export const RECONCILE_LARGE_CAPABILITY = 'reconcile/large'
/** Capabilities this implementation offers. */
export const CAPABILITIES = ['reconcile/rbsr-2', 'want/batch', RECONCILE_LARGE_CAPABILITY] as const
/**
 * Offered in a hello or welcome by a side that wants this session to stay open after its transfer (the live
 * phase: `live`, `announce`, `ack`); the session goes live only when both sides offer it.
 */
export const LIVE_CAPABILITY = 'live/1'
/** Offered with LIVE_CAPABILITY by a side that wants announcements (its direction receives). */
export const LIVE_ANNOUNCE_CAPABILITY = 'live/announce'

/** Error codes carried in `error` frames (stable; listed in the README). */
export type SyncErrorCode =
  | 'NOT_AUTHORIZED' // unknown topic, or the peer is not a partner of the share
  | 'SHARE_DISABLED' // a partner, but the share is disabled here
  | 'VERSION_UNSUPPORTED'
  | 'PROTOCOL_ERROR' // a malformed, oversized or unexpected frame
  | 'INTERNAL'

export interface HelloMessage {
  type: 'hello'
  /** The share's topic id (derived from the topic secret). */
  topic: Uint8Array
  version: number
  capabilities: string[]
  /** Largest frame this side accepts. */
  maxFrameBytes: number
}

export interface WelcomeMessage {
  type: 'welcome'
  version: number
  capabilities: string[]
  maxFrameBytes: number
}

export interface ErrorMessage {
  type: 'error'
  code: SyncErrorCode
  message: string
}

export interface ReconcileMessage {
  type: 'reconcile'
  data: Uint8Array
}

/** Asks for changes by hash; `done` says the sender will ask for nothing more in this session. */
export interface WantMessage {
  type: 'want'
  hashes: Uint8Array[]
  done: boolean
}

/** Answers one want, possibly in several frames; the last has `last: true`. Changes are canonical bytes. */
export interface ChangesMessage {
  type: 'changes'
  changes: Uint8Array[]
  last: boolean
}

/**
 * Live phase: the sender has finished its transfer (asked for everything, answered every want) and keeps the
 * stream open for announcements. Both sides send it once, in place of closing.
 */
export interface LiveMessage {
  type: 'live'
}

/**
 * Live phase: changes that entered the sender's served set, by hash; some may be pushed with it (canonical
 * bytes, each one's hash among `hashes`). The receiver asks for the others it lacks with a `want`, then `ack`s.
 * At most one announcement is unacknowledged at a time.
 */
export interface AnnounceMessage {
  type: 'announce'
  hashes: Uint8Array[]
  changes: Uint8Array[]
}

/** Live phase: the answer to one `announce` (sent after the `want` for what it lacked, if any). */
export interface AckMessage {
  type: 'ack'
}

export type SyncMessage = HelloMessage | WelcomeMessage | ErrorMessage | ReconcileMessage | WantMessage | ChangesMessage | LiveMessage | AnnounceMessage | AckMessage
export type SyncMessageType = SyncMessage['type']

export const isHello = (m: SyncMessage): m is HelloMessage => m.type === 'hello'
export const isWelcome = (m: SyncMessage): m is WelcomeMessage => m.type === 'welcome'
export const isError = (m: SyncMessage): m is ErrorMessage => m.type === 'error'
export const isReconcile = (m: SyncMessage): m is ReconcileMessage => m.type === 'reconcile'
export const isWant = (m: SyncMessage): m is WantMessage => m.type === 'want'
export const isChanges = (m: SyncMessage): m is ChangesMessage => m.type === 'changes'
export const isLive = (m: SyncMessage): m is LiveMessage => m.type === 'live'
export const isAnnounce = (m: SyncMessage): m is AnnounceMessage => m.type === 'announce'
export const isAck = (m: SyncMessage): m is AckMessage => m.type === 'ack'

/** Bytes kept free below a frame limit for the frame's encoding around its content. */
export const FRAME_OVERHEAD = 64

/**
 * A bidirectional, ordered channel of sync messages (one libp2p stream in production). `receive` resolves
 * `undefined` when the peer closed its side.
 */
export interface MessageChannel {
  send: (message: SyncMessage, options?: AbortOptions) => Promise<void>
  receive: (options?: AbortOptions) => Promise<SyncMessage | undefined>
  /** Ends this side's writes; the peer's `receive` then resolves undefined. */
  close: (options?: AbortOptions) => Promise<void>
  /** Tears the channel down at once. */
  abort: (err: Error) => void
}

export { SyncProtocolError, SyncRemoteError }

/**
 * Two connected in-memory channels, for tests of the session without sockets. `capacity` bounds how many
 * messages may wait unread in each direction (a full channel makes `send` wait: backpressure).
 */
export function createChannelPair (capacity = 16): [MessageChannel, MessageChannel] {
  const a = new QueueEnd(capacity)
  const b = new QueueEnd(capacity)
  a.peer = b
  b.peer = a
  return [a, b]
}

type Waiter = (m: SyncMessage | undefined) => void

class QueueEnd implements MessageChannel {
  peer!: QueueEnd
  readonly #capacity: number
  readonly #inbox: Array<SyncMessage | undefined> = []
  readonly #readers: Waiter[] = []
  readonly #spaceWaiters: Waiter[] = []
  #closed = false
  #aborted: Error | undefined

  constructor (capacity: number) {
    this.#capacity = capacity
  }

  async send (message: SyncMessage, options: AbortOptions = {}): Promise<void> {
    if (this.#aborted !== undefined) throw this.#aborted
    if (this.#closed) throw new InternalError('channel closed for writing')
    while (this.peer.#inbox.length >= this.#capacity) {
      await waitIn(this.peer.#spaceWaiters, options)
      if (this.#aborted !== undefined) throw this.#aborted
    }
    this.peer.#deliver(message)
  }

  async receive (options: AbortOptions = {}): Promise<SyncMessage | undefined> {
    if (this.#aborted !== undefined) throw this.#aborted
    options.signal?.throwIfAborted()
    if (this.#inbox.length > 0) {
      const m = this.#inbox.shift()
      this.#spaceWaiters.shift()?.(undefined)
      return m
    }
    return await waitIn(this.#readers, options)
  }

  async close (): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.peer.#deliver(undefined)
  }

  abort (err: Error): void {
    this.#aborted = err
    this.peer.#aborted = err
    for (const end of [this, this.peer]) {
      for (const r of end.#readers.splice(0)) r(undefined)
      for (const w of end.#spaceWaiters.splice(0)) w(undefined)
    }
  }

  #deliver (message: SyncMessage | undefined): void {
    const reader = this.#readers.shift()
    if (reader !== undefined) reader(message)
    else this.#inbox.push(message)
  }
}

/** Queues a waiter in `list` and waits for it to be called, or fails with the signal's reason (then it leaves the list). */
async function waitIn (list: Waiter[], options: AbortOptions): Promise<SyncMessage | undefined> {
  const signal = options.signal
  signal?.throwIfAborted()
  const { promise, resolve, reject } = Promise.withResolvers<SyncMessage | undefined>()
  const waiter: Waiter = resolve
  list.push(waiter)
  const onAbort = (): void => {
    const at = list.indexOf(waiter)
    if (at !== -1) list.splice(at, 1)
    reject(signal?.reason)
  }
  signal?.addEventListener('abort', onAbort, { once: true })
  try {
    return await promise
  } finally {
    signal?.removeEventListener('abort', onAbort)
  }
}
