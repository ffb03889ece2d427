/**
 * The fuzz targets: what an attacker controls at the trust boundary, fed to the real decoders and sessions.
 *
 * - `frame`: src/p2p/codec.ts `decodeFrame` on valid frames (mutated or not), raw protobuf fields and random bytes.
 * - `channel`: src/p2p/channel.ts `streamChannel` (varint framing) over an in-memory stream, fed chunked byte
 *   streams of well- and ill-formed frames, delivered as the reader asks or all at once.
 * - `reconcile`: src/sync/reconcile `decodeMessage` and the initiator/responder sessions over a real set of
 *   2,000 items, fed grammar-built messages, mutated messages of a real exchange (at the point of the exchange
 *   where they were sent), random bytes, and whole conversations with a peer that mutates its replies.
 * - `change`: src/store/change.ts `decodeChange` on valid signed changes (mutated or not) and random bytes.
 * - `forged`: validly signed changes with hostile headers and payloads into a real database (see forged.ts).
 *
 * Only the documented typed errors may escape: SyncProtocolError (frame, channel), ReconcileProtocolError
 * (reconcile), MalformedChangeError and HashMismatchError (change). Each target also checks what it accepts.
 */
import { strict as assert } from 'node:assert'
import { createHash, verify } from 'node:crypto'
import type { Stream } from '@libp2p/interface'
import fc from 'fast-check'
import * as varint from 'uint8-varint'
import { HashMismatchError, MalformedChangeError, ReconcileProtocolError, SyncProtocolError } from '../../src/errors.js'
import { LIVE_MAX_ANNOUNCE_HASHES } from '../../src/limits.js'
import { streamChannel } from '../../src/p2p/channel.js'
import { decodeFrame, encodeFrame } from '../../src/p2p/codec.js'
import {
  checkChange, decodeChange, docCreatedBy, docKeyMatches, encodeChange, isDocId, newDocId, sha256, type StoreChange
} from '../../src/store/change.js'
import type { SyncMessage } from '../../src/sync/messages.js'
import { decodeMessage } from '../../src/sync/reconcile/codec.js'
import {
  MIN_MESSAGE_BYTES, PROTOCOL_VERSION, createInitiator, createReconcileSet, createResponder,
  type ReconcileItem, type ReconcileSession, type ReconcileSet
} from '../../src/sync/reconcile/index.js'
import { createAuthor, makeChange, publicKeyFromRaw, type TestAuthor } from '../utils/changes.js'
import { forgedTarget } from './forged.js'
import { InMemoryStream } from './memory-stream.js'
import { concat, estimateBytes, isOneOf, mutate, mutationsArb, refused, type CaseOutcome, type FuzzTarget, type Mutation } from './harness.js'
import { prng } from '../utils/prng.js'



// ================================================================ frame

const ERROR_CODES = ['NOT_AUTHORIZED', 'SHARE_DISABLED', 'VERSION_UNSUPPORTED', 'PROTOCOL_ERROR', 'INTERNAL']

/** Frames with a repeated field at and beyond its documented bound (hashes, changes, capabilities). */
const bulkMessageArb: fc.Arbitrary<SyncMessage> = fc.oneof(
  fc.integer({ min: 4000, max: 4200 }).map((n): SyncMessage => ({ type: 'want', hashes: Array.from({ length: n }, () => new Uint8Array(32)), done: false })),
  fc.integer({ min: 65_000, max: 66_000 }).map((n): SyncMessage => ({ type: 'changes', changes: Array.from({ length: n }, () => new Uint8Array(0)), last: true })),
  fc.integer({ min: 30, max: 34 }).map((n): SyncMessage => ({ type: 'welcome', version: 1, capabilities: Array.from({ length: n }, () => 'c'), maxFrameBytes: 4096 }))
)

