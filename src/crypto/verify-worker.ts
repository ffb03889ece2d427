/**
 * Worker thread of the verify pool: checks Ed25519 signatures for the main thread.
 * Message in: `{ id, keys: string[], data: Uint8Array[], sigs: Uint8Array[] }`; out: `{ id, ok: Uint8Array }`.
 */
import { parentPort } from 'node:worker_threads'
import { verifySignature } from './index.js'

interface Job { id: number, keys: string[], data: Uint8Array[], sigs: Uint8Array[] }

parentPort?.on('message', (job: Job) => {
  const ok = new Uint8Array(job.keys.length)
  for (let i = 0; i < ok.length; i++) ok[i] = verifySignature(job.keys[i], job.data[i], job.sigs[i]) ? 1 : 0
  parentPort?.postMessage({ id: job.id, ok }, [ok.buffer])
})
