import { expect } from 'chai'
import { RoundScheduler, type ScheduledPartner, type ScheduledResult, type ScheduledShare } from '../../src/p2p/scheduler.js'
import { FakeClock } from '../utils/clock.js'

interface P extends ScheduledPartner { running?: Promise<ScheduledResult> }
interface S extends ScheduledShare<P> { enabled: boolean }

/** Lets the promise callbacks queued so far run. */
async function flush (): Promise<void> {
  for (let i = 0; i < 10; i++) await Promise.resolve()
}

describe('round scheduler (injected clock)', () => {
  let clock: FakeClock
  let share: S
  let partner: P
  let outcomes: ScheduledResult[]
  let runs: number
  let connected: boolean
  let gates: Array<() => void>
  let scheduler: RoundScheduler<S, P, ScheduledResult>
  let holdRounds: boolean
  /** A round says its reconciliation began as soon as it starts (as a real one does after its hello). */
  let reconcileAtOnce: boolean

  beforeEach(() => {
    clock = new FakeClock()
    partner = { peerId: 'peer-a', failures: 0, again: false }
    share = { partners: new Map([['peer-a', partner]]), enabled: true }
    outcomes = []
    runs = 0
    connected = true
    gates = []
    holdRounds = false
    reconcileAtOnce = true
    scheduler = new RoundScheduler<S, P, ScheduledResult>({
      clock,
      random: () => 0.5, // no jitter: delays are exactly base * 2^(failures-1)
      run: async (_, p) => {
        runs++
        if (reconcileAtOnce) p.reconciling = true
        if (holdRounds) await new Promise<void>((resolve) => gates.push(resolve))
        return outcomes.shift() ?? { ok: true }
      },
      notRun: () => ({ ok: false }),
      enabled: (s) => s.enabled,
      connected: () => connected
    }, { backoffBaseMs: 1000, backoffMaxMs: 8000, liveDebounceMs: 5, intervalMs: 30_000, connectGraceMs: 2000 })
    scheduler.start(() => [share])
  })

  afterEach(() => { scheduler.stop() })

  it('should back off exponentially after failures and retry from its own timer', async () => {
    outcomes = [{ ok: false }, { ok: false }, { ok: false }, { ok: false }, { ok: false }]
    await scheduler.request(share, partner)
    expect(partner.failures).to.equal(1)
    expect(partner.retryAt).to.equal(clock.time + 1000)
    clock.advance(999)
    await flush()
    expect(runs).to.equal(1)
    clock.advance(1)
    await flush()
    expect(runs).to.equal(2)
    expect(partner.failures).to.equal(2)
    expect(partner.retryAt).to.equal(clock.time + 2000)
    clock.advance(2000)
    await flush()
    clock.advance(4000)
    await flush()
    expect(runs).to.equal(4)
    // capped at backoffMaxMs
    expect(partner.retryAt).to.equal(clock.time + 8000)
  })

  it('should end the backoff after a success and skip a backing-off partner on periodic and live triggers', async () => {
    outcomes = [{ ok: false }]
    await scheduler.request(share, partner)
    expect(partner.failures).to.equal(1)
    scheduler.live(share)
    clock.advance(5)
    await flush()
    expect(runs).to.equal(1) // backing off: the live trigger skipped it
    scheduler.periodic()
    await flush()
    expect(runs).to.equal(1)
    clock.advance(1000) // its retry timer
    await flush()
    expect(runs).to.equal(2)
    expect(partner.failures).to.equal(0)
    expect(partner.retryAt).to.equal(undefined)
  })

  it('should retry a failed round that made progress (a relay cut it) at the base delay, not a backed-off one', async () => {
    outcomes = [{ ok: false }, { ok: false }, { ok: false, progressed: true }, { ok: false }]
    await scheduler.request(share, partner)
    clock.advance(1000)
    await flush()
    expect(partner.failures).to.equal(2)
    clock.advance(2000) // the third round: cut after moving changes
    await flush()
    expect(runs).to.equal(3)
    expect(partner.failures).to.equal(1)
    expect(partner.retryAt).to.equal(clock.time + 1000)
    clock.advance(1000)
    await flush()
    expect(runs).to.equal(4)
    expect(partner.retryAt).to.equal(clock.time + 2000) // a failure without progress backs off again
  })

  it('should not count a skipped round as a failure', async () => {
    outcomes = [{ ok: false, skipped: true }]
    await scheduler.request(share, partner)
    expect(partner.failures).to.equal(0)
    expect(partner.retryAt).to.equal(undefined)
    expect(clock.timers.size).to.equal(1) // the periodic interval only
  })

  it('should coalesce live triggers within the debounce delay into one round, with connected partners only', async () => {
    for (let i = 0; i < 50; i++) scheduler.live(share)
    clock.advance(5)
    await flush()
    expect(runs).to.equal(1)
    connected = false
    scheduler.live(share)
    clock.advance(5)
    await flush()
    expect(runs).to.equal(1)
  })

  it('should run one round at a time per partner and exactly one more after it for requests made meanwhile', async () => {
    holdRounds = true
    const first = scheduler.request(share, partner)
    await flush()
    const second = scheduler.request(share, partner)
    const third = scheduler.request(share, partner)
    await flush()
    expect(runs).to.equal(1)
    gates.shift()?.()
    await first
    await flush()
    expect(runs).to.equal(2)
    gates.shift()?.()
    await Promise.all([second, third])
    await flush()
    expect(runs).to.equal(2)
  })

  /**
   * Starts a round held before its reconciliation (dialling, saying hello) that ends with `results` in turn, and
   * makes two requests while it is held.
   */
  async function joinBeforeReconciling (results: ScheduledResult[]): Promise<{ first: Promise<ScheduledResult>, joined: Array<Promise<ScheduledResult>> }> {
    holdRounds = true
    reconcileAtOnce = false
    outcomes = results
    const first = scheduler.request(share, partner)
    await flush()
    return { first, joined: [scheduler.request(share, partner), scheduler.request(share, partner)] }
  }

  it('should answer requests made before the running round began reconciling with that round (S1)', async () => {
    // still dialling or saying hello: the round will reconcile after these requests, so it covers them
    const { first, joined } = await joinBeforeReconciling([{ ok: true }, { ok: false }])
    await flush()
    expect(runs).to.equal(1)
    partner.reconciling = true
    // once it reconciles, a request needs a round of its own after it
    const late = scheduler.request(share, partner)
    gates.shift()?.()
    expect(await first).to.deep.equal({ ok: true })
    expect(await Promise.all(joined)).to.deep.equal([{ ok: true }, { ok: true }])
    await flush()
    expect(runs).to.equal(2)
    expect(partner.reconciling).to.equal(false) // the new round has not begun reconciling
    gates.shift()?.()
    expect(await late).to.deep.equal({ ok: false })
    await flush()
    expect(runs).to.equal(2)
    expect(partner.reconciling).to.equal(false)
  })

  it('should run one more round for requests that joined a round that then failed (S1)', async () => {
    const { first, joined } = await joinBeforeReconciling([{ ok: false }, { ok: true }])
    gates.shift()?.()
    expect(await first).to.deep.equal({ ok: false })
    await flush()
    expect(runs).to.equal(2) // one round for both of them
    gates.shift()?.()
    expect(await Promise.all(joined)).to.deep.equal([{ ok: true }, { ok: true }])
    await flush()
    expect(runs).to.equal(2)
  })

  it('should run a round at once when this side dialled a partner, unless one runs already', async () => {
    scheduler.connected(share, partner, true)
    await flush()
    expect(runs).to.equal(1)
    holdRounds = true
    const running = scheduler.request(share, partner)
    await flush()
    scheduler.connected(share, partner, true)
    gates.shift()?.()
    await running
    await flush()
    expect(runs).to.equal(2) // the running round covered the connection: none after it
    expect(clock.timers.size).to.equal(1) // the periodic interval only
  })

  it('should leave the round to the partner that dialled, and run it only if none began in time', async () => {
    /** Rounds run so far, once the clock moved on by `ms` and what that started has run. */
    const runsAfter = async (ms: number): Promise<number> => {
      clock.advance(ms)
      await flush()
      return runs
    }
    // the partner dialled and starts a session within the grace time: this side runs none
    scheduler.connected(share, partner, false)
    clock.advance(1999)
    scheduler.began(partner)
    expect(await runsAfter(1)).to.equal(0)
    // the partner starts none (its share is disabled, say): this side runs the round after the grace time
    scheduler.connected(share, partner, false)
    expect(await runsAfter(1999)).to.equal(0)
    expect(await runsAfter(1)).to.equal(1)
    // gone again before the grace time ended: no round (the next connection calls for one)
    scheduler.connected(share, partner, false)
    connected = false
    expect(await runsAfter(2000)).to.equal(1)
    // nothing left behind for a stopped scheduler, and nothing scheduled for a disabled share
    scheduler.connected(share, partner, false)
    scheduler.forget(share)
    share.enabled = false
    scheduler.connected(share, partner, false)
    scheduler.connected(share, partner, true)
    expect(clock.timers.size).to.equal(1) // the periodic interval only
  })

  it('should run the periodic catch-up every interval and nothing for a disabled share', async () => {
    clock.advance(30_000)
    await flush()
    expect(runs).to.equal(1)
    share.enabled = false
    clock.advance(30_000)
    await flush()
    expect(runs).to.equal(1)
    expect(await scheduler.request(share, partner)).to.deep.equal({ ok: false })
  })
})
