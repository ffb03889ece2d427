/**
 * Signature checks spread over the machine's cores. A receiver's cost per change is dominated by Ed25519
 * verification; a batch goes to worker threads, one per core, so the calling thread (which also reads frames,
 * hashes, stores and materialises) goes on with other work meanwhile. Small batches are verified in place.
 * Workers start on first use and are unref'd while idle: an idle pool never keeps the process alive (WorkerPool).
 * A share whose worker cannot start or fails is verified on the calling thread, and so are the batches sent while
 * that worker waits to be replaced (WorkerPool, invariant 3).
 */
import { availableParallelism } from 'node:os'
import { WorkerPool } from '../util/worker-pool.js'
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

/** A job as the verify worker takes it (verify-worker.ts), and its answer: 1 or 0 per check. */
interface VerifyRequest { keys: string[], data: Uint8Array[], sigs: Uint8Array[] }
interface VerifyReply { ok: Uint8Array }

function verifyHere (checks: SignatureCheck[]): boolean[] {
  return checks.map((c) => verifySignature(c.publicKey, c.data, c.signature))
}

/** Verify workers that could not start or failed in this process (all pools). */
let failures = 0

class VerifyPool {
  readonly #workers: WorkerPool<VerifyRequest, VerifyReply>

  constructor (readonly size: number) {
    this.#workers = new WorkerPool(new URL('./verify-worker.js', import.meta.url), size, { onFailure: () => { failures++ } })
  }

  async verify (checks: SignatureCheck[]): Promise<boolean[]> {
    if (checks.length < MIN_PARALLEL || !this.#workers.usable) return verifyHere(checks)
    // an equal share per worker; the calling thread verifies a share whose worker cannot start or fails with it
    // (the checks are still in hand, so none is lost and none passes unchecked)
    const share = Math.ceil(checks.length / this.size)
    const answers = await Promise.all(Array.from({ length: this.size }, async (_, i) => {
      const part = checks.slice(share * i, share * (i + 1))
      if (part.length === 0) return []
      const reply = await this.#workers.run(i, { keys: part.map((c) => c.publicKey), data: part.map((c) => c.data), sigs: part.map((c) => c.signature) })
      return reply === undefined ? verifyHere(part) : Array.from(reply.ok, (v) => v === 1)
    }))
    return answers.flat()
  }

  async terminate (): Promise<void> {
    await this.#workers.terminate()
  }
}

let pool: VerifyPool | undefined

/** Verify workers that could not start or failed since the process started (a pool terminated by tests: not). */
export function verifyWorkerFailures (): number {
  return failures
}

/** Verifies many signatures, in parallel on the machine's cores when the batch is large enough. */
export async function verifySignatures (checks: SignatureCheck[]): Promise<boolean[]> {
  pool ??= new VerifyPool(Math.min(VERIFY_WORKERS_MAX, availableParallelism()))
  return await pool.verify(checks)
}

/**
 * For tests: terminates the verify workers as a crash would. The shares they hold are verified on the calling
 * thread, and so are the calls made until they have exited; after that the next call starts a new pool.
 */
export async function terminateVerifyWorkersForTests (): Promise<void> {
  const stopped = pool
  await stopped?.terminate()
  if (pool === stopped) pool = undefined
}
