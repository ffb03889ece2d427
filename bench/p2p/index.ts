/**
 * Peer-to-peer benchmark: real libp2p nodes (TCP, Noise, Yamux) on 127.0.0.1, real LevelDB. One file per scenario:
 *
 * - `reconcile-p2p.ts`: reconciliation over a real libp2p stream, bytes and round trips against the naive exchange.
 * - `docs.ts`: the scenario: documents made with createDocument + changeDoc (1,000-character body as
 *   collaborative text, then as ImmutableString), stored and read back through the changefeed, against the
 *   primitive bound and the Automerge bound on every core.
 * - `cold.ts`: cold sync of single-change documents (ImmutableString and collaborative-text fields) against the
 *   per-change primitive bound.
 * - `live.ts`: one change on A until readable on B, p50/p99.
 * - `mesh.ts`: 8 organisations, bytes and rounds per change against the payload's minimum.
 * - `common.ts` (options, helpers, traffic counters), `server.ts` (orgs; org A in a child process), `bound.ts`.
 *
 * Run alone: `npx tsc -p tsconfig.json && node_modules/.bin/node dist/bench/p2p/index.js` (env BENCH_QUICK=1 for a
 * small run, BENCH_PARTS=reconcile,docs,cold,live,mesh to pick parts, BENCH_INPROCESS=1 to keep A in the same process,
 * BENCH_CHILD_PROF=<dir> to CPU-profile the child process, BENCH_NO_CACHE=1 to rebuild A's data, BENCH_DOCS_N, BENCH_COLD_N,
 * BENCH_COLD_TEXT_N, BENCH_MESH_CHANGES, BENCH_MESH_DEBOUNCE to resize parts, BENCH_MESH_NEIGHBOURS_ONLY=1 to see a
 * mesh whose orgs list only their neighbours as partners).
 */
import { mkdir, rm } from 'node:fs/promises'
import { cpus, loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { pathToFileURL } from 'node:url'
import { benchCold, type ColdContext } from './cold.js'
import { benchDocs } from './docs.js'
import { FrameTally, now, round, SocketTally, type BenchP2POptions } from './common.js'
import { benchLive } from './live.js'
import { benchMesh } from './mesh.js'
import { benchReconcileP2P } from './reconcile-p2p.js'
import { closeOrg } from './server.js'

export type { BenchP2POptions } from './common.js'

/** Runs the parts asked for; returns a JSON-able report. */
export async function benchP2P (opts: BenchP2POptions = {}): Promise<object> {
  const quick = opts.quick ?? process.env.BENCH_QUICK === '1'
  const parts = new Set(opts.parts ?? ['reconcile', 'docs', 'cold', 'live', 'mesh'])
  const runDir = join(tmpdir(), `mindoodb-bench-p2p-run-${process.pid}-${Date.now()}`)
  await mkdir(runDir, { recursive: true })
  const sockets = new SocketTally()
  const frames = new FrameTally()
  sockets.start()
  frames.install()
  const report: Record<string, unknown> = {
    benchmark: 'p2p',
    node: process.version,
    cpus: cpus().length,
    quick
  }
  const started = now()
  /** Wall time of each part (data building included), to keep the whole run short. */
  const partMs: Record<string, number> = {}
  report.partMs = partMs
  let cold: ColdContext | undefined
  try {
    /** A part that fails is reported as such; the others still run. */
    const part = async (name: string, fn: () => Promise<object>): Promise<void> => {
      const partStarted = now()
      try {
        report[name] = await fn()
      } catch (err) {
        report[name] = { error: String((err as Error)?.stack ?? err) }
        console.error(`part ${name} failed:`, err)
      }
      partMs[name] = Math.round(now() - partStarted)
    }
    if (parts.has('reconcile')) {
      await part('reconcile', async () => await benchReconcileP2P(opts.sizes ?? (quick ? [1e4, 1e5] : [1e4, 1e5, 1e6]), opts.diffs ?? [0, 1, 10, 1000], sockets))
    }
    const chars = opts.contentChars ?? 850
    const coldOpts = {
      boundSample: opts.boundSample ?? (quick ? 1_000 : 5_000),
      serverProcess: opts.serverProcess ?? process.env.BENCH_INPROCESS !== '1',
      cache: opts.cache ?? process.env.BENCH_NO_CACHE !== '1'
    }
    const envInt = (name: string): number | undefined => process.env[name] === undefined ? undefined : Number(process.env[name])
    if (parts.has('docs')) {
      const docs = opts.docs ?? envInt('BENCH_DOCS_N') ?? (quick ? 2_000 : 10_000)
      for (const body of opts.docsBodies ?? ['text', 'immutable'] as const) {
        await part(body === 'text' ? 'docsText' : 'docsImmutable', async () => await benchDocs({ docs, chars: 1_000, body }, coldOpts, runDir))
      }
    }
    const textN = opts.coldTextChanges ?? envInt('BENCH_COLD_TEXT_N') ?? (quick ? 500 : 10_000)
    if (parts.has('cold') && textN > 0) {
      await part('coldText', async () => {
        const out = await benchCold({ n: textN, chars, field: 'text' }, coldOpts, runDir, sockets)
        await out.ctx.server.stop()
        await closeOrg(out.ctx.b)
        return out.report
      })
    }
    if (parts.has('cold') || parts.has('live')) {
      await part('cold', async () => {
        const out = await benchCold({ n: opts.coldChanges ?? envInt('BENCH_COLD_N') ?? (quick ? 5_000 : 100_000), chars, field: 'opaque' }, coldOpts, runDir, sockets)
        cold = out.ctx
        return out.report
      })
    }
    if (parts.has('live') && cold !== undefined) {
      const ctx: ColdContext = cold
      await part('live', async () => await benchLive(ctx, opts.liveChanges ?? (quick ? 200 : 1_000)))
    }
    if (cold !== undefined) {
      await cold.server.stop()
      await closeOrg(cold.b)
      cold = undefined
    }
    if (parts.has('mesh')) {
      if (process.env.BENCH_MESH_NEIGHBOURS_ONLY === '1') opts = { ...opts, mesh: { ...opts.mesh, partners: 'neighbours' } }
      const meshOpts = opts.mesh
      await part('mesh', async () => await benchMesh({
        orgs: 8,
        changes: envInt('BENCH_MESH_CHANGES') ?? (quick ? 500 : 5_000),
        burst: quick ? 50 : 100,
        docsPerOrg: quick ? 5 : 25,
        partners: 'all',
        liveDebounceMs: envInt('BENCH_MESH_DEBOUNCE'),
        contentChars: chars,
        ...meshOpts
      }, runDir, sockets, frames))
    }
  } finally {
    if (cold !== undefined) {
      await cold.server.stop().catch(() => {})
      await closeOrg(cold.b).catch(() => {})
    }
    frames.uninstall()
    sockets.stop()
    await rm(runDir, { recursive: true, force: true })
  }
  report.totalMs = Math.round(now() - started)
  report.loadAverage = loadavg().map((x) => round(x, 2))
  return report
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const parts = process.env.BENCH_PARTS?.split(',').map((p) => p.trim()).filter((p) => p !== '') as BenchP2POptions['parts']
  benchP2P({ parts }).then((result) => {
    console.log(JSON.stringify(result, null, 2))
  }, (err: unknown) => {
    console.error(err)
    process.exitCode = 1
  })
}
