/**
 * Serving benchmark: how many changes one node can serve, on its own, against the same run's bound.
 *
 * One database holds `docs` documents made the way a library user makes them (`createDocument()`, then `changeDoc`
 * assigning `{ type, visibility, body: <bodyChars characters>, i }`: two changes each, the body a collaborative
 * text), on LevelDB, served under a share with filter `all`. For each count K in `partners`, K partners that only
 * fetch run a session each against it at the same time: the node runs the real `runSession` (responder, direction
 * `serve`, its served set, its store); each partner is a scripted client (hello already exchanged, reconciliation
 * over an empty set, then every hash asked for in wants of `wantBatch` hashes, `pipeline` wants in flight) that
 * counts what it receives and decodes nothing but the frames. Every message crosses an in-memory channel as a
 * frame encoded and decoded with the sync protocol's real codec (no TCP, Noise or Yamux). Timed: the transfer
 * phase only (every partner reconciles first, then all start asking at once).
 *
 * Reported per K: changes served per second, and main-thread CPU per change served (`process.threadCpuUsage`;
 * it includes the partners' scripted side, which only decodes frames), beside the process's CPU per change
 * (the thread pool's LevelDB reads included).
 * Each K runs twice: as serving reads now (`batched`: one `getEncodedMany` per want, the served-set check from the
 * hash and the header's time), and through a store adapter that answers the same want hash by hash as serving did
 * before (`perHash`: `has`, `getChanges([hash])` which reads and decodes, `encodeChange`).
 * Bound, in the same run: a raw read of the same changes' stored bytes from a LevelDB holding them under the
 * store's key layout, one thread, in batches of `wantBatch` (`getMany`), and key by key in-thread (`getSync`).
 * The store's reads alone are timed too (`storeReads`): per hash as before, `getEncodedMany`, `has` and `hasMany`.
 *
 * Run alone: `npx tsc -p tsconfig.json && node_modules/.bin/node dist/bench/serve.js` (env BENCH_QUICK=1 for a
 * small run, BENCH_SERVE_DOCS to resize it, BENCH_SERVE_PROF=<dir> to CPU-profile each timed transfer phase).
 */
import { randomBytes } from 'node:crypto'
import { Session } from 'node:inspector'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { Level } from 'level'
import { createTenantFactory, encodeChange, type AppendOnlyStore, type ChangeHash, type MindooDB, readChangeTime } from '../src/index.js'
import { decodeFrame, encodeFrame } from '../src/p2p/codec.js'
import type { MessageChannel, SyncMessage } from '../src/sync/messages.js'
import { createInitiator, createReconcileSet, createResponder } from '../src/sync/reconcile/index.js'
import { ServedSet } from '../src/sync/served-set.js'
import { WantClaims } from '../src/sync/claims.js'
import { runSession } from '../src/sync/session.js'
import { gc } from './util.js'

export interface BenchServeOptions {
  /** A small, fast run (also env BENCH_QUICK=1). */
  quick?: boolean
  /** Documents the node holds (two changes each). Default 5,000 (quick: 1,000). */
  docs?: number
  /** Characters of each document's body. Default 1,000. */
  bodyChars?: number
  /** Numbers of partners fetching at once, one run each. Default [1, 8] (quick: [1, 4]). */
  partners?: number[]
  /** Hashes per want. Default 256 (the session's default). */
  wantBatch?: number
  /** Wants in flight per partner. Default 2 (the session's default). */
  pipeline?: number
}

/** scrypt at its lowest accepted cost: key wrapping is not what is measured. */
const BENCH_KDF = { N: 2 ** 14, r: 8, p: 1 }
const FRAME_LIMIT = 4 * 1024 * 1024
const RECONCILE_MESSAGE_BYTES = 64 * 1024

const now = (): number => performance.now()
const round = (x: number, digits = 1): number => Number(x.toFixed(digits))
const perSec = (count: number, ms: number): number => Math.round(count / (ms / 1000))
const text = (chars: number): string => randomBytes(Math.ceil(chars * 3 / 4) + 3).toString('base64').slice(0, chars)
/** Main-thread CPU in µs since `since`. */
const threadUs = (since?: NodeJS.CpuUsage): NodeJS.CpuUsage => process.threadCpuUsage(since)
const total = (u: NodeJS.CpuUsage): number => u.user + u.system

// ====================================================================== an in-memory channel of encoded frames

