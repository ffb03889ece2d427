/**
 * The reconciliation session: one side of one exchange, as a state machine over message bytes.
 *
 * Both sides run the same range logic; the initiator only sends the first message (one 16-byte fingerprint of the
 * whole set; every later fingerprint has 8 bytes). A mismatching Fingerprint range is split into at most
 * `branchingFactor` sub-ranges of about equal item counts, as many as reach id lists of about
 * `idListThreshold / 16` items in the fewest rounds, with split points moved (by at most a quarter of a
 * sub-range) to round timestamps that pack into short heads; a range holding at most `idListThreshold` of our
 * items is answered with our IdList instead. An IdList is answered with an IdDiff that tells the peer both
 * directions of the difference in that range, so each side ends knowing `have` and `need`.
 *
 * Invariants (cited in the code as (1)...(8)):
 * 1. Roles: only the initiator starts (`initiate`, once); the responder's first event is a message.
 * 2. A message holding a request (a Fingerprint or IdList range) gets exactly one reply, possibly empty. A
 *    message without requests gets none: after sending or receiving it, both sides are done.
 * 3. Our messages list contiguous, strictly increasing ranges from the minimal bound; whatever follows the last
 *    range is settled.
 * 4. No message we send exceeds `maxMessageBytes`: every unit of work is added only if it fits together with the
 *    deferral reserve, and work that does not fit is handed back as a Fingerprint over what is left of the
 *    peer's requests (deferral), so nothing is lost and the session still converges.
 * 5. Progress: the first request of a message always gets at least one unit (MIN_MESSAGE_BYTES is computed
 *    for the worst case), and every unit shrinks or settles a range.
 * 6. Every incoming message is decoded and validated in full before it changes any state; an invalid one
 *    fails the session with ReconcileProtocolError.
 * 7. Bounded work: at most `maxMessages` messages are accepted; each is at most `maxMessageBytes`; the work per
 *    message is bounded by its size and our output budget; there is no recursion. A message longer than an
 *    honest answer to our last one could be ((b + 2) ranges per request we sent) is refused before any work.
 *    Over the whole session the ranges handled stay within `workPerLevel * ceil(log2(set size + 2)) +
 *    workPerFound * (differences found) + (b + 2) * (mismatches, capped by the split tree of our set)`, charged
 *    range by range as they are handled (so what one range finds counts before the next is judged); over it the
 *    session fails with reason BUDGET. A peer can make a session cost O(log n + difference) range operations,
 *    at most O(n) by faking mismatches, however many messages it sends.
 * 8. `have` and `need` only take ids checked against our set (an IdDiff cannot make us claim what we lack, or
 *    lack what we have), each id once.
 */
import { InternalError, InvalidArgumentError, ReconcileProtocolError } from '../../errors.js'
import { RECONCILE_WORK_PER_FOUND, RECONCILE_WORK_PER_LEVEL } from '../../limits.js'
import { silentLogger } from '../../util/logger.js'
import type { Logger } from '../../util/logger.js'
import {
  DEFAULT_BRANCHING_FACTOR, DEFAULT_ID_LIST_THRESHOLD, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MAX_MESSAGES,
  DEFERRAL_RESERVE_BYTES, DEFERRAL_SHARE, FOLD_BYTES, LEAF_DIVISOR, MAX_BOUND_BYTES, MAX_BRANCHING_FACTOR, MIN_MESSAGE_BYTES,
  SHORT_FINGERPRINT_BYTES, SPLIT_SLACK
} from './constants.js'
import {
  INF_BOUND, MessageWriter, compareItems, decodeMessage, isIdDiffRange, isRequest, itemBytes,
  minimalBound, roundTimestamp
} from './codec.js'
import type { Bound, FingerprintRange, IdDiffRange, IdListRange, RangeType, WireItem, WireRange } from './codec.js'
import { equalFingerprints } from './fingerprint.js'
import { bytesToId } from './ids.js'
import { ChunkedReconcileSet } from './set.js'
import type { ReconcileComponents, ReconcileInit, ReconcileItem, ReconcileRole, ReconcileSession, ReconcileStats } from './types.js'
import { varintLength } from './varint.js'

