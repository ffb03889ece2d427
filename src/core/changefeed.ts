/**
 * The changefeed: one entry per materialised document (`feed!<position>` -> docId), at the position of the
 * batch that last changed it; the materialiser moves an entry to the end when it changes the document.
 * `iterateChangesSince` walks it in position order, in bounded chunks.
 */
import { throwIfAborted } from '../errors.js'
import { CHANGEFEED_STEP_CHANGES } from '../limits.js'
import type { DocId } from '../store/change.js'
import type { AbortOptions } from '../store/types.js'
import type { KV } from './types.js'

let stepChanges = CHANGEFEED_STEP_CHANGES

/** Sets the changes a walk takes up between its walks (for tests; the default is CHANGEFEED_STEP_CHANGES). */
export function setChangefeedStep (changes: number): void {
  if (!Number.isSafeInteger(changes) || changes < 1) throw new TypeError('changes must be a positive integer')
  stepChanges = changes
}

export function changefeedStep (): number {
  return stepChanges
}

/** Entries read per step of a walk. */
const CHUNK = 256
const dec = new TextDecoder()

/** Key of a changefeed position (fixed-width hex, so key order is position order). */
export const feedKey = (seq: number): string => 'feed!' + seq.toString(16).padStart(13, '0')

/** Changefeed entries after position `after`, in order, a chunk (up to 256) at a time. */
export async function * feedChunks (state: KV, after: number, options: AbortOptions = {}): AsyncGenerator<Array<{ seq: number, docId: DocId }>> {
  while (true) {
    throwIfAborted(options.signal)
    const entries = await state.iterator({ gt: feedKey(after), lt: 'feed!~', limit: CHUNK }).all()
    const chunk = entries.map(([key, value]) => ({ seq: parseInt(key.slice(5), 16), docId: dec.decode(value) }))
    if (chunk.length > 0) {
      after = chunk[chunk.length - 1].seq
      yield chunk
    }
    if (entries.length < CHUNK) return
  }
}
