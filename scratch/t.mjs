import { openOrg, makeSet, SPECS, randomWrite } from '/work/wt-index/dist/test/utils/served-org.js'
import { prng } from '/work/wt-index/dist/test/utils/prng.js'
import { mkdtempSync } from 'node:fs'
const dir = mkdtempSync('/tmp/x-')
const org = await openOrg(dir, true)
const st = org.tenant.openIndexState('orders', 'selector')
try { console.log(st.unseal(st.seal(new Uint8Array([1,2,3])))) } catch (e) { console.log('seal err', e) }
const { ServedSet } = await import('/work/wt-index/dist/src/sync/served-set.js')
const set = makeSet(org, SPECS[3], true, 4)
await set.start()
const rnd = prng(5); const docs = []; const theirs = []
for (let i = 0; i < 30; i++) await randomWrite(org, rnd, docs, theirs)
await set.settled()
console.log((await st.kv.keys().all()))
await org.factory.close()
