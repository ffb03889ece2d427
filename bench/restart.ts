/**
 * Restart benchmark (issue 8: "10^6 stored changes: restart to serving ≤ 2 s for `all` and for a selector
 * filter; RSS ≤ 300 MB while serving").
 *
 * 1. Data: one organisation whose database holds `changes` real signed, encrypted changes: `changes / 2`
 *    documents of two changes each (a creation with `{ type, visibility, body: <1,000 characters>, i }`, the body an
 *    Automerge ImmutableString, then a small change), half of them `type: 'a'`. Two shares' served sets (`all`,
 *    and the selector `{ type: 'a' }`) run while the data is written, so their persisted indexes are maintained
 *    the way a serving node maintains them. Generating signed, encrypted changes is slow, so the directory is built
 *    once and cached under os.tmpdir(), keyed by the size and by the code of the on-disk formats; each run copies
 *    it, so every measurement starts from the same state (the last checkpoint up to an eighth of the set behind,
 *    as a node stopped at a random moment leaves it).
 * 2. Restart, in a fresh child process per filter: from opening the tenant until `node.start()` has resolved with
 *    the share activated (its served set ready to serve), on a real MindooNode (libp2p on 127.0.0.1, no DHT).
 *    Reported: milliseconds (open, node start, total), the served set's size and how it got ready (restored from
 *    its checkpoint, records replayed, documents evaluated again), and the process's RSS while serving (after a
 *    GC) and its peak RSS. Bounds: 2,000 ms and 300 MB.
 * 3. For comparison, the full rebuild the node did before the index was persisted, at `compareChanges` (in a
 *    child process each): `all` decoding every stored change (`iterateSince`), and the selector loading every
 *    document through Automerge (a served set without persisted state).
 *
 * Run alone: `npx tsc -p tsconfig.json && node_modules/.bin/node dist/bench/restart.js` (env BENCH_QUICK=1 for
 * 10^5 changes, BENCH_RESTART_N to resize, BENCH_NO_CACHE=1 to rebuild the data, BENCH_RESTART_COMPARE=0 to skip
 * part 3, BENCH_RESTART_DATA=<dir> to use data cached by other code, `{n}` standing for the size).
 */
import * as Automerge from '@automerge/automerge'
import { fork } from 'node:child_process'
import { createHash } from 'node:crypto'
import { cp, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { encrypt, Signer, unwrapKey } from '../src/crypto/index.js'
import {
  createTenantFactory, newDocId, payloadAad, signChange, type ChangeHeader, type DocData, type ShareConfig, type StoreChange
} from '../src/index.js'
import { createMindooNode } from '../src/p2p/index.js'
import { createReconcileSet } from '../src/sync/reconcile/index.js'
import { ServedSet } from '../src/sync/served-set.js'
import { filterIdentity, policyOf, type ShareFilter } from '../src/sync/share.js'

export interface BenchRestartOptions {
  /** A smaller run (also env BENCH_QUICK=1): 2 * 10^4 changes, comparison at 5,000. */
  quick?: boolean
  /** Stored changes. Default 10^5 (quick 2 * 10^4; env BENCH_RESTART_N, e.g. 10^6 for issue 8's size). */
  changes?: number
  /** Size of the full-rebuild comparison. Default 2 * 10^4 (quick 5,000); 0 skips it (env BENCH_RESTART_COMPARE). */
  compareChanges?: number
  /** Reuse the data cached under os.tmpdir(). Default true (env BENCH_NO_CACHE=1 turns it off). */
  cache?: boolean
}

const BOUND_MS = 2000
const BOUND_RSS_MB = 300
const BENCH_KDF = { N: 2 ** 14, r: 8, p: 1 }
const KEY_ID = 'bench-key'
const KEY_PASSWORD = 'bench-restart-key'
const DATABASE = 'shared'
const BODY_CHARS = 1000
/** Bump when the data this file generates changes. */
const CACHE_FORMAT = 1
const FILTERS: Record<'all' | 'selector', ShareFilter> = {
  all: { kind: 'all' },
  selector: { kind: 'selector', selector: { type: 'a' } }
}
const now = (): number => performance.now()
const mb = (bytes: number): number => Math.round(bytes / 2 ** 20)

// ====================================================================== data

interface RestartMeta {
  format: number
  changes: number
  docs: number
  buildMs: number
  bytes: number
}

/** The code that fixes the on-disk formats and the persisted index: a cache built by other code is not reused. */
async function formatHash (): Promise<string> {
  const h = createHash('sha256').update(`${CACHE_FORMAT}`)
  const files = ['store/change.js', 'store/level-store.js', 'core/db.js', 'core/factory.js', 'core/tenant.js', 'core/keyring.js',
    'crypto/index.js', 'sync/served-index.js', 'sync/share.js', 'sync/filter.js']
  for (const file of files) h.update(await readFile(new URL(`../src/${file}`, import.meta.url)))
  return h.digest('hex').slice(0, 16)
}

/** Automerge changes of one document: its creation (type a or b) and a second change, made once and reused. */
function templates (): Record<'a' | 'b', [Uint8Array, Uint8Array]> {
  const make = (type: 'a' | 'b'): [Uint8Array, Uint8Array] => {
    let body = ''
    while (body.length < BODY_CHARS) body += `${type} lorem ipsum dolor sit amet ${body.length} `
    let am = Automerge.change(Automerge.init<DocData>(), (d) => {
      d.type = type
      d.visibility = 'public'
      d.body = new Automerge.ImmutableString(body.slice(0, BODY_CHARS))
      d.i = 0
    })
    const first = Automerge.getLastLocalChange(am) as Uint8Array
    am = Automerge.change(am, (d) => { d.i = 1 })
    const second = Automerge.getLastLocalChange(am) as Uint8Array
    Automerge.free(am)
    return [first, second]
  }
  return { a: make('a'), b: make('b') }
}

async function dirBytes (dir: string): Promise<number> {
  let total = 0
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += (await stat(join(entry.parentPath, entry.name))).size
  }
  return total
}

