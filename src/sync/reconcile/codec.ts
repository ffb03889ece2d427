/**
 * The binary message format of set reconciliation (version 2), and its validating decoder.
 *
 * ```
 * message   := version:u8 range*
 * range     := head:varint [tsDelta:varint] [idLen:varint idPrefix:idLen] payload
 *                                                     (its lower bound is the previous range's upper bound, the
 *                                                      first range's is (0, empty); upper bounds strictly increase)
 * head      = ((q * 56 + e) * 2 + hasId) * 8 + mode   (one varint holds the mode, the id-prefix flag and, for a
 *                                                      "round" bound, its whole timestamp delta)
 *   e = 0        upper bound is infinity (q = 0, hasId = 0)
 *   e = 1        raw: tsDelta follows as a varint (q = 0)
 *   e = 2..55    tsDelta = (2q + 1) * 2^(e - 2)        (no tsDelta field)
 *   tsDelta      upper bound timestamp - the previous upper bound's timestamp in this message (0 for the first)
 *   hasId = 1    an id prefix follows (1..32 bytes; the shortest that separates the neighbouring items)
 * mode 0 Skip              payload: none           (the range is settled)
 * mode 1 Fingerprint       payload: 16 bytes       (the sender's fingerprint of the range: compare, split if different)
 * mode 4 ShortFingerprint  payload: 8 bytes        (the same, first 8 bytes; used below the first message)
 * mode 2 IdList            payload: items          (all the sender's items in the range: answer with an IdDiff)
 * mode 3 IdDiff            payload: items items    (the items only the sender has, then the items only the
 *                                                   receiver has, in the range; needs no answer)
 * items     := count:varint (tsDelta:varint id:32)*   (strictly increasing; the first delta is from the range's
 *                                                      lower bound timestamp, the next ones from the previous item)
 * ```
 * Varints are unsigned LEB128 up to 2^53. Ranges after the last one are settled (trailing Skips are left out).
 * Senders pick split bounds whose timestamp delta is a small odd number times a power of two (a "round" bound
 * anywhere between two items), so a bound and its mode usually take 1-2 bytes.
 */
import { InternalError, ReconcileProtocolError } from '../../errors.js'
import { FINGERPRINT_BYTES, ID_BYTES, MAX_TIMESTAMP, PROTOCOL_VERSION, SHORT_FINGERPRINT_BYTES } from './constants.js'
import { MAX_VARINT, MAX_VARINT_BYTES, varintLength, writeVarint } from './varint.js'

/**
 * A position in the (timestamp, id) order: `id` is a prefix, read as zero-padded to 32 bytes.
 * `ts` is Infinity for the bound after every item.
 */
export interface Bound {
  readonly ts: number
  readonly id: Uint8Array
}

const EMPTY = new Uint8Array(0)

/** The bound before every item. */
export const MIN_BOUND: Bound = { ts: 0, id: EMPTY }
/** The bound after every item. */
export const INF_BOUND: Bound = { ts: Infinity, id: EMPTY }

/** An item on the wire; `id` is a 32-byte view. */
export interface WireItem {
  readonly ts: number
  readonly id: Uint8Array
}

export const MODE_SKIP = 0
export const MODE_FINGERPRINT = 1
export const MODE_ID_LIST = 2
export const MODE_ID_DIFF = 3
export const MODE_SHORT_FINGERPRINT = 4

/** Head `e` values: infinity, a raw delta, and the first of the (2q + 1) * 2^(e - 2) exponents. */
const E_INF = 0
const E_RAW = 1
const E_BASE = 2
const E_CODES = 56
/** A head's q stays below this, so that the head is exact in a double (and at most 8 varint bytes). */
const MAX_Q = 2 ** 40

function headValue (mode: number, hasId: number, e: number, q: number): number {
  return ((q * E_CODES + e) * 2 + hasId) * 8 + mode
}

/** The packed form (q, e) of a delta, or undefined when the raw form must be used. */
function packDelta (delta: number): { q: number, e: number } | undefined {
  if (delta <= 0) return undefined
  let m = delta
  let e = 0
  while (m % 2 === 0) {
    m /= 2
    e++
  }
  const q = (m - 1) / 2
  return q < MAX_Q ? { q, e: E_BASE + e } : undefined
}