const smallMessageArb: fc.Arbitrary<SyncMessage> = fc.oneof(
  fc.record({
    type: fc.constant('hello' as const),
    topic: fc.oneof({ weight: 4, arbitrary: fc.uint8Array({ minLength: 32, maxLength: 32 }) }, { weight: 1, arbitrary: fc.uint8Array({ maxLength: 40 }) }),
    version: fc.nat(),
    capabilities: fc.array(fc.string({ maxLength: 30 }), { maxLength: 40 }),
    maxFrameBytes: fc.nat()
  }),
  fc.record({
    type: fc.constant('welcome' as const),
    version: fc.nat(),
    capabilities: fc.array(fc.string({ maxLength: 30 }), { maxLength: 40 }),
    maxFrameBytes: fc.nat()
  }),
  fc.record({
    type: fc.constant('error' as const),
    code: fc.oneof(fc.constantFrom(...ERROR_CODES), fc.string({ maxLength: 20 })) as fc.Arbitrary<'INTERNAL'>,
    message: fc.string({ maxLength: 1500, unit: 'binary' })
  }),
  fc.record({ type: fc.constant('reconcile' as const), data: fc.uint8Array({ maxLength: 2000 }) }),
  fc.record({
    type: fc.constant('want' as const),
    hashes: fc.array(fc.oneof({ weight: 9, arbitrary: fc.uint8Array({ minLength: 32, maxLength: 32 }) }, { weight: 1, arbitrary: fc.uint8Array({ maxLength: 40 }) }), { maxLength: 60 }),
    done: fc.boolean()
  }),
  fc.record({
    type: fc.constant('changes' as const),
    changes: fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 20 }),
    last: fc.boolean()
  }),
  fc.record({ type: fc.constantFrom('live' as const, 'ack' as const) }),
  fc.record({
    type: fc.constant('announce' as const),
    hashes: fc.array(fc.oneof({ weight: 9, arbitrary: fc.uint8Array({ minLength: 32, maxLength: 32 }) }, { weight: 1, arbitrary: fc.uint8Array({ maxLength: 40 }) }), { maxLength: 60 }),
    changes: fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 8 })
  })
)

const syncMessageArb: fc.Arbitrary<SyncMessage> = fc.oneof(
  { weight: 60, arbitrary: smallMessageArb },
  { weight: 1, arbitrary: bulkMessageArb }
)

/** Raw protobuf fields: any field number and wire type, with right or wrong lengths. */
const protoFieldArb: fc.Arbitrary<Uint8Array> = fc.record({
  field: fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 1, max: 12 }) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 2 ** 29 - 1 }) }),
  wire: fc.oneof({ weight: 6, arbitrary: fc.constantFrom(0, 2) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 7 }) }),
  value: fc.uint8Array({ maxLength: 64 }),
  number: fc.oneof(fc.nat(), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })),
  length: fc.oneof({ weight: 8, arbitrary: fc.constant(-1) }, { weight: 1, arbitrary: fc.nat() }, { weight: 1, arbitrary: fc.constant(2 ** 32 - 1) })
}).map(({ field, wire, value, number, length }) => {
  const key = varint.encode(field * 8 + wire)
  switch (wire) {
    case 0: return concat(key, varint.encode(typeof number === 'bigint' ? Number(number & 0xfffffffffffffn) : number))
    case 1: return concat(key, value.subarray(0, 8))
    case 2: return concat(key, varint.encode(length === -1 ? value.length : length), value)
    case 5: return concat(key, value.subarray(0, 4))
    default: return concat(key, value.subarray(0, 2))
  }
})

const frameBytesArb: fc.Arbitrary<Uint8Array> = fc.oneof(
  { weight: 5, arbitrary: fc.tuple(syncMessageArb, mutationsArb).map(([m, muts]) => mutate(encodeFrame(m), muts)) },
  { weight: 3, arbitrary: fc.array(protoFieldArb, { maxLength: 12 }).map((fields) => concat(...fields)) },
  { weight: 2, arbitrary: fc.uint8Array({ maxLength: 300 }) }
)

/** Bounds on repeated fields documented in src/p2p/codec.ts. */
const MAX_CAPABILITIES = 32
const MAX_HASHES = 4096
const MAX_CHANGES = 65536

/**
 * The message with its strings made well-formed. protons' UTF-8 reader turns invalid UTF-8 into lone surrogates
 * (not U+FFFD), which encode back as U+FFFD: decoded strings are not always well-formed (see the report).
 */
function wellFormed (m: SyncMessage): SyncMessage {
  switch (m.type) {
    case 'hello':
    case 'welcome': return { ...m, capabilities: m.capabilities.map((c) => c.toWellFormed()) }
    case 'error': return { ...m, message: m.message.toWellFormed() }
    default: return m
  }
}

function checkDecodedFrame (m: SyncMessage, inputLength: number): void {
  // a decoded frame re-encodes to a frame that decodes to the same message
  assert.deepEqual(wellFormed(decodeFrame(encodeFrame(m))), wellFormed(m), 'decode(encode(decode(x))) differs from decode(x)')
  switch (m.type) {
    case 'hello':
      assert.equal(m.topic.length, 32)
      assert.ok(m.capabilities.length <= MAX_CAPABILITIES)
      break
    case 'welcome': assert.ok(m.capabilities.length <= MAX_CAPABILITIES); break
    case 'error': assert.ok(ERROR_CODES.includes(m.code) && m.message.length <= 1000); break
    case 'want': assert.ok(m.hashes.length <= MAX_HASHES && m.hashes.every((h) => h.length === 32)); break
    case 'changes': assert.ok(m.changes.length <= MAX_CHANGES); break
    case 'announce':
      assert.ok(m.hashes.length >= 1 && m.hashes.length <= LIVE_MAX_ANNOUNCE_HASHES && m.hashes.every((h) => h.length === 32))
      assert.ok(m.changes.length <= m.hashes.length)
      break
    case 'reconcile': assert.ok(m.data.length <= inputLength); break
  }
}

