/**
 * Regression test for what the channel fuzzer found: a peer that sends more than a frame (plus 1 KiB) ahead of
 * the reader overflowed libp2p's read buffer, and `receive` threw libp2p's StreamBufferError instead of the
 * channel's documented SyncProtocolError.
 */
import type { Stream } from '@libp2p/interface'
import { expect } from 'chai'
import * as varint from 'uint8-varint'
import { SyncProtocolError } from '../../src/errors.js'
import { streamChannel } from '../../src/p2p/channel.js'
import { encodeFrame } from '../../src/p2p/codec.js'
import { concat } from './harness.js'
import { InMemoryStream } from './memory-stream.js'

describe('p2p/channel: a peer far ahead of the reader', () => {
  it('should end the channel with SyncProtocolError and abort the stream', async () => {
    const stream = new InMemoryStream()
    const channel = streamChannel(stream as unknown as Stream, 1024)
    // well-formed frames, but 4 KB of them in one piece: more than the channel's read buffer (1024 + 1024)
    const frame = encodeFrame({ type: 'reconcile', data: new Uint8Array(500) })
    const piece = concat(...Array.from({ length: 8 }, () => concat(varint.encode(frame.length), frame)))
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
})