/** Bytes of a head for a finite bound at `delta` after the previous one (mode and flag included, id excluded). */
function finiteHeadSize (delta: number): number {
  const raw = 1 + varintLength(delta)
  const p = packDelta(delta)
  if (p === undefined) return raw
  return Math.min(raw, varintLength(headValue(7, 1, p.e, p.q)))
}

/**
 * The "roundest" timestamp t with lo < t <= hi, measured from `base` (base <= lo < hi): the one whose delta
 * t - base has the most trailing zero bits, so that its packed head is shortest.
 */
export function roundTimestamp (base: number, lo: number, hi: number): number {
  const dlo = lo - base
  const dhi = hi - base
  for (let p = 2 ** 52; p >= 1; p /= 2) {
    const c = Math.floor(dhi / p) * p
    if (c > dlo) return base + c
  }
  return hi
}

interface RangeBase {
  readonly lower: Bound
  readonly upper: Bound
}
export interface SkipRange extends RangeBase {
  readonly type: 'skip'
}
export interface FingerprintRange extends RangeBase {
  readonly type: 'fingerprint'
  readonly fingerprint: Uint8Array
}
export interface IdListRange extends RangeBase {
  readonly type: 'idList'
  readonly items: readonly WireItem[]
}
export interface IdDiffRange extends RangeBase {
  readonly type: 'idDiff'
  /** Items the sender has and the receiver lacks. */
  readonly senderOnly: readonly WireItem[]
  /** Items the receiver has and the sender lacks. */
  readonly receiverOnly: readonly WireItem[]
}
/** One decoded range of a message: a union on `type`. */
export type WireRange = SkipRange | FingerprintRange | IdListRange | IdDiffRange
export type RangeType = WireRange['type']

export function isSkipRange (r: WireRange): r is SkipRange { return r.type === 'skip' }
export function isFingerprintRange (r: WireRange): r is FingerprintRange { return r.type === 'fingerprint' }
export function isIdListRange (r: WireRange): r is IdListRange { return r.type === 'idList' }
export function isIdDiffRange (r: WireRange): r is IdDiffRange { return r.type === 'idDiff' }
/** True for the ranges that ask the receiver for an answer. */
export function isRequest (r: WireRange): boolean { return r.type === 'fingerprint' || r.type === 'idList' }

// ---- order ----

/** Sign of a - b, bounds compared as (ts, id zero-padded to 32 bytes). */
export function compareBounds (a: Bound, b: Bound): number {
  if (a.ts !== b.ts) return a.ts < b.ts ? -1 : 1
  const ai = a.id
  const bi = b.id
  const m = Math.max(ai.length, bi.length)
  for (let k = 0; k < m; k++) {
    const d = (k < ai.length ? ai[k] : 0) - (k < bi.length ? bi[k] : 0)
    if (d !== 0) return d
  }
  return 0
}

/** Sign of item - bound, the item's id being the 32 bytes of `ids` at byte offset `off`. */
export function compareItemBound (ts: number, ids: Uint8Array, off: number, b: Bound): number {
  if (ts !== b.ts) return ts < b.ts ? -1 : 1
  const p = b.id
  for (let k = 0; k < p.length; k++) {
    const d = ids[off + k] - p[k]
    if (d !== 0) return d
  }
  for (let k = p.length; k < ID_BYTES; k++) if (ids[off + k] !== 0) return 1
  return 0
}

/** Sign of item a - item b. */
export function compareItems (ats: number, aids: Uint8Array, aoff: number, bts: number, bids: Uint8Array, boff: number): number {
  if (ats !== bts) return ats < bts ? -1 : 1
  for (let k = 0; k < ID_BYTES; k++) {
    const d = aids[aoff + k] - bids[boff + k]
    if (d !== 0) return d
  }
  return 0
}

/**
 * The shortest bound b with prev < b <= curr (prev < curr): curr's timestamp alone when the timestamps differ,
 * else curr's id cut one byte after the prefix it shares with prev.
 */
