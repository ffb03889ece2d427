/**
 * The AppendOnlyStore conformance suite: every implementation runs it with its own setup.
 */
import assert from 'node:assert/strict'
import { randomBytes, sign } from 'node:crypto'
import { decodeChange, encodeChange, encodeSignedPart, readChangeTime, sha256, type ChangeHash, type StoreChange } from '../../src/store/change.js'
import type { AppendEvent, AppendOnlyStore, SequencedChange } from '../../src/store/types.js'
import { createAuthor, makeChange, makeChanges, TestVerifier, type TestAuthor } from '../utils/changes.js'

export interface StoreSetup {
  store: AppendOnlyStore
  /** Closes what the setup opened (the store may already be closed) and removes its files. */
  teardown: () => Promise<void>
}

/** Collects an async iterable. */
export async function collect<T> (source: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const item of source) out.push(item)
  return out
}

/** A validator for assert.rejects / assert.throws that checks the error's `code`. */
export function withCode (code: string): (err: unknown) => true {
  return (err) => {
    assert.equal((err as { code?: unknown })?.code, code, `expected ${code}, got ${String(err)}`)
    return true
  }
}

/** Hash order and seqs of everything stored, via iterateSince. */
export async function arrival (store: AppendOnlyStore): Promise<Array<[number, ChangeHash]>> {
  return (await collect(store.iterateSince(0))).map(({ seq, change }) => [seq, change.hash])
}

const flip = (bytes: Uint8Array, at = 0): Uint8Array => {
  const copy = new Uint8Array(bytes)
  copy[at] ^= 1
  return copy
}

