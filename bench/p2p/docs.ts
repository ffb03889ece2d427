/**
 * The issue's cold-sync scenario: documents made the way a library user makes them. Org A holds `docs` documents,
 * each made with `createDocument()`, then `changeDoc` assigning `{ type, visibility, body, i }` with a `chars`
 * character body (two changes per document): `body: 'text'` keeps the string as Automerge collaborative text
 * (Automerge 3's default for an assigned string), `body: 'immutable'` stores it as an `ImmutableString` (what the
 * RPC path writes). A serves them under a share with filter `all`, in a child process (`server.ts`); B, in this
 * process, starts empty and is timed from `addShare` + `syncNow`:
 *
 * - stored: until `syncNow` resolved (every change verified and stored), documents/s;
 * - read back: until B's changefeed (`iterateChangesSince(null)`) has yielded every document, each one's data read
 *   (`getData()`: its `i` and the body's length checked), documents/s.
 *
 * Same-run bounds, measured on A's own changes before the sync: the primitive one-thread bound (Ed25519 verify +
 * SHA-256 + LevelDB batched put + AES-GCM decrypt per change, times the changes per document) and the Automerge
 * bound (one `Automerge.load` of each document's changes + `toJSON`) in a worker thread per core, per thread and
 * all cores together. Each figure is reported as a ratio to its bound and to the issue's floor.
 * A's database is built once through the library and cached under os.tmpdir(), like the cold part's.
 */
import * as Automerge from '@automerge/automerge'
import { availableParallelism, loadavg } from 'node:os'
import { join } from 'node:path'
import { decrypt, unwrapKey } from '../../src/crypto/index.js'
import { createTenantFactory, encodeChange, payloadAad, type StoreChange } from '../../src/index.js'
import type { MindooNode } from '../../src/p2p/index.js'
import { gc, threadCpuByKind, threadCpuSince } from '../util.js'
import { automergeBound, primitiveBound } from './bound.js'
import { formatHash } from './cold.js'
import { cachedData } from './data-cache.js'
import { BENCH_KDF, cpuMs, createBenchTenant, KEY_ID, KEY_PASSWORD, now, perSec, round, sleep, text } from './common.js'
import { closeOrg, factoryDir, openOrg, SERVER_INIT, shareFor, startServer, partnerOf } from './server.js'

/** PouchDB 9 replication over HTTP on this machine, documents/s (issue 8's table): the reference for the floors. */
export const POUCHDB_DOCS_PER_SEC = 2_262
/** Issue 8's floors. */
export const DOCS_FLOORS = {
  /** Cold sync until every change is verified and stored, documents/s. */
  storedDocsPerSec: 4_500,
  /** Read back through the changefeed, as a share of cores × the one-thread Automerge bound (collaborative text). */
  readBackOverAutomerge: 0.8,
  /** Read back with ImmutableString bodies, documents/s: 2 × PouchDB. */
  readBackImmutableDocsPerSec: 2 * POUCHDB_DOCS_PER_SEC
} as const

export interface DocsSpec {
  /** Documents A holds. */
  docs: number
  /** Characters of each document's body. */
  chars: number
  /** `text`: collaborative text (Automerge's default for a string); `immutable`: an Automerge ImmutableString. */
  body: 'text' | 'immutable'
}

interface DocsMeta {
  spec: DocsSpec
  keyBlob: string
  changes: number
  changeBytesAvg: number
  buildMs: number
}

/** syncNow calls before the scenario gives up (a failed round is retried, as a user would). */
const MAX_SYNC_ATTEMPTS = 5
type SyncNowResult = Awaited<ReturnType<MindooNode['syncNow']>>

/** Bumped when the way A's documents are made changes. */
const DOCS_FORMAT = 1

