/**
 * The benchmark's reconciliation part drives the real session with stand-ins for the parts a serve-only session
 * does not use (bench/p2p/reconcile-p2p.ts): when the session needs more of them, the part must still run.
 */
import { expect } from 'chai'
import { benchP2P } from '../../bench/p2p/index.js'

describe('bench: reconciliation over libp2p', function () {
  this.timeout(60_000)

  it('should run the real session at a small size and find every difference', async () => {
    const report = await benchP2P({ parts: ['reconcile'], sizes: [1000], diffs: [0, 1, 10] }) as {
      reconcile: { error?: string, results?: Array<{ n: number, d: number, correct: boolean, roundTrips: number }> }
    }
    expect(report.reconcile.error).to.equal(undefined)
    expect(report.reconcile.results?.map((r) => [r.n, r.d, r.correct])).to.deep.equal([[1000, 0, true], [1000, 1, true], [1000, 10, true]])
    expect(report.reconcile.results?.[0].roundTrips).to.equal(1)
  })
})
