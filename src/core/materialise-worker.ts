/**
 * Worker thread of the materialise pool (materialise-pool.ts): for each job, loads the document from its snapshot
 * and tail, returns its content as text and, when asked, a new snapshot.
 * Message in: `{ id, jobs: MaterialiseJob[] }`; out: `{ id, results: MaterialiseOutcome[] }` or `{ id, error }`.
 */
import * as Automerge from '@automerge/automerge'
import { parentPort } from 'node:worker_threads'
import { silentLogger } from '../util/logger.js'
import { encodeData } from './data-codec.js'
import { buildAm } from './doc-state.js'
import type { MaterialiseJob, MaterialiseOutcome } from './materialise-pool.js'

parentPort?.on('message', ({ id, jobs }: { id: number, jobs: MaterialiseJob[] }) => {
  try {
    const results: MaterialiseOutcome[] = []
    for (const job of jobs) {
      const am = buildAm(job.snapshot, job.tail, silentLogger, '')
      const result: MaterialiseOutcome = { json: encodeData(Automerge.toJS(am)) }
      if (job.save) {
        result.snapshot = Automerge.save(am)
      }
      Automerge.free(am)
      results.push(result)
    }
    parentPort?.postMessage({ id, results })
  } catch (err) {
    parentPort?.postMessage({ id, error: String(err) })
  }
})