/** Builds the data directory (see the module comment) at `dir`. */
async function build (dir: string, n: number): Promise<RestartMeta> {
  const started = now()
  const factory = await createTenantFactory({ dataDir: dir, keyWrapping: BENCH_KDF })
  try {
    const tenant = await factory.createTenant({ tenantId: 'org-a', tenantEncryptionKeyPassword: 'org-a-pw' })
    const keyBlob = await factory.createSymmetricEncryptedPrivateKey(KEY_PASSWORD)
    await tenant.importNamedKey(KEY_ID, keyBlob, KEY_PASSWORD)
    const key = await unwrapKey(keyBlob, KEY_PASSWORD)
    const tenantFile = JSON.parse(await readFile(join(dir, 'tenants', 'org-a', 'tenant.json'), 'utf8'))
    const signer = new Signer(Buffer.from(tenantFile.secrets.data.signingPrivateKey as string, 'base64'))
    const db = await tenant.openDB(DATABASE, { defaultKeyId: KEY_ID })
    // the changes are made here, signed with the tenant's own key: checking each signature again would only make
    // the build slower (the next open installs the verifier again)
    db.getStore().setVerifier(undefined)
    const sets = Object.entries(FILTERS).map(([id, filter]) => new ServedSet({
      db, index: createReconcileSet(), state: tenant.openIndexState(DATABASE, id)
    }, { policy: policyOf(filter), identity: filterIdentity(filter), direction: 'both', ownAuthor: signer.publicKey }))
    for (const set of sets) await set.start()
    const tpl = templates()
    const docs = Math.floor(n / 2)
    let time = Date.now() - n
    const make = (header: Omit<ChangeHeader, 'author' | 'time' | 'keyId'>, plain: Uint8Array): StoreChange => {
      const full: ChangeHeader = { ...header, keyId: KEY_ID, author: signer.publicKey, time: time++ }
      return signChange(full, encrypt(key, plain, payloadAad(full)), (signed) => signer.sign(signed))
    }
    const store = db.getStore()
    let reported = 0
    const phase = { make: 0, append: 0, materialise: 0 }
    for (let i = 0; i < docs; i += 1000) {
      const p0 = now()
      const changes: StoreChange[] = []
      for (let j = i; j < Math.min(docs, i + 1000); j++) {
        const [first, second] = tpl[j % 2 === 0 ? 'a' : 'b']
        const docId = newDocId(signer.publicKey, KEY_ID)
        const creation = make({ kind: 'change', docId, deps: [] }, first)
        changes.push(creation, make({ kind: 'change', docId, deps: [creation.hash] }, second))
      }
      const p1 = now()
      const { added } = await store.appendMany(changes)
      const p2 = now()
      await db.syncStoreChanges(added)
      phase.make += p1 - p0
      phase.append += p2 - p1
      phase.materialise += now() - p2
      if (i - reported >= docs / 10) {
        reported = i
        process.stderr.write(`bench restart: built ${i * 2} of ${n} changes (${Math.round((now() - started) / 1000)} s; ${JSON.stringify(phase)})\n`)
      }
    }
    for (const set of sets) {
      await set.settled()
      set.stop()
    }
    return { format: CACHE_FORMAT, changes: docs * 2, docs, buildMs: Math.round(now() - started), bytes: 0 }
  } finally {
    await factory.close()
  }
}

