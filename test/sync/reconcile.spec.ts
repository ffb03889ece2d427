import { strict as assert } from 'node:assert'
import { createHash } from 'node:crypto'
import fc from 'fast-check'
import { InvalidArgumentError, ReconcileProtocolError } from '../../src/errors.js'
import {
  MIN_MESSAGE_BYTES, PROTOCOL_VERSION, createInitiator, createReconcileSession, createReconcileSet, createResponder
} from '../../src/sync/reconcile/index.js'
import type { ReconcileInit, ReconcileItem, ReconcileSession, ReconcileSet } from '../../src/sync/reconcile/index.js'
import { MessageWriter, decodeMessage, roundTimestamp } from '../../src/sync/reconcile/codec.js'
import { ChunkedReconcileSet } from '../../src/sync/reconcile/set.js'
import { prng } from '../utils/prng.js'

// ---- helpers ----


type TsMode = 'spread' | 'few' | 'same'
type IdMode = 'random' | 'sharedPrefix'

/**
 * `n` distinct random items; `few`/`same` timestamps make many ties. `sharedPrefix` ids share their first 24 bytes,
 * so bounds need long id prefixes; the other 8 bytes keep the ids random enough for additive fingerprints (ids
 * with only a few random bits, unlike SHA-256 hashes, make equal-sized ranges collide by chance).
 */
function randomItems (n: number, rand: () => number, tsMode: TsMode = 'spread', idMode: IdMode = 'random'): ReconcileItem[] {
  const out = new Map<string, ReconcileItem>()
  const base = 1_700_000_000_000
  while (out.size < n) {
    const bytes = Buffer.alloc(32)
    for (let k = 0; k < 32; k++) bytes[k] = Math.floor(rand() * 256)
    if (idMode === 'sharedPrefix') bytes.fill(0xab, 0, 24)
    const timestamp = tsMode === 'same' ? base : tsMode === 'few' ? base + Math.floor(rand() * 4) : base + Math.floor(rand() * 1e9)
    const id = bytes.toString('hex')
    out.set(id, { timestamp, id })
  }
  return [...out.values()]
}

function compareItems (a: ReconcileItem, b: ReconcileItem): number {
  if (a.timestamp !== b.timestamp) return a.timestamp - b.timestamp
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0
}

function leb128 (n: number): Buffer {
  const out: number[] = []
  while (n >= 128) {
    out.push((n % 128) | 0x80)
    n = Math.floor(n / 128)
  }
  out.push(n)
  return Buffer.from(out)
}

/** The fingerprint computed from scratch with BigInt: SHA-256(sum of ids mod 2^256, LE || varint count)[0..16]. */
function referenceFingerprint (items: readonly ReconcileItem[]): string {
  let sum = 0n
  for (const item of items) sum += BigInt('0x' + Buffer.from(item.id, 'hex').reverse().toString('hex'))
  sum &= (1n << 256n) - 1n
  const le = Buffer.alloc(32)
  for (let k = 0; k < 32; k++) {
    le[k] = Number(sum & 0xffn)
    sum >>= 8n
  }
  return createHash('sha256').update(Buffer.concat([le, leb128(items.length)])).digest().subarray(0, 16).toString('hex')
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex')

interface SyncResult {
  initiator: ReconcileSession
  responder: ReconcileSession
  sizes: number[]
  bytes: number
  roundTrips: number
}

/** Runs a session between two sets in-process until both are done. */
function sync (a: ReconcileSet, b: ReconcileSet, init: ReconcileInit = {}, maxTurns = 100_000): SyncResult {
  const initiator = createInitiator({ set: a }, init)
  const responder = createResponder({ set: b }, init)
  let msg: Uint8Array | null = initiator.initiate()
  const sizes = [msg.length]
  let next = responder
  while (msg !== null) {
    if (sizes.length > maxTurns) throw new Error('session did not converge')
    msg = next.reconcile(msg)
    if (msg !== null) sizes.push(msg.length)
    next = next === responder ? initiator : responder
  }
  return { initiator, responder, sizes, bytes: sizes.reduce((s, x) => s + x, 0), roundTrips: Math.ceil(sizes.length / 2) }
}

function idsOf (items: readonly ReconcileItem[]): string[] {
  return items.map((i) => i.id).sort()
}

/** Asserts that both sides found exactly the true difference of `a` and `b`, with the right timestamps. */
function assertExactDiff (r: SyncResult, a: readonly ReconcileItem[], b: readonly ReconcileItem[]): void {
  const inA = new Map(a.map((i) => [i.id, i]))
  const inB = new Map(b.map((i) => [i.id, i]))
  const aOnly = a.filter((i) => !inB.has(i.id))
  const bOnly = b.filter((i) => !inA.has(i.id))
  assert.equal(r.initiator.done, true, 'initiator done')
  assert.equal(r.responder.done, true, 'responder done')
  assert.deepEqual(idsOf(r.initiator.have), idsOf(aOnly), 'initiator have')
  assert.deepEqual(idsOf(r.initiator.need), idsOf(bOnly), 'initiator need')
  assert.deepEqual(idsOf(r.responder.have), idsOf(bOnly), 'responder have')
  assert.deepEqual(idsOf(r.responder.need), idsOf(aOnly), 'responder need')
  for (const item of [...r.initiator.have, ...r.responder.need]) assert.equal(item.timestamp, inA.get(item.id)?.timestamp)
  for (const item of [...r.initiator.need, ...r.responder.have]) assert.equal(item.timestamp, inB.get(item.id)?.timestamp)
}

/** Two item lists sharing `shared` items, with `onlyA`/`onlyB` items of their own. */
function pair (rand: () => number, shared: number, onlyA: number, onlyB: number, tsMode: TsMode, idMode: IdMode): [ReconcileItem[], ReconcileItem[]] {
  const all = randomItems(shared + onlyA + onlyB, rand, tsMode, idMode)
  const common = all.slice(0, shared)
  return [[...common, ...all.slice(shared, shared + onlyA)], [...common, ...all.slice(shared + onlyA)]]
}

// ---- hand-built messages ----

function varint (n: number): number[] {
  return [...leb128(n)]
}

/**
 * A range head in its raw form (codec.ts): the mode, the id-prefix flag and e = 1 (raw delta) packed into one
 * varint, then the timestamp delta, then the id prefix. `tsPlusOne` is the delta + 1; 0 is the infinity bound.
 */
function head (mode: number, tsPlusOne: number, prefix: number[] = []): number[] {
  const hasId = prefix.length > 0 ? 1 : 0
  if (tsPlusOne === 0) return [...varint(hasId * 8 + mode), ...(hasId === 1 ? [...varint(prefix.length), ...prefix] : [])]
  return [...varint((2 + hasId) * 8 + mode), ...varint(tsPlusOne - 1), ...(hasId === 1 ? [...varint(prefix.length), ...prefix] : [])]
}

/** A packed head: ((q * 56 + e) * 2 + hasId) * 8 + mode. */
function packedHead (mode: number, q: number, e: number, hasId = 0): number[] {
  return varint(((q * 56 + e) * 2 + hasId) * 8 + mode)
}

const ID = (fill: number): number[] => new Array<number>(32).fill(fill)

function message (...parts: number[][]): Uint8Array {
  return Uint8Array.from([PROTOCOL_VERSION, ...parts.flat()])
}

function expectProtocolError (fn: () => unknown, reason: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ReconcileProtocolError, `expected ReconcileProtocolError, got ${String(err)}`)
    assert.equal(err.name, 'ReconcileProtocolError')
    assert.equal(err.code, 'RECONCILE_PROTOCOL')
    assert.equal(err.reason, reason)
    return true
  })
}

