/**
 * Refusals: hashes of changes this node refused for a reason tied to the change's own bytes, remembered per
 * peer that sent them, so the same bad change is not fetched from that peer again.
 *
 * Only reasons that the change's hash proves are remembered (the hash covers the header and the payload's hash):
 * UNTRUSTED_AUTHOR, KEY_MISMATCH, NOT_CREATOR, WRITE_DENIED and MALFORMED_CHANGE. A reason a peer can produce for
 * somebody else's change without touching the hashed bytes (a broken signature, which the hash does not cover;
 * a change sent without being asked for; bytes whose hash is not the one announced) is never remembered, and what
 * one peer sent never stops this node fetching the change from another peer.
 *
 * Bounded: at most REFUSALS_PER_PEER hashes per peer (oldest dropped) and REFUSALS_MAX_PEERS peers (least
 * recently used dropped).
 */
import { REFUSALS_MAX_PEERS, REFUSALS_PER_PEER } from '../limits.js'
import type { ChangeHash } from '../store/change.js'

/** Codes remembered: they follow from the bytes the hash covers, whoever sends them. */
export const REMEMBERED_CODES: ReadonlySet<string> = new Set([
  'UNTRUSTED_AUTHOR', 'KEY_MISMATCH', 'NOT_CREATOR', 'WRITE_DENIED', 'MALFORMED_CHANGE'
])

export interface RefusalsInit {
  /** Hashes per peer. Default REFUSALS_PER_PEER. */
  perPeer?: number
  /** Peers. Default REFUSALS_MAX_PEERS. */
  maxPeers?: number
}

export class Refusals {
  readonly #byPeer = new Map<string, Map<ChangeHash, string>>()
  readonly #perPeer: number
  readonly #maxPeers: number

  constructor (init: RefusalsInit = {}) {
    this.#perPeer = init.perPeer ?? REFUSALS_PER_PEER
    this.#maxPeers = init.maxPeers ?? REFUSALS_MAX_PEERS
  }

  /** True when `peer` sent this change before and it was refused for a reason tied to its bytes. */
  has (peer: string, hash: ChangeHash): boolean {
    return this.#byPeer.get(peer)?.has(hash) === true
  }

  /** Remembers a refusal if its code is tied to the change's bytes (see REMEMBERED_CODES); others are ignored. */
  add (peer: string, hash: ChangeHash, code: string): void {
    if (hash === '' || !REMEMBERED_CODES.has(code)) return
    let hashes = this.#byPeer.get(peer)
    if (hashes === undefined) {
      hashes = new Map()
      if (this.#byPeer.size >= this.#maxPeers) this.#byPeer.delete(this.#byPeer.keys().next().value as string)
    } else {
      this.#byPeer.delete(peer) // re-inserted below: most recently used last
    }
    this.#byPeer.set(peer, hashes)
    hashes.delete(hash)
    hashes.set(hash, code)
    if (hashes.size > this.#perPeer) hashes.delete(hashes.keys().next().value as ChangeHash)
  }

  /** Forgets every refusal (the share changed: its participants or write policies may have). */
  clear (): void {
    this.#byPeer.clear()
  }

  /** Number of hashes remembered over all peers. */
  get size (): number {
    let n = 0
    for (const hashes of this.#byPeer.values()) n += hashes.size
    return n
  }
}