export function runStoreTests (name: string, setup: () => Promise<StoreSetup>): void {
  describe(`${name} (AppendOnlyStore conformance)`, () => {
    let store: AppendOnlyStore
    let teardown: () => Promise<void>
    let author: TestAuthor
    let stranger: TestAuthor

    beforeEach(async () => {
      ({ store, teardown } = await setup())
      author = createAuthor()
      stranger = createAuthor()
      store.setVerifier(new TestVerifier([author]))
    })

    afterEach(async () => {
      await teardown()
    })

    const state = async (): Promise<{ count: number, lastSeq: number, hashes: ChangeHash[] }> => ({
      count: await store.count(),
      lastSeq: store.getLastSeq(),
      hashes: await store.getAllChangeHashes()
    })

    describe('append', () => {
      it('should store a change and give it back unchanged', async () => {
        const change = makeChange(author)
        assert.equal(await store.has(change.hash), false)
        assert.equal(await store.append(change), true)
        assert.equal(await store.has(change.hash), true)
        assert.deepStrictEqual(await store.getChanges([change.hash]), [change])
        assert.equal(await store.count(), 1)
        assert.equal(store.getLastSeq(), 1)
      })

      it('should start empty', async () => {
        assert.deepStrictEqual(await state(), { count: 0, lastSeq: 0, hashes: [] })
        assert.deepStrictEqual(await collect(store.iterateSince(0)), [])
      })

      it('should return false and allocate no seq when the change is already stored', async () => {
        const [a, b] = makeChanges(author, 2)
        assert.equal(await store.append(a), true)
        assert.equal(await store.append(a), false)
        assert.equal(await store.append({ ...a }), false)
        assert.deepStrictEqual(await state(), { count: 1, lastSeq: 1, hashes: [a.hash] })
        assert.equal(await store.append(b), true)
        assert.deepStrictEqual(await arrival(store), [[1, a.hash], [2, b.hash]])
      })

      it('should allocate seqs 1, 2, 3... in arrival order', async () => {
        const changes = makeChanges(author, 5, 2)
        for (const c of changes) await store.append(c)
        assert.deepStrictEqual(await arrival(store), changes.map((c, i) => [i + 1, c.hash]))
        assert.deepStrictEqual(await store.getAllChangeHashes(), changes.map((c) => c.hash))
        assert.equal(store.getLastSeq(), 5)
        assert.equal(await store.count(), 5)
      })

      it('should allocate seqs without gaps or repeats under concurrent appends', async () => {
        const changes = makeChanges(author, 20, 3)
        const results = await Promise.all([...changes, ...changes].map(async (c) => await store.append(c)))
        assert.equal(results.filter((r) => r).length, 20)
        const seen = await arrival(store)
        assert.deepStrictEqual(seen.map(([seq]) => seq), Array.from({ length: 20 }, (_, i) => i + 1))
        assert.deepStrictEqual(new Set(seen.map(([, h]) => h)), new Set(changes.map((c) => c.hash)))
        assert.equal(store.getLastSeq(), 20)
      })

      it('should keep its own copy that later edits of the appended object do not reach', async () => {
        const change = makeChange(author)
        const original = encodeChange(change)
        const appending = store.append(change)
        change.payload[0] ^= 1 // while the append is under way
        change.signature[0] ^= 1
        ;(change.deps as string[]).push(change.hash)
        assert.equal(await appending, true)
        const [stored] = await store.getChanges([change.hash])
        assert.deepStrictEqual(encodeChange(stored), original)
        stored.payload[1] ^= 1
        const [again] = await store.getChanges([change.hash])
        assert.deepStrictEqual(encodeChange(again), original)
      })

      it('should store only the fields of a change', async () => {
        const change = makeChange(author)
        await store.append({ ...change, extra: 'ignored' } as StoreChange)
        assert.deepStrictEqual(await store.getChanges([change.hash]), [change])
      })

      it('should give back byte-exact canonical encodings', async () => {
        const changes = [
          makeChange(author, { payloadSize: 0 }),
          makeChange(author, { kind: 'delete', docId: 'a/b:c@d.e_f-g', keyId: 'named-key', payloadSize: 1000 }),
          makeChange(author, { deps: [sha256(randomBytes(8)), sha256(randomBytes(8))].map((h) => Buffer.from(h).toString('hex')) })
        ]
        for (const c of changes) await store.append(c)
        const stored = await store.getChanges(changes.map((c) => c.hash))
        stored.forEach((s, i) => {
          const bytes = encodeChange(changes[i])
          assert.deepStrictEqual(encodeChange(s), bytes)
          assert.deepStrictEqual(decodeChange(bytes), changes[i])
          assert.deepStrictEqual(decodeChange(encodeChange(s)), s)
        })
      })

      it('should accept a change signed by a stranger when no verifier is set, but still check its hash', async () => {
        store.setVerifier(undefined)
        const change = makeChange(stranger)
        assert.equal(await store.append(change), true)
        await assert.rejects(store.append({ ...makeChange(stranger), hash: change.hash }), withCode('HASH_MISMATCH'))
      })

      it('should apply a verifier installed later', async () => {
        store.setVerifier(undefined)
        await store.append(makeChange(stranger))
        store.setVerifier(new TestVerifier([]))
        await assert.rejects(store.append(makeChange(stranger)), withCode('UNTRUSTED_AUTHOR'))
        assert.equal(await store.count(), 1)
      })
    })

    describe('rejected changes', () => {
      let before: Awaited<ReturnType<typeof state>>
      let events: AppendEvent[]

      beforeEach(async () => {
        for (const c of makeChanges(author, 3, 2)) await store.append(c)
        before = await state()
        events = []
        store.onAppend((e) => { events.push(e) })
      })

      /** The change is refused with `code` by append and by appendMany, and nothing changes. */
      const refused = async (change: unknown, code: string): Promise<void> => {
        await assert.rejects(store.append(change as StoreChange), withCode(code))
        const result = await store.appendMany([change as StoreChange])
        assert.deepStrictEqual(result.added, [])
        assert.deepStrictEqual(result.duplicates, [])
        assert.deepStrictEqual(result.rejected.map((r) => r.error.code), [code])
        assert.deepStrictEqual(await state(), before)
        assert.deepStrictEqual(events, [])
      }

      it('should refuse a change whose hash does not match its contents', async () => {
        const change = makeChange(author)
        await refused({ ...change, hash: makeChange(author).hash }, 'HASH_MISMATCH')
        await refused({ ...change, hash: before.hashes[0] }, 'HASH_MISMATCH')
      })

      it('should refuse a change with a tampered payload', async () => {
        const change = makeChange(author)
        await refused({ ...change, payload: flip(change.payload) }, 'HASH_MISMATCH')
        await refused({ ...change, payload: change.payload.subarray(1) }, 'HASH_MISMATCH')
      })

      it('should refuse a change with tampered metadata', async () => {
        const change = makeChange(author)
        await refused({ ...change, docId: 'doc-2' }, 'HASH_MISMATCH')
        await refused({ ...change, keyId: 'other-key' }, 'HASH_MISMATCH')
        await refused({ ...change, time: change.time + 1 }, 'HASH_MISMATCH')
        await refused({ ...change, kind: 'delete' }, 'HASH_MISMATCH')
        await refused({ ...change, author: stranger.id }, 'HASH_MISMATCH')
      })

      it('should refuse a change with a forged signature', async () => {
        const change = makeChange(author)
        await refused({ ...change, signature: flip(change.signature, 10) }, 'INVALID_SIGNATURE')
        await refused({ ...change, signature: new Uint8Array(64) }, 'INVALID_SIGNATURE')
        const signedPart = encodeSignedPart(change, sha256(change.payload))
        await refused({ ...change, signature: new Uint8Array(sign(null, signedPart, stranger.privateKey)) }, 'INVALID_SIGNATURE')
      })

      it('should refuse a change by an untrusted author', async () => {
        await refused(makeChange(stranger), 'UNTRUSTED_AUTHOR')
      })

      it('should refuse a non-canonical spelling of a trusted author key', async () => {
        const change = makeChange(author)
        const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
        const last = alphabet.indexOf(change.author[42])
        const alias = change.author.slice(0, 42) + alphabet[last + 1] // same 32 bytes: the low 2 bits are unused
        assert.deepStrictEqual(Buffer.from(alias, 'base64url'), Buffer.from(change.author, 'base64url'))
        await refused({ ...change, author: alias }, 'MALFORMED_CHANGE')
        await refused({ ...change, author: change.author + '=' }, 'MALFORMED_CHANGE')
      })

      it('should refuse truncated and garbage bytes', async () => {
        const bytes = encodeChange(makeChange(author))
        for (const cut of [0, 3, 4, 5, 20, bytes.length - 70, bytes.length - 1]) {
          assert.throws(() => decodeChange(bytes.subarray(0, cut)), withCode('MALFORMED_CHANGE'))
        }
        assert.throws(() => decodeChange(new Uint8Array([...bytes, 0])), withCode('MALFORMED_CHANGE'))
        assert.throws(() => decodeChange(randomBytes(300)), withCode('MALFORMED_CHANGE'))
        assert.throws(() => decodeChange('MDC1' as unknown as Uint8Array), withCode('MALFORMED_CHANGE'))
        assert.deepStrictEqual(await state(), before)
      })

      it('should refuse values that are not changes', async () => {
        for (const value of [null, undefined, 42, 'change', [], {}, { ...makeChange(author), payload: 'x' }]) {
          await refused(value, 'MALFORMED_CHANGE')
        }
      })

      it('should refuse changes with out-of-range fields', async () => {
        const deps = [makeChange(author).hash, makeChange(author).hash].sort()
        const base = makeChange(author)
        await refused({ ...base, deps: [deps[1], deps[0]] }, 'MALFORMED_CHANGE')
        await refused({ ...base, deps: [deps[0], deps[0]] }, 'MALFORMED_CHANGE')
        await refused({ ...base, time: -1 }, 'MALFORMED_CHANGE')
        await refused({ ...base, kind: 'edit' }, 'MALFORMED_CHANGE')
        await refused({ ...base, docId: 'bad!id' }, 'MALFORMED_CHANGE')
        await refused({ ...base, hash: base.hash.toUpperCase() }, 'MALFORMED_CHANGE')
        await refused({ ...base, signature: base.signature.subarray(1) }, 'MALFORMED_CHANGE')
      })

      it('should refuse work once its signal has aborted', async () => {
        const signal = AbortSignal.abort()
        const change = makeChange(author)
        await assert.rejects(store.append(change, { signal }), withCode('ABORTED'))
        await assert.rejects(store.appendMany([change], { signal }), withCode('ABORTED'))
        await assert.rejects(store.getAllChangeHashes({ signal }), withCode('ABORTED'))
        await assert.rejects(store.getChanges(before.hashes, { signal }), withCode('ABORTED'))
        await assert.rejects(collect(store.iterateSince(0, { signal })), withCode('ABORTED'))
        assert.deepStrictEqual(await state(), before)
      })

      it('should stop a walk when its signal aborts', async () => {
        const controller = new AbortController()
        const seen: number[] = []
        await assert.rejects(async () => {
          for await (const { seq } of store.iterateSince(0, { signal: controller.signal })) {
            seen.push(seq)
            controller.abort()
          }
        }, withCode('ABORTED'))
        assert.deepStrictEqual(seen, [1])
      })
    })

    describe('appendMany', () => {
      it('should store the good changes, list the duplicates and report each bad one', async () => {
        const existing = makeChange(author)
        await store.append(existing)
        const events: AppendEvent[] = []
        store.onAppend((e) => { events.push(e) })
        const [g1, g2, g3] = makeChanges(author, 3, 2)
        const badHash = { ...makeChange(author), hash: g1.hash }
        const untrusted = makeChange(stranger)
        const forged = { ...makeChange(author), signature: new Uint8Array(64) }
        const result = await store.appendMany([g1, badHash, g2, existing, g1, untrusted, forged, null as unknown as StoreChange, g3])

        assert.deepStrictEqual(result.added, [g1.hash, g2.hash, g3.hash])
        assert.deepStrictEqual(result.duplicates, [existing.hash, g1.hash])
        assert.deepStrictEqual(result.rejected.map((r) => [r.hash, r.error.code]), [
          [badHash.hash, 'HASH_MISMATCH'],
          [untrusted.hash, 'UNTRUSTED_AUTHOR'],
          [forged.hash, 'INVALID_SIGNATURE'],
          ['', 'MALFORMED_CHANGE']
        ])
        assert.deepStrictEqual(await arrival(store), [[1, existing.hash], [2, g1.hash], [3, g2.hash], [4, g3.hash]])
        assert.deepStrictEqual(await store.getChanges([g1.hash, g2.hash, g3.hash]), [g1, g2, g3])
        assert.equal(events.length, 1)
        assert.deepStrictEqual(events[0].changes.map((e) => [e.seq, e.change.hash]), [[2, g1.hash], [3, g2.hash], [4, g3.hash]])
      })

      it('should do nothing for an empty list', async () => {
        let events = 0
        store.onAppend(() => { events++ })
        assert.deepStrictEqual(await store.appendMany([]), { added: [], duplicates: [], rejected: [] })
        assert.equal(store.getLastSeq(), 0)
        assert.equal(events, 0)
      })

      it('should continue the seqs of single appends', async () => {
        const changes = makeChanges(author, 6, 3)
        await store.append(changes[0])
        await store.appendMany(changes.slice(1, 4))
        await store.append(changes[4])
        await store.appendMany([changes[5], changes[0]])
        assert.deepStrictEqual(await arrival(store), changes.map((c, i) => [i + 1, c.hash]))
      })

      it('should store a change after those of the batch it depends on, the rest in the order given', async () => {
        // two documents: a chain a0 <- a1 <- a2 and a merge b2 of b0 and b1; one already stored dependency
        const stored = makeChange(author, { docId: 'doc-s' })
        await store.append(stored)
        const a0 = makeChange(author, { docId: 'doc-a' })
        const a1 = makeChange(author, { docId: 'doc-a', deps: [a0.hash] })
        const a2 = makeChange(author, { docId: 'doc-a', deps: [a1.hash] })
        const b0 = makeChange(author, { docId: 'doc-b' })
        const b1 = makeChange(author, { docId: 'doc-b' })
        const b2 = makeChange(author, { docId: 'doc-b', deps: [b0.hash, b1.hash] })
        const s1 = makeChange(author, { docId: 'doc-s', deps: [stored.hash] })
        const result = await store.appendMany([a2, b2, s1, a1, b1, a0, b0, a2])
        const expected = [a0, a1, a2, b0, b1, b2, s1].map((c) => c.hash)
        const order = (await arrival(store)).slice(1).map(([, hash]) => hash)
        // every dependency in the batch comes first (a merge's in the order of its deps); otherwise the order
        // given: a2's chain, then b2's, then s1
        assert.deepStrictEqual(order, [a0.hash, a1.hash, a2.hash, ...b2.deps, b2.hash, s1.hash])
        assert.deepStrictEqual([...result.added].sort(), [...expected].sort())
        assert.deepStrictEqual(result.added, order)
        assert.deepStrictEqual(result.duplicates, [a2.hash])
      })

      it('should throw a TypeError when not given an array', async () => {
        await assert.rejects(store.appendMany(makeChange(author) as unknown as StoreChange[]), TypeError)
      })
    })

    describe('getChanges', () => {
      let changes: StoreChange[]

      beforeEach(async () => {
        changes = makeChanges(author, 4, 2)
        await store.appendMany(changes)
      })

      it('should return the changes in the order asked', async () => {
        const asked = [changes[3], changes[0], changes[2], changes[0]]
        assert.deepStrictEqual(await store.getChanges(asked.map((c) => c.hash)), asked)
        assert.deepStrictEqual(await store.getChanges([]), [])
      })

      it('should hand out copies of the changes appended last, and read the older ones back the same', async () => {
        // more than the store keeps in memory: the first are read from the backend, the last from memory
        const more = makeChanges(author, 300, 1)
        await store.appendMany(more)
        for (const asked of [more.slice(-3), more.slice(0, 3), [more[0], more[299]]]) {
          const first = await store.getChanges(asked.map((c) => c.hash))
          assert.deepStrictEqual(first, asked)
          for (const c of first) c.payload.fill(0)
          assert.deepStrictEqual(await store.getChanges(asked.map((c) => c.hash)), asked)
        }
      })

      it('should throw ChangeNotFoundError for an unknown hash', async () => {
        await assert.rejects(store.getChanges([changes[0].hash, makeChange(author).hash]), withCode('CHANGE_NOT_FOUND'))
      })

      it('should throw InvalidArgumentError for a string that is not a hash', async () => {
        await assert.rejects(store.getChanges(['nope']), withCode('INVALID_ARGUMENT'))
        assert.equal(await store.has('nope'), false)
      })
    })

    describe('hasMany', () => {
      let changes: StoreChange[]

      beforeEach(async () => {
        changes = makeChanges(author, 12, 3)
        await store.appendMany(changes)
      })

      it('should say for each hash, in the order asked, whether it is stored', async () => {
        const unknown = makeChange(author).hash
        // a small batch and one larger than any in-thread path: both must agree with has()
        const small = [changes[2].hash, unknown, changes[0].hash]
        assert.deepStrictEqual(await store.hasMany(small), [true, false, true])
        const large = [...changes.map((c) => c.hash), unknown, changes[5].hash, changes[5].hash]
        const expected = await Promise.all(large.map(async (h) => await store.has(h)))
        assert.deepStrictEqual(await store.hasMany(large), expected)
        assert.deepStrictEqual(expected, [...changes.map(() => true), false, true, true])
        assert.deepStrictEqual(await store.hasMany([]), [])
      })

      it('should answer false for strings that are not hashes, and TypeError for values that are not strings', async () => {
        assert.deepStrictEqual(await store.hasMany(['nope', changes[1].hash, changes[1].hash.toUpperCase()]), [false, true, false])
        await assert.rejects(store.hasMany('nope' as unknown as ChangeHash[]), TypeError)
        await assert.rejects(store.hasMany([42 as unknown as ChangeHash]), TypeError)
      })

      it('should see changes appended after an earlier call', async () => {
        const later = makeChange(author)
        assert.deepStrictEqual(await store.hasMany([later.hash]), [false])
        await store.append(later)
        assert.deepStrictEqual(await store.hasMany([later.hash, changes[0].hash]), [true, true])
      })

      it('should refuse work once its signal has aborted', async () => {
        const controller = new AbortController()
        controller.abort()
        await assert.rejects(store.hasMany([changes[0].hash], { signal: controller.signal }), withCode('ABORTED'))
      })
    })

    describe('getEncodedMany', () => {
      let changes: StoreChange[]

      beforeEach(async () => {
        changes = makeChanges(author, 12, 3)
        await store.appendMany(changes)
      })

      it('should return the canonical bytes of each change in the order asked, undefined for unknown hashes', async () => {
        const unknown = makeChange(author).hash
        const small = [changes[3], undefined, changes[0]]
        const got = await store.getEncodedMany([changes[3].hash, unknown, changes[0].hash])
        assert.deepStrictEqual(got.map((b) => b === undefined ? undefined : Buffer.from(b)), small.map((c) => c === undefined ? undefined : Buffer.from(encodeChange(c))))
        const large = [...changes].reverse()
        const many = await store.getEncodedMany([...large.map((c) => c.hash), unknown])
        assert.equal(many.length, large.length + 1)
        large.forEach((c, i) => {
          const bytes = many[i]
          assert.ok(bytes instanceof Uint8Array)
          assert.deepStrictEqual(Buffer.from(bytes), Buffer.from(encodeChange(c)))
          assert.deepStrictEqual(decodeChange(bytes), c)
          assert.equal(readChangeTime(bytes), c.time)
        })
        assert.equal(many[large.length], undefined)
        assert.deepStrictEqual(await store.getEncodedMany([]), [])
      })

      it('should hand out copies that cannot alter the store', async () => {
        for (const hashes of [[changes[1].hash], changes.map((c) => c.hash)]) {
          const first = await store.getEncodedMany(hashes)
          for (const bytes of first) (bytes as Uint8Array).fill(0)
          const again = await store.getEncodedMany(hashes)
          again.forEach((bytes, i) => { assert.deepStrictEqual(decodeChange(bytes as Uint8Array).hash, hashes[i]) })
        }
        assert.deepStrictEqual(await store.getChanges([changes[1].hash]), [changes[1]])
      })

      it('should throw InvalidArgumentError for a string that is not a hash, and TypeError for a non-array', async () => {
        await assert.rejects(store.getEncodedMany([changes[0].hash, 'nope']), withCode('INVALID_ARGUMENT'))
        await assert.rejects(store.getEncodedMany(changes[0].hash as unknown as ChangeHash[]), TypeError)
      })

      it('should refuse work once its signal has aborted', async () => {
        const controller = new AbortController()
        controller.abort()
        await assert.rejects(store.getEncodedMany([changes[0].hash], { signal: controller.signal }), withCode('ABORTED'))
      })
    })

    describe('findNewChanges', () => {
      let hashes: ChangeHash[]

      beforeEach(async () => {
        const changes = makeChanges(author, 6, 2)
        await store.appendMany(changes)
        hashes = changes.map((c) => c.hash)
      })

      it('should return everything for an empty have-set', async () => {
        assert.deepStrictEqual(await store.findNewChanges([]), hashes)
        assert.deepStrictEqual(await store.getAllChangeHashes(), hashes)
      })

      it('should return nothing when the other side has everything', async () => {
        assert.deepStrictEqual(await store.findNewChanges(hashes), [])
        assert.deepStrictEqual(await store.findNewChanges(new Set([...hashes].reverse())), [])
      })

      it('should return what the other side lacks, in arrival order', async () => {
        const have = [hashes[4], hashes[0], hashes[2], makeChange(author).hash]
        assert.deepStrictEqual(await store.findNewChanges(have), [hashes[1], hashes[3], hashes[5]])
        assert.deepStrictEqual(await store.findNewChanges(new Set(have)), [hashes[1], hashes[3], hashes[5]])
      })
    })

    describe('getAllChangeHashesForDoc', () => {
      it("should list one document's hashes in arrival order", async () => {
        const ids = ['a', 'a.b', 'a-1', 'ab', 'a']
        const changes = ids.flatMap((docId) => [makeChange(author, { docId }), makeChange(author, { docId })])
        for (const c of changes) await store.append(c)
        for (const docId of new Set(ids)) {
          assert.deepStrictEqual(
            await store.getAllChangeHashesForDoc(docId),
            changes.filter((c) => c.docId === docId).map((c) => c.hash),
            docId
          )
        }
        assert.deepStrictEqual(await store.getAllChangeHashesForDoc('b'), [])
      })

      it('should throw InvalidArgumentError for an invalid document id', async () => {
        await assert.rejects(store.getAllChangeHashesForDoc('a!b'), withCode('INVALID_ARGUMENT'))
        await assert.rejects(store.getAllChangeHashesForDoc(''), withCode('INVALID_ARGUMENT'))
      })
    })

    describe('iterateIndexSince', () => {
      it('should give each change\'s seq, hash, time, author and key id in arrival order, from a seq on', async () => {
        const changes = [
          ...makeChanges(author, 3, 2),
          makeChange(author, { keyId: 'named-key', docId: 'doc-x', time: 1_600_000_000_000 })
        ]
        await store.append(changes[0])
        await store.appendMany(changes.slice(1))
        const entries = (from: number): unknown[] => changes.slice(from).map((c, i) => ({ seq: from + i + 1, hash: c.hash, time: c.time, author: c.author, keyId: c.keyId }))
        assert.ok(store.iterateIndexSince !== undefined)
        assert.deepStrictEqual(await collect(store.iterateIndexSince(0)), entries(0))
        assert.deepStrictEqual(await collect(store.iterateIndexSince(2)), entries(2))
        assert.deepStrictEqual(await collect(store.iterateIndexSince(4)), [])
        assert.throws(() => store.iterateIndexSince?.(-1), withCode('INVALID_ARGUMENT'))
      })
    })

    describe('iterateSince', () => {
      let changes: StoreChange[]

      beforeEach(async () => {
        changes = makeChanges(author, 5, 2)
        for (const c of changes) await store.append(c)
      })

      const expected = (from: number): SequencedChange[] => changes.slice(from).map((change, i) => ({ seq: from + i + 1, change }))

      it('should walk everything from 0', async () => {
        assert.deepStrictEqual(await collect(store.iterateSince(0)), expected(0))
      })

      it('should walk what came after a seq in the middle', async () => {
        assert.deepStrictEqual(await collect(store.iterateSince(2)), expected(2))
      })

      it('should walk nothing from the end or beyond', async () => {
        assert.deepStrictEqual(await collect(store.iterateSince(5)), [])
        assert.deepStrictEqual(await collect(store.iterateSince(500)), [])
      })

      it('should walk more than one chunk', async () => {
        const many = makeChanges(author, 1203, 7)
        await store.appendMany(many)
        const all = [...changes, ...many]
        const walked = await collect(store.iterateSince(0))
        assert.deepStrictEqual(walked.map((e) => e.seq), all.map((_, i) => i + 1))
        assert.deepStrictEqual(walked.map((e) => e.change.hash), all.map((c) => c.hash))
        assert.deepStrictEqual(await collect(store.iterateSince(1000)), all.slice(1000).map((change, i) => ({ seq: 1001 + i, change })))
        assert.deepStrictEqual(await store.getAllChangeHashes(), all.map((c) => c.hash))
        assert.deepStrictEqual(await store.getAllChangeHashesForDoc('doc-3'), many.filter((c) => c.docId === 'doc-3').map((c) => c.hash))
      })

      it('should leave the store usable when a walk stops early', async () => {
        for await (const { seq } of store.iterateSince(0)) if (seq === 2) break
        assert.equal(await store.append(makeChange(author)), true)
        assert.equal((await collect(store.iterateSince(0))).length, 6)
      })

      it('should throw on the call for an invalid seq', () => {
        assert.throws(() => store.iterateSince(-1), withCode('INVALID_ARGUMENT'))
        assert.throws(() => store.iterateSince(1.5), withCode('INVALID_ARGUMENT'))
        assert.throws(() => store.iterateSince('1' as unknown as number), TypeError)
      })
    })

    describe('onAppend', () => {
      it('should tell listeners about each committed append with its seq', async () => {
        const events: AppendEvent[] = []
        store.onAppend((e) => { events.push(e) })
        const [a, b, c] = makeChanges(author, 3)
        await store.append(a)
        await store.append(a)
        await store.appendMany([b, c])
        assert.deepStrictEqual(events, [
          { changes: [{ seq: 1, change: a }] },
          { changes: [{ seq: 2, change: b }, { seq: 3, change: c }] }
        ])
      })

      it('should stop calling a listener once it is removed', async () => {
        let calls = 0
        const off = store.onAppend(() => { calls++ })
        await store.append(makeChange(author))
        off()
        await store.append(makeChange(author))
        assert.equal(calls, 1)
      })

      it('should carry on when a listener throws', async () => {
        const seqs: number[] = []
        store.onAppend(() => { throw new Error('listener bug') })
        store.onAppend((e) => { seqs.push(...e.changes.map((c) => c.seq)) })
        assert.equal(await store.append(makeChange(author)), true)
        assert.deepStrictEqual((await store.appendMany(makeChanges(author, 2))).added.length, 2)
        assert.deepStrictEqual(seqs, [1, 2, 3])
        assert.equal(store.getLastSeq(), 3)
      })
    })

    describe('close', () => {
      it('should refuse every call after close with ClosedError', async () => {
        const change = makeChange(author)
        await store.append(change)
        await store.close()
        await store.close()
        const calls: Array<() => unknown> = [
          async () => await store.append(makeChange(author)),
          async () => await store.appendMany([makeChange(author)]),
          async () => await store.has(change.hash),
          async () => await store.getChanges([change.hash]),
          async () => await store.hasMany([change.hash]),
          async () => await store.getEncodedMany([change.hash]),
          async () => await store.getAllChangeHashes(),
          async () => await store.findNewChanges([]),
          async () => await store.getAllChangeHashesForDoc(change.docId),
          async () => await store.count(),
          () => store.getLastSeq(),
          async () => await collect(store.iterateSince(0))
        ]
        for (const call of calls) await assert.rejects(async () => { await call() }, withCode('CLOSED'))
      })

      it('should finish appends that were called before close', async () => {
        const changes = makeChanges(author, 3)
        const pending = changes.map(async (c) => await store.append(c))
        const closing = store.close()
        assert.deepStrictEqual(await Promise.all(pending), [true, true, true])
        await closing
      })

      it('should end a walk that is under way with ClosedError', async () => {
        await store.appendMany(makeChanges(author, 3))
        await assert.rejects(async () => {
          for await (const { seq } of store.iterateSince(0)) if (seq === 1) await store.close()
        }, withCode('CLOSED'))
      })
    })
  })
}