export const frameTarget: FuzzTarget<Uint8Array> = {
  name: 'frame',
  arbitrary: frameBytesArb,
  inputBytes: (b) => b.length,
  run: (bytes) => {
    let m: SyncMessage
    try {
      m = decodeFrame(bytes)
    } catch (err) {
      if (isOneOf(err, [SyncProtocolError])) return refused(err)
      throw err
    }
    checkDecodedFrame(m, bytes.length)
    return { rejected: false, allocated: estimateBytes(m), label: `accepted:${m.type}` }
  }
}

// ================================================================ channel

interface ChannelInput {
  maxFrameBytes: number
  frames: Array<{ payload: Uint8Array, prefix: 'right' | 'random' | 'overLimit' | 'none', randomLength: number }>
  /** Sizes the byte stream is cut into (cycled). */
  chunks: number[]
  /** `lazy`: a chunk arrives each time the reader waits; `burst`: everything arrives before the first read. */
  delivery: 'lazy' | 'burst'
  /** Bytes appended after the last frame (a truncated frame, a lone prefix). */
  tail: Uint8Array
}

const channelInputArb: fc.Arbitrary<ChannelInput> = fc.record({
  maxFrameBytes: fc.constantFrom(1024, 4096, 65_536),
  frames: fc.array(fc.record({
    payload: fc.oneof(
      { weight: 6, arbitrary: smallMessageArb.map(encodeFrame) },
      { weight: 2, arbitrary: frameBytesArb },
      // a valid reconcile frame of about `n` bytes: around each frame limit
      { weight: 1, arbitrary: fc.constantFrom(1024, 4096, 65_536).chain((limit) => fc.integer({ min: limit - 8, max: limit + 8 })).map((n) => encodeFrame({ type: 'reconcile', data: new Uint8Array(Math.max(0, n - 4)) })) }
    ),
    prefix: fc.oneof(
      { weight: 12, arbitrary: fc.constant('right' as const) },
      { weight: 1, arbitrary: fc.constantFrom('random' as const, 'overLimit' as const, 'none' as const) }
    ),
    randomLength: fc.oneof(fc.nat(3000), fc.nat())
  }), { maxLength: 8 }),
  chunks: fc.array(fc.oneof(fc.integer({ min: 1, max: 16 }), fc.integer({ min: 1, max: 70_000 })), { minLength: 1, maxLength: 6 }),
  delivery: fc.constantFrom('lazy' as const, 'burst' as const),
  tail: fc.oneof({ weight: 4, arbitrary: fc.constant(new Uint8Array(0)) }, { weight: 1, arbitrary: fc.uint8Array({ maxLength: 12 }) })
})

function decodes (payload: Uint8Array): boolean {
  try {
    decodeFrame(payload)
    return true
  } catch {
    return false
  }
}

function channelBytes (input: ChannelInput): { bytes: Uint8Array, clean: boolean } {
  let clean = input.tail.length === 0
  const parts: Uint8Array[] = []
  for (const f of input.frames) {
    let prefix: Uint8Array
    switch (f.prefix) {
      case 'right': prefix = varint.encode(f.payload.length); break
      case 'random': prefix = varint.encode(f.randomLength); break
      case 'overLimit': prefix = varint.encode(input.maxFrameBytes + 1 + f.randomLength); break
      case 'none': prefix = new Uint8Array(0)
    }
    if (f.prefix !== 'right' || f.payload.length > input.maxFrameBytes || !decodes(f.payload)) clean = false
    parts.push(prefix, f.payload)
  }
  parts.push(input.tail)
  return { bytes: concat(...parts), clean }
}

const channelLengths = new WeakMap<ChannelInput, number>()
const MAX_PIECES = 2000

