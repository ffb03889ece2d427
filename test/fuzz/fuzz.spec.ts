/**
 * A short run of every fuzz target (`npm run fuzz` runs 10^5 cases each): a fixed seed, a few thousand cases, so
 * a failure here replays the same way. The harness counts crashes (an error the code may not throw, or a broken
 * property of an accepted input) instead of stopping at the first, and keeps the first few for the message.
 */
import { expect } from 'chai'
import { runTarget, type FuzzSummary } from './harness.js'
import { TARGETS } from './targets.js'

/** Cases per target in `npm test`. */
const CASES = 2000
const SEED = 20_261_128
/** Largest structural size of what a case builds, per byte of input (see estimateBytes in harness.ts). */
const MAX_ALLOCATION_RATIO = 64

function explain (s: FuzzSummary): string {
  return s.failures.map((f) => `${f.kind} at case ${f.case}: ${f.error}\ninput: ${f.input}`).join('\n\n')
}

describe('fuzz (short run, fixed seed)', function () {
  this.timeout(300_000)

  for (const target of TARGETS) {
    it(`should throw only documented errors and keep allocation bounded: ${target.name}`, async () => {
      // deadline far above any case, so a slow machine never counts a hang here; hangs are the fuzz script's job
      const summary = await runTarget(target, { cases: CASES, seed: SEED, deadlineMs: 60_000 })
      expect(summary.crashes, explain(summary)).to.equal(0)
      expect(summary.cases).to.equal(CASES)
      // both outcomes were reached: the generators make inputs that are accepted and inputs that are refused
      expect(summary.accepted, 'accepted cases').to.be.greaterThan(0)
      expect(summary.rejected, 'rejected cases').to.be.greaterThan(0)
      expect(summary.maxAllocationRatio).to.be.at.most(MAX_ALLOCATION_RATIO)
    })
  }
})
