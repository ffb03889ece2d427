/**
 * The worker pool the verify and materialise pools run on: every job is answered once, with its own reply
 * whatever order a worker replies in, or with undefined when its worker fails or cannot start; a failed worker
 * is replaced after a delay that doubles per failure in a row; an idle pool does not keep the process alive, a
 * job out does.
 */
import { expect } from 'chai'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { WorkerPool } from '../../src/util/worker-pool.js'

/**
 * A worker that answers `echo` at once and `later` from a timer (idle meanwhile), holds `hold` jobs until a
 * `release` (then answers them last first, and the release), exits on `exit` and throws on `throw`.
 */
const SCRIPT = new URL('data:text/javascript,' + encodeURIComponent(`
  import { parentPort } from 'node:worker_threads'
  const held = []
  parentPort.on('message', (m) => {
    if (m.op === 'echo') parentPort.postMessage({ id: m.id, n: m.n })
    else if (m.op === 'later') setTimeout(() => { parentPort.postMessage({ id: m.id, n: m.n }) }, 100)
    else if (m.op === 'hold') held.push(m)
    else if (m.op === 'release') {
      for (const h of held.reverse()) parentPort.postMessage({ id: h.id, n: h.n })
      held.length = 0
      parentPort.postMessage({ id: m.id, n: m.n })
    } else if (m.op === 'exit') process.exit(3)
    else if (m.op === 'throw') throw new Error('worker failed')
  })
`))

interface Req { op: 'echo' | 'later' | 'hold' | 'release' | 'exit' | 'throw', n?: number }
interface Res { n: number }

describe('util: worker pool', () => {
  let pool: WorkerPool<Req, Res>

  beforeEach(() => {
    pool = new WorkerPool<Req, Res>(SCRIPT, 2)
  })

  afterEach(async () => {
    await pool.terminate()
  })

  it('should route each reply to its own job, whatever order the worker answers in', async () => {
    const held = [1, 2, 3].map(async (n) => await pool.run(0, { op: 'hold', n }))
    const other = pool.run(1, { op: 'echo', n: 10 })
    const release = pool.run(0, { op: 'release', n: 4 })
    expect((await Promise.all([...held, release, other])).map((r) => r?.n)).to.deep.equal([1, 2, 3, 4, 10])
    expect(pool.usable).to.equal(true)
  })

  for (const op of ['exit', 'throw'] as const) {
    it(`should answer every job a worker holds with undefined when it fails (${op}), and replace it after a delay`, async () => {
      let now = 0
      let failures = 0
      pool = new WorkerPool<Req, Res>(SCRIPT, 2, { restartBaseMs: 1000, restartMaxMs: 4000, now: () => now, onFailure: () => { failures++ } })
      const answered = pool.run(1, { op: 'echo', n: 10 })
      const held = [1, 2].map(async (n) => await pool.run(0, { op: 'hold', n }))
      const failed = pool.run(0, { op })
      expect(await Promise.all([...held, failed])).to.deep.equal([undefined, undefined, undefined])
      expect(pool.usable).to.equal(false)
      // the other worker goes on; the failed one's slot answers undefined at once until its delay has passed
      expect((await answered)?.n).to.equal(10)
      expect((await pool.run(1, { op: 'echo', n: 11 }))?.n).to.equal(11)
      now = 999
      expect(await pool.run(0, { op: 'echo', n: 12 })).to.equal(undefined)
      now = 1000
      expect(pool.usable).to.equal(true)
      expect((await pool.run(0, { op: 'echo', n: 13 }))?.n).to.equal(13)
      expect(pool.restarts).to.equal(1)
      expect(failures).to.equal(1) // one worker failed ('error' and 'exit' of it count once)
    })
  }

  it('should double the delay for each failure in a row, up to its maximum, and start over after a reply', async () => {
    let now = 0
    pool = new WorkerPool<Req, Res>(SCRIPT, 1, { restartBaseMs: 1000, restartMaxMs: 3000, now: () => now })
    /** Fails the worker, then finds the first whole second at which a job is answered again. */
    const delayAfterFailure = async (): Promise<number> => {
      expect(await pool.run(0, { op: 'exit' })).to.equal(undefined)
      const failedAt = now
      while (!pool.usable) now += 1000
      return now - failedAt
    }
    expect(await delayAfterFailure()).to.equal(1000)
    expect(await delayAfterFailure()).to.equal(2000)
    expect(await delayAfterFailure()).to.equal(3000)
    expect(await delayAfterFailure()).to.equal(3000)
    expect((await pool.run(0, { op: 'echo', n: 1 }))?.n).to.equal(1)
    expect(await delayAfterFailure()).to.equal(1000)
    expect(pool.restarts).to.equal(4)
  })

  it('should answer undefined when a worker cannot start, and try again after the delay', async () => {
    let now = 0
    pool = new WorkerPool<Req, Res>(new URL('./no-such-worker.js', import.meta.url), 1, { now: () => now })
    expect(await pool.run(0, { op: 'echo', n: 1 })).to.equal(undefined)
    expect(pool.usable).to.equal(false)
    now += 60_000
    expect(pool.usable).to.equal(true)
    expect(await pool.run(0, { op: 'echo', n: 1 })).to.equal(undefined)
    expect(pool.restarts).to.equal(1)
  })

  it('should answer undefined to a job out when terminated, and count no failure', async () => {
    let failures = 0
    pool = new WorkerPool<Req, Res>(SCRIPT, 2, { onFailure: () => { failures++ } })
    const held = pool.run(0, { op: 'hold', n: 1 })
    await pool.terminate()
    expect(await held).to.equal(undefined)
    expect(pool.usable).to.equal(false)
    // terminated for good: no worker starts again
    expect(await pool.run(1, { op: 'echo', n: 2 })).to.equal(undefined)
    expect(pool.restarts).to.equal(0)
    expect(failures).to.equal(0)
  })

  it('should refuse a worker index out of range', async () => {
    for (const i of [-1, 2, 0.5]) {
      let error: unknown
      try { await pool.run(i, { op: 'echo', n: 1 }) } catch (err) { error = err }
      expect(error).to.be.instanceOf(TypeError)
    }
  })

  it('should keep the process alive while a job is out, and not once the pool is idle', async () => {
    // a process that awaits two replies in turn and then has nothing left to do: it prints the reply (the worker was ref'd
    // while the job was out, though idle until its timer fires) and exits by itself (unref'd once the pool is
    // idle), or the test times out
    const module = new URL('../../src/util/worker-pool.js', import.meta.url).href
    const code = `
      import { WorkerPool } from ${JSON.stringify(module)}
      const pool = new WorkerPool(new URL(${JSON.stringify(SCRIPT.href)}), 1)
      for (const n of [7, 8]) process.stdout.write(String((await pool.run(0, { op: 'later', n }))?.n))
    `
    const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', code])
    expect(stdout).to.equal('78')
  })
})