async function runChannel (input: ChannelInput): Promise<CaseOutcome> {
  const { bytes, clean } = channelBytes(input)
  channelLengths.set(input, bytes.length)
  const pieces: Uint8Array[] = []
  for (let o = 0, k = 0; o < bytes.length; k++) {
    // at most MAX_PIECES turns of the event loop per case (the rest arrives at once), so a case stays quick
    const n = k + 1 === MAX_PIECES ? bytes.length - o : input.chunks[k % input.chunks.length]
    pieces.push(bytes.subarray(o, o + n))
    o += n
  }
  const stream = new InMemoryStream()
  const channel = streamChannel(stream as unknown as Stream, input.maxFrameBytes)
  // the peer: in `lazy` mode one chunk per turn of the event loop, so the reader waits between chunks
  let stopped = false
  const peer = (async () => {
    for (const piece of pieces) {
      if (stopped) return
      stream.deliver(piece)
      if (input.delivery === 'lazy') await new Promise((resolve) => setImmediate(resolve))
    }
    stream.end()
  })()
  const received: SyncMessage[] = []
  let failed: unknown
  try {
    // at most one message per frame, then the end: more would be decoded from nothing
    for (let k = 0; k <= input.frames.length + 1; k++) {
      const m = await channel.receive()
      if (m === undefined) break
      received.push(m)
      assert.ok(k < input.frames.length + 1, 'more messages than frames')
    }
  } catch (err) {
    failed = err
  } finally {
    stopped = true
    await peer
  }
  // well-formed frames arriving as the reader asks for them, each chunk within the read buffer: nothing may fail
  const honest = clean && input.delivery === 'lazy' && pieces.every((p) => p.length <= input.maxFrameBytes + 1024)
  if (failed !== undefined) {
    if (honest) throw failed
    if (isOneOf(failed, [SyncProtocolError])) return { ...refused(failed), allocated: estimateBytes(received) }
    throw failed
  }
  if (honest) {
    // every well-formed frame comes out once, in order, whatever the chunking
    assert.equal(received.length, input.frames.length, 'messages lost or invented')
    received.forEach((m, k) => { assert.deepEqual(m, decodeFrame(input.frames[k].payload)) })
  }
  return { rejected: false, allocated: estimateBytes(received), label: honest ? 'accepted:all frames' : 'accepted' }
}

export const channelTarget: FuzzTarget<ChannelInput> = {
  name: 'channel',
  arbitrary: channelInputArb,
  inputBytes: (input) => channelLengths.get(input) ?? 0,
  run: runChannel
}

// ================================================================ reconcile

const FRAME_LIMITS = [MIN_MESSAGE_BYTES, 1024, 65_536] as const

interface SetItem { ts: number, id: Uint8Array, hex: string }

interface ReconcileFixture {
  /** The set every fuzzed session runs over (`ours`), sorted. */
  items: SetItem[]
  set: ReconcileSet
  /** A peer's set: ours minus some items plus others (so real exchanges take several messages). */
  peerSet: ReconcileSet
  /** Real exchanges initiator(peerSet) <-> responder(set), per frame limit. */
  transcripts: Uint8Array[][]
}

let fixture: ReconcileFixture | undefined

function randomReconcileItems (n: number, rand: () => number): ReconcileItem[] {
  const out = new Map<string, ReconcileItem>()
  while (out.size < n) {
    const id = Buffer.alloc(32)
    for (let k = 0; k < 32; k++) id[k] = Math.floor(rand() * 256)
    // few distinct timestamps, and a share of ids with a common prefix: bounds then need long id prefixes
    if (rand() < 0.2) id.fill(0xab, 0, 20)
    out.set(id.toString('hex'), { timestamp: 1_700_000_000_000 + Math.floor(rand() * 200), id: id.toString('hex') })
  }
  return [...out.values()]
}

function exchange (initiator: ReconcileSession, responder: ReconcileSession): Uint8Array[] {
  const transcript: Uint8Array[] = []
  let msg: Uint8Array | null = initiator.initiate()
  let next = responder
  while (msg !== null) {
    transcript.push(msg)
    msg = next.reconcile(msg)
    next = next === responder ? initiator : responder
  }
  return transcript
}

function reconcileFixture (): ReconcileFixture {
  if (fixture !== undefined) return fixture
  const rand = prng(7)
  const all = randomReconcileItems(2300, rand)
  const ours = all.slice(0, 2000)
  const theirs = [...all.slice(40, 2000), ...all.slice(2000, 2040)]
  const set = createReconcileSet(ours)
  const peerSet = createReconcileSet(theirs)
  const items = [...set.items()].map((i) => ({ ts: i.timestamp, id: Buffer.from(i.id, 'hex'), hex: i.id }))
  const transcripts = FRAME_LIMITS.map((maxMessageBytes) => exchange(
    createInitiator({ set: peerSet }, { maxMessageBytes }), createResponder({ set }, { maxMessageBytes })
  ))
  fixture = { items, set, peerSet, transcripts }
  return fixture
}

