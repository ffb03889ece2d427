import { Level } from 'level'
const level = new Level('/tmp/idx-probe/db', { valueEncoding: 'view' })
await level.open()
const sub = level.sublevel(['db','x','store'], { valueEncoding: 'view' })
for (const enc of ['view', 'buffer', 'utf8']) {
let t0 = performance.now()
const it = sub.keys({ gte: 't!', lt: 't"', keyEncoding: enc })
let n = 0
while (true) { const chunk = await it.nextv(10000); if (chunk.length === 0) break; n += chunk.length }
await it.close()
console.log(enc, n, performance.now() - t0)
}
// raw level without sublevel
let t0 = performance.now()
const it = level.keys({ keyEncoding: 'buffer' })
let n = 0
while (true) { const chunk = await it.nextv(10000); if (chunk.length === 0) break; n += chunk.length }
console.log('root', n, performance.now() - t0)
await level.close()
