/**
 * Signature checks spread over the machine's cores. A receiver's cost per change is dominated by Ed25519
 * verification; a batch goes to worker threads, one per core, so the calling thread (which also reads frames,
 * hashes, stores and materialises) goes on with other work meanwhile. Small batches are verified in place.
 * Workers start on first use and are unref'd: an idle pool never keeps the process alive.
 */
import { availableParallelism } from 'node:os'
import { Worker } from 'node:worker_threads'
import { verifySignature } from './index.js'

export interface SignatureCheck {
  /** base64url raw Ed25519 public key. */
  publicKey: string
  data: Uint8Array
  signature: Uint8Array
}

/** Below this many checks a batch is verified on the calling thread (a round trip to a worker costs more). */
const MIN_PARALLEL = 32
/** Verify workers at most (one per core up to this). */
const VERIFY_WORKERS_MAX = 4

class VerifyPool {
  readonly #workers: Worker[] = []
  /** Jobs out per worker: a worker is ref'd only while it has some. */
  readonly #jobs: number[] = []
  readonly #pending = new Map<number, (ok: Uint8Array) => void>()
  #nextId = 0
  #broken = false

  constructor (readonly size: number) {}

  #worker (i: number): Worker | undefined {
    if (this.#broken) return undefined
    let w = this.#workers[i]
    if (w === undefined) {
      try {
        w = new Worker(new URL('./verify-worker.js', import.meta.url))
      } catch {
        this.#broken = true
        return undefined
      }
      w.unref()
      w.on('message', (m: { id: number, ok: Uint8Array }) => {
        this.#pending.get(m.id)?.(m.ok)
        this.#pending.delete(m.id)
      })
      w.on('error', () => { this.#broken = true })
      this.#workers[i] = w
    }
    return w
  }

  async #remote (i: number, w: Worker, checks: SignatureCheck[]): Promise<Uint8Array> {
    const id = this.#nextId++
    // while a job is out, its answer is awaited: the worker keeps the process alive until then
    if ((this.#jobs[i] = (this.#jobs[i] ?? 0) + 1) === 1) w.ref()
    try {
      return await new Promise<Uint8Array>((resolve) => {
        this.#pending.set(id, resolve)
        w.postMessage({ id, keys: checks.map((c) => c.publicKey), data: checks.map((c) => c.data), sigs: checks.map((c) => c.signature) })
      })
    } finally {
      if (--this.#jobs[i] === 0) w.unref()
    }
  }

  async verify (checks: SignatureCheck[]): Promise<boolean[]> {
    const local = (part: SignatureCheck[]): boolean[] => part.map((c) => verifySignature(c.publicKey, c.data, c.signature))
    if (checks.length < MIN_PARALLEL || this.size === 0) return local(checks)
    // an equal share per worker; the calling thread verifies a share only where a worker cannot start
    const share = Math.ceil(checks.length / this.size)
    const remote: Array<Promise<Uint8Array>> = []
    for (let i = 0; i < this.size; i++) {
      const part = checks.slice(share * i, share * (i + 1))
      const w = part.length > 0 ? this.#worker(i) : undefined
      remote.push(w === undefined ? Promise.resolve(Uint8Array.from(local(part), Number)) : this.#remote(i, w, part))
    }
    const results: boolean[] = []
    for (const ok of await Promise.all(remote)) for (const v of ok) results.push(v === 1)
    return results
  }
}

let pool: VerifyPool | undefined

/** Verifies many signatures, in parallel on the machine's cores when the batch is large enough. */
export async function verifySignatures (checks: SignatureCheck[]): Promise<boolean[]> {
  pool ??= new VerifyPool(Math.min(VERIFY_WORKERS_MAX, availableParallelism()))
  return await pool.verify(checks)
}