/** A bound of a grammar-built message: near one of our items, or the infinity bound. */
type BoundSpec = { inf: true } | { inf: false, item: number, prefix: number, shift: -1 | 0 | 1 }
interface RangeSpec {
  upper: BoundSpec
  mode: number
  fingerprint: 'real' | 'random'
  random: Uint8Array
  /** Items of an IdList/IdDiff: ours (by index) or other ids (SHA-256 of a salt) at our timestamps. */
  items: ItemSpec[]
  items2: ItemSpec[]
}
interface GrammarInput {
  limit: number
  version: number
  ordered: boolean
  ranges: RangeSpec[]
}

interface ItemSpec { ours: boolean, item: number, salt: number }
const itemSpecArb: fc.Arbitrary<ItemSpec> = fc.record({ ours: fc.boolean(), item: fc.nat(), salt: fc.nat() })

const rangeSpecArb = (maxItems: number): fc.Arbitrary<RangeSpec> => fc.record({
  upper: fc.oneof(
    { weight: 1, arbitrary: fc.constant({ inf: true as const }) },
    { weight: 8, arbitrary: fc.record({ inf: fc.constant(false as const), item: fc.nat(), prefix: fc.nat(32), shift: fc.constantFrom<-1 | 0 | 1>(-1, 0, 0, 0, 1) }) }
  ),
  mode: fc.oneof({ weight: 30, arbitrary: fc.nat(4) }, { weight: 1, arbitrary: fc.nat() }),
  fingerprint: fc.constantFrom('real' as const, 'random' as const),
  random: fc.uint8Array({ minLength: 16, maxLength: 16 }),
  items: fc.array(itemSpecArb, { maxLength: maxItems }),
  items2: fc.array(itemSpecArb, { maxLength: Math.ceil(maxItems / 2) })
})

