/**
 * Child process of the crash-safety test (test/core/crash.spec.ts). Writes to a database until it is killed,
 * and prints one JSON line on stdout after each write that was acknowledged (its promise resolved).
 *
 * Usage: `node crash-writer.js <dataDir>`. The directory must have been prepared by the test: tenants
 * `org-a` (database `crash`) and `org-b` (database `outbox`), both holding the named key `collab-key`, and
 * `crash` trusting `org-b`. Local writes go to `crash` (createDocument, changeDoc, deleteDocument); external
 * writes are made in `outbox` and appended to the store of `crash` with `append` or `appendMany`, or received
 * with `receiveChanges` (materialised in the background, so kills also land in the middle of that).
 *
 * Lines (see `CrashAck`): `ready` once open; `ack` after a write, with the hashes of the changes that are now
 * stored, the document and the value of its counter field `n` (absent for a bare create, or after a delete);
 * `deleting` before a delete is attempted, so a tombstone without an ack is recognised as legitimate.
 */
import { pathToFileURL } from 'node:url'
import { createTenantFactory, type ChangeHash, type MindooDB, type StoreChange } from '../../src/index.js'
import { TEST_KDF } from './tmp.js'

export const LOCAL_TENANT = 'org-a'
export const REMOTE_TENANT = 'org-b'
export const LOCAL_DB = 'crash'
export const REMOTE_DB = 'outbox'
export const SHARED_KEY = 'collab-key'

export type CrashAck =
  | { type: 'ready' }
  | {
    type: 'ack'
    op: 'create' | 'change' | 'delete'
    /**
     * 'local': made in the database itself; 'append' / 'appendMany': made elsewhere, appended to its store;
     * 'receive': made elsewhere and received (`receiveChanges`: stored, then materialised in the background).
     */
    via: 'local' | 'append' | 'appendMany' | 'receive'
    docId: string
    hashes: ChangeHash[]
    /** The counter field after the write (none for a bare create or a delete). */
    n?: number
  }
  | { type: 'deleting', docId: string }

const emit = (line: CrashAck): void => {
  process.stdout.write(JSON.stringify(line) + '\n')
}

const pick = <T>(items: T[]): T => items[Math.floor(Math.random() * items.length)]

/** A document written by this process, with the counter value last written. */
interface Live {
  docId: string
  n: number
}

async function listLive (db: MindooDB, exclude: ReadonlySet<string>): Promise<Live[]> {
  const live: Live[] = []
  for (const docId of await db.getAllDocumentIds()) {
    if (exclude.has(docId)) continue
    const doc = await db.getDocument(docId)
    if (!doc.isDeleted()) live.push({ docId, n: typeof doc.getData().n === 'number' ? doc.getData().n : -1 })
  }
  return live
}