export function minimalBound (pts: number, pids: Uint8Array, poff: number, cts: number, cids: Uint8Array, coff: number): Bound {
  if (pts !== cts) return { ts: cts, id: EMPTY }
  let shared = 0
  while (shared < ID_BYTES && pids[poff + shared] === cids[coff + shared]) shared++
  return { ts: cts, id: cids.slice(coff, coff + Math.min(shared + 1, ID_BYTES)) }
}

// ---- decoding ----

function fail (reason: string, message: string): never {
  throw new ReconcileProtocolError(message, { reason })
}

class Reader {
  pos = 0
  readonly #buf: Uint8Array

  constructor (buf: Uint8Array) {
    this.#buf = buf
  }

  get remaining (): number {
    return this.#buf.length - this.pos
  }

  byte (): number {
    if (this.pos >= this.#buf.length) fail('TRUNCATED', 'message ends inside a field')
    return this.#buf[this.pos++]
  }

  varint (): number {
    let value = 0
    let scale = 1
    for (let k = 0; ; k++) {
      if (k === MAX_VARINT_BYTES) fail('BAD_VARINT', 'varint longer than 8 bytes')
      const b = this.byte()
      value += (b & 0x7f) * scale
      if ((b & 0x80) === 0) break
      scale *= 128
    }
    if (value > MAX_VARINT) fail('BAD_VARINT', 'varint larger than 2^53')
    return value
  }

  bytes (n: number): Uint8Array {
    if (n > this.remaining) fail('TRUNCATED', 'message ends inside a field')
    const out = this.#buf.subarray(this.pos, this.pos + n)
    this.pos += n
    return out
  }
}

interface DecodeState {
  lastTs: number
}

/** Reads a range's head and upper bound; returns the bound and the mode. */
function decodeHead (r: Reader, st: DecodeState): { upper: Bound, mode: number } {
  const x = r.varint()
  const mode = x % 8
  const hasId = Math.floor(x / 8) % 2
  const rest = Math.floor(x / 16)
  const e = rest % E_CODES
  const q = Math.floor(rest / E_CODES)
  if (e === E_INF) {
    if (q !== 0 || hasId !== 0) fail('BAD_BOUND', 'the infinity bound has an id prefix or a delta')
    return { upper: INF_BOUND, mode }
  }
  let delta: number
  if (e === E_RAW) {
    if (q !== 0) fail('BAD_BOUND', 'a raw bound with a packed delta')
    delta = r.varint()
  } else {
    delta = (2 * q + 1) * 2 ** (e - E_BASE)
  }
  const abs = st.lastTs + delta
  if (delta > MAX_TIMESTAMP || abs > MAX_TIMESTAMP) fail('BAD_TIMESTAMP', 'bound timestamp beyond 2^53-1')
  let id: Uint8Array = EMPTY
  if (hasId === 1) {
    const len = r.varint()
    if (len === 0 || len > ID_BYTES) fail('BAD_BOUND', 'bound id prefix of 0 or more than 32 bytes')
    id = r.bytes(len)
  }
  st.lastTs = abs
  return { upper: { ts: abs, id }, mode }
}

function decodeItems (r: Reader, lower: Bound, upper: Bound): WireItem[] {
  const count = r.varint()
  if (count * (1 + ID_BYTES) > r.remaining) fail('TRUNCATED', 'item count larger than the message')
  const items: WireItem[] = new Array<WireItem>(count)
  let prevTs = lower.ts
  for (let k = 0; k < count; k++) {
    const ts = prevTs + r.varint()
    if (ts > MAX_TIMESTAMP) fail('BAD_TIMESTAMP', 'item timestamp beyond 2^53-1')
    const id = r.bytes(ID_BYTES)
    if (k === 0) {
      if (compareItemBound(ts, id, 0, lower) < 0) fail('ITEM_OUT_OF_RANGE', 'item below its range')
    } else {
      const prev = items[k - 1]
      if (compareItems(prev.ts, prev.id, 0, ts, id, 0) >= 0) fail('ITEMS_ORDER', 'items not strictly increasing')
    }
    if (compareItemBound(ts, id, 0, upper) >= 0) fail('ITEM_OUT_OF_RANGE', 'item at or above its range upper bound')
    items[k] = { ts, id }
    prevTs = ts
  }
  return items
}

type RangeDecoder = (r: Reader, lower: Bound, upper: Bound) => WireRange

const DECODERS: ReadonlyMap<number, RangeDecoder> = new Map<number, RangeDecoder>([
  [MODE_SKIP, (_r, lower, upper) => ({ type: 'skip', lower, upper })],
  [MODE_FINGERPRINT, (r, lower, upper) => ({ type: 'fingerprint', lower, upper, fingerprint: r.bytes(FINGERPRINT_BYTES) })],
  [MODE_SHORT_FINGERPRINT, (r, lower, upper) => ({ type: 'fingerprint', lower, upper, fingerprint: r.bytes(SHORT_FINGERPRINT_BYTES) })],
  [MODE_ID_LIST, (r, lower, upper) => ({ type: 'idList', lower, upper, items: decodeItems(r, lower, upper) })],
  [MODE_ID_DIFF, (r, lower, upper) => {
    const senderOnly = decodeItems(r, lower, upper)
    const receiverOnly = decodeItems(r, lower, upper)
    return { type: 'idDiff', lower, upper, senderOnly, receiverOnly }
  }]
])

/**
 * Decodes and validates a whole message. Throws ReconcileProtocolError (with a `reason`) for a message that is
 * too large, empty or truncated, of another version, with bounds out of order or malformed, with an unknown mode,
 * or with items out of order or outside their range, and (reason BUDGET) one of more than `maxRanges` ranges, as
 * soon as the range after the last allowed one starts. Returned ids are views into `bytes`.
 */
export function decodeMessage (bytes: Uint8Array, maxBytes: number, maxRanges = Infinity): WireRange[] {
  if (bytes.length > maxBytes) fail('FRAME_TOO_LARGE', `message of ${bytes.length} bytes exceeds the ${maxBytes} byte limit`)
  if (bytes.length === 0) fail('TRUNCATED', 'empty message')
  const r = new Reader(bytes)
  const version = r.byte()
  if (version !== PROTOCOL_VERSION) fail('BAD_VERSION', `unsupported protocol version ${version}`)
  const st: DecodeState = { lastTs: 0 }
  const ranges: WireRange[] = []
  let lower = MIN_BOUND
  while (r.remaining > 0) {
    if (lower === INF_BOUND) fail('BOUNDS_ORDER', 'range after the infinity bound')
    if (ranges.length >= maxRanges) fail('BUDGET', `a message of more than ${maxRanges} ranges`)
    const { upper, mode } = decodeHead(r, st)
    if (compareBounds(upper, lower) <= 0) fail('BOUNDS_ORDER', 'range upper bound not above its lower bound')
    const decode = DECODERS.get(mode)
    if (decode === undefined) fail('UNKNOWN_MODE', `unknown range mode ${mode}`)
    ranges.push(decode(r, lower, upper))
    lower = upper
  }
  return ranges
}

// ---- encoding ----

/** Encoded size of an item list's items alone, given the timestamp the first delta starts from. */
export function itemBytes (ts: number, prevTs: number): number {
  return varintLength(ts - prevTs) + ID_BYTES
}

/**
 * Builds one message. Ranges are appended in increasing order; `moveTo` fills gaps with a Skip. Knows the
 * exact encoded size of what it would append, so callers can keep to a byte budget.
 */
export class MessageWriter {
  #buf: Uint8Array
  #pos = 1
  #lastTs = 0
  #lastBound: Bound = MIN_BOUND
  #requests = 0

