/**
 * A share's write policy: which received changes this side stores, decided on each change's author (relayed
 * changes too), after the participant check and before the store.
 *
 * - This tenant's own changes always pass.
 * - Another author is judged by its policy (`SharePartner.write` / `ShareParticipant.write`; default
 *   `{ created: true, served: true }`; `'none'` denies everything):
 *   - `created`: it may write documents it created (the v2 document id proves the creator);
 *   - `served`: it may write documents this share serves to it, by this side's filter (`servesDoc`, or for a
 *     `keys` filter `servesKey`). A partner cannot pull a document into its filter by writing to it: the
 *     document is judged by its state here before the change;
 *   - `keyIds`, `types` narrow that further: only under these key ids; only documents whose `type` is one of
 *     these both before the change (as stored here) and after it (the change applied, with the changes of the
 *     same frame it depends on, to what is stored here). A document the author created may also be without a
 *     type, before and after; one this side does not have yet counts as without a type.
 * - Anything else is refused with WriteDeniedError (code WRITE_DENIED), counted, and never stored. A change whose
 *   outcome cannot be told yet under `types` (a dependency neither stored nor earlier in its frame, a key this
 *   side lacks) is refused with WriteUndecidedError (WRITE_UNDECIDED), which is not remembered: a later round
 *   asks for it again.
 */
import type { MindooDB } from '../core/index.js'
import { plainValue } from '../core/values.js'
import { DocumentNotFoundError, WriteDeniedError, WriteUndecidedError, type ChangeRejectedError } from '../errors.js'
import { docCreatedBy, type ChangeHash, type DocId, type StoreChange } from '../store/change.js'
import type { ServedSet } from './served-set.js'
import type { AdmitChange } from './intake.js'
import type { WritePolicy } from './share.js'

export interface WritePolicyInit {
  /** The share's served set (what this side serves by its filter). */
  served: Pick<ServedSet, 'servesDoc' | 'servesKey'>
  /** The share's database (to read a document's `type` before and after a change). */
  db: MindooDB
  /** This tenant's signing key: its changes always pass. */
  ownAuthor: string
  /** Every other participant's signing key and its policy (undefined: the default). */
  participants: ReadonlyMap<string, WritePolicy | undefined>
}

/** The default: documents the author created and documents this share serves to it. */
export const DEFAULT_WRITE_POLICY: Exclude<WritePolicy, 'none'> = { created: true, served: true }

/** Whether a policy of `participants` reads what is stored to judge a change (a `types` rule). */
export function readsStore (participants: ReadonlyMap<string, WritePolicy | undefined>): boolean {
  return [...participants.values()].some((policy) => policy !== undefined && policy !== 'none' && policy.types !== undefined)
}

/** Builds the session's `admit` for one share. */
export function createWritePolicy (init: WritePolicyInit): AdmitChange {
  const { served, db, ownAuthor, participants } = init
  return async (change: StoreChange, earlier?: readonly StoreChange[]): Promise<ChangeRejectedError | undefined> => {
    if (change.author === ownAuthor) return undefined
    if (!participants.has(change.author)) return new WriteDeniedError('author has no write policy on this share')
    const policy = participants.get(change.author) ?? DEFAULT_WRITE_POLICY
    if (policy === 'none') return new WriteDeniedError('author may not write through this share')
    const created = docCreatedBy(change.docId, change.author)
    const mayCreated = (policy.created ?? true) && created
    const mayServed = (policy.served ?? true) && (served.servesDoc(change.docId) || served.servesKey(change.keyId))
    if (!mayCreated && !mayServed) return new WriteDeniedError('author may not write this document')
    if (policy.keyIds !== undefined && !policy.keyIds.includes(change.keyId)) {
      return new WriteDeniedError('author may not write under this key')
    }
    if (policy.types !== undefined) {
      const types = policy.types
      // a type here is one of the policy's, or none at all on a document the author created
      const allowed = (type: unknown): boolean => typeof type === 'string' ? types.includes(type) : type === undefined && created
      const before = await currentType(db, change.docId)
      if (before === UNREADABLE) return new WriteUndecidedError('the document cannot be read here')
      if (!allowed(before)) {
        return new WriteDeniedError('author may not write documents of this type')
      }
      const after = await db.dataAfter(change.docId, [...ancestorsIn(earlier ?? [], change), change])
      if (after === undefined) return new WriteUndecidedError('the change depends on a change this side does not have yet')
      if (!allowed(after === null ? undefined : plainValue(after.type))) {
        return new WriteDeniedError('author may not give a document a type outside its write policy')
      }
    }
    return undefined
  }
}

const UNREADABLE = Symbol('unreadable')

/** The document's `type` as stored here (undefined when it has none or does not exist here yet). */
async function currentType (db: MindooDB, docId: DocId): Promise<unknown> {
  try {
    return plainValue((await db.getDocument(docId)).getData().type)
  } catch (err) {
    if (err instanceof DocumentNotFoundError) return undefined
    return UNREADABLE
  }
}

/**
 * The changes of `earlier` (admitted before `change` in its frame) that `change` depends on, directly or through
 * one another, in their frame order: only those, never a concurrent one, so that what is judged is what storing
 * them all would give, whatever else of the frame is refused later.
 */
function ancestorsIn (earlier: readonly StoreChange[], change: StoreChange): StoreChange[] {
  const byHash = new Map(earlier.filter((c) => c.docId === change.docId).map((c) => [c.hash, c]))
  const needed = new Set<ChangeHash>()
  const walk = [...change.deps]
  while (walk.length > 0) {
    const hash = walk.pop() as ChangeHash
    const dep = byHash.get(hash)
    if (dep === undefined || needed.has(hash)) continue
    needed.add(hash)
    walk.push(...dep.deps)
  }
  return earlier.filter((c) => needed.has(c.hash))
}
