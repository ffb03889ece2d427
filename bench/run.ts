/**
 * Runs every benchmark and prints one JSON object: `{ machine, foundation, reconcile, p2p, serve, restart, liveOneRoundTrip }` (one key per
 * scenario registered below).
 *
 * `npm run bench` (builds first, about 15 minutes on an idle 2-core machine, more on the first run while data is built and cached); `BENCH_QUICK=1 npm run bench` for a small, quick run.
 */
import { availableParallelism, cpus, loadavg, totalmem } from 'node:os'
import { benchFoundation } from './foundation.js'
import { benchLiveOneRoundTrip } from './live.js'
import { benchP2P } from './p2p/index.js'
import { benchReconcile } from './reconcile.js'
import { benchRestart } from './restart.js'
import { benchServe } from './serve.js'

const quick = process.env.BENCH_QUICK === '1'

async function main (): Promise<void> {
  const started = new Date()
  const foundation = await benchFoundation(quick ? { n: 2_000, feedDocs: 5_000, tenantSample: 50, receiveDocs: 1_000 } : {})
  const reconcile = await benchReconcile(quick ? { sizes: [1e4, 1e5], diffs: [0, 1, 10, 1000] } : {})
  const p2p = await benchP2P({ quick })
  // Scenarios in files of their own: one line each in this object, printed under its key (import the function above).
  const scenarios: Record<string, object> = {
    serve: await benchServe({ quick }),
    restart: await benchRestart({ quick }),
    liveOneRoundTrip: await benchLiveOneRoundTrip()
  }
  const result = {
    machine: {
      cpus: availableParallelism(),
      cpuModel: cpus()[0]?.model,
      memoryGB: Math.round(totalmem() / 2 ** 30),
      node: process.version,
      date: started.toISOString(),
      loadAverage: loadavg().map((x) => Number(x.toFixed(2))),
      quick
    },
    foundation,
    reconcile,
    p2p,
    ...scenarios
  }
  console.log(JSON.stringify(result, null, 2))
}

main().catch((err: unknown) => {
  console.error(err)
  process.exitCode = 1
})
