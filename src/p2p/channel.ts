import { StreamBufferError, type Stream } from '@libp2p/interface'
import { byteStream } from '@libp2p/utils'
import * as varint from 'uint8-varint'
import { Uint8ArrayList } from 'uint8arraylist'
import type { AbortOptions } from '../store/types.js'
import { MindooError, StreamError } from '../errors.js'
import { SyncProtocolError, type MessageChannel, type SyncMessage } from '../sync/messages.js'
import { HELLO_READ_SLACK_BYTES, READ_PAUSE_MARGIN_BYTES } from '../limits.js'
import { decodeFrame, encodeFrame } from './codec.js'

/** A MessageChannel whose receive limit can be raised once the peer is authorised. */
export interface StreamChannel extends MessageChannel {
  /** The largest frame `receive` accepts now. */
  readonly receiveLimit: number
  /**
   * Sets the largest frame `receive` accepts (at most the channel's `maxFrameBytes`). An inbound stream is read
   * with the small hello limit until its hello is authorised, then with the session's frame limit.
   */
  setReceiveLimit: (bytes: number) => void
}

export interface StreamChannelOptions {
  /** Largest frame sent, and the most `setReceiveLimit` may allow. */
  maxFrameBytes: number
  /** Largest frame received until `setReceiveLimit` is called. Default `maxFrameBytes`. */
  receiveLimit?: number
}

/**
 * A MessageChannel over one libp2p stream: varint length-prefixed protobuf frames. A frame over the limit, a
 * truncated frame and a malformed one are SyncProtocolErrors; a clean end of the peer's writes is `undefined`
 * from `receive`.
 *
 * Memory and backpressure: once a whole frame's worth of bytes is unread, the stream is paused (Yamux stops
 * granting window, so the peer's writes wait) until the reader takes frames out again; what the peer's window
 * still allowed lands (`READ_PAUSE_MARGIN_BYTES`), and beyond that the stream is reset. While the receive limit is lowered (before the hello is
 * authorised), the stream is reset as soon as the bytes held (read or not) exceed that limit plus the slack,
 * so an unauthorised peer can make it hold a few KiB only, whatever it sends.
 */
