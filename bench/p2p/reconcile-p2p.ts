/**
 * Reconciliation over a real libp2p stream. The served sets are synthetic ReconcileSets of n items (timestamp,
 * random 32-byte hash) with d differences; the real session (`runSession`: hello/welcome, reconciliation,
 * want{done}, close) runs over `streamChannel` on a stream between two libp2p hosts. Both sides are `serve`-only,
 * so nothing is transferred and no store is needed. Reported: reconciliation bytes (raw engine bytes,
 * sync-protocol frame bytes, and TCP bytes of the whole session incl. Noise and Yamux), messages and round trips,
 * next to the naive exchange of the full hash list (n * 32 bytes, also timed over libp2p).
 */
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import type { Libp2p, Stream } from '@libp2p/interface'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { createLibp2p } from 'libp2p'
import * as varint from 'uint8-varint'
import type { MindooDB } from '../../src/index.js'
import { streamChannel } from '../../src/p2p/channel.js'
import { encodeFrame } from '../../src/p2p/codec.js'
import { DEFAULT_MAX_FRAME_BYTES, MAX_RECONCILE_MESSAGE_BYTES, SYNC_PROTOCOL } from '../../src/p2p/constants.js'
import type { MessageChannel, SyncMessage } from '../../src/sync/messages.js'
import { createInitiator, createResponder, type ReconcileSession, type ReconcileSet } from '../../src/sync/reconcile/index.js'
import { ChunkedReconcileSet } from '../../src/sync/reconcile/set.js'
import { WantClaims } from '../../src/sync/claims.js'
import { runSession } from '../../src/sync/session.js'
import type { ServedSet } from '../../src/sync/served-set.js'
import { gc, prng, sameItems, sortedItems, withDifferences } from '../util.js'
import { NAIVE_PROTOCOL, now, round, sleep, type SocketTally } from './common.js'

export async function createHost (): Promise<Libp2p> {
  return await createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: { identify: identify(), ping: ping() }
  })
}

export interface ChannelCount {
  sent: Record<string, { frames: number, bytes: number }>
  firstReconcileAt?: number
  lastReconcileAt?: number
}

/** A MessageChannel that counts the frames it sends by type, with the bytes they take on the stream. */
export function countingChannel (inner: MessageChannel, count: ChannelCount): MessageChannel {
  const mark = (m: SyncMessage): void => {
    if (m.type !== 'reconcile') return
    count.firstReconcileAt ??= now()
    count.lastReconcileAt = now()
  }
  return {
    async send (m, options) {
      const length = encodeFrame(m).length
      const c = count.sent[m.type] ??= { frames: 0, bytes: 0 }
      c.frames++
      c.bytes += length + varint.encodingLength(length)
      mark(m)
      await inner.send(m, options)
    },
    async receive (options) {
      const m = await inner.receive(options)
      if (m !== undefined) mark(m)
      return m
    },
    close: async (options) => { await inner.close(options) },
    abort: (err) => { inner.abort(err) }
  }
}

/** The parts of a session's components that a serve-only session never touches. */
export const NO_DB = { getStore: () => ({}) } as unknown as MindooDB
export const NO_SERVED = { includes: () => false, settled: async () => {} } as unknown as ServedSet

export interface ReconcileRow {
  n: number
  d: number
  reconcileBytes: number
  reconcileFrameBytes: number
  messages: number
  messagesInitiatorToResponder: number
  messagesResponderToInitiator: number
  roundTrips: number
  reconcileMs: number
  sessionFrameBytes: number
  sessionTcpBytes: number
  sessionRoundTripsWithHello: number
  sessionMs: number
  naiveBytes: number
  naiveRoundTrips: number
  ratio: number
  correct: boolean
}

