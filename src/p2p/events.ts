/**
 * What the node tells about itself as it runs: partners connecting and leaving, sessions accepted and refused,
 * rounds started and finished, changes rejected (aggregated per session). A small typed listener set: listeners
 * are called synchronously, in registration order, and a throwing listener is logged and ignored (it never breaks
 * the node). The daemon turns these into its event stream and audit trail.
 *
 * @example
 * ```ts
 * const off = node.events.on((e) => { if (e.type === 'session.refused') console.log(e.peerId, e.code) })
 * off()
 * ```
 */

/** A partner (of some share) connected or disconnected (any libp2p connection). */
export interface PartnerConnectionEvent {
  type: 'partner.connected' | 'partner.disconnected'
  peerId: string
  /** Shares that list the peer as a partner. */
  shares: string[]
}

/**
 * A sync session was accepted (`inbound`: this node authorised the partner's hello) or refused: by this node
 * (`inbound`, `code` is what it answered) or by the partner (`outbound`, `code` and `message` are the partner's,
 * clipped, and may hold anything).
 */
export interface SessionEvent {
  type: 'session.accepted' | 'session.refused'
  peerId: string
  /**
   * The share whose topic the hello named (also when the peer is no partner of it: the event stays on this node; the
   * peer is told NOT_AUTHORIZED either way); undefined when the topic is none of this node's.
   */
  share?: string
  direction: 'inbound' | 'outbound'
  code?: string
  message?: string
}

/** A round (one session with one partner on one share) started. */
export interface RoundStartedEvent {
  type: 'round.started'
  share: string
  peerId: string
  role: 'initiator' | 'responder'
}

/** A round finished: what moved, what was rejected, or why it failed. */
export interface RoundFinishedEvent {
  type: 'round.finished'
  share: string
  peerId: string
  role: 'initiator' | 'responder'
  ok: boolean
  sent: number
  received: number
  bytesSent: number
  bytesReceived: number
  /** Changes rejected in the round, by reason code. */
  rejected: Record<string, number>
  error?: { code: string, message: string }
}

/** Changes of one session that were rejected, counted per reason code (one event per session that had any). */
export interface ChangesRejectedEvent {
  type: 'changes.rejected'
  share: string
  peerId: string
  counts: Record<string, number>
}

/**
 * This node's reservation on a configured relay changed: `reserved` (partners can dial it through the relay, at
 * `addresses`), `lost` (it held one and no longer does; taken again with backoff), `failed` (a first failed attempt
 * after it held one or while it never had one; `code` and `message` say why). Not sent for every retry.
 */
export interface RelayReservationEvent {
  type: 'relay.reservation'
  relay: string
  peerId: string
  state: 'reserved' | 'lost' | 'failed'
  addresses?: string[]
  code?: string
  message?: string
}

/** The relay this node serves refused a peer that is no partner of its shares (a reservation or a hop). */
export interface RelayRefusedEvent {
  type: 'relay.refused'
  kind: 'reservation' | 'hop' | 'inbound-relayed'
  peerId: string
  destination?: string
}

export type NodeEvent = PartnerConnectionEvent | SessionEvent | RoundStartedEvent | RoundFinishedEvent | ChangesRejectedEvent |
  RelayReservationEvent | RelayRefusedEvent
export type NodeEventType = NodeEvent['type']
export type NodeEventListener = (event: NodeEvent) => void

/** Longest partner-supplied text (an error code or message) an event carries; the rest is cut. */
export const MAX_EVENT_TEXT = 256

/** Cuts a partner-supplied text to MAX_EVENT_TEXT characters (JSON encoding keeps control characters as data). */
export function clip (text: string, max = MAX_EVENT_TEXT): string {
  return text.length <= max ? text : text.slice(0, max - 1) + '…'
}

/** The node's listener set. */
export class NodeEvents {
  readonly #listeners = new Set<NodeEventListener>()
  readonly #onError: (err: unknown) => void

  constructor (onError: (err: unknown) => void = () => {}) {
    this.#onError = onError
  }

  /** Adds a listener; returns the function that removes it. */
  on (listener: NodeEventListener): () => void {
    this.#listeners.add(listener)
    return () => { this.#listeners.delete(listener) }
  }

  emit (event: NodeEvent): void {
    for (const listener of this.#listeners) {
      try {
        listener(event)
      } catch (err) {
        this.#onError(err)
      }
    }
  }
}
