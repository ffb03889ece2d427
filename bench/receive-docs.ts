/**
 * Foundation (d): receiving documents the way a library user makes them, in one process, without a network.
 *
 * A sender tenant makes `docs` documents with `createDocument()` then one `changeDoc` assigning
 * `{ type, visibility, body: <bodyChars characters>, i }` (two changes each; Automerge 3 keeps the assigned string
 * as collaborative text). A receiving database that trusts the sender and holds the key gets them through
 * `db.receiveChanges` in batches of `batch` (what a sync session does with each frame), and is timed:
 * - until stored: every `receiveChanges` resolved (verified on every core, stored in LevelDB);
 * - until materialised: `whenMaterialised()` resolved (the background applied every change);
 * - until read back: the changefeed yielded every document and each body was read.
 *
 * Bounds, measured in the same run on the same changes, one thread each:
 * - primitive: Ed25519 verify + SHA-256 + a batched LevelDB write per change (from the caller), two per document;
 * - Automerge: AES-256-GCM decrypt of both changes, `Automerge.load` of the document's two changes and `toJS`.
 */
import * as Automerge from '@automerge/automerge'
import { availableParallelism } from 'node:os'
import { payloadAad, type DocData, type StoreChange, type TenantFactory } from '../src/index.js'
import { decrypt, importSecretKey, unwrapKey } from '../src/crypto/index.js'
import { setMaterialiseWorkers } from '../src/core/materialise-pool.js'
import { gc } from './util.js'

export interface ReceiveDocsOptions {
  /** Documents made and received. Default 10,000. */
  docs?: number
  /** Changes per receiveChanges call. Default 256. */
  batch?: number
  /** Characters of the body. Default 1,000. */
  bodyChars?: number
  /** Per-change microseconds of the receive primitives, measured by the caller in the same run. */
  receivePrimitiveUs: number
  /** Materialise workers (setMaterialiseWorkers); default: one per core. */
  workers?: number
}

const KEY_ID = 'docs-key'
const PASSWORD = 'docs-password'
/** CPU time of the calling thread, ms (process.threadCpuUsage, Node 23.9+; the whole process before). */
const threadCpu = (): number => {
  const usage = (process as unknown as { threadCpuUsage?: () => NodeJS.CpuUsage }).threadCpuUsage?.() ?? process.cpuUsage()
  return (usage.user + usage.system) / 1000
}
const round = (x: number, digits = 1): number => Number(x.toFixed(digits))
const perSec = (count: number, ms: number): number => Math.round(count / (ms / 1000))

/** Runs (d) with the materialise workers on, then off (same documents made again), and reports both. */
export async function benchReceiveDocs (factory: TenantFactory, opts: ReceiveDocsOptions): Promise<object> {
  const withWorkers = await receiveDocsOnce(factory, { ...opts, workers: undefined }, 'a')
  const mainThreadOnly = await receiveDocsOnce(factory, { ...opts, workers: 0 }, 'b')
  setMaterialiseWorkers(availableParallelism())
  return { withWorkers, mainThreadOnly }
}