/** A's directory with the documents: from the cache, or built through the library (and cached). */
async function docsData (spec: DocsSpec, useCache: boolean, runDir: string): Promise<{ dir: string, meta: DocsMeta, fromCache: boolean, copyMs: number }> {
  const prefix = `mindoodb-bench-p2p-docs-${spec.body}-${spec.docs}-${spec.chars}-`
  const dir = join(runDir, `a-docs-${spec.body}-${spec.docs}`)
  return await cachedData<DocsMeta>({ prefix, key: `${DOCS_FORMAT}-${await formatHash()}`, dir, useCache, scratch: join(runDir, `build-docs-${spec.body}-${spec.docs}`) }, async (buildDir) => {
    const started = now()
    const { factory, tenant, keyBlob } = await createBenchTenant(factoryDir(join(buildDir, 'a')))
    try {
      const db = await tenant.openDB('shared', { defaultKeyId: KEY_ID })
      for (let i = 0; i < spec.docs; i++) {
        const body = text(spec.chars)
        const doc = await db.createDocument()
        await db.changeDoc(doc, (d) => {
          Object.assign(d.getData(), {
            type: 'note',
            visibility: i % 2 === 0 ? 'team' : 'public',
            body: spec.body === 'text' ? body : new Automerge.ImmutableString(body),
            i
          })
        })
      }
      const changes = await db.getStore().count()
      if (changes !== 2 * spec.docs) throw new Error(`A holds ${changes} changes, not ${2 * spec.docs}`)
      let bytes = 0
      const store = db.getStore()
      const hashes = await store.getAllChangeHashes()
      for (let i = 0; i < hashes.length; i += 1000) {
        for (const c of await store.getChanges(hashes.slice(i, i + 1000))) bytes += encodeChange(c).length
      }
      return { spec, keyBlob, changes, changeBytesAvg: Math.round(bytes / changes), buildMs: Math.round(now() - started) }
    } finally {
      await factory.close()
    }
  })
}

/** A's changes grouped by document, each document's in dependency order (read through the library's store API). */
async function changesByDoc (dir: string): Promise<StoreChange[][]> {
  const factory = await createTenantFactory({ dataDir: factoryDir(dir), keyWrapping: BENCH_KDF })
  try {
    const tenant = await factory.openTenant('org-a')
    const store = (await tenant.openDB('shared', { defaultKeyId: KEY_ID })).getStore()
    const hashes = await store.getAllChangeHashes()
    const byDoc = new Map<string, StoreChange[]>()
    for (let i = 0; i < hashes.length; i += 1000) {
      for (const c of await store.getChanges(hashes.slice(i, i + 1000))) {
        const list = byDoc.get(c.docId) ?? []
        list.push(c)
        byDoc.set(c.docId, list)
      }
    }
    // two changes per document: the one without dependencies (createDocument) first
    return [...byDoc.values()].map((list) => list.sort((x, y) => x.deps.length - y.deps.length))
  } finally {
    await factory.close()
  }
}

/** The floor check of one figure: its value, the floor, the ratio value/floor, pass. */
function floor (value: number, min: number, rule: string): { rule: string, value: number, floor: number, ratio: number, pass: boolean } {
  return { rule, value, floor: Math.round(min), ratio: round(value / min, 3), pass: value >= min }
}

export interface DocsOptions {
  /** Changes (all of whole documents) sampled for the primitive bound. Default 5,000. */
  boundSample: number
  serverProcess: boolean
  cache: boolean
}

