import { StreamBufferError, type Stream } from '@libp2p/interface'
import { byteStream } from '@libp2p/utils'
import * as varint from 'uint8-varint'
import { Uint8ArrayList } from 'uint8arraylist'
import type { AbortOptions } from '../store/types.js'
import { SyncProtocolError, type MessageChannel, type SyncMessage } from '../sync/messages.js'
import { decodeFrame, encodeFrame } from './codec.js'

/**
 * A MessageChannel over one libp2p stream: varint length-prefixed protobuf frames, at most `maxFrameBytes`
 * each. A frame over the limit, a truncated frame and a malformed one are SyncProtocolErrors; a clean end of
 * the peer's writes is `undefined` from `receive`.
 */
export function streamChannel (stream: Stream, maxFrameBytes: number): MessageChannel {
  const bytes = byteStream(stream, { maxBufferSize: maxFrameBytes + 1024 })
  const buffer = new Uint8ArrayList()
  const maxLengthBytes = varint.encodingLength(maxFrameBytes)

  /** The length of the next frame, once its whole prefix is buffered. */
  const frameLength = (): { length: number, prefix: number } | undefined => {
    try {
      const length = varint.decode(buffer)
      return { length, prefix: varint.encodingLength(length) }
    } catch (err) {
      if (err instanceof RangeError && buffer.byteLength < maxLengthBytes) return undefined
      throw new SyncProtocolError('invalid frame length', { cause: err })
    }
  }

  return {
    async send (message: SyncMessage, options?: AbortOptions): Promise<void> {
      // checked here too: a write or read that need not wait would otherwise never notice the abort
      options?.signal?.throwIfAborted()
      const frame = encodeFrame(message)
      if (frame.length > maxFrameBytes) throw new SyncProtocolError(`frame of ${frame.length} bytes exceeds the limit`)
      await bytes.write(new Uint8ArrayList(varint.encode(frame.length), frame), options)
    },

    async receive (options?: AbortOptions): Promise<SyncMessage | undefined> {
      options?.signal?.throwIfAborted()
      while (true) {
        const next = buffer.byteLength > 0 ? frameLength() : undefined
        if (next !== undefined) {
          if (next.length > maxFrameBytes) throw new SyncProtocolError(`frame of ${next.length} bytes exceeds the limit`)
          if (buffer.byteLength >= next.prefix + next.length) {
            const frame = buffer.sublist(next.prefix, next.prefix + next.length)
            buffer.consume(next.prefix + next.length)
            return decodeFrame(frame)
          }
        }
        const chunk = await bytes.read(options).catch((err: unknown) => {
          // more unread bytes than a frame arrived at once: the stream is aborted, and the peer broke the protocol
          if (err instanceof StreamBufferError) throw new SyncProtocolError('the peer sent more than a frame ahead', { cause: err })
          throw err
        })
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
