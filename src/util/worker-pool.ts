/**
 * Worker threads running one script, each job answered by id: the plumbing of the verify and materialise pools.
 * Which job goes to which worker, and what to do without an answer, stays with the pool that uses it.
 *
 * Invariants:
 * 1. Worker i starts on the first job sent to it. It is unref'd while it holds no job (an idle pool never keeps
 *    the process alive) and ref'd while it holds some (an awaited answer does).
 * 2. Every job is answered exactly once: with the worker's reply, or with undefined when the worker cannot start
 *    or fails before it replies ('error', 'exit' or a reply that cannot be read). A reply to a job already
 *    answered is dropped.
 * 3. A worker that cannot start or fails is replaced, on the first job sent to its slot once a delay has passed:
 *    `restartBaseMs` after the failure, doubled for each failure of the slot in a row (a reply ends the row), at
 *    most `restartMaxMs`. Jobs sent to the slot before then are answered undefined at once, and the pool is not
 *    `usable`. So input that crashes a worker again and again costs a worker start per `restartMaxMs`.
 * 4. `terminate` ends the pool: its workers stop as if they failed (2), and no worker starts again.
 * 5. `onFailure` is called once for each worker that could not start or failed, never for one `terminate` stopped.
 *
 * The wire: a job `req` is posted as `{ ...req, id }`, and the worker answers `{ ...res, id }` with the same id.
 */
import { Worker } from 'node:worker_threads'
import { WORKER_RESTART_BASE_MS, WORKER_RESTART_MAX_MS } from '../limits.js'

export interface WorkerPoolInit {
  /** Delay before a failed worker is replaced, ms (invariant 3). Default WORKER_RESTART_BASE_MS. */
  restartBaseMs?: number
  /** Longest such delay, ms. Default WORKER_RESTART_MAX_MS. */
  restartMaxMs?: number
  /** The clock the delays are measured with, ms. Default Date.now. */
  now?: () => number
  /** Called for each worker that could not start or failed (invariant 5): for the operator's counters. */
  onFailure?: () => void
}

/** One worker's place in the pool: the worker running in it, or when the next one may start. */
interface Slot {
  worker?: Worker
  /** Jobs out on `worker`, by id. */
  pending: Map<number, (res: unknown) => void>
  /** Failures in a row (invariant 3). */
  failures: number
  /** When a worker may start in this slot again, on the `now` clock. */
  restartAt: number
}

export class WorkerPool<Req extends object, Res extends object> {
  readonly #slots: Slot[]
  readonly #restartBaseMs: number
  readonly #restartMaxMs: number
  readonly #now: () => number
  readonly #onFailure: () => void
  #nextId = 0
  #terminated = false
  #restarts = 0

  /** `size` workers at most, each running `script` (a file: or data: URL). */
  constructor (readonly script: URL, readonly size: number, init: WorkerPoolInit = {}) {
    if (!Number.isSafeInteger(size) || size < 0) throw new TypeError('size must be a non-negative integer')
    this.#slots = Array.from({ length: size }, () => ({ pending: new Map(), failures: 0, restartAt: 0 }))
    this.#restartBaseMs = init.restartBaseMs ?? WORKER_RESTART_BASE_MS
    this.#restartMaxMs = init.restartMaxMs ?? WORKER_RESTART_MAX_MS
    this.#now = init.now ?? Date.now
    this.#onFailure = init.onFailure ?? (() => {})
  }

  /** Whether jobs can be sent now: the pool has workers, is not terminated, and no slot waits to restart (3). */
  get usable (): boolean {
    if (this.#terminated || this.size === 0) return false
    const now = this.#now()
    return this.#slots.every((s) => s.worker !== undefined || now >= s.restartAt)
  }

  /** Workers started to replace failed ones so far. */
  get restarts (): number {
    return this.#restarts
  }

  /** Sends `req` to worker `i`; resolves with its reply, or undefined when there is none (invariant 2). */
  async run (i: number, req: Req): Promise<Res | undefined> {
    if (!Number.isSafeInteger(i) || i < 0 || i >= this.size) throw new TypeError(`worker ${i} is not in 0..${this.size - 1}`)
    const slot = this.#slots[i]
    const w = slot.worker ?? this.#start(slot)
    if (w === undefined) return undefined
    const id = this.#nextId++
    return await new Promise((resolve) => {
      w.postMessage({ ...req, id })
      if (slot.pending.size === 0) w.ref() // invariant 1
      slot.pending.set(id, resolve as (res: unknown) => void)
    })
  }

  /**
   * Terminates the workers started so far, as a crash would: the jobs they hold are answered undefined, and no
   * worker starts again (invariants 2, 4). Resolves once they have exited.
   */
  async terminate (): Promise<void> {
    this.#terminated = true
    await Promise.all(this.#slots.map(async (s) => await s.worker?.terminate()))
  }

  /** Starts a worker in the slot, unless the pool is terminated or the slot's restart delay runs (3, 4). */
  #start (slot: Slot): Worker | undefined {
    if (this.#terminated || this.#now() < slot.restartAt) return undefined
    let w: Worker
    try {
      w = new Worker(this.script)
    } catch {
      this.#failed(slot)
      return undefined
    }
    if (slot.failures > 0) this.#restarts++
    const pending = new Map<number, (res: unknown) => void>()
    w.on('message', (m: Res & { id: number }) => {
      const resolve = pending.get(m.id)
      if (resolve === undefined) return // invariant 2: answered already
      pending.delete(m.id)
      if (pending.size === 0) w.unref()
      slot.failures = 0 // invariant 3: a reply ends the row
      resolve(m)
    })
    const fail = (): void => {
      if (slot.worker !== w) return // 'error' and then 'exit': one failure
      slot.worker = undefined
      this.#failed(slot)
      for (const resolve of pending.values()) resolve(undefined) // invariant 2
      pending.clear()
      w.unref()
    }
    w.on('error', fail)
    w.on('exit', fail)
    // a reply that cannot be read leaves some job unanswered, no telling which: the worker is given up
    w.on('messageerror', () => {
      fail()
      void w.terminate()
    })
    w.unref() // invariant 1; after the listeners, since a first 'message' listener refs the worker
    slot.worker = w
    slot.pending = pending
    return w
  }

  /** Counts a failure of the slot and sets when it may start a worker again (invariants 3, 5). */
  #failed (slot: Slot): void {
    if (this.#terminated) return
    this.#onFailure()
    slot.failures++
    slot.restartAt = this.#now() + Math.min(this.#restartMaxMs, this.#restartBaseMs * 2 ** (slot.failures - 1))
  }
}