/** The data directory for `n` changes: from the cache, or built (and cached). */
async function restartData (n: number, useCache: boolean, runDir: string): Promise<{ dir: string, meta: RestartMeta, fromCache: boolean }> {
  const prefix = `mindoodb-bench-restart-${n}-`
  const cacheDir = process.env.BENCH_RESTART_DATA?.replace('{n}', String(n)) ?? join(tmpdir(), `${prefix}${await formatHash()}`)
  if (useCache) {
    try {
      const meta = JSON.parse(await readFile(join(cacheDir, 'meta.json'), 'utf8')) as RestartMeta
      return { dir: join(cacheDir, 'data'), meta, fromCache: true }
    } catch {
      // not cached yet
    }
  }
  const buildDir = useCache ? `${cacheDir}.building-${process.pid}` : join(runDir, `build-${n}`)
  await rm(buildDir, { recursive: true, force: true })
  await mkdir(buildDir, { recursive: true })
  const meta = await build(join(buildDir, 'data'), n)
  meta.bytes = await dirBytes(join(buildDir, 'data'))
  await writeFile(join(buildDir, 'meta.json'), JSON.stringify(meta))
  if (!useCache) return { dir: join(buildDir, 'data'), meta, fromCache: false }
  for (const name of await readdir(tmpdir())) {
    if (name.startsWith(prefix) && join(tmpdir(), name) !== buildDir) await rm(join(tmpdir(), name), { recursive: true, force: true })
  }
  await rename(buildDir, cacheDir)
  return { dir: join(cacheDir, 'data'), meta, fromCache: false }
}

// ====================================================================== child processes

type ChildTask =
  | { task: 'restart', dataDir: string, nodeDir: string, filter: 'all' | 'selector' }
  | { task: 'rebuild', dataDir: string, filter: 'all' | 'selector' }

/** Runs a task in a fresh child process (its own heap and RSS) and returns what it reports. */
async function inChild (task: ChildTask): Promise<Record<string, unknown>> {
  return await new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(import.meta.url), ['--child'], { execArgv: ['--expose-gc'], stdio: ['ignore', 'ignore', 'inherit', 'ipc'] })
    let result: Record<string, unknown> | undefined
    child.on('message', (msg) => { result = msg as Record<string, unknown> })
    child.on('error', reject)
    child.on('exit', (code) => {
      if (result !== undefined) resolve(result)
      else reject(new Error(`bench restart child exited with ${String(code)} and no result`))
    })
    child.send(task)
  })
}

function memory (): { rssMB: number, heapUsedMB: number, peakRssMB: number } {
  (globalThis as { gc?: () => void }).gc?.()
  return { rssMB: mb(process.memoryUsage().rss), heapUsedMB: mb(process.memoryUsage().heapUsed), peakRssMB: Math.round(process.resourceUsage().maxRSS / 1024) }
}

/** Restart to serving: open the tenant, start a node with the share, until it has resolved. */
async function childRestart (task: Extract<ChildTask, { task: 'restart' }>): Promise<Record<string, unknown>> {
  const t0 = now()
  const factory = await createTenantFactory({ dataDir: task.dataDir, keyWrapping: BENCH_KDF })
  const tenant = await factory.openTenant('org-a')
  const t1 = now()
  const share: ShareConfig = {
    id: task.filter,
    topicSecret: 'bench-restart-topic-secret-0000',
    database: DATABASE,
    partners: [],
    direction: 'both',
    filter: FILTERS[task.filter],
    enabled: true
  }
  const node = await createMindooNode({ tenant, dataDir: task.nodeDir, listen: ['/ip4/127.0.0.1/tcp/0'], dht: false, shares: [share] })
  await node.start()
  const t2 = now()
  const status = node.status(task.filter)[0]
  const report = {
    openMs: Math.round(t1 - t0),
    nodeStartMs: Math.round(t2 - t1),
    totalMs: Math.round(t2 - t0),
    servedSetSize: status.servedSetSize,
    servedSetStart: status.servedSetStart,
    ...memory()
  }
  await node.stop()
  await factory.close()
  return report
}

