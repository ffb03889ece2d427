/**
 * Want claims (session invariant I4): the hashes the sessions of one database are fetching, so that parallel
 * sessions with different peers do not fetch the same change twice. A session claims what it asks for; another
 * session that needs a claimed hash waits for its release (bounded by SESSION_CLAIM_WAIT_MS in the session), or
 * takes the claim over.
 */
import type { ChangeHash } from '../store/change.js'
import type { AbortOptions } from '../store/types.js'

/** Keeps the hashes sessions of one database are fetching, so that parallel sessions don't fetch twice (I4). */
export class WantClaims {
  readonly #claimed = new Map<ChangeHash, { owner: object, released: Promise<void>, release: () => void }>()

  /** Claims for `owner` the hashes not claimed yet; returns them, and the hashes another session is fetching. */
  claim (hashes: ChangeHash[], owner: object = WantClaims): { mine: ChangeHash[], busy: ChangeHash[] } {
    const mine: ChangeHash[] = []
    const busy: ChangeHash[] = []
    for (const h of hashes) {
      if (this.#claimed.has(h)) {
        busy.push(h)
      } else {
        const { promise, resolve } = Promise.withResolvers<void>()
        this.#claimed.set(h, { owner, released: promise, release: resolve })
        mine.push(h)
      }
    }
    return { mine, busy }
  }

  /**
   * Resolves when the hash is no longer being fetched (fetched or failed). Honours the signal: an abort (the
   * session's deadline or its end) rejects with the signal's reason.
   */
  async released (hash: ChangeHash, options: AbortOptions = {}): Promise<void> {
    const claim = this.#claimed.get(hash)
    if (claim === undefined) return
    const signal = options.signal
    signal?.throwIfAborted()
    if (signal === undefined) {
      await claim.released
      return
    }
    let onAbort: (() => void) | undefined
    try {
      await Promise.race([claim.released, new Promise<never>((_resolve, reject) => {
        onAbort = () => { reject(signal.reason) }
        signal.addEventListener('abort', onAbort, { once: true })
      })])
    } finally {
      if (onAbort !== undefined) signal.removeEventListener('abort', onAbort)
    }
  }

  /** Releases the hashes `owner` holds (a claim taken over by another owner is left to it). */
  release (hashes: Iterable<ChangeHash>, owner: object = WantClaims): void {
    for (const h of hashes) {
      const claim = this.#claimed.get(h)
      if (claim === undefined || claim.owner !== owner) continue
      claim.release()
      this.#claimed.delete(h)
    }
  }

  /** Takes over the claims of hashes another owner held too long; returns the hashes now held by `owner`. */
  takeOver (hashes: Iterable<ChangeHash>, owner: object): ChangeHash[] {
    const taken: ChangeHash[] = []
    for (const h of hashes) {
      const claim = this.#claimed.get(h)
      if (claim === undefined) {
        taken.push(...this.claim([h], owner).mine)
      } else {
        // waiters of the old claim are woken when the new owner releases it
        claim.owner = owner
        taken.push(h)
      }
    }
    return taken
  }

  get size (): number {
    return this.#claimed.size
  }
}