/** One direction of a channel: encoded frames, at most `capacity` unread (then the writer waits). */
class FrameQueue {
  readonly #frames: Array<Uint8Array | undefined> = []
  readonly #readers: Array<(frame: Uint8Array | undefined) => void> = []
  readonly #writers: Array<() => void> = []
  #error: Error | undefined

  constructor (readonly capacity: number) {}

  async push (frame: Uint8Array | undefined): Promise<void> {
    while (this.#frames.length >= this.capacity && this.#error === undefined) {
      await new Promise<void>((resolve) => { this.#writers.push(resolve) })
    }
    if (this.#error !== undefined) throw this.#error
    const reader = this.#readers.shift()
    if (reader !== undefined) reader(frame)
    else this.#frames.push(frame)
  }

  async shift (): Promise<Uint8Array | undefined> {
    if (this.#error !== undefined) throw this.#error
    if (this.#frames.length > 0) {
      const frame = this.#frames.shift()
      this.#writers.shift()?.()
      return frame
    }
    return await new Promise((resolve) => { this.#readers.push(resolve) })
  }

  fail (err: Error): void {
    this.#error = err
    for (const r of this.#readers.splice(0)) r(undefined)
    for (const w of this.#writers.splice(0)) w()
  }
}

/** Two ends of a channel whose messages cross as frames of the real codec (encoded on send, decoded on receive). */
function framedPair (capacity = 16): [MessageChannel, MessageChannel] {
  const ab = new FrameQueue(capacity)
  const ba = new FrameQueue(capacity)
  const end = (out: FrameQueue, inbox: FrameQueue): MessageChannel => ({
    send: async (m) => { await out.push(encodeFrame(m)) },
    receive: async () => {
      const frame = await inbox.shift()
      return frame === undefined ? undefined : decodeFrame(frame)
    },
    close: async () => { await out.push(undefined) },
    abort: (err) => { out.fail(err); inbox.fail(err) }
  })
  return [end(ab, ba), end(ba, ab)]
}

// ====================================================================== a partner that only fetches

interface Fetched { changes: number, bytes: number }

/**
 * The partner's side of one session: reconciles over an empty set (it learns every hash the node serves), says
 * it is ready, waits for `go`, then asks for everything and counts what arrives.
 */
async function fetchOnly (end: MessageChannel, wantBatch: number, pipeline: number, ready: () => void, go: Promise<void>): Promise<Fetched> {
  const expect = (m: SyncMessage | undefined, type: SyncMessage['type']): SyncMessage => {
    if (m?.type !== type) throw new Error(`expected ${type}, got ${m?.type ?? 'the end'}`)
    return m
  }
  expect(await end.receive(), 'welcome')
  const r = createInitiator({ set: createReconcileSet() }, { maxMessageBytes: RECONCILE_MESSAGE_BYTES })
  let out: Uint8Array | null = r.initiate()
  while (true) {
    if (out !== null) await end.send({ type: 'reconcile', data: out })
    if (r.done) break
    const m = expect(await end.receive(), 'reconcile') as { data: Uint8Array }
    out = r.reconcile(m.data)
  }
  const hashes = r.need.map((item) => Buffer.from(item.id, 'hex'))
  const wants: SyncMessage[] = []
  for (let i = 0; i < hashes.length; i += wantBatch) wants.push({ type: 'want', hashes: hashes.slice(i, i + wantBatch), done: false })
  ready()
  await go
  const got: Fetched = { changes: 0, bytes: 0 }
  let next = 0
  let open = 0
  while (next < wants.length && open < pipeline) { await end.send(wants[next++]); open++ }
  let nodeDone = false
  while (open > 0) {
    const m = await end.receive()
    if (m === undefined) throw new Error('the node ended the session early')
    if (m.type === 'want') {
      nodeDone = m.done // the node asks for nothing (direction `serve`)
      continue
    }
    if (m.type !== 'changes') throw new Error(`unexpected ${m.type}`)
    got.changes += m.changes.length
    for (const c of m.changes) got.bytes += c.length
    if (!m.last) continue
    open--
    if (next < wants.length) { await end.send(wants[next++]); open++ }
  }
  await end.send({ type: 'want', hashes: [], done: true })
  while (true) {
    const m = await end.receive()
    if (m === undefined) break
    if (m.type === 'want') nodeDone = m.done
  }
  if (!nodeDone) throw new Error('the node never said it was done')
  await end.close()
  return got
}

// ====================================================================== the benchmark

export async function benchServe (opts: BenchServeOptions = {}): Promise<object> {
  const quick = opts.quick ?? process.env.BENCH_QUICK === '1'
  const docs = opts.docs ?? (Number(process.env.BENCH_SERVE_DOCS) || (quick ? 1_000 : 5_000))
  const bodyChars = opts.bodyChars ?? 1_000
  const partnerCounts = opts.partners ?? (quick ? [1, 4] : [1, 8])
  const wantBatch = opts.wantBatch ?? 256
  const pipeline = opts.pipeline ?? 2
  const profileDir = process.env.BENCH_SERVE_PROF
  const dir = await mkdtemp(join(tmpdir(), 'mindoodb-bench-serve-'))
  const factory = await createTenantFactory({ dataDir: join(dir, 'factory'), keyWrapping: BENCH_KDF })
  try {
    const tenant = await factory.createTenant({ tenantId: 'hub', tenantEncryptionKeyPassword: 'hub-pw' })
    const db = await tenant.openDB('served')
    const started = now()
    for (let i = 0; i < docs; i++) {
      const doc = await db.createDocument()
      await db.changeDoc(doc, (d) => {
        const data = d.getData()
        data.type = i % 3 === 0 ? 'invoice' : 'order'
        data.visibility = i % 2 === 0 ? 'public' : 'internal'
        data.body = text(bodyChars)
        data.i = i
      })
    }
    const buildMs = now() - started
    const store = db.getStore()
    const hashes = await store.getAllChangeHashes()
    const served = new ServedSet({ db, index: createReconcileSet() }, {
      policy: { mode: 'all' }, direction: 'serve', ownAuthor: tenant.getPublicInfo().signingPublicKey
    })
    await served.start()
    if (served.size !== hashes.length) throw new Error(`served set holds ${served.size} of ${hashes.length} changes`)

    // the bound: the same changes' stored bytes in a LevelDB of their own, under the store's key layout
    const encoded: Uint8Array[] = []
    for (let i = 0; i < hashes.length; i += 1000) encoded.push(...(await store.getChanges(hashes.slice(i, i + 1000))).map(encodeChange))
    const payloadBytes = encoded.reduce((s, b) => s + b.length, 0)
    const bound = await rawBound(join(dir, 'raw'), hashes, encoded, wantBatch)
    const reads = await storeReads(store, served, hashes, wantBatch)

    /** K partners fetch everything at once from a session whose database is `sessionDb`; timed transfer phase. */
    const serveOnce = async (k: number, sessionDb: MindooDB, profileAs?: string): Promise<ServeRun> => {
      gc()
      const claims = new WantClaims()
      const readyAll: Array<Promise<void>> = []
      const go = Promise.withResolvers<void>()
      const sessions: Array<Promise<unknown>> = []
      const fetches: Array<Promise<Fetched>> = []
      for (let p = 0; p < k; p++) {
        const [nodeEnd, partnerEnd] = framedPair()
        const ready = Promise.withResolvers<void>()
        readyAll.push(ready.promise)
        sessions.push(runSession({
          channel: nodeEnd,
          db: sessionDb,
          served,
          claims,
          reconciler: (set, maxMessageBytes) => createResponder({ set }, { maxMessageBytes })
        }, {
          role: 'responder',
          peer: `partner-${p}`,
          direction: 'serve',
          participants: new Set(),
          peerMaxFrameBytes: FRAME_LIMIT,
          maxFrameBytes: FRAME_LIMIT,
          reconcileMessageBytes: RECONCILE_MESSAGE_BYTES,
          wantBatch,
          pipeline
        }))
        fetches.push(fetchOnly(partnerEnd, wantBatch, pipeline, ready.resolve, go.promise))
      }
      await Promise.all(readyAll)
      const profiling = profileAs !== undefined && profileDir !== undefined ? await startProfile() : undefined
      const thread0 = threadUs()
      const process0 = process.cpuUsage()
      const started = now()
      go.resolve()
      const got = await Promise.all(fetches)
      const ms = now() - started
      const threadCpu = total(threadUs(thread0))
      const processCpu = total(process.cpuUsage(process0))
      if (profiling !== undefined) await profiling(join(profileDir as string, `${profileAs as string}.cpuprofile`))
      await Promise.all(sessions)
      const changes = got.reduce((s, g) => s + g.changes, 0)
      if (changes !== k * hashes.length) throw new Error(`partners received ${changes} of ${k * hashes.length} changes`)
      return {
        changesServed: changes,
        ms: round(ms),
        changesPerSec: perSec(changes, ms),
        mainThreadUsPerChange: round(threadCpu / changes, 2),
        processCpuUsPerChange: round(processCpu / changes, 2),
        ofBound: round(perSec(changes, ms) / bound.getMany.changesPerSec, 3)
      }
    }

    // the same sessions over a store that answers a want hash by hash, as serving did before
    const perHashDb = { getStore: () => perHashReads(store) } as unknown as MindooDB
    const runs = []
    // one pass of each (one partner) warms up the JIT and is not reported
    await serveOnce(1, db)
    await serveOnce(1, perHashDb)
    for (const k of partnerCounts) {
      const batched = await serveOnce(k, db, `serve-k${k}`)
      const perHash = await serveOnce(k, perHashDb, `serve-perhash-k${k}`)
      runs.push({ partners: k, batched, perHash, speedup: round(batched.changesPerSec / perHash.changesPerSec, 2) })
    }
    served.stop()
    return {
      note: 'one node serving `docs` two-change documents (createDocument + changeDoc with a collaborative-text body) ' +
        'to K fetch-only partners at once through the real runSession and frame codec over in-memory channels (no TCP, ' +
        'Noise or Yamux); timed over the transfer phase. mainThreadUsPerChange includes the partners\' frame decoding. ' +
        'bound: raw LevelDB reads of the same stored bytes, one thread, in want-sized batches. ' +
        `loadAverage at the end: ${loadavg().map((x) => x.toFixed(2)).join(' ')}`,
      docs,
      changes: hashes.length,
      avgChangeBytes: Math.round(payloadBytes / hashes.length),
      buildMs: Math.round(buildMs),
      wantBatch,
      pipeline,
      bound,
      storeReads: reads,
      runs,
      loadAverage: loadavg().map((x) => round(x, 2))
    }
  } finally {
    await factory.close()
    await rm(dir, { recursive: true, force: true })
  }
}

interface ServeRun {
  changesServed: number
  ms: number
  changesPerSec: number
  mainThreadUsPerChange: number
  processCpuUsPerChange: number
  ofBound: number
}

/**
 * The store as serving read it before batched reads: per hash `has`, then `getChanges([hash])` (a read and a
 * decode), then `encodeChange` (the served-set check itself is the session's).
 */
function perHashReads (store: AppendOnlyStore): Pick<AppendOnlyStore, 'getEncodedMany'> {
  return {
    getEncodedMany: async (hashes) => {
      const out: Array<Uint8Array | undefined> = []
      for (const hash of hashes) {
        if (!await store.has(hash)) {
          out.push(undefined)
          continue
        }
        const [change] = await store.getChanges([hash])
        out.push(encodeChange(change))
      }
      return out
    }
  }
}

/** Runs `fn` on each item, one after the other. */
async function sequence<T, R> (items: T[], fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = []
  for (const item of items) out.push(await fn(item))
  return out
}

/** Starts the CPU profiler of this thread; the function returned stops it and writes the profile. */
async function startProfile (): Promise<(file: string) => Promise<void>> {
  const session = new Session()
  session.connect()
  const post = async (method: string): Promise<unknown> => await new Promise((resolve, reject) => {
    session.post(method, (err, result) => { if (err !== null) reject(err); else resolve(result) })
  })
  await post('Profiler.enable')
  await post('Profiler.start')
  return async (file) => {
    const { profile } = await post('Profiler.stop') as { profile: object }
    session.disconnect()
    await writeFile(file, JSON.stringify(profile))
  }
}

/** Reads of the stored bytes from a LevelDB of their own: `getMany` per want-sized batch, and `getSync` per key. */
async function rawBound (location: string, hashes: ChangeHash[], encoded: Uint8Array[], batch: number): Promise<Record<string, Record<string, number>>> {
  const ENC = { keyEncoding: 'utf8', valueEncoding: 'view' } as const
  const raw = new Level<string, Uint8Array>(location, { valueEncoding: 'view' })
  await raw.open()
  try {
    const keys = hashes.map((h) => `c!${h}`)
    for (let i = 0; i < keys.length; i += 1000) {
      await raw.batch(keys.slice(i, i + 1000).map((key, j) => ({ type: 'put' as const, key, value: encoded[i + j] })), ENC)
    }
    const time = async (fn: () => Promise<number>): Promise<Record<string, number>> => {
      await fn() // warm-up
      gc()
      const thread0 = threadUs()
      const process0 = process.cpuUsage()
      const started = now()
      const bytes = await fn()
      const ms = now() - started
      if (bytes === 0) throw new Error('nothing read')
      return {
        changesPerSec: perSec(keys.length, ms),
        mainThreadUsPerChange: round(total(threadUs(thread0)) / keys.length, 2),
        processCpuUsPerChange: round(total(process.cpuUsage(process0)) / keys.length, 2)
      }
    }
    return {
      getMany: await time(async () => {
        let bytes = 0
        for (let i = 0; i < keys.length; i += batch) {
          for (const v of await raw.getMany(keys.slice(i, i + batch), ENC)) bytes += v?.length ?? 0
        }
        return bytes
      }),
      getSync: await time(async () => {
        let bytes = 0
        for (const key of keys) bytes += raw.getSync(key, ENC)?.length ?? 0
        return bytes
      }),
      // main-thread µs per key by batch size, through the thread pool (`getMany`) and in-thread (`getSync`): where
      // LevelStore switches from one to the other (IN_THREAD_BATCH)
      ...Object.fromEntries(await sequence([1, 4, 16], async (size) => {
        const part = keys.slice(0, Math.min(keys.length, 2_000))
        const perKey = async (read: (batch: string[]) => Promise<Array<Uint8Array | undefined>>): Promise<number> => {
          const run = async (): Promise<number> => {
            let bytes = 0
            for (let i = 0; i < part.length; i += size) for (const v of await read(part.slice(i, i + size))) bytes += v?.length ?? 0
            return bytes
          }
          await run()
          const thread0 = threadUs()
          await run()
          return round(total(threadUs(thread0)) / part.length, 2)
        }
        return [`batchOf${size}`, {
          getManyMainThreadUsPerKey: await perKey(async (batch) => await raw.getMany(batch, ENC)),
          getSyncMainThreadUsPerKey: await perKey(async (batch) => batch.map((key) => raw.getSync(key, ENC)))
        }]
      }))
    }
  } finally {
    await raw.close()
  }
}

/**
 * The store's own reads for serving, without a session: per hash as serving read before (`has`,
 * `getChanges([hash])`, the served-set check, `encodeChange`), and batched (`getEncodedMany` with the check from the
 * header's time; `hasMany` beside `has` per hash, as the asking side reads).
 */
async function storeReads (store: AppendOnlyStore, served: ServedSet, hashes: ChangeHash[], batch: number): Promise<Record<string, Record<string, number>>> {
  const time = async (fn: () => Promise<number>): Promise<Record<string, number>> => {
    await fn()
    gc()
    const thread0 = threadUs()
    const started = now()
    const count = await fn()
    const ms = now() - started
    if (count !== hashes.length) throw new Error(`read ${count} of ${hashes.length}`)
    return { changesPerSec: perSec(hashes.length, ms), mainThreadUsPerChange: round(total(threadUs(thread0)) / hashes.length, 2) }
  }
  return {
    perHash: await time(async () => {
      let n = 0
      for (const hash of hashes) {
        if (!await store.has(hash)) continue
        const [change] = await store.getChanges([hash])
        if (served.includes(change) && encodeChange(change).length > 0) n++
      }
      return n
    }),
    getEncodedMany: await time(async () => {
      let n = 0
      for (let i = 0; i < hashes.length; i += batch) {
        const part = hashes.slice(i, i + batch)
        const stored = await store.getEncodedMany(part)
        stored.forEach((bytes, j) => { if (bytes !== undefined && served.includes({ hash: part[j], time: readChangeTime(bytes) })) n++ })
      }
      return n
    }),
    hasPerHash: await time(async () => {
      let n = 0
      for (const hash of hashes) if (await store.has(hash)) n++
      return n
    }),
    hasMany: await time(async () => {
      let n = 0
      for (let i = 0; i < hashes.length; i += batch) n += (await store.hasMany(hashes.slice(i, i + batch))).filter(Boolean).length
      return n
    })
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  benchServe().then(
    (report) => { console.log(JSON.stringify(report, null, 2)) },
    (err: unknown) => {
      console.error(err)
      process.exitCode = 1
    }
  )
}