/** What handling one incoming range did to the reply. */
type Outcome =
  | { readonly kind: 'settled' } // nothing to say about it
  | { readonly kind: 'answered' } // fully answered
  | { readonly kind: 'cut', readonly at: Bound } // answered below `at`, the rest must be deferred
  | { readonly kind: 'blocked' } // nothing of it fitted

const SETTLED: Outcome = { kind: 'settled' }
/** The empty id prefix of a timestamp-only bound. */
const NO_ID = new Uint8Array(0)
const ANSWERED: Outcome = { kind: 'answered' }
const BLOCKED: Outcome = { kind: 'blocked' }

/** The reply being built: its writer and the byte limit work must stay under (frame limit minus reserve). */
interface Turn {
  readonly w: MessageWriter
  readonly limit: number
}

type SessionEvent =
  | { readonly type: 'start' }
  | { readonly type: 'message', readonly ranges: readonly WireRange[] }

type State = 'idle' | 'awaiting' | 'done' | 'failed'

type Handler<T extends RangeType> = (turn: Turn, range: Extract<WireRange, { type: T }>) => Outcome

function integerOption (name: string, value: number | undefined, dflt: number, min: number, max: number): number {
  if (value === undefined) return dflt
  if (typeof value !== 'number') throw new TypeError(`${name} must be a number`)
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new InvalidArgumentError(`${name} must be an integer in ${min}..${max}`)
  }
  return value
}

export interface SessionInit extends ReconcileInit {
  role: ReconcileRole
}