async function run (dataDir: string): Promise<void> {
  const factory = await createTenantFactory({ dataDir, keyWrapping: TEST_KDF })
  const local = await (await factory.openTenant(LOCAL_TENANT)).openDB(LOCAL_DB, { defaultKeyId: SHARED_KEY })
  const remote = await (await factory.openTenant(REMOTE_TENANT)).openDB(REMOTE_DB, { defaultKeyId: SHARED_KEY })
  const store = local.getStore()

  // changes the remote made before the last kill but that never reached the local store
  const missing = await remote.getStore().findNewChanges(await store.getAllChangeHashes())
  if (missing.length > 0) {
    const result = await store.appendMany(await remote.getStore().getChanges(missing))
    if (result.rejected.length > 0) throw new Error(`resync rejected: ${result.rejected[0].error.message}`)
  }

  const remoteIds = new Set(await remote.getAllDocumentIds())
  const remoteLive = await listLive(remote, new Set())
  const localLive = await listLive(local, remoteIds)
  emit({ type: 'ready' })

  /** Makes one change in the remote database; returns it and what the ack should say. */
  const remoteWrite = async (): Promise<{ change: StoreChange, op: 'create' | 'change' | 'delete', docId: string, n?: number }> => {
    const r = Math.random()
    let hash: ChangeHash
    let docId: string
    let op: 'create' | 'change' | 'delete'
    let n: number | undefined
    if (remoteLive.length === 0 || r < 0.3) {
      const doc = await remote.createDocument()
      docId = doc.getId()
      hash = doc.getHeads()[0]
      op = 'create'
      remoteLive.push({ docId, n: -1 })
    } else if (r < 0.93) {
      const target = pick(remoteLive)
      const doc = await remote.changeDoc(target.docId, (d) => { d.getData().n = target.n + 1 })
      target.n++
      docId = target.docId
      hash = doc.getHeads()[0]
      op = 'change'
      n = target.n
    } else {
      const target = pick(remoteLive)
      remoteLive.splice(remoteLive.indexOf(target), 1)
      emit({ type: 'deleting', docId: target.docId })
      await remote.deleteDocument(target.docId)
      docId = target.docId
      hash = (await remote.getDocument(target.docId)).getHeads()[0]
      op = 'delete'
    }
    const [change] = await remote.getStore().getChanges([hash])
    return { change, op, docId, n }
  }

  while (true) {
    const r = Math.random()
    if (r < 0.2 || localLive.length === 0) {
      const doc = await local.createDocument()
      emit({ type: 'ack', op: 'create', via: 'local', docId: doc.getId(), hashes: [...doc.getHeads()] })
      const changed = await local.changeDoc(doc, (d) => { d.getData().n = 0; d.getData().text = 'x'.repeat(64) })
      localLive.push({ docId: doc.getId(), n: 0 })
      emit({ type: 'ack', op: 'change', via: 'local', docId: doc.getId(), hashes: [...changed.getHeads()], n: 0 })
    } else if (r < 0.55) {
      const target = pick(localLive)
      const changed = await local.changeDoc(target.docId, (d) => { d.getData().n = target.n + 1 })
      target.n++
      emit({ type: 'ack', op: 'change', via: 'local', docId: target.docId, hashes: [...changed.getHeads()], n: target.n })
    } else if (r < 0.6) {
      const target = pick(localLive)
      localLive.splice(localLive.indexOf(target), 1)
      emit({ type: 'deleting', docId: target.docId })
      await local.deleteDocument(target.docId)
      const hashes = [...(await local.getDocument(target.docId)).getHeads()]
      emit({ type: 'ack', op: 'delete', via: 'local', docId: target.docId, hashes })
    } else if (r < 0.8) {
      const { change, op, docId, n } = await remoteWrite()
      await store.append(change)
      emit({ type: 'ack', op, via: 'append', docId, hashes: [change.hash], n })
      // half of the time materialise now; otherwise the next read (or the next open) catches up
      if (Math.random() < 0.5) await local.syncStoreChanges([change.hash])
    } else if (r < 0.9) {
      const writes = []
      const count = 2 + Math.floor(Math.random() * 6)
      for (let i = 0; i < count; i++) writes.push(await remoteWrite())
      const result = await store.appendMany(writes.map((w) => w.change))
      if (result.rejected.length > 0) throw new Error(`appendMany rejected: ${result.rejected[0].error.message}`)
      for (const { change, op, docId, n } of writes) emit({ type: 'ack', op, via: 'appendMany', docId, hashes: [change.hash], n })
      if (Math.random() < 0.5) await local.syncStoreChanges(result.added)
    } else {
      // the sync session's way: stored when it resolves, applied in the background (which the kill may cut)
      const writes = []
      const count = 5 + Math.floor(Math.random() * 40)
      for (let i = 0; i < count; i++) writes.push(await remoteWrite())
      const result = await local.receiveChanges(writes.map((w) => w.change))
      if (result.rejected.length > 0) throw new Error(`receiveChanges rejected: ${result.rejected[0].error.message}`)
      for (const { change, op, docId, n } of writes) emit({ type: 'ack', op, via: 'receive', docId, hashes: [change.hash], n })
    }
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const dataDir = process.argv[2]
  if (dataDir === undefined) {
    process.stderr.write('usage: crash-writer <dataDir>\n')
    process.exit(2)
  }
  run(dataDir).catch((err: unknown) => {
    process.stderr.write(`crash-writer failed: ${err instanceof Error ? err.stack : String(err)}\n`)
    process.exit(1)
  })
}