// ---- tests ----

describe('sync/reconcile', () => {
  describe('ReconcileSet', () => {
    it('should keep items ordered by (timestamp, id) and drop duplicates', () => {
      const items = randomItems(500, prng(1), 'few')
      const set = createReconcileSet([...items, ...items.slice(0, 50)])
      assert.equal(set.size, 500)
      assert.deepEqual([...set.items()], [...items].sort(compareItems))
    })

    it('should report insert, delete and has truthfully', () => {
      const set = createReconcileSet()
      const [x, y] = randomItems(2, prng(2))
      assert.equal(set.insert(x.timestamp, x.id), true)
      assert.equal(set.insert(x.timestamp, x.id.toUpperCase()), false)
      assert.equal(set.has(x.timestamp, x.id), true)
      assert.equal(set.has(x.timestamp + 1, x.id), false)
      assert.equal(set.delete(y.timestamp, y.id), false)
      assert.equal(set.delete(x.timestamp, x.id), true)
      assert.equal(set.size, 0)
      assert.equal(set.has(x.timestamp, x.id), false)
    })

    it('should reject invalid ids and timestamps', () => {
      const set = createReconcileSet()
      const id = 'ab'.repeat(32)
      assert.throws(() => set.insert(1, 'xyz'), InvalidArgumentError)
      assert.throws(() => set.insert(1, 'ab'.repeat(31) + 'zz'), InvalidArgumentError)
      assert.throws(() => set.insert(-1, id), InvalidArgumentError)
      assert.throws(() => set.insert(1.5, id), InvalidArgumentError)
      assert.throws(() => set.insert(2 ** 53, id), InvalidArgumentError)
      assert.throws(() => set.insert('1' as unknown as number, id), TypeError)
      assert.throws(() => set.insert(1, 42 as unknown as string), TypeError)
      assert.throws(() => createReconcileSet([{ timestamp: 1, id: 'nope' }]), InvalidArgumentError)
      assert.equal(set.size, 0)
    })

    it('should give the fingerprint of an empty set and range as the fingerprint of nothing', () => {
      const empty = referenceFingerprint([])
      assert.equal(hex(createReconcileSet().fingerprint()), empty)
      const set = createReconcileSet(randomItems(10, prng(3)))
      assert.equal(hex(set.fingerprint({ timestamp: 0 }, { timestamp: 0 })), empty)
      assert.equal(hex(set.fingerprint({ timestamp: 5 }, { timestamp: 1 })), empty)
    })

    it('should keep fingerprints right through incremental inserts and deletes (chunk splits and merges)', () => {
      const rand = prng(4)
      const pool = randomItems(6000, rand, 'few')
      const set = createReconcileSet()
      const model = new Map<string, ReconcileItem>()
      const check = (): void => {
        const sorted = [...model.values()].sort(compareItems)
        assert.equal(set.size, sorted.length)
        assert.equal(hex(set.fingerprint()), referenceFingerprint(sorted))
        for (let k = 0; k < 5 && sorted.length > 0; k++) {
          const i = Math.floor(rand() * sorted.length)
          const j = i + Math.floor(rand() * (sorted.length - i))
          const from = sorted[i]
          const to = sorted[j]
          assert.equal(hex(set.fingerprint(from, to)), referenceFingerprint(sorted.slice(i, j)), `range ${i}..${j}`)
        }
      }
      for (let step = 0; step < 12_000; step++) {
        const item = pool[Math.floor(rand() * pool.length)]
        // grow for the first half, then shrink, so chunks split and then merge
        const insert = step < 6000 ? rand() < 0.85 : rand() < 0.15
        if (insert) assert.equal(set.insert(item.timestamp, item.id), !model.has(item.id))
        else assert.equal(set.delete(item.timestamp, item.id), model.has(item.id))
        if (insert) model.set(item.id, item)
        else model.delete(item.id)
        if (step % 1000 === 0) check()
      }
      check()
      const copy = set.clone()
      const first = [...model.values()].sort(compareItems)[0]
      copy.delete(first.timestamp, first.id)
      assert.equal(set.has(first.timestamp, first.id), true, 'clone is independent')
      assert.equal(copy.size, set.size - 1)
    })

    it('should match from-scratch fingerprints for random insert/delete sequences (property)', () => {
      fc.assert(fc.property(
        fc.integer(), fc.array(fc.tuple(fc.boolean(), fc.nat(199)), { maxLength: 400 }),
        (seed, ops) => {
          const pool = randomItems(200, prng(seed), 'few', seed % 2 === 0 ? 'random' : 'sharedPrefix')
          const set = createReconcileSet()
          const model = new Map<string, ReconcileItem>()
          for (const [insert, k] of ops) {
            const item = pool[k]
            if (insert) {
              set.insert(item.timestamp, item.id)
              model.set(item.id, item)
            } else {
              set.delete(item.timestamp, item.id)
              model.delete(item.id)
            }
          }
          const sorted = [...model.values()].sort(compareItems)
          assert.equal(hex(set.fingerprint()), referenceFingerprint(sorted))
          if (sorted.length > 1) {
            const mid = sorted.length >> 1
            assert.equal(hex(set.fingerprint(undefined, sorted[mid])), referenceFingerprint(sorted.slice(0, mid)))
            assert.equal(hex(set.fingerprint(sorted[mid])), referenceFingerprint(sorted.slice(mid)))
          }
        }
      ), { numRuns: 100 })
    })
  })

  describe('message format', () => {
    it('should pick a round timestamp strictly above lo and at most hi (property)', () => {
      fc.assert(fc.property(
        fc.nat(2 ** 40), fc.nat(2 ** 40), fc.integer({ min: 1, max: 2 ** 40 }),
        (base, gap, width) => {
          const lo = base + gap
          const hi = lo + width
          const t = roundTimestamp(base, lo, hi)
          assert.ok(t > lo && t <= hi, `${t} not in (${lo}, ${hi}]`)
          // no timestamp of the interval has more trailing zero bits in its delta from base
          const tz = (x: number): number => { let z = 0; while (x % 2 === 0 && z < 60) { x /= 2; z++ } return z }
          const p = 2 ** (tz(t - base) + 1)
          assert.ok(Math.floor((hi - base) / p) * p <= lo - base, 'a rounder timestamp exists')
        }
      ), { numRuns: 500 })
    })

    it('should decode what it encodes: heads of any delta, id prefix and mode (property)', () => {
      const boundArb = fc.record({
        delta: fc.oneof(fc.nat(100), fc.nat(2 ** 32), fc.constantFrom(0, 1, 2 ** 20, 3 * 2 ** 30, 2 ** 52, 2 ** 53 - 2, 2 ** 53 - 1)),
        prefix: fc.uint8Array({ minLength: 0, maxLength: 32 }),
        kind: fc.constantFrom('skip', 'long', 'short')
      })
      fc.assert(fc.property(fc.array(boundArb, { maxLength: 30 }), fc.boolean(), (specs, toInfinity) => {
        const w = new MessageWriter(64)
        const expected: Array<{ ts: number, id: string, kind: string }> = []
        let ts = 0
        let last = { ts: 0, id: new Uint8Array(0) }
        for (const spec of specs) {
          if (ts + spec.delta > 2 ** 53 - 1) break
          const bound = { ts: ts + spec.delta, id: spec.prefix }
          // bounds must increase: compare as (ts, id zero-padded)
          const cmp = bound.ts !== last.ts ? bound.ts - last.ts : Buffer.compare(Buffer.concat([bound.id, Buffer.alloc(32 - bound.id.length)]), Buffer.concat([last.id, Buffer.alloc(32 - last.id.length)]))
          if (cmp <= 0) continue
          if (spec.kind === 'skip') w.moveTo(bound)
          else w.fingerprint(bound, new Uint8Array(spec.kind === 'long' ? 16 : 8).fill(9))
          expected.push({ ts: bound.ts, id: hex(bound.id), kind: spec.kind })
          ts = bound.ts
          last = bound
        }
        if (toInfinity) {
          w.fingerprint({ ts: Infinity, id: new Uint8Array(0) }, new Uint8Array(8))
          expected.push({ ts: Infinity, id: '', kind: 'short' })
        }
        const bytes = w.finish()
        const ranges = decodeMessage(bytes, bytes.length)
        assert.deepEqual(ranges.map((r) => ({
          ts: r.upper.ts,
          id: hex(r.upper.id),
          kind: r.type === 'skip' ? 'skip' : r.type === 'fingerprint' ? (r.fingerprint.length === 16 ? 'long' : 'short') : r.type
        })), expected)
      }), { numRuns: 300 })
    })

    it('should spend at most two bytes on a round bound and its mode', () => {
      const w = new MessageWriter(64)
      w.fingerprint({ ts: 3 * 2 ** 30, id: new Uint8Array(0) }, new Uint8Array(8))
      assert.equal(w.length, 1 + 2 + 8)
    })
  })

  describe('sessions', () => {
    it('should settle equal sets in one round trip of a few bytes (no more than format 1: 21 B)', () => {
      const items = randomItems(20_000, prng(5))
      const r = sync(createReconcileSet(items), createReconcileSet(items))
      assert.equal(r.roundTrips, 1)
      assert.ok(r.bytes <= 21, `${r.bytes} bytes`)
      assertExactDiff(r, items, items)
    })

    it('should settle two empty sets in one round trip', () => {
      const r = sync(createReconcileSet(), createReconcileSet())
      assert.equal(r.roundTrips, 1)
      assertExactDiff(r, [], [])
    })

    it('should find one difference among 100k items within 3 round trips and 2 KB', () => {
      const [a, b] = pair(prng(6), 100_000, 0, 1, 'spread', 'random')
      for (const [x, y] of [[a, b], [b, a]]) {
        const r = sync(createReconcileSet(x), createReconcileSet(y))
        assert.ok(r.roundTrips <= 3, `${r.roundTrips} round trips`)
        assert.ok(r.bytes <= 2048, `${r.bytes} bytes`)
        assertExactDiff(r, x, y)
      }
    })

    it('should load sorted parts straight into chunks as fromPacked does, and refuse items out of order or short', () => {
      const rand = prng(62)
      const n = 5_000 // several chunks (CHUNK_LOAD_ITEMS each), cut into parts across their edges
      const timestamps = new Float64Array(n)
      const ids = new Uint8Array(n * 32)
      for (let k = 0; k < ids.length; k++) ids[k] = Math.floor(rand() * 256)
      let t = 1_700_000_000_000
      for (let k = 0; k < n; k++) {
        if (rand() >= 0.3) t += 1 + Math.floor(rand() * 1000)
        timestamps[k] = t
      }
      const expected = ChunkedReconcileSet.fromPacked(timestamps, ids)
      /** The set's items in order, cut into parts before the given indices. */
      const parts = (cuts: number[]): Array<[Float64Array, Uint8Array]> => {
        const all = [...expected.items()]
        return [0, ...cuts].map((from, p) => {
          const items = all.slice(from, [...cuts, all.length][p])
          return [Float64Array.from(items.map((i) => i.timestamp)), new Uint8Array(Buffer.concat(items.map((i) => Buffer.from(i.id, 'hex'))))]
        })
      }
      const load = (chunks: Array<[Float64Array, Uint8Array]>, total = expected.size): ChunkedReconcileSet => {
        const loader = ChunkedReconcileSet.sortedLoader(total)
        for (const [ts, idBytes] of chunks) loader.add(ts, idBytes)
        return loader.finish()
      }
      const loaded = load(parts([1, 2, 767, 768, 769, 3333]))
      assert.equal(loaded.size, expected.size)
      assert.deepEqual([...loaded.items()], [...expected.items()])
      assert.deepEqual(loaded.fingerprint(), expected.fingerprint())
      const mid = [...expected.items()][2500]
      assert.deepEqual(loaded.fingerprint(undefined, mid), expected.fingerprint(undefined, mid))
      // a set like any other afterwards
      assert.equal(loaded.delete(mid.timestamp, mid.id), true)
      assert.equal(loaded.insert(mid.timestamp, mid.id), true)
      assert.deepEqual(loaded.fingerprint(), expected.fingerprint())
      // an item repeated at a part's edge (here also a chunk's), two items swapped inside a part, and fewer or
      // more items than announced
      const good = parts([768])
      const repeated: Array<[Float64Array, Uint8Array]> = [good[0], [
        Float64Array.from([good[0][0][767], ...good[1][0]]),
        new Uint8Array(Buffer.concat([good[0][1].subarray(767 * 32), good[1][1]]))
      ]]
      assert.throws(() => load(repeated, expected.size + 1), /out of order/)
      const [swapped] = parts([])
      const [ts0, ids0] = swapped
      ;[ts0[10], ts0[11]] = [ts0[11], ts0[10]]
      const id10 = ids0.slice(320, 352)
      ids0.copyWithin(320, 352, 384)
      ids0.set(id10, 352)
      assert.throws(() => load([swapped]), /out of order/)
      assert.throws(() => load(good, expected.size + 1), /items of/)
      assert.throws(() => load(good, expected.size - 1), /more items than announced/)
    })

    it('should find one difference among 10^6 items within 3 round trips and 2 KB, either side', function () {
      this.timeout(60_000)
      // packed items as the served-set index holds them: about one a minute, one in ten sharing its timestamp
      const n = 1_000_000
      const rand = prng(61)
      const timestamps = new Float64Array(n)
      const ids = new Uint8Array(n * 32)
      const words = new Uint32Array(ids.buffer)
      for (let k = 0; k < words.length; k++) words[k] = Math.floor(rand() * 2 ** 32)
      let t = 1_700_000_000_000
      for (let k = 0; k < n; k++) {
        if (rand() >= 0.1) t += 1 + Math.floor(rand() * 120_000)
        timestamps[k] = t
      }
      const full = ChunkedReconcileSet.fromPacked(timestamps, ids)
      const missing = { timestamp: timestamps[123_457], id: Buffer.from(ids.subarray(123_457 * 32, 123_458 * 32)).toString('hex') }
      const lacking = full.clone()
      assert.equal(lacking.delete(missing.timestamp, missing.id), true)
      for (const [x, y, side] of [[full, lacking, 'initiator'], [lacking, full, 'responder']] as const) {
        const r = sync(x, y)
        assert.ok(r.roundTrips <= 3, `${side} has it: ${r.roundTrips} round trips`)
        assert.ok(r.bytes <= 2048, `${side} has it: ${r.bytes} bytes`)
        const holder = side === 'initiator' ? r.initiator : r.responder
        const other = side === 'initiator' ? r.responder : r.initiator
        assert.deepEqual(holder.have, [missing])
        assert.deepEqual(other.need, [missing])
        assert.equal(holder.need.length + other.have.length, 0)
      }
      // and an equal pair of that size still costs one round trip of at most 21 bytes
      const same = sync(full, full.clone())
      assert.equal(same.roundTrips, 1)
      assert.ok(same.bytes <= 21, `${same.bytes} bytes`)
    })

    it('should find exact differences at the edges of the split plan and with identical times (property)', () => {
      // sizes around the id-list threshold (64), half of it (32: what the split plan aims below) and the sizes
      // where the plan takes one more round (48 * 32 = 1,536); differences around the same edges and the leaf (4)
      const sizes = [1, 4, 5, 31, 32, 33, 63, 64, 65, 129, 1535, 1536, 1537, 3100]
      const diffs = [0, 1, 2, 3, 4, 5, 31, 32, 33, 63, 64, 65]
      fc.assert(fc.property(
        fc.integer(), fc.constantFrom(...sizes), fc.constantFrom(...diffs), fc.constantFrom(...diffs),
        fc.constantFrom<TsMode>('spread', 'few', 'same'), fc.constantFrom<IdMode>('random', 'sharedPrefix'),
        fc.constantFrom(MIN_MESSAGE_BYTES, 1024, 65_536),
        (seed, shared, onlyA, onlyB, tsMode, idMode, maxMessageBytes) => {
          const [a, b] = pair(prng(seed), shared, onlyA, onlyB, tsMode, idMode)
          const r = sync(createReconcileSet(a), createReconcileSet(b), { maxMessageBytes })
          for (const size of r.sizes) assert.ok(size <= maxMessageBytes, `message of ${size} > ${maxMessageBytes}`)
          assertExactDiff(r, a, b)
        }
      ), { numRuns: 200 })
    })

    it('should exchange everything when one side is empty', () => {
      const items = randomItems(3000, prng(7))
      for (const init of [{}, { maxMessageBytes: 1024 }]) {
        assertExactDiff(sync(createReconcileSet(), createReconcileSet(items), init), [], items)
        assertExactDiff(sync(createReconcileSet(items), createReconcileSet(), init), items, [])
      }
    })

    it('should let both sides learn exact differences for random small pairs, at any frame limit (property)', () => {
      fc.assert(fc.property(
        fc.integer(),
        fc.nat(300), fc.nat(60), fc.nat(60),
        fc.constantFrom<TsMode>('spread', 'few', 'same'),
        fc.constantFrom<IdMode>('random', 'sharedPrefix'),
        fc.constantFrom(MIN_MESSAGE_BYTES, 300, 512, 1024, 65_536),
        fc.constantFrom(2, 3, 16, 32),
        fc.constantFrom(1, 4, 64),
        (seed, shared, onlyA, onlyB, tsMode, idMode, maxMessageBytes, branchingFactor, idListThreshold) => {
          const [a, b] = pair(prng(seed), shared, onlyA, onlyB, tsMode, idMode)
          const init = { maxMessageBytes, branchingFactor, idListThreshold }
          const r = sync(createReconcileSet(a), createReconcileSet(b), init)
          for (const size of r.sizes) assert.ok(size <= maxMessageBytes, `message of ${size} > ${maxMessageBytes}`)
          assertExactDiff(r, a, b)
        }
      ), { numRuns: 200 })
    })

    it('should let both sides learn exact differences for large random pairs (property, few runs)', function () {
      this.timeout(60_000)
      fc.assert(fc.property(
        fc.integer(),
        fc.integer({ min: 10_000, max: 100_000 }), fc.double({ min: 0, max: 1, noNaN: true }),
        fc.constantFrom<TsMode>('spread', 'few'),
        fc.constantFrom(4096, 65_536, 1 << 20),
        (seed, total, sharedShare, tsMode, maxMessageBytes) => {
          const rand = prng(seed)
          const shared = Math.floor(total * sharedShare)
          const rest = total - shared
          const onlyA = Math.floor(rest * rand())
          const [a, b] = pair(rand, shared, onlyA, rest - onlyA, tsMode, 'random')
          const r = sync(createReconcileSet(a), createReconcileSet(b), { maxMessageBytes, maxMessages: 1_000_000 })
          for (const size of r.sizes) assert.ok(size <= maxMessageBytes)
          assertExactDiff(r, a, b)
        }
      ), {
        numRuns: 4,
        // always include the largest sets: 100k items, mostly shared, and with no overlap at all
        // (and a case that once went over the work budget: nothing shared, one message could hold every range)
        examples: [[1, 100_000, 0.999, 'spread', 65_536], [2, 100_000, 0, 'few', 1 << 20], [1514331836, 34692, 0, 'spread', 1 << 20],
          [0, 67744, 0, 'spread', 1 << 20]]
      })
    })

    it('should converge on large sets at the minimum frame limit', function () {
      this.timeout(60_000)
      fc.assert(fc.property(
        fc.integer(), fc.nat(40), fc.nat(40),
        (seed, onlyA, onlyB) => {
          const [a, b] = pair(prng(seed), 50_000, onlyA, onlyB, 'few', 'random')
          const r = sync(createReconcileSet(a), createReconcileSet(b), { maxMessageBytes: MIN_MESSAGE_BYTES, maxMessages: 1_000_000 })
          for (const size of r.sizes) assert.ok(size <= MIN_MESSAGE_BYTES)
          assertExactDiff(r, a, b)
        }
      ), { numRuns: 2 })
    })

    it('should separate items whose ids differ only in their last byte (32-byte bound prefixes)', () => {
      const rand = prng(18)
      const all = Array.from({ length: 200 }, (_, k) => ({ timestamp: 1000, id: 'cd'.repeat(31) + k.toString(16).padStart(2, '0') }))
      // one-sided differences: the counts of differing ranges differ, so their fingerprints always do
      const b = all.filter(() => rand() < 0.9)
      for (const maxMessageBytes of [MIN_MESSAGE_BYTES, 65_536]) {
        for (const [x, y] of [[all, b], [b, all]]) {
          const r = sync(createReconcileSet(x), createReconcileSet(y), { maxMessageBytes, idListThreshold: 2, branchingFactor: 4 })
          assertExactDiff(r, x, y)
        }
      }
    })

    it('should keep its set usable while it changes between sessions', () => {
      const rand = prng(8)
      const [a, b] = pair(rand, 5000, 10, 10, 'spread', 'random')
      const setA = createReconcileSet(a)
      const setB = createReconcileSet(b)
      const first = sync(setA, setB)
      assertExactDiff(first, a, b)
      // apply the difference, as a sync would, then reconcile again: nothing is left
      for (const item of first.initiator.need) setA.insert(item.timestamp, item.id)
      for (const item of first.responder.need) setB.insert(item.timestamp, item.id)
      const second = sync(setA, setB)
      assert.equal(second.roundTrips, 1)
      assert.equal(second.initiator.have.length + second.initiator.need.length, 0)
    })

    it('should still end, within its limits, when the sets change during a session', () => {
      fc.assert(fc.property(fc.integer(), fc.constantFrom(MIN_MESSAGE_BYTES, 2048), (seed, maxMessageBytes) => {
        const rand = prng(seed)
        const [a, b] = pair(rand, 2000, 50, 50, 'few', 'random')
        const extra = randomItems(200, rand, 'few')
        const setA = createReconcileSet(a)
        const setB = createReconcileSet(b)
        const initiator = createInitiator({ set: setA }, { maxMessageBytes })
        const responder = createResponder({ set: setB }, { maxMessageBytes })
        let msg: Uint8Array | null = initiator.initiate()
        let turn = responder
        let turns = 0
        while (msg !== null) {
          assert.ok(++turns < 10_000, 'session did not end')
          // the served sets keep changing between messages
          const item = extra[Math.floor(rand() * extra.length)]
          const target = rand() < 0.5 ? setA : setB
          if (rand() < 0.5) target.insert(item.timestamp, item.id)
          else target.delete(item.timestamp, item.id)
          const victim = b[Math.floor(rand() * b.length)]
          setB.delete(victim.timestamp, victim.id)
          msg = turn.reconcile(msg)
          if (msg !== null) assert.ok(msg.length <= maxMessageBytes)
          turn = turn === responder ? initiator : responder
        }
        assert.equal(initiator.done && responder.done, true)
      }), { numRuns: 20 })
    })

    it('should reach the same result through createReconcileSession', () => {
      const [a, b] = pair(prng(9), 1000, 3, 4, 'spread', 'random')
      const i = createReconcileSession({ set: createReconcileSet(a) }, 'initiator')
      const rsp = createReconcileSession({ set: createReconcileSet(b) }, 'responder')
      let msg: Uint8Array | null = i.initiate()
      let turn = rsp
      while (msg !== null) {
        msg = turn.reconcile(msg)
        turn = turn === rsp ? i : rsp
      }
      assertExactDiff({ initiator: i, responder: rsp, sizes: [], bytes: 0, roundTrips: 0 }, a, b)
    })

    it('should refuse calls out of turn', () => {
      const set = createReconcileSet(randomItems(10, prng(10)))
      const initiator = createInitiator({ set })
      assert.throws(() => initiator.reconcile(message()), TypeError)
      initiator.initiate()
      assert.throws(() => initiator.initiate(), TypeError)
      assert.throws(() => createResponder({ set }).initiate(), TypeError)
      assert.throws(() => createResponder({ set }).reconcile('x' as unknown as Uint8Array), TypeError)
      assert.throws(() => createInitiator({ set: {} as unknown as ReconcileSet }), TypeError)
    })

    it('should reject options out of range', () => {
      const set = createReconcileSet()
      assert.throws(() => createInitiator({ set }, { maxMessageBytes: MIN_MESSAGE_BYTES - 1 }), InvalidArgumentError)
      assert.throws(() => createInitiator({ set }, { branchingFactor: 1 }), InvalidArgumentError)
      assert.throws(() => createInitiator({ set }, { idListThreshold: 0 }), InvalidArgumentError)
      assert.throws(() => createInitiator({ set }, { maxMessages: 0 }), InvalidArgumentError)
      assert.throws(() => createInitiator({ set }, { maxMessageBytes: 1000.5 }), InvalidArgumentError)
    })

    it('should refuse a first message of thousands of short fingerprints in one-byte heads at once (BUDGET)', () => {
      // format 2 packs about twice as many ranges into a frame as format 1: the length check still comes first
      const set = createReconcileSet(randomItems(20_000, prng(19)))
      const w = new MessageWriter(65_536)
      let k = 1
      while (w.length + 9 + 9 < 64 * 1024) w.fingerprint({ ts: 32 * k++, id: new Uint8Array(0) }, new Uint8Array(8).fill(k & 255))
      w.fingerprint({ ts: Infinity, id: new Uint8Array(0) }, new Uint8Array(8))
      const bytes = w.finish()
      assert.ok(decodeMessage(bytes, 64 * 1024).length > 7000)
      assert.ok(bytes.length <= 64 * 1024)
      const responder = createResponder({ set }, { maxMessageBytes: 64 * 1024 })
      expectProtocolError(() => responder.reconcile(bytes), 'BUDGET')
      assert.equal((responder as unknown as { work: { used: number } }).work.used, 0, 'refused before any range was handled')
      assert.equal(responder.done, false)
    })

    it('should fail a message after the session ended', () => {
      const items = randomItems(100, prng(11))
      const initiator = createInitiator({ set: createReconcileSet(items) })
      const responder = createResponder({ set: createReconcileSet(items) })
      const first = initiator.initiate()
      const reply = responder.reconcile(first)
      assert.equal(responder.done, true)
      assert.ok(reply !== null)
      assert.equal(initiator.reconcile(reply), null)
      assert.equal(initiator.done, true)
      expectProtocolError(() => responder.reconcile(first), 'UNEXPECTED_MESSAGE')
      expectProtocolError(() => initiator.reconcile(reply), 'UNEXPECTED_MESSAGE')
    })

    it('should stop a peer that keeps the session going past maxMessages', () => {
      const responder = createResponder({ set: createReconcileSet(randomItems(1000, prng(12))) }, { maxMessages: 3 })
      // a peer that asks about the whole set over and over, with a fingerprint that never matches
      const ask = message(head(1, 0), new Array<number>(16).fill(7))
      for (let k = 0; k < 3; k++) assert.ok(responder.reconcile(ask) !== null)
      expectProtocolError(() => responder.reconcile(ask), 'TOO_MANY_MESSAGES')
    })

    it('should ignore an IdDiff that contradicts its own set', () => {
      const items = randomItems(3, prng(13)).sort(compareItems)
      const stranger = randomItems(1, prng(14))[0]
      const set = createReconcileSet(items.slice(0, 2))
      const responder = createResponder({ set })
      const list = (xs: ReconcileItem[]): number[] => {
        let prev = 0
        return [...varint(xs.length), ...xs.flatMap((x) => {
          const delta = x.timestamp - prev
          prev = x.timestamp
          return [...varint(delta), ...Buffer.from(x.id, 'hex')]
        })]
      }
      // "you lack items[0]" (we have it) and "you have stranger" (we do not): both are ignored;
      // "you lack items[2]" and "you have items[1]" are taken
      const [s, i0, i2, i1] = [stranger, items[0], items[2], items[1]]
      const senderOnly = [i0, i2].sort(compareItems)
      const receiverOnly = [s, i1].sort(compareItems)
      const msg = message(head(3, 0), list(senderOnly), list(receiverOnly))
      assert.equal(responder.reconcile(msg), null)
      assert.deepEqual(responder.need.map((x) => x.id), [i2.id])
      assert.deepEqual(responder.have.map((x) => x.id), [i1.id])
    })
  })

  describe('malformed messages', () => {
    let responder: ReconcileSession

    beforeEach(() => {
      responder = createResponder({ set: createReconcileSet(randomItems(100, prng(15))) }, { maxMessageBytes: 4096 })
    })

    const cases: Array<[string, string, () => Uint8Array]> = [
      ['an empty message', 'TRUNCATED', () => new Uint8Array(0)],
      ['another protocol version', 'BAD_VERSION', () => Uint8Array.from([PROTOCOL_VERSION + 1, ...head(0, 0)])],
      ['a bound cut short', 'TRUNCATED', () => message([(2 + 1) * 8, 3, 5, 1])],
      ['a fingerprint cut short', 'TRUNCATED', () => message(head(1, 0), [1, 2, 3])],
      ['a head cut short', 'TRUNCATED', () => message([0x80])],
      ['a short fingerprint cut short', 'TRUNCATED', () => message(head(4, 0), [1, 2, 3, 4, 5, 6, 7])],
      ['a varint longer than 8 bytes', 'BAD_VARINT', () => message([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01])],
      ['a varint above 2^53', 'BAD_VARINT', () => message([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f])],
      ['an id prefix longer than 32 bytes', 'BAD_BOUND', () => message(head(0, 5, new Array<number>(33).fill(1)))],
      ['an infinity bound with an id prefix', 'BAD_BOUND', () => message(head(0, 0, [1]))],
      ['a bound timestamp beyond 2^53-1', 'BAD_TIMESTAMP', () => message(head(0, 2 ** 52), head(0, 2 ** 52), head(0, 10))],
      ['bounds out of order', 'BOUNDS_ORDER', () => message(head(0, 11, [5]), head(0, 1, [4]))],
      ['a repeated bound', 'BOUNDS_ORDER', () => message(head(0, 11, [5]), head(0, 1, [5, 0]))],
      ['a first bound at the minimum', 'BOUNDS_ORDER', () => message(head(0, 1))],
      ['a range after the infinity bound', 'BOUNDS_ORDER', () => message(head(0, 0), head(0, 5))],
      ['an unknown mode', 'UNKNOWN_MODE', () => message(head(5, 0))],
      ['an unknown mode in a packed head', 'UNKNOWN_MODE', () => message(packedHead(7, 3, 20))],
      ['an id prefix flagged but empty', 'BAD_BOUND', () => message([(2 + 1) * 8, 5, 0])],
      ['a raw head with a packed delta', 'BAD_BOUND', () => message(packedHead(0, 1, 1))],
      ['an infinity head with a delta', 'BAD_BOUND', () => message(packedHead(0, 1, 0))],
      ['a packed delta beyond 2^53-1', 'BAD_TIMESTAMP', () => message(packedHead(0, 0, 55))],
      ['an item count beyond the message', 'TRUNCATED', () => message(head(2, 0), varint(1000), [0], ID(1))],
      ['items out of order', 'ITEMS_ORDER', () => message(head(2, 0), varint(2), [5], ID(2), [0], ID(1))],
      ['a repeated item', 'ITEMS_ORDER', () => message(head(2, 0), varint(2), [5], ID(2), [0], ID(2))],
      ['an item below its range', 'ITEM_OUT_OF_RANGE', () => message(head(0, 11, [5]), head(2, 0), varint(1), [0], ID(0))],
      ['an item at its upper bound', 'ITEM_OUT_OF_RANGE', () => message(head(2, 11, [1]), varint(1), [10], ID(1))],
      ['an item timestamp beyond 2^53-1', 'BAD_TIMESTAMP', () => message(head(2, 0), varint(1), varint(2 ** 53), ID(1))],
      ['an IdDiff cut short', 'TRUNCATED', () => message(head(3, 0), varint(0), varint(1), [1])],
      ['a message over the frame limit', 'FRAME_TOO_LARGE', () => message(head(0, 0), new Array<number>(5000).fill(0))]
    ]
    for (const [what, reason, build] of cases) {
      it(`should reject ${what} with ReconcileProtocolError ${reason}`, () => {
        expectProtocolError(() => responder.reconcile(build()), reason)
        // a failed session stays failed
        expectProtocolError(() => responder.reconcile(message(head(0, 0))), 'UNEXPECTED_MESSAGE')
      })
    }

    it('should accept a well-formed hand-built message', () => {
      assert.equal(responder.reconcile(message(head(0, 0))), null)
      assert.equal(responder.done, true)
    })

    it('should accept packed heads and answer a short fingerprint', () => {
      // a Skip up to 1024 (delta 2^10: q = 0, e = 12), then a ShortFingerprint over the rest that cannot match
      const reply = responder.reconcile(message(packedHead(0, 0, 12), head(4, 0), new Array<number>(8).fill(7)))
      assert.ok(reply !== null && reply.length > 1)
      assert.equal(responder.done, false)
    })

    it('should answer random bytes with a reply within the limit or a ReconcileProtocolError, never anything else', () => {
      fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), fc.boolean(), (bytes, versioned) => {
        const r = createResponder({ set: createReconcileSet(randomItems(300, prng(16), 'few')) }, { maxMessageBytes: 512 })
        const input = versioned ? Uint8Array.from([PROTOCOL_VERSION, ...bytes]) : bytes
        try {
          const out = r.reconcile(input)
          if (out !== null) assert.ok(out.length <= 512)
        } catch (err) {
          assert.ok(err instanceof ReconcileProtocolError, String(err))
        }
      }), { numRuns: 300 })
    })

    it('should answer mutated real messages with a valid reply or a ReconcileProtocolError', () => {
      const [a, b] = pair(prng(17), 2000, 30, 30, 'few', 'random')
      const setA = createReconcileSet(a)
      const setB = createReconcileSet(b)
      // record a real exchange
      const transcript: Uint8Array[] = []
      const i = createInitiator({ set: setA }, { maxMessageBytes: 1024 })
      const rsp = createResponder({ set: setB }, { maxMessageBytes: 1024 })
      let msg: Uint8Array | null = i.initiate()
      let turn = rsp
      while (msg !== null) {
        transcript.push(msg)
        msg = turn.reconcile(msg)
        turn = turn === rsp ? i : rsp
      }
      fc.assert(fc.property(
        fc.nat(transcript.length - 1), fc.nat(), fc.integer({ min: 1, max: 255 }), fc.boolean(),
        (which, position, xor, truncate) => {
          const original = transcript[which]
          const mutated = truncate ? original.slice(0, position % original.length) : Uint8Array.from(original)
          if (!truncate) mutated[position % mutated.length] ^= xor
          const r = createResponder({ set: setB }, { maxMessageBytes: 1024 })
          try {
            const out = r.reconcile(mutated)
            if (out !== null) assert.ok(out.length <= 1024)
          } catch (err) {
            assert.ok(err instanceof ReconcileProtocolError, String(err))
          }
        }
      ), { numRuns: 300 })
    })
  })
})
