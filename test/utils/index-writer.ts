/**
 * Child process of the served-set crash test (test/sync/served-index.spec.ts): opens the organisation the test
 * prepared in `<dataDir>`, starts a persisted served set of every kind (test/utils/served-org.ts), and writes at
 * random until it is killed, so the kill lands between a change, the materialiser's write and the served sets'
 * journal and checkpoint writes. Prints `ready` once the sets are started, then one line per write.
 *
 * Usage: `node index-writer.js <dataDir> <seed>`.
 */
import { pathToFileURL } from 'node:url'
import { prng } from './prng.js'
import { makeSet, openOrg, randomWrite, SPECS } from './served-org.js'

/** Small, so that kills land around checkpoints too. */
export const CRASH_CHECKPOINT_EVERY = 12

async function run (dataDir: string, seed: number): Promise<void> {
  const org = await openOrg(dataDir, false)
  const sets = SPECS.map((spec) => makeSet(org, spec, true, CRASH_CHECKPOINT_EVERY))
  for (const set of sets) await set.start()
  const theirs = await org.outbox.getAllDocumentIds()
  const ownDocs: string[] = []
  for (const docId of await org.db.getAllDocumentIds()) {
    if (!theirs.includes(docId) && !(await org.db.getDocument(docId)).isDeleted()) ownDocs.push(docId)
  }
  process.stdout.write('ready\n')
  const rnd = prng(seed)
  while (true) {
    await randomWrite(org, rnd, ownDocs, theirs)
    process.stdout.write('write\n')
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  run(process.argv[2], Number(process.argv[3] ?? 1)).catch((err: unknown) => {
    process.stderr.write(`index-writer failed: ${err instanceof Error ? err.stack : String(err)}\n`)
    process.exit(1)
  })
}
