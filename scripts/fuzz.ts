/**
 * `npm run fuzz`: runs every fuzz target of test/fuzz/targets.ts for 10^5 generated cases (fixed seed, so a run
 * replays) and prints one JSON summary: per target the cases, accepted and rejected inputs, crashes, hangs, the
 * largest structural allocation per input byte, the largest input and the slowest case. Exits 1 on any crash,
 * hang or allocation above the bound.
 *
 * Each target runs in a worker thread. The harness counts a case over its deadline as a hang (and races async
 * cases against it); a synchronous endless loop never returns to the harness, so the main thread watches the
 * worker's case counter and terminates a worker that makes no progress for WATCHDOG_MS, reporting a hang.
 *
 * Options: --cases N (default 100000), --seed S, --target NAME (repeatable), --deadline MS (default 2000),
 * --jobs N (targets run at once, default 1).
 */
import { parseArgs } from 'node:util'
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads'
import { runTarget, type FuzzSummary } from '../test/fuzz/harness.js'
import { TARGETS } from '../test/fuzz/targets.js'

/** A worker whose case counter does not move for this long is stuck in one case: a hang. */
const WATCHDOG_MS = 60_000
/** Largest structural allocation per input byte accepted (see estimateBytes in test/fuzz/harness.ts). */
const MAX_ALLOCATION_RATIO = 64

interface Job { target: string, cases: number, seed: number, deadlineMs: number, progress: SharedArrayBuffer }

async function workerMain (job: Job): Promise<void> {
  const target = TARGETS.find((t) => t.name === job.target)
  if (target === undefined) throw new Error(`no fuzz target ${job.target}`)
  const progress = new Int32Array(job.progress)
  const summary = await runTarget(target, {
    cases: job.cases, seed: job.seed, deadlineMs: job.deadlineMs, onCase: (i) => { Atomics.store(progress, 0, i + 1) }
  })
  parentPort?.postMessage(summary)
}

function runInWorker (target: string, cases: number, seed: number, deadlineMs: number): Promise<FuzzSummary> {
  const progress = new SharedArrayBuffer(4)
  const counter = new Int32Array(progress)
  const worker = new Worker(new URL(import.meta.url), { workerData: { target, cases, seed, deadlineMs, progress } satisfies Job })
  const started = Date.now()
  return new Promise((resolve) => {
    let last = -1
    let lastMove = Date.now()
    let result: FuzzSummary | undefined
    const stuck = (error: string): FuzzSummary => {
      const at = Atomics.load(counter, 0)
      return {
        target,
        seed,
        cases: at,
        accepted: 0,
        rejected: 0,
        crashes: 0,
        hangs: 1,
        maxAllocationRatio: 0,
        maxInputBytes: 0,
        maxCaseMs: Date.now() - lastMove,
        elapsedMs: Date.now() - started,
        outcomes: {},
        failures: [{ kind: 'hang', case: at, error, input: `replay: --target ${target} --seed ${seed} --cases ${at + 1}` }]
      }
    }
    const watchdog = setInterval(() => {
      const now = Atomics.load(counter, 0)
      if (now !== last) {
        last = now
        lastMove = Date.now()
      } else if (Date.now() - lastMove > WATCHDOG_MS) {
        result = stuck(`no case finished for ${WATCHDOG_MS} ms`)
        void worker.terminate()
      }
    }, 1000)
    worker.on('message', (summary: FuzzSummary) => { result = summary })
    worker.on('error', (err) => {
      result ??= { ...stuck(String(err)), hangs: 0, crashes: 1, failures: [{ kind: 'crash', case: Atomics.load(counter, 0), error: err.stack ?? String(err), input: '' }] }
    })
    worker.on('exit', () => {
      clearInterval(watchdog)
      resolve(result ?? stuck('the worker exited without a summary'))
    })
  })
}

async function main (): Promise<void> {
  const { values } = parseArgs({
    options: {
      cases: { type: 'string', default: '100000' },
      seed: { type: 'string', default: '20261128' },
      target: { type: 'string', multiple: true },
      deadline: { type: 'string', default: '2000' },
      jobs: { type: 'string', default: '1' }
    }
  })
  const cases = Number(values.cases)
  const seed = Number(values.seed)
  const deadlineMs = Number(values.deadline)
  const names = values.target ?? TARGETS.map((t) => t.name)
  for (const n of names) if (!TARGETS.some((t) => t.name === n)) throw new Error(`unknown target ${n}; targets: ${TARGETS.map((t) => t.name).join(', ')}`)
  const queue = [...names]
  const results: FuzzSummary[] = []
  const started = Date.now()
  await Promise.all(Array.from({ length: Math.max(1, Number(values.jobs)) }, async () => {
    for (let name = queue.shift(); name !== undefined; name = queue.shift()) {
      const summary = await runInWorker(name, cases, seed, deadlineMs)
      console.error(`fuzz: ${name}: ${summary.cases} cases, ${summary.crashes} crashes, ${summary.hangs} hangs, ` +
        `allocation <= ${summary.maxAllocationRatio}x, slowest case ${summary.maxCaseMs} ms, ${Math.round(summary.elapsedMs / 1000)} s`)
      results.push(summary)
    }
  }))
  results.sort((a, b) => names.indexOf(a.target) - names.indexOf(b.target))
  const total = {
    cases: results.reduce((n, r) => n + r.cases, 0),
    crashes: results.reduce((n, r) => n + r.crashes, 0),
    hangs: results.reduce((n, r) => n + r.hangs, 0),
    maxAllocationRatio: Math.max(...results.map((r) => r.maxAllocationRatio)),
    allocationBound: MAX_ALLOCATION_RATIO,
    elapsedMs: Date.now() - started
  }
  const ok = total.crashes === 0 && total.hangs === 0 && total.maxAllocationRatio <= MAX_ALLOCATION_RATIO &&
    results.every((r) => r.cases === cases)
  console.log(JSON.stringify({ ok, seed, casesPerTarget: cases, deadlineMs, total, targets: results }, null, 2))
  process.exitCode = ok ? 0 : 1
}

if (isMainThread) {
  await main()
} else {
  await workerMain(workerData as Job)
}
