/**
 * Crash safety: a child process (test/utils/crash-writer.ts) writes to a database on disk, locally and by
 * appending or receiving changes made elsewhere (received ones are materialised in the background), and is killed
 * with SIGKILL at random moments, also in the middle of that background work. After each kill the database
 * must open and hold everything the child acknowledged, its reads must catch up with every stored change, and
 * its changefeed must be whole; then the next round writes on into the same directory.
 */
import { expect } from 'chai'
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import {
  createTenantFactory, type ChangeHash, type MindooDB, type ProcessChangesCursor
} from '../../src/index.js'
import {
  LOCAL_DB, LOCAL_TENANT, REMOTE_DB, REMOTE_TENANT, SHARED_KEY, type CrashAck
} from '../utils/crash-writer.js'
import { removeDir, tempDir, TEST_KDF } from '../utils/tmp.js'

const WRITER = fileURLToPath(new URL('../utils/crash-writer.js', import.meta.url))
const ROUNDS = 5
/** The child is killed this long after it reported ready (uniformly in between). */
const KILL_AFTER_MS = [200, 800] as const
/** A child that does not get ready within this long fails the test. */
const READY_TIMEOUT_MS = 15_000

/** What the acknowledged writes say a document must at least be. */
interface Expected {
  /** Some write of it was acknowledged. */
  acked: boolean
  /** Highest counter value acknowledged; undefined when only the create was. */
  n?: number
  /** A delete was acknowledged. */
  deleted: boolean
  /** A delete was attempted (acknowledged or not): a tombstone is a legitimate later state. */
  deleting: boolean
}

interface Model {
  hashes: Set<ChangeHash>
  docs: Map<string, Expected>
  /** Acknowledged writes by way: local, append, appendMany, receive. */
  acks: Record<string, number>
}

interface RoundResult {
  lines: CrashAck[]
  signal: NodeJS.Signals | null
  code: number | null
  stderr: string
}

/** Runs the writer until it has been ready for `killAfterMs`, then kills it with SIGKILL. */
async function runAndKill (dataDir: string, killAfterMs: number): Promise<RoundResult> {
  return await new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [WRITER, dataDir], { stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    let killTimer: NodeJS.Timeout | undefined
    const readyTimer = setTimeout(() => { child.kill('SIGKILL') }, READY_TIMEOUT_MS)
    child.stdout.setEncoding('utf8')
    child.stderr.setEncoding('utf8')
    child.stdout.on('data', (chunk: string) => {
      stdout += chunk
      if (killTimer === undefined && stdout.includes('"ready"')) {
        clearTimeout(readyTimer)
        killTimer = setTimeout(() => { child.kill('SIGKILL') }, killAfterMs)
      }
    })
    child.stderr.on('data', (chunk: string) => { stderr += chunk })
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(readyTimer)
      clearTimeout(killTimer)
      // a line cut by the kill has no newline yet: it was never acknowledged
      const complete = stdout.slice(0, stdout.lastIndexOf('\n') + 1)
      const lines = complete.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as CrashAck)
      resolve({ lines, signal, code, stderr })
    })
  })
}

function record (model: Model, lines: CrashAck[]): void {
  for (const line of lines) {
    if (line.type === 'ready') continue
    const expected = model.docs.get(line.docId) ?? { acked: false, deleted: false, deleting: false }
    model.docs.set(line.docId, expected)
    if (line.type === 'deleting') {
      expected.deleting = true
      continue
    }
    expected.acked = true
    for (const hash of line.hashes) model.hashes.add(hash)
    model.acks[line.via] = (model.acks[line.via] ?? 0) + 1
    if (line.op === 'delete') expected.deleted = true
    if (line.n !== undefined) expected.n = Math.max(expected.n ?? -1, line.n)
  }
}

async function readFeed (db: MindooDB, cursor: ProcessChangesCursor | null): Promise<Array<{ docId: string, cursor: ProcessChangesCursor }>> {
  const out: Array<{ docId: string, cursor: ProcessChangesCursor }> = []
  for await (const { doc, cursor: next } of db.iterateChangesSince(cursor)) out.push({ docId: doc.getId(), cursor: next })
  return out
}

