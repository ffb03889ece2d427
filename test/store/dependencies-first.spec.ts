/**
 * `dependenciesFirst` (src/store/base.ts), the order appendMany stores a batch in: a permutation of its input in
 * which every change comes after its dependencies in the batch, and otherwise the input's order.
 */
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { dependenciesFirst } from '../../src/store/base.js'
import type { StoreChange } from '../../src/store/change.js'

/** A random DAG of `n` changes (each depends on up to 3 earlier ones, or on hashes outside the batch). */
const dagArb = fc.integer({ min: 0, max: 60 }).chain((n) => fc.tuple(
  fc.array(fc.array(fc.nat(), { maxLength: 3 }), { minLength: n, maxLength: n }),
  fc.array(fc.nat(), { minLength: n, maxLength: n })
)).map(([depPicks, shuffle]) => {
  const changes = depPicks.map((picks, i) => ({
    hash: `h${i}`,
    deps: [...new Set(picks.map((p) => (i === 0 || p % 4 === 0 ? `outside${p}` : `h${p % i}`)))]
  }) as unknown as StoreChange)
  // a shuffled copy: the order a partner may send them in
  const shuffled = changes.map((c, i) => ({ c, k: shuffle[i] })).sort((x, y) => x.k - y.k).map((x) => x.c)
  return { changes, shuffled }
})

describe('store: dependenciesFirst', () => {
  it('should put every change after its dependencies in the batch, losing and adding none', () => {
    fc.assert(fc.property(dagArb, ({ shuffled }) => {
      const out = dependenciesFirst(shuffled)
      assert.deepStrictEqual(out.map((c) => c.hash).sort(), shuffled.map((c) => c.hash).sort())
      assert.equal(new Set(out).size, out.length)
      const at = new Map(out.map((c, i) => [c.hash, i]))
      for (const c of out) for (const d of c.deps) if (at.has(d)) assert.ok((at.get(d) as number) < (at.get(c.hash) as number), `${d} before ${c.hash}`)
    }))
  })

  it('should keep a batch whose dependencies already come first as it is, and the input untouched', () => {
    fc.assert(fc.property(dagArb, ({ changes, shuffled }) => {
      assert.deepStrictEqual(dependenciesFirst(changes), changes)
      const copy = [...shuffled]
      dependenciesFirst(shuffled)
      assert.deepStrictEqual(shuffled, copy)
    }))
  })

  it('should handle a chain far longer than the stack is deep', () => {
    const n = 200_000
    const chain = Array.from({ length: n }, (_, i) => ({ hash: `h${i}`, deps: i === 0 ? [] : [`h${i - 1}`] }) as unknown as StoreChange)
    const out = dependenciesFirst([...chain].reverse())
    assert.deepStrictEqual(out.map((c) => c.hash), chain.map((c) => c.hash))
  })
})