export async function benchDocs (spec: DocsSpec, opts: DocsOptions, runDir: string): Promise<object> {
  const n = spec.docs
  const data = await docsData(spec, opts.cache, runDir)
  const { meta } = data

  // the bounds first, while both processes are quiet, on A's own changes
  const key = await unwrapKey(meta.keyBlob, KEY_PASSWORD)
  const docs = await changesByDoc(data.dir)
  if (docs.length !== n) throw new Error(`A holds ${docs.length} documents, not ${n}`)
  const changesPerDoc = meta.changes / n
  const sample = docs.slice(0, Math.ceil(opts.boundSample / changesPerDoc)).flat()
  await sleep(300) // let the copy's writes settle
  gc()
  const primitive = await primitiveBound(sample, key, runDir, 256, { automerge: false })
  const primitiveDocsPerSec = Math.round(1e6 / (primitive.boundUs * changesPerDoc))
  const plaintexts = docs.map((list) => Buffer.concat(list.map((c) => decrypt(key, c.payload, payloadAad(c)))))
  docs.length = 0
  gc()
  const am = await automergeBound(plaintexts)
  plaintexts.length = 0
  const cores = availableParallelism()

  const server = await startServer(data.dir, !opts.serverProcess)
  const b = await openOrg('org-b', join(runDir, `b-docs-${spec.body}-${n}`), true, SERVER_INIT, meta.keyBlob)
  try {
    await server.addShare(shareFor([partnerOf(b)]))
    gc()
    await sleep(100)
    const cpuB0 = process.cpuUsage()
    const threadsB0 = threadCpuByKind()
    const cpuA0 = await server.cpuMs()
    const t0 = now()
    await b.node.addShare(shareFor([server.info]))
    // a user whose syncNow reports a failed round calls it again: so does the benchmark (a few times), and the
    // time includes the retries; the failed rounds are reported
    const results: SyncNowResult = []
    let stored = 0
    for (let attempt = 0; attempt < MAX_SYNC_ATTEMPTS && stored < meta.changes; attempt++) {
      results.push(...await b.node.syncNow('shared'))
      stored = await b.db.getStore().count()
    }
    const storedMs = now() - t0
    const threadsStored = threadCpuSince(threadsB0)
    if (stored !== meta.changes) {
      throw new Error(`B stored ${stored} of ${meta.changes} changes after ${MAX_SYNC_ATTEMPTS} syncNow calls: ${JSON.stringify(results.map((r) => r.error))}`)
    }
    const seen = new Set<number>()
    for await (const { doc } of b.db.iterateChangesSince(null)) {
      const d = doc.getData()
      const body = d.body
      const length = typeof body === 'string' ? body.length : body instanceof Automerge.ImmutableString ? body.val.length : -1
      if (length !== spec.chars || typeof d.i !== 'number') throw new Error(`document ${doc.getId()} read back wrong: body ${length} chars, i ${String(d.i)}`)
      seen.add(d.i)
      if (seen.size === n) break
    }
    const readMs = now() - t0
    const cpuB = cpuMs(cpuB0)
    const threadsB = threadCpuSince(threadsB0)
    const cpuA = (await server.cpuMs()) - cpuA0
    if (seen.size !== n) throw new Error(`B's changefeed yielded ${seen.size} of ${n} documents`)
    const perDoc = (byKind: Record<string, number>): Record<string, number> =>
      Object.fromEntries(Object.entries(byKind).map(([kind, ms]) => [kind, Math.round(ms * 1000 / n)]))
    const storedRate = perSec(n, storedMs)
    const readRate = perSec(n, readMs)
    const amFloor = DOCS_FLOORS.readBackOverAutomerge * cores * am.perThreadMeanDocsPerSec
    const floors = [
      floor(storedRate, DOCS_FLOORS.storedDocsPerSec, 'stored (syncNow resolved) >= 4,500 documents/s'),
      spec.body === 'text'
        ? floor(readRate, amFloor, `read back >= 0.8 x (${cores} cores x the one-thread Automerge bound, ${am.perThreadMeanDocsPerSec}/s)`)
        : floor(readRate, DOCS_FLOORS.readBackImmutableDocsPerSec, `read back >= 2 x PouchDB (${POUCHDB_DOCS_PER_SEC}/s)`)
    ]
    const status = b.node.status('shared')[0]
    // what each floor leaves per document for both processes on this machine's cores, against the work this run
    // measured as unavoidable: B's per-change primitives (one thread), A's serving, and for reading back the
    // Automerge bound of one thread
    const aUs = cpuA * 1000 / n
    const primitivesUs = (parts: string[]): number => changesPerDoc * parts.reduce((sum, part) => sum + primitive[part], 0)
    const budget = (rate: number, unavoidableUs: number): Record<string, number> => {
      const budgetUs = cores * 1e6 / rate
      return { budgetUs: Math.round(budgetUs), unavoidableUs: Math.round(unavoidableUs), leftUs: Math.round(budgetUs - unavoidableUs) }
    }
    const bUs = (byKind: Record<string, number>): number => Math.round(Object.values(byKind).reduce((sum, ms) => sum + ms, 0) * 1000 / n)
    return {
      docs: n,
      body: spec.body === 'text'
        ? `${spec.chars}-character string assigned as is: Automerge collaborative text`
        : `${spec.chars}-character string as an Automerge ImmutableString`,
      made: 'createDocument() then changeDoc assigning { type, visibility, body, i }',
      changes: meta.changes,
      changeBytesAvg: meta.changeBytesAvg,
      serverA: server.where,
      data: { fromCache: data.fromCache, copyMs: data.copyMs, buildMs: meta.buildMs },
      stored: { ms: Math.round(storedMs), docsPerSec: storedRate, overPrimitiveBound: round(storedRate / primitiveDocsPerSec, 3) },
      readBack: {
        ms: Math.round(readMs),
        docsPerSec: readRate,
        overAutomergeAllCores: round(readRate / am.allCoresDocsPerSec, 3),
        overCoresTimesAutomergeThread: round(readRate / (cores * am.perThreadMeanDocsPerSec), 3)
      },
      bounds: {
        primitive: { ...primitive, changesPerDoc, docsPerSec: primitiveDocsPerSec, what: 'verify + SHA-256 + LevelDB batched put + AES-GCM decrypt per change, one thread' },
        automerge: { ...am, what: 'Automerge.load of each document\'s changes + toJSON, one worker thread per core' }
      },
      floors,
      budget: {
        note: 'CPU per document that each floor leaves to both processes (cores x 1e6 / floor, in us), the part of it this ' +
          'run measured as unavoidable (B: signature check, SHA-256 and LevelDB put per change, plus AES-GCM decrypt and ' +
          'the one-thread Automerge load per document when read back; A: its CPU per document), and what is left for ' +
          'everything else (Noise, Yamux, framing, scheduling, GC); bUs*: what B spent per document in all',
        stored: budget(DOCS_FLOORS.storedDocsPerSec, primitivesUs(['verifyUs', 'sha256Us', 'levelBatchedPutUs']) + aUs),
        readBack: budget(floors[1].floor, primitivesUs(['verifyUs', 'sha256Us', 'levelBatchedPutUs', 'aesGcmDecryptUs']) +
          1e6 / am.perThreadMeanDocsPerSec + aUs),
        bUsUntilStored: bUs(threadsStored),
        bUsUntilReadBack: bUs(threadsB)
      },
      cpu: {
        bDocsPerCpuSec: Math.round(n / (cpuB / 1000)),
        note: 'CPU time of each process from addShare until read back (all threads; 1.0 = one core busy); bDocsPerCpuSec: ' +
          'documents read back per second of B\'s CPU, what B would reach with a core to itself (insensitive to other load)',
        bMs: Math.round(cpuB),
        bUtilisation: round(cpuB / readMs, 2),
        aMs: Math.round(cpuA),
        aUtilisation: round(cpuA / readMs, 2),
        loadAverage1m: round(loadavg()[0], 2),
        bUsPerDocByThread: perDoc(threadsB),
        bUsPerDocByThreadUntilStored: perDoc(threadsStored),
        byThreadNote: 'B\'s CPU per document by kind of thread (/proc, 10 ms ticks), until read back and until stored: MainThread; ' +
          'WorkerThread = the verify and materialise pools; libuv-worker = LevelDB; V8Worker = V8\'s platform threads (GC helpers, compilation)'
      },
      rounds: results.map((r) => ({ ok: r.ok, received: r.result?.received, error: r.error })),
      roundsFailed: results.filter((r) => !r.ok).length,
      totalsB: { changesReceived: status.totals.changesReceived, bytesReceived: status.totals.bytesReceived, rejected: status.totals.rejected }
    }
  } finally {
    await server.stop().catch(() => {})
    await closeOrg(b).catch(() => {})
  }
}
