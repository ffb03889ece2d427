/**
 * A raw sync stream for hostile-peer tests: opens `/mindoodb/sync/1.0.0` from a test node's libp2p to another
 * node and lets the test write whatever bytes it likes (well-formed frames or not) and read the peer's frames
 * one by one, with the raw bytes of each, until the peer ends or resets the stream.
 */
import type { Stream } from '@libp2p/interface'
import { byteStream, type ByteStream } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import * as varint from 'uint8-varint'
import { Uint8ArrayList } from 'uint8arraylist'
import { decodeFrame, encodeFrame } from '../../src/p2p/codec.js'
import { SYNC_PROTOCOL } from '../../src/p2p/constants.js'
import { createInitiator, createReconcileSet, type ReconcileItem } from '../../src/sync/reconcile/index.js'
import { CAPABILITIES, SYNC_PROTOCOL_VERSION, type SyncMessage } from '../../src/sync/messages.js'
import type { TestOrg } from './orgs.js'
import { rawNodeOf, type RawLibp2p } from './raw-node.js'

/** What the peer did next: sent a frame, ended its writes cleanly, or reset/aborted the stream. */
export type RawEvent =
  | { kind: 'frame', message: SyncMessage, bytes: Uint8Array }
  | { kind: 'end' }
  | { kind: 'reset', error: Error }

/** The reconciliation message size both sides pick when both keep the default 4 MiB frame limit. */
export const RECONCILE_MESSAGE_BYTES = 64 * 1024
const FRAME_LIMIT = 4 * 1024 * 1024

export class RawPeer {
  readonly stream: Stream
  readonly #bytes: ByteStream<Stream>
  readonly #buffer = new Uint8ArrayList()
  /** Every frame received so far, raw (without the length prefix). */
  readonly received: Uint8Array[] = []

  constructor (stream: Stream) {
    this.stream = stream
    this.#bytes = byteStream(stream, { maxBufferSize: FRAME_LIMIT * 2 })
  }

  /** Writes bytes as they are (no length prefix added). */
  async sendRaw (bytes: Uint8Array): Promise<void> {
    await this.#bytes.write(bytes, { signal: AbortSignal.timeout(5000) })
  }

  /** Writes one length-prefixed frame whose body is `body` (any bytes). */
  async sendBody (body: Uint8Array): Promise<void> {
    await this.sendRaw(new Uint8ArrayList(varint.encode(body.length), body).subarray())
  }

  /** Writes one well-formed frame. */
  async send (message: SyncMessage): Promise<void> {
    await this.sendBody(encodeFrame(message))
  }

  /** A hello for the topic with this implementation's version, capabilities and the default frame limit. */
  async hello (topic: Uint8Array): Promise<void> {
    await this.send({ type: 'hello', topic, version: SYNC_PROTOCOL_VERSION, capabilities: [...CAPABILITIES], maxFrameBytes: FRAME_LIMIT })
  }

  /** Ends this side's writes (the peer reads end of stream). */
  async closeWrite (): Promise<void> {
    await this.stream.close({ signal: AbortSignal.timeout(5000) })
  }

  abort (): void {
    this.stream.abort(new Error('test peer aborts'))
  }

  /** The next thing the peer did, waiting at most `timeoutMs`. Throws on timeout. */
  async next (timeoutMs = 10_000): Promise<RawEvent> {
    const signal = AbortSignal.timeout(timeoutMs)
    while (true) {
      if (this.#buffer.byteLength > 0) {
        let length: number | undefined
        try {
          length = varint.decode(this.#buffer)
        } catch {
          length = undefined
        }
        if (length !== undefined) {
          const prefix = varint.encodingLength(length)
          if (this.#buffer.byteLength >= prefix + length) {
            const bytes = this.#buffer.subarray(prefix, prefix + length)
            this.#buffer.consume(prefix + length)
            this.received.push(bytes)
            return { kind: 'frame', message: decodeFrame(bytes), bytes }
          }
        }
      }
      let chunk: Uint8ArrayList | null
      try {
        chunk = await this.#bytes.read({ signal })
      } catch (err) {
        if (signal.aborted) throw new Error(`no frame from the peer within ${timeoutMs} ms`, { cause: err })
        return { kind: 'reset', error: err as Error }
      }
      if (chunk === null) {
        if (this.#buffer.byteLength > 0) throw new Error('the peer ended its writes inside a frame')
        return { kind: 'end' }
      }
      this.#buffer.append(chunk)
    }
  }

  /** The next frame; throws if the peer ended or reset instead. */
  async frame (timeoutMs = 10_000): Promise<SyncMessage> {
    const event = await this.next(timeoutMs)
    if (event.kind !== 'frame') throw new Error(`expected a frame, the peer ${event.kind === 'end' ? 'ended the stream' : `reset the stream: ${event.error.message}`}`)
    return event.message
  }

  /** Every event until the peer ends or resets the stream (the last event is `end` or `reset`). */
  async drain (timeoutMs = 10_000): Promise<RawEvent[]> {
    const end = Date.now() + timeoutMs
    const events: RawEvent[] = []
    while (true) {
      const event = await this.next(Math.max(1, end - Date.now()))
      events.push(event)
      if (event.kind !== 'frame') return events
    }
  }

  /**
   * Runs reconciliation as the initiator (after hello and welcome) over `items`, the way the session does:
   * send, stop when done, otherwise read the peer's reconcile answer. Returns the finished reconciler.
   */
  async reconcile (items: ReconcileItem[] = [], maxMessageBytes = RECONCILE_MESSAGE_BYTES): Promise<ReturnType<typeof createInitiator>> {
    const reconciler = createInitiator({ set: createReconcileSet(items) }, { maxMessageBytes })
    let out: Uint8Array | null = reconciler.initiate()
    while (true) {
      if (out !== null) await this.send({ type: 'reconcile', data: out })
      if (reconciler.done) return reconciler
      const m = await this.frame()
      if (m.type !== 'reconcile') throw new Error(`expected reconcile, got ${m.type}`)
      out = reconciler.reconcile(m.data)
    }
  }
}

/**
 * Opens a raw sync stream to `to`'s node from a bare libp2p host carrying `from`'s identity (so `to`'s gater
 * sees `from`'s peer id, whatever `from`'s own node would admit), or from the raw host `from`. A host made here
 * stops when the stream closes.
 */
export async function openRawStream (from: TestOrg | RawLibp2p, to: TestOrg): Promise<RawPeer> {
  const [addr] = to.node.getMultiaddrs()
  const own = 'node' in from ? await rawNodeOf(from) : undefined
  const host = own ?? from as RawLibp2p
  try {
    const stream = await host.dialProtocol(multiaddr(addr), SYNC_PROTOCOL, { signal: AbortSignal.timeout(10_000) })
    if (own !== undefined) stream.addEventListener('close', () => { void own.stop() })
    return new RawPeer(stream)
  } catch (err) {
    await own?.stop()
    throw err
  }
}

/** True when `needle` occurs anywhere in `haystack`. */
export function containsBytes (haystack: Uint8Array, needle: Uint8Array): boolean {
  return Buffer.from(haystack.buffer, haystack.byteOffset, haystack.byteLength).indexOf(Buffer.from(needle)) !== -1
}
