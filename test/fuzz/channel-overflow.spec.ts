/**
 * Regression test for what the channel fuzzer found: a peer that sends far more than a frame ahead of the reader
 * (ignoring the pause the channel asks for) overflowed libp2p's read buffer, and `receive` threw libp2p's StreamBufferError instead of the
 * channel's documented SyncProtocolError.
 */
import type { Stream } from '@libp2p/interface'
import { expect } from 'chai'
import * as varint from 'uint8-varint'
import { SyncProtocolError } from '../../src/errors.js'
import { HELLO_READ_SLACK_BYTES, READ_PAUSE_MARGIN_BYTES } from '../../src/limits.js'
import { streamChannel } from '../../src/p2p/channel.js'
import { encodeFrame } from '../../src/p2p/codec.js'
import { concat } from './harness.js'
import { InMemoryStream } from './memory-stream.js'

/**
 * A stream that resumes the way libp2p's does: it first hands out what arrived while it was paused, then lets the
 * muxer grant window again (Yamux's `sendResume`), whatever happened during the hand-out.
 */
class Libp2pLikeStream extends InMemoryStream {
  /** Bytes that arrived while paused, handed out on resume. */
  held: Uint8Array[] = []
  /** The muxer grants no window (Yamux's paused state). */
  muxerPaused = false

  override pause (): void {
    super.pause()
    this.muxerPaused = true
  }

  override resume (): void {
    super.resume()
    for (const chunk of this.held.splice(0)) this.deliver(chunk)
    this.muxerPaused = false
  }
}

describe('p2p/channel: a peer far ahead of the reader', () => {
  it('should end the channel with SyncProtocolError and abort the stream', async () => {
    const stream = new InMemoryStream()
    const channel = streamChannel(stream as unknown as Stream, 1024)
    // well-formed frames, but more of them in one piece than the channel's read buffer holds (a frame, the slack
    // and the margin for what arrives after a pause): a peer that ignores flow control
    const frame = encodeFrame({ type: 'reconcile', data: new Uint8Array(500) })
    const count = Math.ceil((1024 + HELLO_READ_SLACK_BYTES + READ_PAUSE_MARGIN_BYTES) / frame.length) + 8
    const piece = concat(...Array.from({ length: count }, () => concat(varint.encode(frame.length), frame)))
    stream.deliver(piece)
    stream.end()
    const err = await channel.receive().then(() => undefined, (e: unknown) => e)
    expect(err).to.be.instanceOf(SyncProtocolError)
    expect((err as SyncProtocolError).code).to.equal('PROTOCOL_ERROR')
    await new Promise<void>((resolve) => { queueMicrotask(resolve) })
    expect(stream.aborted, 'stream aborted').to.not.equal(undefined)
  })

  it('should deliver the same frames when they arrive as the reader asks', async () => {
    const stream = new InMemoryStream()
    const channel = streamChannel(stream as unknown as Stream, 1024)
    const frame = encodeFrame({ type: 'reconcile', data: new Uint8Array(500) })
    const received: unknown[] = []
    for (let k = 0; k < 8; k++) {
      stream.deliver(concat(varint.encode(frame.length), frame))
      received.push(await channel.receive())
    }
    stream.end()
    expect(await channel.receive()).to.equal(undefined)
    expect(received).to.have.length(8)
    expect(stream.aborted).to.equal(undefined)
  })

  it('should pause again after a resume that hands out more than a frame, with the muxer paused too', async () => {
    const stream = new Libp2pLikeStream()
    const channel = streamChannel(stream as unknown as Stream, 1024)
    const whole = encodeFrame({ type: 'reconcile', data: new Uint8Array(597) })
    const one = concat(varint.encode(whole.length), whole)
    stream.deliver(one)
    stream.deliver(one)
    expect(stream.muxerPaused, 'a whole frame unread').to.equal(true)
    // what the peer's window still allowed arrived while paused: the resume hands it out
    stream.held.push(one, one, one)
    expect(await channel.receive()).to.include({ type: 'reconcile' })
    expect(stream.paused, 'paused again: four frames unread').to.equal(true)
    expect(stream.muxerPaused, 'the muxer grants no window while the stream is paused').to.equal(true)
    for (let k = 0; k < 4; k++) expect(await channel.receive()).to.include({ type: 'reconcile' })
    expect(stream.muxerPaused, 'resumed once the reader caught up').to.equal(false)
    expect(stream.aborted).to.equal(undefined)
  })

  it('should pause the stream while a whole frame is unread, and resume it once the reader takes frames out', async () => {
    const stream = new InMemoryStream()
    const channel = streamChannel(stream as unknown as Stream, 1024)
    const whole = encodeFrame({ type: 'reconcile', data: new Uint8Array(597) })
    const one = concat(varint.encode(whole.length), whole)
    stream.deliver(one)
    expect(stream.paused, 'less than a limit\'s worth unread').to.equal(false)
    stream.deliver(one)
    expect(stream.paused, 'more than a frame limit unread').to.equal(true)
    await channel.receive()
    expect(stream.paused, 'after the reader took a frame out').to.equal(false)
    expect(await channel.receive()).to.include({ type: 'reconcile' })
    expect(stream.aborted).to.equal(undefined)
  })
})