const grammarArb: fc.Arbitrary<GrammarInput> = fc.record({
  limit: fc.nat(FRAME_LIMITS.length - 1),
  version: fc.oneof({ weight: 20, arbitrary: fc.constant(PROTOCOL_VERSION) }, { weight: 1, arbitrary: fc.nat(255) }),
  ordered: fc.oneof({ weight: 5, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
  ranges: fc.oneof(
    { weight: 20, arbitrary: fc.array(rangeSpecArb(12), { maxLength: 40 }) },
    // large messages, up to and beyond the frame limits: many ranges, or few ranges with many items
    { weight: 1, arbitrary: fc.array(rangeSpecArb(4), { minLength: 200, maxLength: 3000, size: 'max' }) },
    { weight: 1, arbitrary: fc.array(rangeSpecArb(2000), { minLength: 1, maxLength: 4, size: 'max' }) }
  )
})

interface Pos { ts: number, id: Uint8Array }

function comparePos (a: Pos, b: Pos): number {
  if (a.ts !== b.ts) return a.ts < b.ts ? -1 : 1
  for (let k = 0; k < 32; k++) {
    const d = (a.id[k] ?? 0) - (b.id[k] ?? 0)
    if (d !== 0) return d
  }
  return 0
}

function hexKey (p: Pos): { timestamp: number, id: string } {
  const id = new Uint8Array(32)
  id.set(p.id.subarray(0, 32))
  return { timestamp: p.ts, id: Buffer.from(id).toString('hex') }
}

/** Writes a grammar input as message bytes, by the format of src/sync/reconcile/codec.ts (independently of it). */
function buildMessage (g: GrammarInput, f: ReconcileFixture): Uint8Array {
  const out: number[] = [g.version]
  const v = (n: number): void => { for (const b of varint.encode(Math.max(0, Math.min(n, Number.MAX_SAFE_INTEGER)))) out.push(b) }
  const n = f.items.length
  type Resolved = { spec: RangeSpec, upper: Pos | null }
  let ranges: Resolved[] = g.ranges.map((spec) => {
    if (spec.upper.inf) return { spec, upper: null }
    const it = f.items[spec.upper.item % n]
    return { spec, upper: { ts: Math.max(1, it.ts + spec.upper.shift), id: it.id.subarray(0, spec.upper.prefix) } }
  })
  if (g.ordered) {
    ranges.sort((a, b) => a.upper === null ? (b.upper === null ? 0 : 1) : b.upper === null ? -1 : comparePos(a.upper, b.upper))
    ranges = ranges.filter((r, k) => k === 0 || (r.upper !== null && comparePos(r.upper, ranges[k - 1].upper as Pos) !== 0))
  }
  let lastTs = 0
  let lower: Pos = { ts: 0, id: new Uint8Array(0) }
  const writeItems = (list: RangeSpec['items'], upper: Pos | null): void => {
    const chosen = list.map((s) => s.ours ? f.items[s.item % n] : { ts: f.items[s.item % n].ts, id: sha256(Uint8Array.of(s.salt & 255, (s.salt >>> 8) & 255, (s.salt >>> 16) & 255, s.salt >>> 24)) })
    if (g.ordered) {
      chosen.sort(comparePos)
      const inRange = chosen.filter((c, k) => comparePos(c, lower) >= 0 && (upper === null || comparePos(c, upper) < 0) &&
        (k === 0 || comparePos(c, chosen[k - 1]) !== 0))
      chosen.length = 0
      chosen.push(...inRange)
    }
    v(chosen.length)
    let prev = lower.ts
    for (const c of chosen) {
      v(c.ts - prev)
      for (const b of c.id) out.push(b)
      prev = c.ts
    }
  }
  for (const { spec, upper } of ranges) {
    // a raw head: ((0 * 56 + e) * 2 + hasId) * 8 + mode, e = 0 for infinity and 1 for a raw delta that follows
    // (modes beyond 7 are sent as 7 + a multiple of 8, which the decoder reads as another head: still fuzz)
    const mode = Math.min(spec.mode, 7)
    if (upper === null) {
      v(mode)
    } else {
      const hasId = upper.id.length > 0 ? 1 : 0
      v((2 + hasId) * 8 + mode)
      v(upper.ts - lastTs)
      lastTs = upper.ts
      if (hasId === 1) {
        v(upper.id.length)
        for (const b of upper.id) out.push(b)
      }
    }
    if (mode === 1 || mode === 4) {
      const fp = spec.fingerprint === 'real'
        ? f.set.fingerprint(hexKey(lower), upper === null ? undefined : hexKey(upper))
        : spec.random
      for (const b of fp.subarray(0, mode === 1 ? 16 : 8)) out.push(b)
    } else if (mode === 2) {
      writeItems(spec.items, upper)
    } else if (mode === 3) {
      writeItems(spec.items, upper)
      writeItems(spec.items2, upper)
    }
    if (upper === null) break
    lower = upper
  }
  return Uint8Array.from(out)
}

type ReconcileInput =
  | { kind: 'grammar', grammar: GrammarInput, role: 'initiator' | 'responder' }
  | { kind: 'mutated', limit: number, message: number, mutations: Mutation[] }
  | { kind: 'random', limit: number, bytes: Uint8Array }
  | { kind: 'conversation', limit: number, mutations: Mutation[][] }

const reconcileInputArb: fc.Arbitrary<ReconcileInput> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('grammar' as const), grammar: grammarArb, role: fc.constantFrom('initiator' as const, 'responder' as const) }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('mutated' as const), limit: fc.nat(FRAME_LIMITS.length - 1), message: fc.nat(), mutations: mutationsArb }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('random' as const),
      limit: fc.nat(FRAME_LIMITS.length - 1),
      bytes: fc.uint8Array({ maxLength: 600 }).map((b) => concat(Uint8Array.of(PROTOCOL_VERSION), b))
    })
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('conversation' as const), limit: fc.nat(FRAME_LIMITS.length - 1), mutations: fc.array(mutationsArb, { maxLength: 12 }) }) }
)

/**
 * The invariants of a session over `set`, whatever it was sent: its reply is a valid message within the frame
 * limit (so what it allocates for replies is bounded by the limit, not by the input), `have` holds only our
 * items and `need` only items we lack, each once (so both are bounded by our set and the items we were sent).
 */
function checkSession (s: ReconcileSession, set: ReconcileSet, reply: Uint8Array | null, limit: number): void {
  if (reply !== null) {
    assert.ok(reply.length <= limit, `reply of ${reply.length} bytes over the ${limit} byte limit`)
    decodeMessage(reply, limit) // our own replies are valid messages
  }
  for (const item of s.have) assert.ok(set.has(item.timestamp, item.id), 'have holds an item not in our set')
  for (const item of s.need) assert.ok(!set.has(item.timestamp, item.id), 'need holds an item we have')
  assert.equal(new Set([...s.have, ...s.need].map((i) => i.id)).size, s.have.length + s.need.length, 'an item twice in have/need')
}

/** Bytes the peer sent in each case (for a conversation, all its messages), recorded by `runReconcile`. */
const sentBytes = new WeakMap<ReconcileInput, number>()