/** The full rebuild a start did before the index was persisted. */
async function childRebuild (task: Extract<ChildTask, { task: 'rebuild' }>): Promise<Record<string, unknown>> {
  const factory = await createTenantFactory({ dataDir: task.dataDir, keyWrapping: BENCH_KDF })
  const tenant = await factory.openTenant('org-a')
  const db = await tenant.openDB(DATABASE)
  const t0 = now()
  let size: number
  if (task.filter === 'all') {
    // every stored change read and decoded in full, as start() did
    const set = createReconcileSet()
    for await (const { change } of db.getStore().iterateSince(0)) set.insert(change.time, change.hash)
    size = set.size
  } else {
    const set = new ServedSet({ db, index: createReconcileSet() }, {
      policy: policyOf(FILTERS.selector), direction: 'both', ownAuthor: tenant.getPublicInfo().signingPublicKey
    })
    await set.start()
    size = set.size
    set.stop()
  }
  const report = { ms: Math.round(now() - t0), servedSetSize: size, ...memory() }
  await factory.close()
  return report
}

// ====================================================================== the benchmark

export async function benchRestart (opts: BenchRestartOptions = {}): Promise<object> {
  const quick = opts.quick ?? process.env.BENCH_QUICK === '1'
  const n = opts.changes ?? (process.env.BENCH_RESTART_N !== undefined ? Number(process.env.BENCH_RESTART_N) : quick ? 20_000 : 100_000)
  const compareN = opts.compareChanges ?? (process.env.BENCH_RESTART_COMPARE !== undefined ? Number(process.env.BENCH_RESTART_COMPARE) : quick ? 5_000 : 20_000)
  const cache = opts.cache ?? process.env.BENCH_NO_CACHE !== '1'
  const runDir = join(tmpdir(), `mindoodb-bench-restart-run-${process.pid}-${Date.now()}`)
  await mkdir(runDir, { recursive: true })
  try {
    const data = await restartData(n, cache, runDir)
    const restart: Record<string, unknown> = {}
    for (const filter of ['all', 'selector'] as const) {
      // a copy per measurement: each starts from the state the data was left in
      const copy = join(runDir, `restart-${filter}`)
      const copyStart = now()
      await cp(data.dir, copy, { recursive: true })
      const copyMs = Math.round(now() - copyStart)
      const result = await inChild({ task: 'restart', dataDir: copy, nodeDir: join(runDir, `node-${filter}`), filter })
      await rm(copy, { recursive: true, force: true })
      restart[filter] = {
        ...result,
        copyMs,
        boundMs: BOUND_MS,
        msOverBound: Number(((result.totalMs as number) / BOUND_MS).toFixed(3)),
        boundRssMB: BOUND_RSS_MB,
        rssOverBound: Number(((result.rssMB as number) / BOUND_RSS_MB).toFixed(3))
      }
    }
    let fullRebuild: object | undefined
    if (compareN > 0) {
      const small = compareN === n ? data : await restartData(compareN, cache, runDir)
      const rebuild: Record<string, unknown> = { changes: small.meta.changes }
      for (const filter of ['all', 'selector'] as const) rebuild[filter] = await inChild({ task: 'rebuild', dataDir: small.dir, filter })
      fullRebuild = rebuild
    }
    return {
      changes: data.meta.changes,
      docs: data.meta.docs,
      dataMB: mb(data.meta.bytes),
      dataFromCache: data.fromCache,
      buildMs: data.meta.buildMs,
      restart,
      fullRebuildBefore: fullRebuild,
      loadAverage: loadavg().map((x) => Number(x.toFixed(2)))
    }
  } finally {
    await rm(runDir, { recursive: true, force: true })
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  if (process.argv.includes('--child')) {
    process.once('message', (task: ChildTask) => {
      const run = task.task === 'restart' ? childRestart(task) : childRebuild(task)
      run.then((report) => { process.send?.(report, () => process.exit(0)) }, (err: unknown) => {
        process.stderr.write(`bench restart child failed: ${err instanceof Error ? err.stack : String(err)}\n`)
        process.exit(1)
      })
    })
  } else {
    benchRestart().then((report) => { console.log(JSON.stringify(report, null, 2)) }, (err: unknown) => {
      console.error(err)
      process.exitCode = 1
    })
  }
}