export function streamChannel (stream: Stream, options: StreamChannelOptions | number): StreamChannel {
  if (typeof options === 'number') options = { maxFrameBytes: options }
  const { maxFrameBytes } = options
  let limit = Math.min(options.receiveLimit ?? maxFrameBytes, maxFrameBytes)
  // byteStream's own bound is fixed at creation: the largest limit this channel can ever have
  const bytes = byteStream(stream, { maxBufferSize: maxFrameBytes + HELLO_READ_SLACK_BYTES + READ_PAUSE_MARGIN_BYTES })
  const buffer = new Uint8ArrayList()
  let overflow: SyncProtocolError | undefined
  // bytes the peer sent, and bytes of them returned as frames: the difference is what this side holds
  let arrived = 0
  let consumed = 0
  // backpressure: with a whole frame's worth of bytes unread, the stream is paused (Yamux stops granting window,
  // so the peer's writes wait) until the reader has taken frames out again
  let paused = false
  let resuming = false
  const pauseAt = (): number => limit + varint.encodingLength(limit)
  // (only once authorised: before that, a peer sending more than a hello's worth is reset, not paused)
  const pauseIfFull = (): void => {
    if (!paused && overflow === undefined && limit >= maxFrameBytes && arrived - consumed >= pauseAt()) {
      paused = true
      stream.pause()
    }
  }
  const resume = (): void => {
    if (!paused) return
    paused = false
    // a stream whose read side is closing or closed (the session ended meanwhile) has nothing more to let in, and
    // libp2p refuses to resume it
    if (stream.readStatus === 'closing' || stream.readStatus === 'closed') return
    // libp2p's resume() first hands out what arrived while paused, then lets Yamux grant window again: a pause
    // from inside that hand-out would be undone for Yamux (the peer could then send without bound), so the pause
    // is decided once resume() has returned
    resuming = true
    try {
      stream.resume()
    } finally {
      resuming = false
    }
    pauseIfFull()
  }
  const onMessage = (evt: { data: { byteLength: number } }): void => {
    arrived += evt.data.byteLength
    if (!resuming) pauseIfFull()
    if (overflow !== undefined || limit >= maxFrameBytes) return
    const held = arrived - consumed
    if (held > limit + varint.encodingLength(limit) + HELLO_READ_SLACK_BYTES) {
      overflow = new SyncProtocolError(`peer sent ${held} bytes beyond what a frame of ${limit} bytes needs`)
      queueMicrotask(() => { stream.abort(overflow as Error) })
    }
  }
  stream.addEventListener('message', onMessage)

  /** libp2p's own failures become StreamErrors; an abort keeps its reason for the session to read. */
  const typed = (err: unknown, options?: AbortOptions): unknown => {
    if (overflow !== undefined) return overflow
    if (options?.signal?.aborted === true || err instanceof MindooError) return err
    // more unread bytes than a frame arrived at once: libp2p aborts the stream, and the peer broke the protocol
    if (err instanceof StreamBufferError) return new SyncProtocolError('the peer sent more than a frame ahead', { cause: err })
    return new StreamError(`sync stream failed: ${String((err as Error)?.message ?? err)}`, { cause: err })
  }

  /** The length of the next frame, once its whole prefix is buffered. */
  const frameLength = (): { length: number, prefix: number } | undefined => {
    try {
      const length = varint.decode(buffer)
      return { length, prefix: varint.encodingLength(length) }
    } catch (err) {
      if (err instanceof RangeError && buffer.byteLength < varint.encodingLength(limit)) return undefined
      throw new SyncProtocolError('invalid frame length', { cause: err })
    }
  }

  return {
    get receiveLimit (): number {
      return limit
    },

    setReceiveLimit (n: number): void {
      if (!Number.isInteger(n) || n < 1 || n > maxFrameBytes) throw new TypeError(`receive limit must be 1..${maxFrameBytes}`)
      limit = n
    },

    async send (message: SyncMessage, options?: AbortOptions): Promise<void> {
      // checked here too: a write or read that need not wait would otherwise never notice the abort
      options?.signal?.throwIfAborted()
      const frame = encodeFrame(message)
      if (frame.length > maxFrameBytes) throw new SyncProtocolError(`frame of ${frame.length} bytes exceeds the limit`)
      try {
        await bytes.write(new Uint8ArrayList(varint.encode(frame.length), frame), options)
      } catch (err) {
        throw typed(err, options)
      }
    },

    async receive (options?: AbortOptions): Promise<SyncMessage | undefined> {
      options?.signal?.throwIfAborted()
      while (true) {
        const next = buffer.byteLength > 0 ? frameLength() : undefined
        if (next !== undefined) {
          if (next.length > limit) throw new SyncProtocolError(`frame of ${next.length} bytes exceeds the limit of ${limit}`)
          if (buffer.byteLength >= next.prefix + next.length) {
            const frame = buffer.sublist(next.prefix, next.prefix + next.length)
            buffer.consume(next.prefix + next.length)
            consumed += next.prefix + next.length
            if (arrived - consumed < pauseAt()) resume()
            return decodeFrame(frame)
          }
        }
        let chunk: Uint8ArrayList | null
        resume() // more bytes are needed to complete a frame
        try {
          chunk = await bytes.read(options)
        } catch (err) {
          throw typed(err, options)
        }
        if (chunk === null) {
          if (buffer.byteLength === 0) return undefined
          throw new SyncProtocolError('stream ended inside a frame')
        }
        buffer.append(chunk)
      }
    },

    async close (options?: AbortOptions): Promise<void> {
      await stream.close(options)
    },

    abort (err: Error): void {
      stream.abort(err)
    }
  }
}