/** Reopens the directory and checks everything the model says must hold. */
async function check (dataDir: string, model: Model): Promise<{ changes: number, documents: number }> {
  const factory = await createTenantFactory({ dataDir, keyWrapping: TEST_KDF })
  try {
    const db = await (await factory.openTenant(LOCAL_TENANT)).openDB(LOCAL_DB, { defaultKeyId: SHARED_KEY })
    const store = db.getStore()

    // the store: no duplicates, count agrees, every acknowledged change is there and decodes
    const all = await store.getAllChangeHashes()
    expect(new Set(all).size, 'duplicate hashes in the store').to.equal(all.length)
    expect(await store.count()).to.equal(all.length)
    const acked = [...model.hashes]
    const stored = new Set(all)
    expect(acked.filter((h) => !stored.has(h)), 'acknowledged changes missing from the store').to.deep.equal([])
    const changes = await store.getChanges(acked)
    expect(changes.map((c) => c.hash)).to.deep.equal(acked)

    // every acknowledged document state is visible, at least at its acknowledged value
    for (const [docId, expected] of model.docs) {
      if (!expected.acked) continue // only a delete attempt was seen, of a change that may not have left its author
      const doc = await db.getDocument(docId)
      if (expected.deleted) {
        expect(doc.isDeleted(), `document ${docId} should be deleted`).to.equal(true)
      } else if (doc.isDeleted()) {
        expect(expected.deleting, `document ${docId} is deleted but no delete was attempted`).to.equal(true)
      } else if (expected.n !== undefined) {
        expect(doc.getData().n, `counter of ${docId}`).to.be.at.least(expected.n)
      }
    }

    // reads caught up with every stored change: every document in the store is materialised, and (all
    // histories here are linear) its single head is its latest stored change
    const storedDocs = new Set((await store.getChanges(all)).map((c) => c.docId))
    const ids = await db.getAllDocumentIds()
    expect([...ids].sort()).to.deep.equal([...storedDocs].sort())
    for (const docId of ids) {
      const hashes = await store.getAllChangeHashesForDoc(docId)
      expect((await db.getDocument(docId)).getHeads(), `heads of ${docId}`).to.deep.equal([hashes[hashes.length - 1]])
    }

    // the changefeed: each document once, cursors strictly increasing, resuming gives exactly the tail
    const feed = await readFeed(db, null)
    expect(feed.map((e) => e.docId).sort()).to.deep.equal([...ids].sort())
    for (let i = 1; i < feed.length; i++) {
      expect(feed[i].cursor.seq, 'cursors must increase').to.be.greaterThan(feed[i - 1].cursor.seq)
    }
    for (const at of [0, Math.floor(feed.length / 2), feed.length - 1]) {
      const resumeFrom = JSON.parse(JSON.stringify(feed[at].cursor)) as ProcessChangesCursor
      const tail = await readFeed(db, resumeFrom)
      expect(tail.map((e) => [e.docId, e.cursor.seq])).to.deep.equal(feed.slice(at + 1).map((e) => [e.docId, e.cursor.seq]))
    }

    // the sending side's store survived its kills too
    const remoteStore = (await (await factory.openTenant(REMOTE_TENANT)).openDB(REMOTE_DB, { defaultKeyId: SHARED_KEY })).getStore()
    const remoteHashes = await remoteStore.getAllChangeHashes()
    expect(new Set(remoteHashes).size).to.equal(remoteHashes.length)
    expect(await remoteStore.count()).to.equal(remoteHashes.length)

    return { changes: all.length, documents: ids.length }
  } finally {
    await factory.close()
  }
}

describe('crash safety', function () {
  this.timeout(60_000)
  let dataDir: string | undefined

  beforeEach(async () => {
    dataDir = await tempDir('mindoodb-crash-')
    const factory = await createTenantFactory({ dataDir, keyWrapping: TEST_KDF })
    try {
      const orgA = await factory.createTenant({ tenantId: LOCAL_TENANT, tenantEncryptionKeyPassword: 'pw-a' })
      const orgB = await factory.createTenant({ tenantId: REMOTE_TENANT, tenantEncryptionKeyPassword: 'pw-b' })
      const key = await factory.createSymmetricEncryptedPrivateKey('collab-password')
      await orgA.importNamedKey(SHARED_KEY, key, 'collab-password')
      await orgB.importNamedKey(SHARED_KEY, key, 'collab-password')
      const db = await orgA.openDB(LOCAL_DB, { defaultKeyId: SHARED_KEY })
      await db.trustPartner(orgB.getPublicInfo())
      await orgB.openDB(REMOTE_DB, { defaultKeyId: SHARED_KEY })
    } finally {
      await factory.close()
    }
  })

  afterEach(async () => {
    await removeDir(dataDir)
    dataDir = undefined
  })

  it('should keep every acknowledged write and a whole changefeed across SIGKILLs', async () => {
    const dir = dataDir as string
    const model: Model = { hashes: new Set(), docs: new Map(), acks: {} }
    let last = { changes: 0, documents: 0 }
    for (let round = 0; round < ROUNDS; round++) {
      const killAfter = KILL_AFTER_MS[0] + Math.random() * (KILL_AFTER_MS[1] - KILL_AFTER_MS[0])
      const result = await runAndKill(dir, killAfter)
      expect(result.signal, `round ${round}: the writer ended by itself (code ${result.code}): ${result.stderr}`).to.equal('SIGKILL')
      expect(result.lines[0], `round ${round}: the writer never got ready: ${result.stderr}`).to.deep.equal({ type: 'ready' })
      record(model, result.lines)
      const now = await check(dir, model)
      // writes continue across rounds: the store only grows
      expect(now.changes).to.be.at.least(last.changes)
      last = now
    }
    // the rounds did write, by every way
    expect(model.hashes.size).to.be.greaterThan(0)
    expect(model.acks.local ?? 0, 'local writes').to.be.greaterThan(0)
    expect((model.acks.append ?? 0) + (model.acks.appendMany ?? 0), 'appended writes').to.be.greaterThan(0)
    expect(model.acks.receive ?? 0, 'received writes (materialised in the background)').to.be.greaterThan(0)
  })
})