function runReconcile (input: ReconcileInput): CaseOutcome {
  const f = reconcileFixture()
  try {
    switch (input.kind) {
      case 'grammar': {
        const limit = FRAME_LIMITS[input.grammar.limit]
        const msg = buildMessage(input.grammar, f)
        sentBytes.set(input, msg.length)
        let s: ReconcileSession
        if (input.role === 'initiator') {
          s = createInitiator({ set: f.set }, { maxMessageBytes: limit })
          s.initiate()
        } else {
          s = createResponder({ set: f.set }, { maxMessageBytes: limit })
        }
        const decoded = decodeMessage(msg, limit)
        checkSession(s, f.set, s.reconcile(msg), limit)
        return { rejected: false, allocated: estimateBytes(decoded), label: 'accepted:grammar' }
      }
      case 'mutated': {
        // replay the real exchange up to the message, then deliver it mutated to the side that receives it
        const limit = FRAME_LIMITS[input.limit]
        const t = f.transcripts[input.limit]
        const k = input.message % t.length
        const initiator = createInitiator({ set: f.peerSet }, { maxMessageBytes: limit })
        const responder = createResponder({ set: f.set }, { maxMessageBytes: limit })
        initiator.initiate()
        for (let j = 0; j < k; j++) (j % 2 === 0 ? responder : initiator).reconcile(t[j])
        const receiver = k % 2 === 0 ? responder : initiator
        const msg = mutate(t[k], input.mutations)
        sentBytes.set(input, msg.length)
        const decoded = decodeMessage(msg, limit)
        checkSession(receiver, receiver === responder ? f.set : f.peerSet, receiver.reconcile(msg), limit)
        return { rejected: false, allocated: estimateBytes(decoded), label: 'accepted:mutated' }
      }
      case 'random': {
        const limit = FRAME_LIMITS[input.limit]
        sentBytes.set(input, input.bytes.length)
        const s = createResponder({ set: f.set }, { maxMessageBytes: limit })
        const decoded = decodeMessage(input.bytes, limit)
        checkSession(s, f.set, s.reconcile(input.bytes), limit)
        return { rejected: false, allocated: estimateBytes(decoded), label: 'accepted:random' }
      }
      case 'conversation': {
        // an honest initiator over our set; the peer answers with its honest replies, mutated
        const limit = FRAME_LIMITS[input.limit]
        const maxMessages = 64
        const honest = createInitiator({ set: f.set }, { maxMessageBytes: limit, maxMessages })
        const peer = createResponder({ set: f.peerSet }, { maxMessageBytes: limit })
        let sent = 0
        let allocated = 0
        let msg: Uint8Array | null = honest.initiate()
        sentBytes.set(input, 0)
        for (let turn = 0; msg !== null; turn++) {
          assert.ok(turn <= maxMessages, 'the honest side accepted more messages than maxMessages')
          let answer: Uint8Array | null
          try {
            answer = peer.reconcile(msg)
          } catch {
            answer = null // the peer's own session broke on a mutated exchange: it stops answering
          }
          if (answer === null) break
          const bad = mutate(answer, input.mutations[turn % Math.max(1, input.mutations.length)] ?? [])
          sent += bad.length
          sentBytes.set(input, sent)
          allocated += estimateBytes(decodeMessage(bad, limit))
          msg = honest.reconcile(bad)
          checkSession(honest, f.set, msg, limit)
        }
        return { rejected: false, allocated, label: honest.done ? 'accepted:conversation done' : 'accepted:conversation cut' }
      }
    }
  } catch (err) {
    if (isOneOf(err, [ReconcileProtocolError])) return refused(err)
    throw err
  }
}

export const reconcileTarget: FuzzTarget<ReconcileInput> = {
  name: 'reconcile',
  arbitrary: reconcileInputArb,
  inputBytes: (input) => sentBytes.get(input) ?? 0,
  run: runReconcile
}

// ================================================================ change

let authors: TestAuthor[] | undefined
const testAuthors = (): TestAuthor[] => (authors ??= [createAuthor(), createAuthor(), createAuthor()])

const idCharArb = fc.constantFrom(...'abcXYZ019._:@/-'.split(''))
const idArb = fc.oneof(
  { weight: 4, arbitrary: fc.string({ unit: idCharArb, minLength: 1, maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ unit: idCharArb, minLength: 250, maxLength: 256 }) }
)

interface ChangeSpec {
  author: number
  kind: 'change' | 'delete'
  /** A version-2 document id of the author under keyId (from `nonce`), or any id. */
  v2: boolean
  nonce: Uint8Array
  docId: string
  keyId: string
  deps: Uint8Array[]
  time: number
  payload: Uint8Array
}

