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
 *   - `keyIds`, `types` narrow that further: only under these key ids; only documents whose current `type` here
 *     is one of these (a document this side does not have yet passes only if the author created it).
 * - Anything else is refused with WriteDeniedError (code WRITE_DENIED), counted, and never stored.
 */
import type { MindooDB } from '../core/index.js'
import { plainValue } from '../core/values.js'
import { DocumentNotFoundError, WriteDeniedError, type ChangeRejectedError } from '../errors.js'
import { docCreatedBy, type DocId, type StoreChange } from '../store/change.js'
import type { ServedSet } from './served-set.js'
import type { AdmitChange } from './session.js'
import type { WritePolicy } from './share.js'

export interface WritePolicyInit {
  /** The share's served set (what this side serves by its filter). */
  served: Pick<ServedSet, 'servesDoc' | 'servesKey'>
  /** The share's database (to read a document's current `type`). */
  db: MindooDB
  /** This tenant's signing key: its changes always pass. */
  ownAuthor: string
  /** Every other participant's signing key and its policy (undefined: the default). */
  participants: ReadonlyMap<string, WritePolicy | undefined>
}

/** The default: documents the author created and documents this share serves to it. */
export const DEFAULT_WRITE_POLICY: Exclude<WritePolicy, 'none'> = { created: true, served: true }

/** Builds the session's `admit` for one share. */
export function createWritePolicy (init: WritePolicyInit): AdmitChange {
  const { served, db, ownAuthor, participants } = init
  return async (change: StoreChange): Promise<ChangeRejectedError | undefined> => {
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
      const type = await currentType(db, change.docId)
      if (type === null ? !created : (typeof type !== 'string' || !policy.types.includes(type))) {
        return new WriteDeniedError('author may not write documents of this type')
      }
    }
    return undefined
  }
}

/** The document's current `type` here; null when this side does not have the document (or cannot read it). */
async function currentType (db: MindooDB, docId: DocId): Promise<unknown> {
  try {
    return plainValue((await db.getDocument(docId)).getData().type)
  } catch (err) {
    if (err instanceof DocumentNotFoundError) return null
    // a document this side cannot read has no known type: it passes no type rule
    return undefined
  }
}
