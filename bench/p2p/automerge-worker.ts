/**
 * One thread of the Automerge bound (`automergeBound` in bound.ts): each document's changes (decrypted, in
 * dependency order, concatenated) loaded with one `Automerge.load` and turned into JSON, as a reader of the
 * changefeed needs them. Warms up on the first documents, says `ready`, times its whole slice on `go`.
 */
import * as Automerge from '@automerge/automerge'
import { parentPort, workerData } from 'node:worker_threads'

interface Input { docs: Uint8Array[], warmup: number }

const { docs, warmup } = workerData as Input

/** Loads and reads every document of `list`; returns the characters of the bodies read (so nothing is skipped). */
function loadAll (list: Uint8Array[]): number {
  let chars = 0
  for (const bytes of list) {
    const doc = Automerge.load<Record<string, unknown>>(bytes)
    const json = Automerge.toJS(doc)
    const body = json.body
    chars += typeof body === 'string' ? body.length : body instanceof Automerge.ImmutableString ? body.val.length : 0
    Automerge.free(doc)
  }
  return chars
}

loadAll(docs.slice(0, warmup))
parentPort?.on('message', (msg: unknown) => {
  if (msg !== 'go') return
  const started = performance.now()
  const chars = loadAll(docs)
  parentPort?.postMessage({ type: 'done', docs: docs.length, ms: performance.now() - started, chars, endedAt: performance.timeOrigin + performance.now() })
})
parentPort?.postMessage({ type: 'ready' })