const changeSpecArb: fc.Arbitrary<ChangeSpec> = fc.record({
  author: fc.nat(2),
  kind: fc.constantFrom('change' as const, 'delete' as const),
  v2: fc.oneof({ weight: 3, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
  nonce: fc.uint8Array({ minLength: 12, maxLength: 12 }),
  docId: idArb,
  keyId: idArb,
  deps: fc.uniqueArray(fc.uint8Array({ minLength: 32, maxLength: 32 }), { maxLength: 6, selector: (d) => Buffer.from(d).toString('hex') }),
  time: fc.oneof(fc.nat(), fc.constant(Number.MAX_SAFE_INTEGER), fc.integer({ min: 1_600_000_000_000, max: 1_900_000_000_000 })),
  payload: fc.uint8Array({ maxLength: 400 })
})

function makeValidChange (spec: ChangeSpec): StoreChange {
  const author = testAuthors()[spec.author]
  return makeChange(author, {
    kind: spec.kind,
    docId: spec.v2 ? newDocId(author.id, spec.keyId, spec.nonce) : spec.docId,
    keyId: spec.keyId,
    deps: spec.deps.map((d) => Buffer.from(d).toString('hex')),
    time: spec.time,
    payload: spec.payload
  })
}

type ChangeInput =
  | { kind: 'valid', spec: ChangeSpec, mutations: Mutation[] }
  | { kind: 'random', bytes: Uint8Array }

const changeInputArb: fc.Arbitrary<ChangeInput> = fc.oneof(
  { weight: 9, arbitrary: fc.record({ kind: fc.constant('valid' as const), spec: changeSpecArb, mutations: mutationsArb }) },
  {
    weight: 1,
    arbitrary: fc.record({
      kind: fc.constant('random' as const),
      bytes: fc.tuple(fc.boolean(), fc.uint8Array({ maxLength: 500 })).map(([magic, b]) => magic ? concat(Buffer.from('MDC2'), b) : b)
    })
  }
)

/** The canonical bytes of a change input, and (for valid inputs) the unmutated original. */
function changeBytes (input: ChangeInput): { bytes: Uint8Array, original?: Uint8Array } {
  if (input.kind === 'random') return { bytes: Uint8Array.from(input.bytes) }
  const original = encodeChange(makeValidChange(input.spec))
  return { bytes: mutate(original, input.mutations), original }
}

const changeLengths = new WeakMap<ChangeInput, number>()

function runChange (input: ChangeInput): CaseOutcome {
  const { bytes, original } = changeBytes(input)
  changeLengths.set(input, bytes.length)
  let change: StoreChange
  try {
    change = decodeChange(bytes)
  } catch (err) {
    if (isOneOf(err, [MalformedChangeError, HashMismatchError])) return refused(err)
    throw err
  }
  // what decodes is canonical: it re-encodes to the same bytes, passes the shape and hash check, and its hash
  // is the SHA-256 of its signed part
  assert.ok(Buffer.from(encodeChange(change)).equals(bytes), 'a decoded change does not re-encode to its bytes')
  const signed = checkChange(change)
  assert.equal(createHash('sha256').update(signed).digest('hex'), change.hash)
  assert.ok(Buffer.from(sha256(change.payload)).equals(signed.subarray(signed.length - 32)), 'payload hash not in the signed part')
  // a change whose signature verifies is exactly one that its author signed: no mutation forges one
  let valid: boolean
  try {
    valid = verify(null, signed, publicKeyFromRaw(change.author), change.signature)
  } catch {
    valid = false
  }
  if (valid) assert.ok(original !== undefined && Buffer.from(original).equals(bytes), 'a mutated change still verifies')
  // the document-id checks every verifier runs on a header take any decoded header, and hold for a real one
  const keyMatches = docKeyMatches(change.docId, change.keyId)
  const createdBy = docCreatedBy(change.docId, change.author)
  assert.equal(typeof keyMatches, 'boolean')
  assert.equal(typeof createdBy, 'boolean')
  if (valid && input.kind === 'valid' && input.spec.v2) assert.ok(keyMatches && createdBy && isDocId(change.docId), 'a real v2 id fails its checks')
  // the decoded change owns its bytes: changing the input afterwards changes nothing
  const before = Buffer.from(encodeChange(change))
  bytes.fill(0xee)
  assert.ok(before.equals(encodeChange(change)), 'the decoded change shares memory with its input')
  return { rejected: false, allocated: estimateBytes(change), label: valid ? 'accepted:signature valid' : 'accepted:signature invalid' }
}

export const changeTarget: FuzzTarget<ChangeInput> = {
  name: 'change',
  arbitrary: changeInputArb,
  inputBytes: (input) => changeLengths.get(input) ?? 0,
  run: runChange
}

/** Every target, in the order `npm run fuzz` runs them. */
export const TARGETS: ReadonlyArray<FuzzTarget<never>> = [
  frameTarget, channelTarget, reconcileTarget, changeTarget, forgedTarget
] as unknown as ReadonlyArray<FuzzTarget<never>>