async function receiveDocsOnce (factory: TenantFactory, opts: ReceiveDocsOptions, run: string): Promise<object> {
  setMaterialiseWorkers(opts.workers ?? availableParallelism())
  const docs = opts.docs ?? 10_000
  const batch = opts.batch ?? 256
  const body = 'x'.repeat(opts.bodyChars ?? 1000)
  const keyBlob = await factory.createSymmetricEncryptedPrivateKey(PASSWORD)

  // ---------------------------------------------------------------- the sender makes the documents
  const sender = await factory.createTenant({ tenantId: `docs-sender-${run}`, tenantEncryptionKeyPassword: 'pw' })
  await sender.importNamedKey(KEY_ID, keyBlob, PASSWORD)
  const outbox = await sender.openDB('outbox', { defaultKeyId: KEY_ID })
  const makeStart = performance.now()
  for (let i = 0; i < docs; i++) {
    const doc = await outbox.createDocument()
    await outbox.changeDoc(doc, (d) => { Object.assign(d.getData(), { type: 'item', visibility: 'public', body, i }) })
  }
  const makeMs = performance.now() - makeStart
  const changes: StoreChange[] = await outbox.getStore().getChanges(await outbox.getStore().getAllChangeHashes())

  // ---------------------------------------------------------------- receive, materialise, read back
  const receiver = await factory.createTenant({ tenantId: `docs-receiver-${run}`, tenantEncryptionKeyPassword: 'pw' })
  await receiver.importNamedKey(KEY_ID, keyBlob, PASSWORD)
  const db = await receiver.openDB('inbox', { defaultKeyId: KEY_ID })
  await db.trustPartner(sender.getPublicInfo())
  gc()
  const main0 = threadCpu()
  const cpu0 = process.cpuUsage()
  const start = performance.now()
  for (let i = 0; i < changes.length; i += batch) {
    const result = await db.receiveChanges(changes.slice(i, i + batch))
    if (result.added.length !== Math.min(batch, changes.length - i)) throw new Error('receiveChanges did not store every change')
  }
  const storedMs = performance.now() - start
  const backlogWhenStored = db.getMaterialiseBacklog()
  await db.whenMaterialised()
  const materialisedMs = performance.now() - start
  let read = 0
  for await (const { doc } of db.iterateChangesSince(null)) {
    if (doc.getData().body.length !== body.length) throw new Error('a document came back without its body')
    read++
  }
  const readMs = performance.now() - start
  const mainBusyMs = threadCpu() - main0
  const cpu = process.cpuUsage(cpu0)
  const cpuMs = (cpu.user + cpu.system) / 1000
  if (read !== docs) throw new Error(`the changefeed yielded ${read} of ${docs} documents`)
  const stats = db.getMaterialiseStats()

  // ---------------------------------------------------------------- the Automerge bound, one thread
  const key = importSecretKey(await unwrapKey(keyBlob, PASSWORD))
  const byDoc = new Map<string, StoreChange[]>()
  for (const c of changes) {
    const list = byDoc.get(c.docId) ?? []
    list.push(c)
    byDoc.set(c.docId, list)
  }
  gc()
  const amStart = performance.now()
  for (const list of byDoc.values()) {
    const plaintexts = list.map((c) => decrypt(key, c.payload, payloadAad(c)))
    const doc = Automerge.load<DocData>(Buffer.concat(plaintexts))
    Automerge.toJS(doc)
    Automerge.free(doc)
  }
  const amMs = performance.now() - amStart

  await sender.close()
  await receiver.close()
  const storeBound = Math.round(1e6 / (2 * opts.receivePrimitiveUs))
  const automergeBound = perSec(docs, amMs)
  const readRate = perSec(docs, readMs)
  return {
    how: `${docs} documents made by createDocument + changeDoc ({ type, visibility, body: ${body.length} characters, i }), received with db.receiveChanges in batches of ${batch}; times from the first receiveChanges`,
    docs,
    workers: opts.workers ?? availableParallelism(),
    makeMsPerDoc: round(makeMs / docs, 3),
    stored: { docsPerSec: perSec(docs, storedMs), ms: Math.round(storedMs), backlogLeft: backlogWhenStored },
    materialised: { docsPerSec: perSec(docs, materialisedMs), ms: Math.round(materialisedMs) },
    readBack: { docsPerSec: readRate, ms: Math.round(readMs) },
    snapshotsSaved: stats.snapshots,
    builtOnWorkers: stats.offloaded,
    cpu: {
      note: 'until read back, CPU time of the main thread and of the whole process (all threads). On a machine loaded by others the wall-clock rates understate what the threads can do; idleDocsPerSec projects the rate on this many idle cores: docs / max(main thread CPU, process CPU / cores)',
      mainThreadCpuMs: Math.round(mainBusyMs),
      processCpuMs: Math.round(cpuMs),
      otherThreadsCpuMs: Math.round(cpuMs - mainBusyMs),
      idleDocsPerSec: Math.round(docs / (Math.max(mainBusyMs, cpuMs / availableParallelism()) / 1000))
    },
    bounds: {
      primitiveDocsPerSec: storeBound,
      primitiveHow: 'one core: 2 × (Ed25519 verify + SHA-256 + batched LevelDB write) per document',
      automergeDocsPerSec: automergeBound,
      automergeHow: 'one core: decrypt both changes, Automerge.load of the two, toJS',
      cores: availableParallelism()
    },
    ratios: {
      storedToPrimitive: round(perSec(docs, storedMs) / storeBound, 3),
      readBackToAutomerge: round(readRate / automergeBound, 3),
      readBackToAutomergeAllCores: round(readRate / (automergeBound * availableParallelism()), 3)
    }
  }
}
