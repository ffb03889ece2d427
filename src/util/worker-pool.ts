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
 * 3. A worker that cannot start or fails breaks the pool: later jobs are answered undefined at once, and no
 *    worker is started again.
 *
 * The wire: a job `req` is posted as `{ ...req, id }`, and the worker answers `{ ...res, id }` with the same id.
 */
import { Worker } from 'node:worker_threads'

export class WorkerPool<Req extends object, Res extends object> {
  readonly #workers: Worker[] = []
  /** Jobs out per worker, by id. */
  readonly #pending: Array<Map<number, (res: Res | undefined) => void>> = []
  #nextId = 0
  #broken = false

  /** `size` workers at most, each running `script` (a file: or data: URL). */
  constructor (readonly script: URL, readonly size: number) {
    if (!Number.isSafeInteger(size) || size < 0) throw new TypeError('size must be a non-negative integer')
  }

  /** Whether jobs can be sent: the pool has workers and none has failed (invariant 3). */
  get usable (): boolean {
    return !this.#broken && this.size > 0
  }

  /** Sends `req` to worker `i`; resolves with its reply, or undefined when there is none (invariant 2). */
  async run (i: number, req: Req): Promise<Res | undefined> {
    if (!Number.isSafeInteger(i) || i < 0 || i >= this.size) throw new TypeError(`worker ${i} is not in 0..${this.size - 1}`)
    return await this.#run(i, req)
  }

  /**
   * Terminates the workers started so far, as a crash would: the jobs they hold are answered undefined and the
   * pool is broken (invariants 2, 3). Resolves once they have exited.
   */
  async terminate (): Promise<void> {
    this.#broken = true
    await Promise.all(this.#workers.map(async (w) => await w.terminate()))
  }

  async #run (i: number, req: Req): Promise<Res | undefined> {
    const w = this.#worker(i)
    if (w === undefined) return undefined
    const pending = this.#pending[i]
    const id = this.#nextId++
    return await new Promise((resolve) => {
      w.postMessage({ ...req, id })
      if (pending.size === 0) w.ref() // invariant 1
      pending.set(id, resolve)
    })
  }

  #worker (i: number): Worker | undefined {
    if (this.#broken) return undefined
    return this.#workers[i] ?? this.#start(i)
  }

  #start (i: number): Worker | undefined {
    let w: Worker
    try {
      w = new Worker(this.script)
    } catch {
      this.#broken = true // invariant 3
      return undefined
    }
    const pending = new Map<number, (res: Res | undefined) => void>()
    w.on('message', (m: Res & { id: number }) => {
      const resolve = pending.get(m.id)
      if (resolve === undefined) return // invariant 2: answered already
      pending.delete(m.id)
      if (pending.size === 0) w.unref()
      resolve(m)
    })
    const fail = (): void => {
      this.#broken = true // invariant 3
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
    this.#workers[i] = w
    this.#pending[i] = pending
    return w
  }
}
