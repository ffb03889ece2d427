import { Level } from 'level'
import { randomBytes } from 'node:crypto'
import { ChunkedReconcileSet } from '/work/wt-index/dist/src/sync/reconcile/set.js'
const N = 1e6
const dir = '/tmp/idx-probe/db'
const level = new Level(dir, { valueEncoding: 'view' })
await level.open()
const sub = level.sublevel(['db','x','store'], { valueEncoding: 'view' })
const existing = await sub.keys({ limit: 1 }).all()
if (existing.length === 0) {
  let t = 1.7e12
  for (let i = 0; i < N; i += 5000) {
    const ops = []
    for (let j = 0; j < 5000; j++) {
      const k = Buffer.alloc(2 + 8 + 32 + 32 + 20)
      k.write('t!', 0); k.writeBigUInt64BE(BigInt(t++), 2); randomBytes(64).copy(k, 10); k.write('tenant:org-a-xxxxxxx', 74)
      ops.push({ type: 'put', key: k, value: new Uint8Array(0), keyEncoding: 'view' })
    }
    await sub.batch(ops)
  }
  console.log('written')
}
global.gc?.()
const m0 = process.memoryUsage().rss
let t0 = performance.now()
const it = sub.keys({ gte: Buffer.from('t!'), lt: Buffer.from('t"'), keyEncoding: 'view' })
let n = 0
const ts = new Float64Array(N); const ids = new Uint8Array(N * 32)
while (true) {
  const chunk = await it.nextv(4096)
  if (chunk.length === 0) break
  for (const k of chunk) {
    const dv = new DataView(k.buffer, k.byteOffset, k.byteLength)
    ts[n] = Number(dv.getBigUint64(2))
    ids.set(k.subarray(10, 42), n * 32)
    n++
  }
}
await it.close()
const t1 = performance.now()
const set = ChunkedReconcileSet.fromPacked(ts.subarray(0, n), ids.subarray(0, n * 32))
const t2 = performance.now()
console.log({ n, readMs: t1 - t0, loadMs: t2 - t1, size: set.size, rssMB: process.memoryUsage().rss / 1e6, rss0: m0/1e6 })
// insert cost
const s2 = new ChunkedReconcileSet()
const t3 = performance.now()
for (let i = 0; i < 1e5; i++) s2.insertRaw(ts[i], ids, i * 32)
console.log({ insert1e5Ms: performance.now() - t3 })
await level.close()
