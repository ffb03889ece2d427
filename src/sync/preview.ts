/**
 * Share preview: what a share would serve from a database, computed with the same served-set code a running
 * share uses (`ServedSet`, `policyOf`), without starting the share, announcing it or contacting anyone.
 */
import type { MindooDB } from '../core/index.js'
import { plainValue } from '../core/values.js'
import type { ChangeHash, DocId } from '../store/change.js'
import type { AbortOptions } from '../store/types.js'
import { silentLogger, type Logger } from '../util/logger.js'
import { createReconcileSet } from './reconcile/index.js'
import { ServedSet } from './served-set.js'
import { policyOf, type ShareDirection, type ShareFilter } from './share.js'

/** Document ids in a preview's samples by default, and at most. */
export const PREVIEW_SAMPLE_DEFAULT = 10
export const PREVIEW_SAMPLE_MAX = 100
/** The type of a document that has no string `type` field; of one this node cannot read. */
export const NO_TYPE = '(none)'
export const UNREADABLE_TYPE = '(unreadable)'

export interface PreviewCount {
  documents: number
  changes: number
}

export interface SharePreview {
  /** The filter's kind. */
  filter: ShareFilter['kind']
  direction: ShareDirection
  /** False when the share's database does not exist here yet (it would serve nothing). */
  databaseExists: boolean
  /** Every document and change of the database. */
  total: PreviewCount
  /** What the share would serve: by document type (`(none)`, `(unreadable)` for relayed ciphertext) and by key id. */
  served: PreviewCount & {
    byType: Record<string, PreviewCount>
    byKey: Record<string, PreviewCount>
    /** Up to `sample` served document ids, in store order. */
    sample: DocId[]
  }
  /**
   * What a field filter (selector, type) would refuse to serve because this node cannot read the document (it
   * lacks the key, or the document cannot be materialised yet): fails closed. By key id; `missingKey` counts the
   * documents whose key this node does not hold at all.
   */
  refused: PreviewCount & {
    byKey: Record<string, PreviewCount>
    missingKey: number
    sample: DocId[]
  }
  /** Readable documents (and changes) the filter leaves out, and with direction `receive` this side's own changes. */
  notServed: PreviewCount
}

export interface SharePreviewComponents {
  /** The share's database; undefined when it does not exist (nothing is served). */
  db: MindooDB | undefined
  /** Whether this node holds a key id (any version). */
  hasKey: (keyId: string) => boolean
  logger?: Logger
}

export interface SharePreviewInit {
  filter: ShareFilter
  direction: ShareDirection
  /** This tenant's signing key (with direction `receive` its own changes are not served). */
  ownAuthor: string
  /** Document ids per sample. Default PREVIEW_SAMPLE_DEFAULT, at most PREVIEW_SAMPLE_MAX. */
  sample?: number
}

interface DocTally {
  keyId: string
  changes: number
  served: number
}

const add = (table: Record<string, PreviewCount>, key: string, changes: number): void => {
  const row = table[key] ?? (table[key] = { documents: 0, changes: 0 })
  row.documents++
  row.changes += changes
}

/**
 * Computes what a share with `init.filter` and `init.direction` would serve from `components.db` now. The served
 * set is built exactly as a started share builds it, then dropped.
 *
 * @example
 * ```ts
 * const p = await previewShare({ db, hasKey: (k) => tenant.hasNamedKey(k) }, { filter, direction: 'both', ownAuthor })
 * p.served.byType.order   // { documents, changes }
 * p.refused.documents     // documents a selector cannot evaluate here (fails closed)
 * ```
 */
export async function previewShare (components: SharePreviewComponents, init: SharePreviewInit, options: AbortOptions = {}): Promise<SharePreview> {
  const sampleSize = Math.max(0, Math.min(PREVIEW_SAMPLE_MAX, init.sample ?? PREVIEW_SAMPLE_DEFAULT))
  const preview: SharePreview = {
    filter: init.filter.kind,
    direction: init.direction,
    databaseExists: components.db !== undefined,
    total: { documents: 0, changes: 0 },
    served: { documents: 0, changes: 0, byType: {}, byKey: {}, sample: [] },
    refused: { documents: 0, changes: 0, byKey: {}, missingKey: 0, sample: [] },
    notServed: { documents: 0, changes: 0 }
  }
  const db = components.db
  if (db === undefined) return preview
  const policy = policyOf(init.filter)
  const served = new ServedSet({ db, index: createReconcileSet(), logger: components.logger ?? silentLogger }, {
    policy, direction: init.direction, ownAuthor: init.ownAuthor
  })
  try {
    await served.start(options)
    await served.settled()
    // the types of the documents readable here
    const types = new Map<DocId, string>()
    for await (const { doc } of db.iterateChangesSince(null, options)) {
      const type = plainValue(doc.getData().type)
      types.set(doc.getId(), typeof type === 'string' ? type : NO_TYPE)
    }
    const docs = new Map<DocId, DocTally>()
    const seen = new Set<ChangeHash>()
    for await (const { change } of db.getStore().iterateSince(0, options)) {
      if (seen.has(change.hash)) continue
      seen.add(change.hash)
      const tally = docs.get(change.docId) ?? { keyId: change.keyId, changes: 0, served: 0 }
      docs.set(change.docId, tally)
      tally.changes++
      if (served.includes(change)) tally.served++
    }
    for (const [docId, t] of docs) {
      preview.total.documents++
      preview.total.changes += t.changes
      const readable = types.has(docId)
      if (t.served > 0) {
        preview.served.documents++
        preview.served.changes += t.served
        add(preview.served.byType, readable ? types.get(docId) as string : UNREADABLE_TYPE, t.served)
        add(preview.served.byKey, t.keyId, t.served)
        if (preview.served.sample.length < sampleSize) preview.served.sample.push(docId)
      }
      const rest = t.changes - t.served
      if (rest === 0) continue
      if (policy.mode === 'byDoc' && !readable) {
        preview.refused.documents++
        preview.refused.changes += rest
        add(preview.refused.byKey, t.keyId, rest)
        if (!components.hasKey(t.keyId)) preview.refused.missingKey++
        if (preview.refused.sample.length < sampleSize) preview.refused.sample.push(docId)
      } else {
        if (t.served === 0) preview.notServed.documents++
        preview.notServed.changes += rest
      }
    }
    return preview
  } finally {
    served.stop()
  }
}
