/**
 * Worker thread of the materialise pool (materialise-pool.ts): for each job, brings the document up to date (from
 * the copy it built last when that is at the job's base, else from its snapshot and tail), returns its content as
 * text and, when asked, a new snapshot.
 * Message in: `{ id, jobs: MaterialiseJob[] }`; out: `{ id, results: MaterialiseOutcome[] }` or `{ id, error }`.
 */
import * as Automerge from '@automerge/automerge'
import { parentPort } from 'node:worker_threads'
import { silentLogger } from '../util/logger.js'
import { encodeData } from './data-codec.js'
import { MATERIALISE_WORKER_CACHE_DOCS } from '../limits.js'
import type { DocData } from './doc.js'
import { applyAll, buildAm } from './doc-state.js'
import type { MaterialiseJob, MaterialiseOutcome } from './materialise-pool.js'

/** The actor id of every copy built here: they are read, saved and dropped, never changed. */
const READER_ACTOR = '00'.repeat(16)

/**
 * Documents built last that had a state before their batch, by id, with the heads they are at; least recently used
 * out first. A document new in its batch is not kept: most get no change in the next batch (a sync brings each
 * document's changes together), and keeping hundreds of them built makes every load slower (a larger Automerge heap).
 */
const built = new Map<string, { am: Automerge.Doc<DocData>, head: string }>()

/** The job's document brought up to date; `keep` false when it is not kept (the caller frees it after use). */
function build (job: MaterialiseJob): { am: Automerge.Doc<DocData>, keep: boolean } {
  const cached = built.get(job.docId)
  built.delete(job.docId)
  let am: Automerge.Doc<DocData>
  if (cached !== undefined && job.base !== '' && cached.head === job.base) {
    am = applyAll(cached.am, job.tail.slice(job.from), silentLogger, job.docId)
  } else {
    if (cached !== undefined) Automerge.free(cached.am)
    am = buildAm(job.snapshot, job.tail, silentLogger, job.docId, READER_ACTOR)
  }
  if (job.base === '') return { am, keep: false }
  built.set(job.docId, { am, head: job.head })
  if (built.size > MATERIALISE_WORKER_CACHE_DOCS) {
    const [oldest, entry] = built.entries().next().value as [string, { am: Automerge.Doc<DocData> }]
    built.delete(oldest)
    Automerge.free(entry.am)
  }
  return { am, keep: true }
}

parentPort?.on('message', ({ id, jobs }: { id: number, jobs: MaterialiseJob[] }) => {
  try {
    const results: MaterialiseOutcome[] = []
    for (const job of jobs) {
      const { am, keep } = build(job)
      // the loaded document is already its content in JS (Automerge.load materialised it): encoded as it is, not
      // materialised a second time through toJS
      const result: MaterialiseOutcome = { json: encodeData(am) }
      if (job.save) result.snapshot = Automerge.save(am)
      if (!keep) Automerge.free(am)
      results.push(result)
    }
    parentPort?.postMessage({ id, results })
  } catch (err) {
    // a document that failed midway may be cached half built: forget them all
    for (const { am } of built.values()) Automerge.free(am)
    built.clear()
    parentPort?.postMessage({ id, error: String(err) })
  }
})