export class Session implements ReconcileSession {
  readonly role: ReconcileRole
  readonly #set: ChunkedReconcileSet
  readonly #log: Logger
  readonly #maxMessageBytes: number
  readonly #branchingFactor: number
  readonly #idListThreshold: number
  readonly #maxMessages: number
  readonly #workPerLevel: number
  readonly #workPerFound: number
  readonly #answerRangesPerRequest: number
  /** Ranges of the peer's messages handled so far (7). */
  #work = 0
  /** Peer fingerprints that did not match ours (each proves a difference below it, or a lying peer) (7). */
  #mismatches = 0
  /** Ranges of our last message that ask for an answer: what bounds the length of the peer's next message (7). */
  #lastRequests = 0
  #state: State = 'idle'
  readonly #have: ReconcileItem[] = []
  readonly #need: ReconcileItem[] = []
  readonly #seen = new Set<string>()
  readonly #stats: ReconcileStats = { messagesSent: 0, messagesReceived: 0, bytesSent: 0, bytesReceived: 0 }
  readonly #handlers: { readonly [T in RangeType]: Handler<T> } = {
    skip: () => SETTLED,
    idDiff: () => SETTLED, // recorded before the reply is built (8)
    fingerprint: (turn, range) => this.#onFingerprint(turn, range),
    idList: (turn, range) => this.#onIdList(turn, range)
  }

  constructor (components: ReconcileComponents, init: SessionInit) {
    if (!(components?.set instanceof ChunkedReconcileSet)) {
      throw new TypeError('components.set must be a set made by createReconcileSet()')
    }
    if (init.role !== 'initiator' && init.role !== 'responder') throw new TypeError('role must be initiator or responder')
    this.role = init.role
    this.#set = components.set
    this.#log = components.logger ?? silentLogger
    this.#maxMessageBytes = integerOption('maxMessageBytes', init.maxMessageBytes, DEFAULT_MAX_MESSAGE_BYTES, MIN_MESSAGE_BYTES, 2 ** 30)
    this.#branchingFactor = integerOption('branchingFactor', init.branchingFactor, DEFAULT_BRANCHING_FACTOR, 2, MAX_BRANCHING_FACTOR)
    this.#idListThreshold = integerOption('idListThreshold', init.idListThreshold, DEFAULT_ID_LIST_THRESHOLD, 1, 2 ** 31)
    this.#maxMessages = integerOption('maxMessages', init.maxMessages, DEFAULT_MAX_MESSAGES, 1, 2 ** 31)
    this.#workPerLevel = integerOption('workPerLevel', init.workPerLevel, RECONCILE_WORK_PER_LEVEL, 1, 2 ** 31)
    this.#workPerFound = integerOption('workPerFound', init.workPerFound, RECONCILE_WORK_PER_FOUND, 0, 2 ** 31)
    this.#answerRangesPerRequest = integerOption('answerRangesPerRequest', init.answerRangesPerRequest, this.#branchingFactor + 2, this.#branchingFactor + 2, 2 ** 31)
  }

  /** Ranges handled so far, and the most this session accepts at its current state (7). */
  get work (): { used: number, budget: number } {
    return { used: this.#work, budget: this.#budget() }
  }

  /**
   * The session's work budget (7): a base that grows with the log of the set, plus an allowance per difference
   * found and per mismatching fingerprint (an honest peer answers a mismatch with at most `branchingFactor`
   * ranges and an id list; the mismatches counted are capped by the size of the split tree over our set, about
   * `levels * n / idListThreshold`, so a peer faking mismatches buys at most O(n) work, never unbounded work).
   */
  #budget (): number {
    const n = this.#set.size
    const log2 = Math.ceil(Math.log2(n + 2))
    const levels = Math.ceil(log2 / Math.log2(this.#branchingFactor)) + 1
    const mismatchCap = levels * Math.ceil((n + 1) / this.#idListThreshold) + this.#branchingFactor
    return this.#workPerLevel * log2 + this.#workPerFound * (this.#have.length + this.#need.length) +
      (this.#branchingFactor + 2) * Math.min(this.#mismatches, mismatchCap)
  }

  get done (): boolean {
    return this.#state === 'done'
  }

  get have (): readonly ReconcileItem[] {
    return this.#have
  }

  get need (): readonly ReconcileItem[] {
    return this.#need
  }

  get stats (): Readonly<ReconcileStats> {
    return { ...this.#stats }
  }

  // ---- events: check, change state, then decide ----

  initiate (): Uint8Array {
    if (this.role !== 'initiator') throw new TypeError('only the initiator calls initiate()') // (1)
    if (this.#state !== 'idle') throw new TypeError('initiate() was already called') // (1)
    const first = this.#decide({ type: 'start' })
    if (first === null) throw new InternalError('reconcile: internal error, no first message')
    return first
  }

  reconcile (message: Uint8Array): Uint8Array | null {
    if (!(message instanceof Uint8Array)) throw new TypeError('message must be a Uint8Array')
    if (this.role === 'initiator' && this.#state === 'idle') throw new TypeError('call initiate() first') // (1)
    if (this.#state === 'done' || this.#state === 'failed') {
      this.#state = 'failed'
      throw new ReconcileProtocolError('message after the session ended', { reason: 'UNEXPECTED_MESSAGE' }) // (2)
    }
    if (this.#stats.messagesReceived >= this.#maxMessages) {
      this.#state = 'failed'
      throw new ReconcileProtocolError(`more than ${this.#maxMessages} messages`, { reason: 'TOO_MANY_MESSAGES' }) // (7)
    }
    this.#stats.messagesReceived++
    this.#stats.bytesReceived += message.length
    let ranges: WireRange[]
    try {
      // (7) the range count an honest answer can have is checked while decoding: a longer message stops there
      ranges = decodeMessage(message, this.#maxMessageBytes, this.#allowedRanges()) // (6)
    } catch (err) {
      this.#state = 'failed'
      this.#log.debug({ role: this.role, err }, 'reconcile: invalid message')
      throw err
    }
    return this.#decide({ type: 'message', ranges })
  }

  // ---- the decision function ----

  #decide (event: SessionEvent): Uint8Array | null {
    if (event.type === 'start') {
      const w = new MessageWriter(64)
      const size = this.#set.size
      // An empty side asks for everything at once; any other side starts with one fingerprint (cheap when equal).
      if (size === 0) w.idList(INF_BOUND, [])
      else w.fingerprint(INF_BOUND, this.#set.fingerprintAt(0, size))
      return this.#send(w)
    }
    // (7) an honest peer answers each request of our last message with at most b + 2 ranges (a skip, then a
    // split into b, or one IdDiff; or one deferred fingerprint): a longer message is refused before any work
    const allowed = this.#allowedRanges()
    if (event.ranges.length > allowed) {
      this.#overBudget(`a message of ${event.ranges.length} ranges answers ${this.#lastRequests} requests`)
    }
    for (const range of event.ranges) if (isIdDiffRange(range)) this.#recordPeerDiff(range) // (8)
    if (!event.ranges.some(isRequest)) { // (2)
      this.#charge(event.ranges.length)
      this.#finish()
      return null
    }
    return this.#send(this.#answer(event.ranges))
  }

  /**
   * Counts `ranges` of the peer's work against the session's budget (7), range by range as they are handled, so
   * that what a range finds (differences, mismatches) counts before the next one is judged.
   */
  #charge (ranges: number): void {
    this.#work += ranges
    if (this.#work > this.#budget()) this.#overBudget(`reconciliation work over budget (${this.#work} ranges)`)
  }

  /** The most ranges an honest answer to our last message has (7). */
  #allowedRanges (): number {
    return this.#answerRangesPerRequest * Math.max(1, this.#lastRequests) + 2
  }

  #overBudget (why: string): never {
    this.#state = 'failed'
    throw new ReconcileProtocolError(why, { reason: 'BUDGET' })
  }

  #send (w: MessageWriter): Uint8Array {
    const bytes = w.finish()
    if (bytes.length > this.#maxMessageBytes) throw new InternalError('reconcile: internal error, message over the frame limit') // (4)
    this.#stats.messagesSent++
    this.#stats.bytesSent += bytes.length
    this.#lastRequests = w.requests
    if (w.hasRequests) this.#state = 'awaiting' // (2)
    else this.#finish()
    return bytes
  }

  #finish (): void {
    this.#state = 'done'
    this.#log.debug({ role: this.role, ...this.#stats, have: this.#have.length, need: this.#need.length }, 'reconcile: done')
  }

  /** Builds the reply to the requests of an incoming message (3)(4)(5). */
  #answer (ranges: readonly WireRange[]): MessageWriter {
    const reserve = Math.max(DEFERRAL_RESERVE_BYTES, Math.floor(this.#maxMessageBytes * DEFERRAL_SHARE))
    const turn: Turn = {
      w: new MessageWriter(Math.min(this.#maxMessageBytes, 4096)),
      limit: this.#maxMessageBytes - reserve
    }
    let answeredAny = false
    for (let k = 0; k < ranges.length; k++) {
      this.#charge(1)
      const range = ranges[k]
      const handler = this.#handlers[range.type] as (turn: Turn, range: WireRange) => Outcome
      const outcome = handler(turn, range)
      if (outcome.kind === 'cut' || outcome.kind === 'blocked') {
        if (outcome.kind === 'blocked' && !answeredAny) throw new InternalError('reconcile: internal error, no progress') // (5)
        this.#defer(turn.w, ranges, k, outcome) // (4)
        break
      }
      if (outcome.kind === 'answered') answeredAny = true
    }
    return turn.w
  }

  /**
   * Hands the requests we could not answer back to the peer (4): our fingerprint of each of them (what is left
   * of `ranges[k]`, then every later request), one by one while the frame has room, the rest folded into one
   * fingerprint. The peer compares and works on what differs, so the shape of the pending work is kept.
   */
  #defer (w: MessageWriter, ranges: readonly WireRange[], k: number, outcome: Outcome): void {
    const pending: Array<{ lower: Bound, upper: Bound }> = [{
      lower: outcome.kind === 'cut' ? outcome.at : ranges[k].lower,
      upper: ranges[k].upper
    }]
    for (let j = k + 1; j < ranges.length; j++) if (isRequest(ranges[j])) pending.push(ranges[j])
    const frame = this.#maxMessageBytes
    const last = pending[pending.length - 1].upper
    for (let p = 0; p < pending.length; p++) {
      const { lower, upper } = pending[p]
      const one = w.rangeCost(lower, upper, SHORT_FINGERPRINT_BYTES)
      const fits = p === pending.length - 1 ? w.length + one <= frame : w.length + one + FOLD_BYTES <= frame
      w.moveTo(lower)
      w.fingerprint(fits ? upper : last, this.#fingerprintOf(lower, fits ? upper : last))
      if (!fits) break
    }
  }

  #fingerprintOf (lower: Bound, upper: Bound): Uint8Array {
    return this.#short(this.#set.fingerprintAt(this.#set.lowerBound(lower), this.#set.lowerBound(upper)))
  }

  /** The short fingerprint every message after the first carries. */
  #short (fp: Uint8Array): Uint8Array {
    return fp.subarray(0, SHORT_FINGERPRINT_BYTES)
  }

  // ---- one handler per range type ----

  #onFingerprint (turn: Turn, range: FingerprintRange): Outcome {
    const lo = this.#set.lowerBound(range.lower)
    const hi = this.#set.lowerBound(range.upper)
    const theirs = range.fingerprint
    if (equalFingerprints(this.#set.fingerprintAt(lo, hi).subarray(0, theirs.length), theirs)) return SETTLED
    this.#mismatches++ // (7)
    return this.#split(turn, range.lower, range.upper, lo, hi)
  }

  /** Answers the peer's ids with both directions of the difference in the range (an IdDiff). */
  #onIdList (turn: Turn, range: IdListRange): Outcome {
    const { w, limit } = turn
    const set = this.#set
    const lo = set.lowerBound(range.lower)
    const hi = set.lowerBound(range.upper)
    const theirs = range.items
    const mine: WireItem[] = [] // ours only: we have, they lack
    const yours: WireItem[] = [] // theirs only: they have, we lack
    const skip = w.skipCost(range.lower)
    let bytes = 0
    let prevMine = range.lower.ts
    let prevYours = range.lower.ts
    let last: WireItem | undefined
    let next: WireItem | undefined
    const c = hi > lo ? set.cursor(lo) : undefined
    let i = lo
    let j = 0
    for (;;) {
      let cmp = 0
      while (c !== undefined && i < hi && j < theirs.length) {
        cmp = compareItems(c.ts, c.ids, c.off, theirs[j].ts, theirs[j].id, 0)
        if (cmp !== 0) break
        i++
        j++
        if (i < hi) c.next()
      }
      let item: WireItem
      let ours: boolean
      if (c !== undefined && i < hi && (j >= theirs.length || cmp < 0)) {
        item = { ts: c.ts, id: c.id() }
        ours = true
      } else if (j < theirs.length) {
        item = theirs[j]
        ours = false
      } else {
        break
      }
      const s = itemBytes(item.ts, ours ? prevMine : prevYours)
      const cost = skip + MAX_BOUND_BYTES + varintLength(mine.length + (ours ? 1 : 0)) +
        varintLength(yours.length + (ours ? 0 : 1)) + bytes + s
      if (w.length + cost > limit) {
        next = item
        break
      }
      if (ours) {
        mine.push(item)
        prevMine = item.ts
        i++
        if (i < hi) c?.next()
      } else {
        yours.push(item)
        prevYours = item.ts
        j++
      }
      bytes += s
      last = item
    }
    if (next === undefined) {
      if (mine.length + yours.length === 0) return SETTLED
      w.moveTo(range.lower)
      w.idDiff(range.upper, mine, yours)
      this.#record(mine, yours)
      return ANSWERED
    }
    if (last === undefined) return BLOCKED
    const at = minimalBound(last.ts, last.id, 0, next.ts, next.id, 0)
    w.moveTo(range.lower)
    w.idDiff(at, mine, yours)
    this.#record(mine, yours)
    return { kind: 'cut', at }
  }

  // ---- building blocks ----

  /**
   * Splits a mismatching range [lower, upper) holding our items lo..hi into fingerprinted buckets (or ids).
   * Each split point may move by SPLIT_SLACK of a bucket to a round bound (a short head); a window of items that
   * all share one timestamp keeps the exact point and an id prefix.
   */
  #split (turn: Turn, lower: Bound, upper: Bound, lo: number, hi: number): Outcome {
    const count = hi - lo
    if (count <= this.#idListThreshold) return this.#sendIdList(turn, lower, upper, lo, hi)
    const { w, limit } = turn
    const buckets = this.#splitWidth(count)
    const slack = Math.floor(count / buckets * SPLIT_SLACK)
    let start = lo
    let from = lower
    for (let k = 0; k < buckets; k++) {
      let end = hi
      let to = upper
      if (k < buckets - 1) {
        end = lo + Math.floor((k + 1) * count / buckets)
        to = this.#boundNear(from, start, end, slack, hi)
        end = this.#set.lowerBound(to)
      }
      if (w.length + w.rangeCost(from, to, SHORT_FINGERPRINT_BYTES) > limit) return k === 0 ? BLOCKED : { kind: 'cut', at: from }
      w.moveTo(from)
      w.fingerprint(to, this.#short(this.#set.fingerprintAt(start, end)))
      start = end
      from = to
    }
    return ANSWERED
  }

  /**
   * Sub-ranges a mismatching range of `count` items is split into. First the rounds: the fewest that reach id
   * lists of at most half the threshold with `branchingFactor` sub-ranges each (the margin absorbs the slack
   * of split points, so that every sub-range plans the same number of rounds as its parent). Then the width
   * that reaches lists of about idListThreshold / LEAF_DIVISOR items in that many rounds (bytes grow with the
   * width, and each list item costs about as much as four fingerprints).
   */
  #splitWidth (count: number): number {
    const b = this.#branchingFactor
    const reach = Math.max(1, this.#idListThreshold / 2)
    let rounds = 1
    while (b ** rounds * reach < count) rounds++
    const target = Math.max(1, Math.floor(this.#idListThreshold / LEAF_DIVISOR))
    const width = Math.ceil((count / target) ** (1 / rounds) - 1e-9)
    return Math.min(count, b, Math.max(2, width))
  }

  /**
   * A bound between our items near `end` (split after end - 1): among the items within `slack` of it (and after
   * `start`), the roundest timestamp, if the window spans more than one timestamp; else the shortest bound
   * between items end - 1 and end.
   */
  #boundNear (from: Bound, start: number, end: number, slack: number, hi: number): Bound {
    const a = Math.max(start + 1, end - slack)
    const z = Math.min(hi - 1, end + slack)
    if (a <= z && from.ts !== Infinity) {
      const loTs = this.#set.cursor(a - 1).ts
      const hiTs = this.#set.cursor(z).ts
      if (loTs < hiTs && loTs >= from.ts) return { ts: roundTimestamp(from.ts, loTs, hiTs), id: NO_ID }
    }
    return this.#boundBetween(end - 1)
  }

  /** Sends our items lo..hi of [lower, upper) as an IdList, as many as fit. */
  #sendIdList (turn: Turn, lower: Bound, upper: Bound, lo: number, hi: number): Outcome {
    const { w, limit } = turn
    const count = hi - lo
    const skip = w.skipCost(lower)
    const items: WireItem[] = []
    let bytes = 0
    let prevTs = lower.ts
    const c = count > 0 ? this.#set.cursor(lo) : undefined
    for (let k = 0; c !== undefined && k < count; k++) {
      if (k > 0) c.next()
      const s = itemBytes(c.ts, prevTs)
      const boundBytes = k + 1 === count ? w.headSize(upper, lower.ts) : MAX_BOUND_BYTES
      if (w.length + skip + boundBytes + varintLength(k + 1) + bytes + s > limit) break
      items.push({ ts: c.ts, id: c.id() })
      bytes += s
      prevTs = c.ts
    }
    if (items.length === count) {
      if (w.length + w.rangeCost(lower, upper, varintLength(count) + bytes) > limit) return BLOCKED
      w.moveTo(lower)
      w.idList(upper, items)
      return ANSWERED
    }
    if (items.length === 0) return BLOCKED
    const at = this.#boundBetween(lo + items.length - 1)
    w.moveTo(lower)
    w.idList(at, items)
    return { kind: 'cut', at }
  }

  /** The shortest bound between our items i and i + 1. */
  #boundBetween (i: number): Bound {
    const c = this.#set.cursor(i)
    const ts = c.ts
    const ids = c.ids
    const off = c.off
    c.next()
    return minimalBound(ts, ids, off, c.ts, c.ids, c.off)
  }

  /** Records the difference we just told the peer (8). */
  #record (mine: readonly WireItem[], yours: readonly WireItem[]): void {
    for (const item of mine) this.#add(this.#have, item)
    for (const item of yours) this.#add(this.#need, item)
  }

  /** Records the difference the peer told us, keeping only what agrees with our set (8). */
  #recordPeerDiff (range: IdDiffRange): void {
    for (const item of range.senderOnly) if (!this.#set.hasRaw(item.ts, item.id, 0)) this.#add(this.#need, item)
    for (const item of range.receiverOnly) if (this.#set.hasRaw(item.ts, item.id, 0)) this.#add(this.#have, item)
  }

  #add (list: ReconcileItem[], item: WireItem): void {
    const id = bytesToId(item.id, 0)
    if (this.#seen.has(id)) return
    this.#seen.add(id)
    list.push({ timestamp: item.ts, id })
  }
}