export async function benchReconcileP2P (sizes: number[], diffs: number[], sockets: SocketTally): Promise<object> {
  const [a, b] = await Promise.all([createHost(), createHost()])
  let responderSet: ReconcileSet | undefined
  let responderDone: PromiseWithResolvers<{ session: ReconcileSession, count: ChannelCount }> | undefined
  await b.handle(SYNC_PROTOCOL, async (stream: Stream) => {
    const count: ChannelCount = { sent: {} }
    const done = responderDone
    try {
      const channel = countingChannel(streamChannel(stream, DEFAULT_MAX_FRAME_BYTES), count)
      const hello = await channel.receive()
      if (hello?.type !== 'hello' || responderSet === undefined) throw new Error('expected hello')
      let session: ReconcileSession | undefined
      const set = responderSet
      await runSession({
        channel,
        db: NO_DB,
        served: NO_SERVED,
        reconciler: (_set, maxMessageBytes) => (session = createResponder({ set }, { maxMessageBytes })),
        claims: new WantClaims()
      }, {
        role: 'responder',
        peer: 'bench-initiator',
        direction: 'serve',
        participants: new Set(),
        peerMaxFrameBytes: hello.maxFrameBytes,
        maxFrameBytes: DEFAULT_MAX_FRAME_BYTES,
        reconcileMessageBytes: MAX_RECONCILE_MESSAGE_BYTES
      })
      done?.resolve({ session: session as ReconcileSession, count })
    } catch (err) {
      done?.reject(err)
      stream.abort(err as Error)
    }
  }, { maxInboundStreams: 64 })
  let naiveDone: PromiseWithResolvers<number> | undefined
  await b.handle(NAIVE_PROTOCOL, async (stream: Stream) => {
    let bytes = 0
    for await (const chunk of stream) bytes += chunk.byteLength
    naiveDone?.resolve(bytes)
    await stream.close()
  })
  await a.dial(b.getMultiaddrs()[0])
  await sleep(200) // let identify settle before counting TCP bytes

  const rows: ReconcileRow[] = []
  const buildMs: Record<string, number> = {}
  const naive: Record<string, object> = {}
  try {
    // the first pass warms up (JIT, connection windows) and is not reported
    for (const [pass, n] of [Math.min(...sizes), ...sizes].entries()) {
      const warmup = pass === 0
      const next = prng(0x5eed + n)
      let started = now()
      const { timestamps, ids } = sortedItems(n, next)
      const setA = ChunkedReconcileSet.fromPacked(timestamps, ids)
      if (!warmup) buildMs[String(n)] = Math.round(now() - started)

      // the naive exchange, timed on the same connection: the full hash list in 64 KiB writes
      {
        naiveDone = Promise.withResolvers<number>()
        const tcp0 = sockets.written
        started = now()
        const stream = await a.dialProtocol(b.peerId, NAIVE_PROTOCOL)
        for (let o = 0; o < ids.length; o += 65536) {
          if (!stream.send(ids.subarray(o, Math.min(ids.length, o + 65536)))) await stream.onDrain()
        }
        await stream.close()
        const got = await naiveDone.promise
        const ms = now() - started
        await sleep(20)
        if (got !== n * 32) throw new Error(`naive exchange moved ${got} of ${n * 32} bytes`)
        if (!warmup) naive[String(n)] = { bytes: n * 32, ms: round(ms), tcpBytes: sockets.written - tcp0 }
      }

      for (const d of warmup ? [1, 10, 100] : diffs) {
        // B = A with d differences: even k removes one of A's items from B, odd k adds an item A lacks
        const { set: setB, onlyBase: onlyA, onlyCopy: onlyB } = withDifferences(setA, timestamps, ids, d, next)
        responderSet = setB
        responderDone = Promise.withResolvers()
        // a failed responder fails the initiator's session too, which reports it: this one is awaited only after
        responderDone.promise.catch(() => {})
        const count: ChannelCount = { sent: {} }
        let initiator: ReconcileSession | undefined
        gc()
        await sleep(20)
        const tcp0 = sockets.written
        started = now()
        const stream = await a.dialProtocol(b.peerId, SYNC_PROTOCOL)
        const channel = countingChannel(streamChannel(stream, DEFAULT_MAX_FRAME_BYTES), count)
        await runSession({
          channel,
          db: NO_DB,
          served: NO_SERVED,
          reconciler: (_set, maxMessageBytes) => (initiator = createInitiator({ set: setA }, { maxMessageBytes })),
          claims: new WantClaims()
        }, {
          role: 'initiator',
          peer: 'bench-responder',
          direction: 'serve',
          participants: new Set(),
          topic: new Uint8Array(32),
          maxFrameBytes: DEFAULT_MAX_FRAME_BYTES,
          reconcileMessageBytes: MAX_RECONCILE_MESSAGE_BYTES
        })
        const responder = await responderDone.promise
        const sessionMs = now() - started
        await sleep(30) // closing frames
        const tcpBytes = sockets.written - tcp0
        const ini = initiator as ReconcileSession
        const res = responder.session
        const correct = sameItems(ini.have, onlyA) && sameItems(ini.need, onlyB) && sameItems(res.have, onlyB) && sameItems(res.need, onlyA)
        const frameBytes = (count.sent.reconcile?.bytes ?? 0) + (responder.count.sent.reconcile?.bytes ?? 0)
        const sessionFrameBytes = [count, responder.count].reduce((s, c) => s + Object.values(c.sent).reduce((t, x) => t + x.bytes, 0), 0)
        if (warmup) {
          if (!correct) throw new Error('reconciliation found a wrong difference')
          continue
        }
        rows.push({
          n,
          d,
          reconcileBytes: ini.stats.bytesSent + ini.stats.bytesReceived,
          reconcileFrameBytes: frameBytes,
          messages: ini.stats.messagesSent + ini.stats.messagesReceived,
          messagesInitiatorToResponder: ini.stats.messagesSent,
          messagesResponderToInitiator: ini.stats.messagesReceived,
          roundTrips: ini.stats.messagesSent,
          reconcileMs: round((count.lastReconcileAt ?? started) - (count.firstReconcileAt ?? started), 2),
          sessionFrameBytes,
          sessionTcpBytes: tcpBytes,
          sessionRoundTripsWithHello: ini.stats.messagesSent + 1,
          sessionMs: round(sessionMs, 2),
          naiveBytes: n * 32,
          naiveRoundTrips: 1,
          ratio: Number((frameBytes / (n * 32)).toPrecision(3)),
          correct
        })
      }
    }
  } finally {
    await a.stop()
    await b.stop()
  }
  const at = (n: number, d: number): ReconcileRow | undefined => rows.find((r) => r.n === n && r.d === d)
  const nMax = Math.max(...sizes)
  const floorRow = at(nMax, 1)
  const growth = diffs.map((d) => {
    const bytes = sizes.map((n) => at(n, d)?.reconcileFrameBytes ?? 0)
    return { d, bytesBySize: Object.fromEntries(sizes.map((n, i) => [String(n), bytes[i]])), maxOverMin: round(Math.max(...bytes) / Math.max(1, Math.min(...bytes)), 2) }
  })
  return {
    note: 'real runSession (serve-only: nothing transferred) over streamChannel on a libp2p TCP+Noise+Yamux stream; ' +
      'reconcileBytes = engine message bytes, reconcileFrameBytes = the reconcile frames with protobuf framing and length prefix, ' +
      'sessionTcpBytes = all TCP bytes of the session (multistream, hello/welcome, want{done}, Noise, Yamux), both directions; ' +
      'roundTrips = reconcile messages sent by the initiator',
    buildMs,
    naive,
    results: rows,
    growthWithN: growth,
    floor: floorRow === undefined
      ? undefined
      : {
          n: nMax,
          d: 1,
          roundTrips: floorRow.roundTrips,
          reconcileFrameBytes: floorRow.reconcileFrameBytes,
          pass: floorRow.roundTrips <= 3 && floorRow.reconcileFrameBytes <= 2048 && floorRow.correct,
          rule: `n = ${nMax}, d = 1: at most 3 round trips and 2 KB of reconcile frames (issue 8's floor, set for n = 10^6)`
        }
  }
}
