/**
 * The store layer: `AppendOnlyStore`, the append-only, content-addressed store of signed, encrypted changes,
 * with its LevelDB implementation (`LevelStore`) and an in-memory one (`MemoryStore`), plus the canonical
 * change codec.
 *
 * A store checks every change's hash itself and asks its `ChangeVerifier` (installed by the database) about
 * signature and trust; a refused change raises a typed `ChangeRejectedError` and nothing of it is stored.
 * Each stored change gets the next arrival seq (1, 2, 3...), which `iterateSince` walks.
 *
 * @example
 * ```ts
 * import { LevelStore, MemoryStore } from './store/index.js'
 *
 * const store = await LevelStore.open('/var/lib/mindoodb/acme/changes', { verifier })
 * const inMemory = new MemoryStore({ verifier })
 *
 * // bring `inMemory` up to date with `store`
 * const missing = await store.findNewChanges(await inMemory.getAllChangeHashes())
 * const { added, rejected } = await inMemory.appendMany(await store.getChanges(missing))
 *
 * for await (const { seq, change } of store.iterateSince(0)) console.log(seq, change.docId)
 *
 * // batched reads, one per call: which hashes are stored, and the stored bytes of others (nothing decoded)
 * const stored = await inMemory.hasMany(missing)
 * const bytes = await store.getEncodedMany(missing) // Uint8Array | undefined each; readChangeTime(bytes[0]!)
 * await store.close()
 * ```
 */
export type {
  AbortOptions, AppendEvent, AppendManyResult, AppendOnlyStore, ChangeVerifier, SequencedChange
} from './types.js'
export type { StoreInit } from './base.js'
export {
  checkChange, computeChangeHash, decodeChange, docCreatedBy, docKeyMatches, encodeChange, encodeSignedPart, isChangeHash,
  isCreation, isDocId, isValidId, newDocId, payloadAad, readChangeTime, sha256, signChange, DOC_ID_LENGTH, MAX_DEPS, MAX_ID_BYTES,
  MAX_PAYLOAD_BYTES
} from './change.js'
export type { ChangeHash, ChangeHeader, ChangeKind, DocId, StoreChange } from './change.js'
export { LevelStore } from './level-store.js'
export type { LevelStoreDatabase, LevelStoreInit } from './level-store.js'
export { MemoryStore } from './memory-store.js'