  constructor (capacity = 256) {
    this.#buf = new Uint8Array(Math.max(16, capacity))
    this.#buf[0] = PROTOCOL_VERSION
  }

  /** Bytes written so far. */
  get length (): number {
    return this.#pos
  }

  /** True once a range that asks for an answer (Fingerprint, IdList) was written. */
  get hasRequests (): boolean {
    return this.#requests > 0
  }

  /** Ranges written that ask for an answer (Fingerprint, IdList). */
  get requests (): number {
    return this.#requests
  }

  /** Upper bound of the last range written (MIN_BOUND at first). */
  get lastBound (): Bound {
    return this.#lastBound
  }

  /** Timestamp of the last finite bound written (0 at first): what the next bound's delta starts from. */
  get lastTs (): number {
    return this.#lastTs
  }

  /** Encoded size of a range head (mode included) with upper bound `b`, written after a bound at `baseTs`. */
  headSize (b: Bound, baseTs: number): number {
    if (b.ts === Infinity) return 1
    const idBytes = b.id.length === 0 ? 0 : varintLength(b.id.length) + b.id.length
    return finiteHeadSize(b.ts - baseTs) + idBytes
  }

  /** Bytes of the Skip needed before a range starting at `lower` (0 when the last range ends there). */
  skipCost (lower: Bound): number {
    return compareBounds(this.#lastBound, lower) === 0 ? 0 : this.headSize(lower, this.#lastTs)
  }

  /** Bytes of a range [lower, upper) with `payload` bytes after its head, including any Skip before it. */
  rangeCost (lower: Bound, upper: Bound, payload: number): number {
    return this.skipCost(lower) + this.headSize(upper, lower.ts) + payload
  }

  /** Ends the last range at `lower` with a Skip, unless it already ends there. */
  moveTo (lower: Bound): void {
    if (compareBounds(this.#lastBound, lower) === 0) return
    this.#writeHead(lower, MODE_SKIP)
  }

  /** A Fingerprint range (16 bytes) or a ShortFingerprint range (8 bytes), by the length of `fp`. */
  fingerprint (upper: Bound, fp: Uint8Array): void {
    if (fp.length !== FINGERPRINT_BYTES && fp.length !== SHORT_FINGERPRINT_BYTES) throw new TypeError('a fingerprint has 16 or 8 bytes')
    this.#writeHead(upper, fp.length === FINGERPRINT_BYTES ? MODE_FINGERPRINT : MODE_SHORT_FINGERPRINT)
    this.#bytes(fp)
    this.#requests++
  }

  idList (upper: Bound, items: readonly WireItem[]): void {
    const base = this.#lastBound.ts
    this.#writeHead(upper, MODE_ID_LIST)
    this.#items(items, base)
    this.#requests++
  }

  idDiff (upper: Bound, senderOnly: readonly WireItem[], receiverOnly: readonly WireItem[]): void {
    const base = this.#lastBound.ts
    this.#writeHead(upper, MODE_ID_DIFF)
    this.#items(senderOnly, base)
    this.#items(receiverOnly, base)
  }

  /** The message bytes. */
  finish (): Uint8Array {
    return this.#buf.slice(0, this.#pos)
  }

  #ensure (n: number): void {
    if (this.#pos + n <= this.#buf.length) return
    const next = new Uint8Array(Math.max(this.#pos + n, this.#buf.length * 2))
    next.set(this.#buf.subarray(0, this.#pos))
    this.#buf = next
  }

  #varint (v: number): void {
    this.#ensure(9)
    this.#pos = writeVarint(this.#buf, this.#pos, v)
  }

  #bytes (b: Uint8Array): void {
    this.#ensure(b.length)
    this.#buf.set(b, this.#pos)
    this.#pos += b.length
  }

  #writeHead (b: Bound, mode: number): void {
    if (compareBounds(b, this.#lastBound) <= 0) throw new InternalError('reconcile: internal error, bounds written out of order')
    if (b.ts === Infinity) {
      this.#varint(headValue(mode, 0, E_INF, 0))
    } else {
      const delta = b.ts - this.#lastTs
      const hasId = b.id.length === 0 ? 0 : 1
      const p = packDelta(delta)
      if (p !== undefined && varintLength(headValue(mode, hasId, p.e, p.q)) < 1 + varintLength(delta)) {
        this.#varint(headValue(mode, hasId, p.e, p.q))
      } else {
        this.#varint(headValue(mode, hasId, E_RAW, 0))
        this.#varint(delta)
      }
      this.#lastTs = b.ts
      if (hasId === 1) {
        this.#varint(b.id.length)
        this.#bytes(b.id)
      }
    }
    this.#lastBound = b
  }

  #items (items: readonly WireItem[], base: number): void {
    this.#varint(items.length)
    let prevTs = base
    for (const item of items) {
      this.#varint(item.ts - prevTs)
      this.#bytes(item.id)
      prevTs = item.ts
    }
  }
}
