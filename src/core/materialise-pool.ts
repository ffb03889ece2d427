/**
 * Automerge work of the materialiser on worker threads, one per core: for each document of a batch, a worker
 * loads its snapshot and tail in one Automerge call, returns the content as text (data-codec.ts) and, when the
 * snapshot-cache rule says so, a new snapshot. The main thread keeps the decisions, the LevelDB writes and their
 * order. Workers start on first use and are unref'd while idle: an idle pool never keeps the process alive. While
 * a worker that cannot start or failed waits to be replaced (WorkerPool, invariant 3), the materialiser goes on
 * without the pool: documents are then loaded on the main thread when read.
 */
import { availableParallelism } from 'node:os'
import { MATERIALISE_MAIN_BUILD_DOCS, MATERIALISE_WORKERS_MAX } from '../limits.js'
import { WorkerPool } from '../util/worker-pool.js'

/**
 * One document's job: its snapshot and tail, and whether to save a new snapshot. A document always goes to the
 * same worker, which keeps the documents it built last (`MATERIALISE_WORKER_CACHE_DOCS`): when it holds the
 * document at `base` (its heads before this batch), it applies only `tail[from...]` instead of loading it all.
 */
export interface MaterialiseJob {
  docId: string
  /** The document's heads before the batch ('' for a new document), and after it. */
  base: string
  head: string
  snapshot: Uint8Array
  tail: Uint8Array[]
  /** Index of the batch's first change in `tail`. */
  from: number
  save: boolean
}

export interface MaterialiseOutcome {
  /** The content as `encodeData` text. */
  json: string
  /** The new snapshot, when asked to save. */
  snapshot?: Uint8Array
}

/** A batch as the materialise worker takes it (materialise-worker.ts), and its answer. */
interface Request { jobs: MaterialiseJob[] }
interface Reply { results?: MaterialiseOutcome[], error?: string }

/** Materialise workers that could not start or failed in this process (all pools). */
let failures = 0

class MaterialisePool {
  readonly #workers: WorkerPool<Request, Reply>

  constructor (readonly size: number) {
    this.#workers = new WorkerPool(new URL('./materialise-worker.js', import.meta.url), size, { onFailure: () => { failures++ } })
  }

  get usable (): boolean {
    return this.#workers.usable
  }

  /** Runs the jobs over the workers; undefined when the pool cannot (the caller does without). */
  async run (jobs: MaterialiseJob[]): Promise<Array<MaterialiseOutcome | undefined>> {
    const out: Array<MaterialiseOutcome | undefined> = new Array(jobs.length).fill(undefined)
    if (!this.usable || jobs.length === 0) return out
    // each document to its own worker, so that worker's cache of built documents serves it again
    const parts: number[][] = Array.from({ length: this.size }, () => [])
    jobs.forEach((job, k) => { parts[workerOf(job.docId, this.size)].push(k) })
    await Promise.all(parts.map(async (part, i) => {
      if (part.length === 0) return
      // no reply (the worker cannot start or failed) or an error reply: these documents stay undefined
      const reply = await this.#workers.run(i, { jobs: part.map((k) => jobs[k]) })
      reply?.results?.forEach((r, n) => { out[part[n]] = r })
    }))
    return out
  }
}

/** The worker a document goes to: a hash of its (random) id. */
function workerOf (docId: string, size: number): number {
  let h = 0
  for (let i = docId.length - 8; i < docId.length; i++) h = (h * 31 + docId.charCodeAt(Math.max(0, i))) >>> 0
  return h % size
}

let pool: MaterialisePool | undefined
let workers: number | undefined
let mainBuildDocs = MATERIALISE_MAIN_BUILD_DOCS

/** Materialise workers that could not start or failed since the process started. */
export function materialiseWorkerFailures (): number {
  return failures
}

/** Steps of at most `docs` documents build small documents on the calling thread (0: always on the workers). */
export function setMaterialiseMainBuildDocs (docs: number): void {
  if (!Number.isSafeInteger(docs) || docs < 0) throw new TypeError('docs must be a non-negative integer')
  mainBuildDocs = docs
}

export function materialiseMainBuildDocs (): number {
  return mainBuildDocs
}

/**
 * Sets the number of materialise workers for what follows in this process (0: none, documents are then loaded
 * on the main thread when read). For benchmarks and tests; the default is one per core.
 */
export function setMaterialiseWorkers (count: number): void {
  if (!Number.isSafeInteger(count) || count < 0) throw new TypeError('count must be a non-negative integer')
  workers = Math.min(count, MATERIALISE_WORKERS_MAX)
  pool = undefined
}

/** The process's materialise pool (one worker per core, at most MATERIALISE_WORKERS_MAX). */
export function materialisePool (): { usable: boolean, run: (jobs: MaterialiseJob[]) => Promise<Array<MaterialiseOutcome | undefined>> } {
  pool ??= new MaterialisePool(workers ?? Math.max(0, Math.min(MATERIALISE_WORKERS_MAX, availableParallelism())))
  return pool
}
