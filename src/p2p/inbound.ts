/**
 * Inbound authorisation: an inbound sync stream holds one of a bounded number of "not yet authorised" slots
 * (per peer and in total) until its hello is read (small frames only, within HELLO_TIMEOUT_MS) and checked: the
 * topic must be a share's, the peer one of its partners, the share enabled and the version spoken here. Only
 * then is the stream handed to a session, with the session's frame limit.
 */
import type { Connection, Stream } from '@libp2p/interface'
import { SessionRefusedError, TimeoutError, TooManySessionsError } from '../errors.js'
import { SYNC_PROTOCOL_VERSION, SyncProtocolError, isHello, type SyncErrorCode } from '../sync/messages.js'
import type { Logger } from '../util/logger.js'
import { streamChannel, type StreamChannel } from './channel.js'
import { HELLO_TIMEOUT_MS, MAX_HELLO_FRAME_BYTES, MAX_PENDING_SESSIONS, MAX_PENDING_SESSIONS_PER_PEER } from './constants.js'
import type { NodeEvents } from './events.js'
import type { ShareRuntime } from './shares.js'

/** Runs `fn` with a signal that aborts after `ms` or with `parent`; the timer is cleared when `fn` settles. */
export async function withTimeout<T> (ms: number, parent: AbortSignal, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController()
  const timer = setTimeout(() => { controller.abort(new TimeoutError(`timed out after ${ms} ms`)) }, ms)
  try {
    return await fn(AbortSignal.any([controller.signal, parent]))
  } finally {
    clearTimeout(timer)
  }
}

/** An inbound stream whose hello was authorised. */
export interface AuthorisedInbound {
  remote: string
  rt: ShareRuntime
  channel: StreamChannel
  /** The frame limit the hello declared. */
  peerMaxFrameBytes: number
  /** The capabilities the hello offered. */
  capabilities: string[]
}

export interface InboundGateComponents {
  /** The share with this topic id (hex), if any. */
  byTopic: (topicKey: string) => ShareRuntime | undefined
  events: NodeEvents
  logger: Logger
  /** Aborts when the node stops. */
  stopping: () => AbortSignal
}

export interface InboundGateInit {
  maxFrameBytes: number
  /** Default MAX_PENDING_SESSIONS. */
  maxPendingSessions?: number
  /** Default MAX_PENDING_SESSIONS_PER_PEER. */
  maxPendingSessionsPerPeer?: number
}

export class InboundGate {
  readonly #c: InboundGateComponents
  readonly #init: InboundGateInit
  /** Inbound sync streams whose hello is not authorised yet, per peer, and their total. */
  readonly #pending = new Map<string, number>()
  #pendingTotal = 0

  constructor (components: InboundGateComponents, init: InboundGateInit) {
    this.#c = components
    this.#init = init
  }

  /** Streams not yet authorised, in total. */
  get pending (): number {
    return this.#pendingTotal
  }

  /**
   * Authorises an inbound stream: resolves with the session's share and channel, or undefined once the stream
   * was refused (with an error frame) or reset.
   */
  async accept (stream: Stream, connection: Connection): Promise<AuthorisedInbound | undefined> {
    const remote = connection.remotePeer.toString()
    // bounded before authorisation: over the caps the stream is reset before a byte of it is read
    const pendingOfPeer = this.#pending.get(remote) ?? 0
    if (this.#pendingTotal >= (this.#init.maxPendingSessions ?? MAX_PENDING_SESSIONS) ||
      pendingOfPeer >= (this.#init.maxPendingSessionsPerPeer ?? MAX_PENDING_SESSIONS_PER_PEER)) {
      this.#c.logger.warn({ peer: remote, pending: pendingOfPeer, total: this.#pendingTotal }, 'too many sync streams not yet authorised; reset')
      stream.abort(new TooManySessionsError('too many sync streams not yet authorised'))
      return undefined
    }
    this.#pending.set(remote, pendingOfPeer + 1)
    this.#pendingTotal++
    try {
      return await this.#hello(stream, remote)
    } finally {
      this.#pendingTotal--
      const left = (this.#pending.get(remote) ?? 1) - 1
      if (left > 0) this.#pending.set(remote, left)
      else this.#pending.delete(remote)
    }
  }

  /** Reads and checks the hello while the stream holds a pending slot. */
  async #hello (stream: Stream, remote: string): Promise<AuthorisedInbound | undefined> {
    const { events, logger } = this.#c
    const maxFrame = this.#init.maxFrameBytes
    // until the hello is authorised the peer is unknown on the topic: a few KiB only
    const channel = streamChannel(stream, { maxFrameBytes: maxFrame, receiveLimit: Math.min(MAX_HELLO_FRAME_BYTES, maxFrame) })
    let rt: ShareRuntime | undefined
    const refuse = async (code: SyncErrorCode, message: string): Promise<undefined> => {
      logger.warn({ peer: remote, code }, 'sync session refused')
      events.emit({ type: 'session.refused', peerId: remote, ...(rt === undefined ? {} : { share: rt.config.id }), direction: 'inbound', code })
      try {
        await withTimeout(HELLO_TIMEOUT_MS, this.#c.stopping(), async (signal) => {
          await channel.send({ type: 'error', code, message }, { signal })
          await channel.close({ signal })
        })
      } catch {
        stream.abort(new SessionRefusedError(code))
      }
      return undefined
    }
    try {
      const hello = await withTimeout(HELLO_TIMEOUT_MS, this.#c.stopping(), async (signal) => await channel.receive({ signal }))
      if (hello === undefined || !isHello(hello)) return await refuse('PROTOCOL_ERROR', 'expected hello')
      rt = this.#c.byTopic(Buffer.from(hello.topic).toString('hex'))
      // the same answer for an unknown topic and for a peer that is not a partner: nothing is revealed
      if (rt === undefined || !rt.partners.has(remote)) return await refuse('NOT_AUTHORIZED', 'not a partner of this topic')
      if (!rt.config.enabled) return await refuse('SHARE_DISABLED', 'share is disabled')
      if (hello.version !== SYNC_PROTOCOL_VERSION) return await refuse('VERSION_UNSUPPORTED', `version ${SYNC_PROTOCOL_VERSION} only`)
      channel.setReceiveLimit(maxFrame)
      events.emit({ type: 'session.accepted', peerId: remote, share: rt.config.id, direction: 'inbound' })
      return { remote, rt, channel, peerMaxFrameBytes: hello.maxFrameBytes, capabilities: hello.capabilities }
    } catch (err) {
      if (err instanceof SyncProtocolError) await refuse('PROTOCOL_ERROR', err.message)
      else stream.abort(err as Error)
      return undefined
    }
  }
}
