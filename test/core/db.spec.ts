import { expect } from 'chai'
import { stat } from 'node:fs/promises'
import { join } from 'node:path'
import {
  createTenantFactory, decodeChange, encodeChange, type MindooDB, type MindooTenant, type ProcessChangesCursor,
  type StoreChange, type TenantFactory
} from '../../src/index.js'
import { TEST_KDF, testFactory } from '../utils/tmp.js'

async function feed (db: MindooDB, cursor: ProcessChangesCursor | null = null): Promise<Array<{ id: string, cursor: ProcessChangesCursor, deleted: boolean, data: unknown }>> {
  const out = []
  for await (const { doc, cursor: c } of db.iterateChangesSince(cursor)) {
    out.push({ id: doc.getId(), cursor: c, deleted: doc.isDeleted(), data: JSON.parse(JSON.stringify(doc.getData())) })
  }
  return out
}

async function errorOf (p: Promise<unknown>): Promise<{ code?: string, name?: string }> {
  try {
    await p
  } catch (err) {
    return err as { code?: string, name?: string }
  }
  throw new Error('expected the promise to reject')
}

async function copyAll (from: MindooDB, to: MindooDB): Promise<void> {
  const hashes = await from.getStore().findNewChanges(await to.getStore().getAllChangeHashes())
  for (const change of await from.getStore().getChanges(hashes)) await to.getStore().append(change)
}

describe('MindooDB library', () => {
  let factory: TenantFactory
  let dataDir: string
  let cleanup: () => Promise<void>
  let orgA: MindooTenant
  let orgB: MindooTenant

  beforeEach(async () => {
    ({ factory, dataDir, cleanup } = await testFactory())
    orgA = await factory.createTenant({ tenantId: 'org-a', tenantEncryptionKeyPassword: 'pw-a' })
    orgB = await factory.createTenant({ tenantId: 'org-b', tenantEncryptionKeyPassword: 'pw-b' })
  })

  afterEach(async () => {
    await cleanup()
  })

  describe('tenants', () => {
    it('should keep tenants isolated', async () => {
      const dbA = await orgA.openDB('same-name')
      const dbB = await orgB.openDB('same-name')
      const doc = await dbA.createDocument()
      await dbA.changeDoc(doc, (d) => { d.getData().secret = 'a' })
      expect(await dbB.getStore().count()).to.equal(0)
      expect(await dbB.getAllDocumentIds()).to.deep.equal([])
      expect(orgA.getPublicInfo().signingPublicKey).to.not.equal(orgB.getPublicInfo().signingPublicKey)
      expect(orgB.hasNamedKey('tenant:org-a')).to.equal(false)
    })

    it('should reopen a tenant and its data after a restart', async () => {
      const db = await orgA.openDB('notes')
      const doc = await db.createDocument()
      await db.changeDoc(doc, (d) => { d.getData().title = 'kept' })
      const info = orgA.getPublicInfo()
      await factory.close()

      const again = await createTenantFactory({ dataDir, keyWrapping: TEST_KDF })
      try {
        const orgA2 = await again.openTenant('org-a')
        expect(orgA2.getPublicInfo()).to.deep.equal(info)
        const db2 = await orgA2.openDB('notes')
        expect((await db2.getDocument(doc.getId())).getData().title).to.equal('kept')
        expect(await orgA2.listDatabases()).to.deep.equal(['notes'])
        expect(await again.listTenants()).to.deep.equal(['org-a', 'org-b'])
      } finally {
        await again.close()
      }
    })

    it('should keep key files private and refuse a duplicate tenant', async () => {
      const mode = (await stat(join(dataDir, 'tenants', 'org-a', 'tenant.json'))).mode & 0o777
      expect(mode).to.equal(0o600)
      expect((await errorOf(factory.createTenant({ tenantId: 'org-a', tenantEncryptionKeyPassword: 'x' }))).code).to.equal('TENANT_EXISTS')
      expect((await errorOf(factory.openTenant('nobody'))).code).to.equal('TENANT_NOT_FOUND')
      expect((await errorOf(factory.openTenant('../escape'))).code).to.equal('INVALID_ARGUMENT')
    })

    it('should check the tenant encryption key password', async () => {
      expect((await errorOf(factory.openTenant('org-a', { tenantEncryptionKeyPassword: 'wrong' }))).code).to.equal('WRONG_PASSWORD')
      const ok = await factory.openTenant('org-a', { tenantEncryptionKeyPassword: 'pw-a' })
      expect(ok.getTenantId()).to.equal('org-a')
    })

    it('should encrypt keys at rest under a factory passphrase', async () => {
      const { factory: f, dataDir: dir, cleanup: done } = await testFactory({ passphrase: 'correct horse' })
      try {
        const t = await f.createTenant({ tenantId: 'locked', tenantEncryptionKeyPassword: 'pw' })
        const db = await t.openDB('x')
        await db.createDocument()
        await f.close()
        const wrong = await createTenantFactory({ dataDir: dir, passphrase: 'battery staple', keyWrapping: TEST_KDF })
        expect((await errorOf(wrong.openTenant('locked'))).code).to.equal('WRONG_PASSWORD')
        const none = await createTenantFactory({ dataDir: dir, keyWrapping: TEST_KDF })
        expect((await errorOf(none.openTenant('locked'))).code).to.equal('WRONG_PASSWORD')
        const right = await createTenantFactory({ dataDir: dir, passphrase: 'correct horse', keyWrapping: TEST_KDF })
        const reopened = await right.openTenant('locked')
        expect(await (await reopened.openDB('x')).getAllDocumentIds()).to.have.length(1)
        await right.close()
      } finally {
        await done()
      }
    })
  })

  describe('named keys', () => {
    it('should reject a wrong password and garbage blobs', async () => {
      const blob = await factory.createSymmetricEncryptedPrivateKey('right')
      expect((await errorOf(orgA.importNamedKey('k', blob, 'wrong'))).code).to.equal('WRONG_PASSWORD')
      expect((await errorOf(orgA.importNamedKey('k', 'garbage', 'right'))).code).to.equal('INVALID_KEY_FORMAT')
      expect((await errorOf(orgA.importNamedKey('k', blob.slice(0, 30), 'right'))).code).to.equal('INVALID_KEY_FORMAT')
      expect(orgA.hasNamedKey('k')).to.equal(false)
    })

    it('should wrap keys with scrypt at production cost by default', async () => {
      const f = await createTenantFactory({ dataDir: join(dataDir, 'prod') })
      const blob = await f.createSymmetricEncryptedPrivateKey('pw')
      const params = JSON.parse(Buffer.from(blob.slice('mdbkey1.'.length), 'base64url').toString())
      expect(params).to.include({ kdf: 'scrypt', N: 2 ** 17, r: 8, p: 1 })
      expect(Buffer.from(params.salt, 'base64url')).to.have.length(16)
    })

    it('should show documents once their key is imported, also in the changefeed', async () => {
      const blob = await factory.createSymmetricEncryptedPrivateKey('pw')
      await orgA.importNamedKey('late-key', blob, 'pw')
      const dbA = await orgA.openDB('shared')
      const dbB = await orgB.openDB('shared')
      await dbB.trustPartner(orgA.getPublicInfo())
      const doc = await dbA.createDocument({ keyId: 'late-key' })
      await dbA.changeDoc(doc, (d) => { d.getData().v = 1 })
      await copyAll(dbA, dbB)

      expect(await feed(dbB)).to.deep.equal([])
      expect((await errorOf(dbB.getDocument(doc.getId()))).code).to.equal('DOCUMENT_NOT_FOUND')
      const mark = (await feed(dbB)).at(-1)?.cursor ?? null

      await orgB.importNamedKey('late-key', blob, 'pw')
      expect((await dbB.getDocument(doc.getId())).getData().v).to.equal(1)
      expect((await feed(dbB, mark)).map((e) => e.id)).to.deep.equal([doc.getId()])
    })

    it('should encrypt with the newest version and decrypt with all after rotation', async () => {
      const v1 = await factory.createSymmetricEncryptedPrivateKey('pw')
      await orgA.importNamedKey('team', v1, 'pw')
      await orgB.importNamedKey('team', v1, 'pw')
      const dbA = await orgA.openDB('rot', { defaultKeyId: 'team' })
      const dbB = await orgB.openDB('rot')
      await dbB.trustPartner(orgA.getPublicInfo())
      const old = await dbA.createDocument()
      await dbA.changeDoc(old, (d) => { d.getData().era = 'before' })

      const rotated = await orgA.rotateNamedKey('team', 'pw2')
      expect(orgA.listNamedKeys().find((k) => k.keyId === 'team')?.versions).to.equal(2)
      const fresh = await dbA.createDocument()
      await dbA.changeDoc(fresh, (d) => { d.getData().era = 'after' })
      await copyAll(dbA, dbB)

      // B holds only the old version: old documents read, new ones wait
      expect((await dbB.getDocument(old.getId())).getData().era).to.equal('before')
      expect((await errorOf(dbB.getDocument(fresh.getId()))).code).to.equal('DOCUMENT_NOT_FOUND')
      await orgB.importNamedKey('team', rotated, 'pw2')
      expect(orgB.listNamedKeys().find((k) => k.keyId === 'team')?.versions).to.equal(2)
      expect((await dbB.getDocument(fresh.getId())).getData().era).to.equal('after')
      // importing the same versions again changes nothing
      await orgB.importNamedKey('team', rotated, 'pw2')
      expect(orgB.listNamedKeys().find((k) => k.keyId === 'team')?.versions).to.equal(2)
    })
  })

  describe('documents and changefeed', () => {
    let db: MindooDB

    beforeEach(async () => {
      db = await orgA.openDB('feed')
    })

    it('should yield each changed document once, at its latest state, in commit order', async () => {
      const d1 = await db.createDocument()
      const d2 = await db.createDocument()
      const d3 = await db.createDocument()
      await db.changeDoc(d1, (d) => { d.getData().n = 1 })
      await db.changeDoc(d3, (d) => { d.getData().n = 3 })
      await db.changeDoc(d1, (d) => { d.getData().n = 11 })
      const all = await feed(db)
      expect(all.map((e) => e.id)).to.deep.equal([d2.getId(), d3.getId(), d1.getId()])
      expect(all.map((e) => e.data)).to.deep.equal([{}, { n: 3 }, { n: 11 }])
      const seqs = all.map((e) => e.cursor.seq)
      expect([...seqs].sort((a, b) => a - b)).to.deep.equal(seqs)
    })

    it('should resume from any cursor without duplicates or gaps, also after a restart', async () => {
      const ids: string[] = []
      for (let i = 0; i < 40; i++) {
        const doc = await db.createDocument()
        await db.changeDoc(doc, (d) => { d.getData().i = i })
        ids.push(doc.getId())
      }
      const all = await feed(db)
      expect(all.map((e) => e.id)).to.deep.equal(ids)
      for (const k of [0, 1, 17, 39]) {
        const cursor = JSON.parse(JSON.stringify(all[k].cursor))
        expect((await feed(db, cursor)).map((e) => e.id)).to.deep.equal(ids.slice(k + 1))
      }
      const saved = JSON.stringify(all[19].cursor)
      await db.changeDoc(ids[5], (d) => { d.getData().i = 'changed' })
      await factory.close()
      const again = await createTenantFactory({ dataDir, keyWrapping: TEST_KDF })
      try {
        const db2 = await (await again.openTenant('org-a')).openDB('feed')
        const tail = await feed(db2, JSON.parse(saved))
        expect(tail.map((e) => e.id)).to.deep.equal([...ids.slice(20), ids[5]])
        expect(tail.at(-1)?.data).to.deep.equal({ i: 'changed' })
      } finally {
        await again.close()
      }
    })

    it('should yield deleted documents as tombstones', async () => {
      const doc = await db.createDocument()
      await db.changeDoc(doc, (d) => { d.getData().x = 1 })
      const before = await feed(db)
      await db.deleteDocument(doc.getId())
      const after = await feed(db, before.at(-1)?.cursor ?? null)
      expect(after).to.have.length(1)
      expect(after[0]).to.include({ id: doc.getId(), deleted: true })
      expect((await db.getDocument(doc.getId())).isDeleted()).to.equal(true)
      expect((await errorOf(db.changeDoc(doc, (d) => { d.getData().x = 2 }))).code).to.equal('DOCUMENT_DELETED')
    })

    it('should make no change when the callback changes nothing', async () => {
      const doc = await db.createDocument()
      const count = await db.getStore().count()
      await db.changeDoc(doc, () => {})
      expect(await db.getStore().count()).to.equal(count)
      await db.changeDoc(doc, (d) => { d.getData().later = true })
      expect((await db.getDocument(doc.getId())).getData().later).to.equal(true)
    })

    it('should reject bad arguments with typed errors', async () => {
      expect((await errorOf(db.getDocument('does-not-exist'))).code).to.equal('DOCUMENT_NOT_FOUND')
      expect((await errorOf(db.getDocument('bad id!'))).code).to.equal('INVALID_ARGUMENT')
      expect((await errorOf(db.changeDoc('nope', () => {}))).code).to.equal('DOCUMENT_NOT_FOUND')
      expect((await errorOf(db.createDocument({ keyId: 'no-such-key' }))).code).to.equal('KEY_NOT_FOUND')
      expect((await errorOf(db.syncStoreChanges(['zz']))).code).to.equal('INVALID_ARGUMENT')
      expect((await errorOf(db.syncStoreChanges(['a'.repeat(64)]))).code).to.equal('CHANGE_NOT_FOUND')
      expect((await errorOf(feed(db, { seq: -1 }))).code).to.equal('INVALID_ARGUMENT')
      expect((await errorOf(orgA.openDB('../x'))).code).to.equal('INVALID_ARGUMENT')
    })
  })

  describe('receiving changes', () => {
    let dbA: MindooDB
    let dbB: MindooDB
    let changes: StoreChange[]

    beforeEach(async () => {
      const blob = await factory.createSymmetricEncryptedPrivateKey('pw')
      await orgA.importNamedKey('k', blob, 'pw')
      await orgB.importNamedKey('k', blob, 'pw')
      dbA = await orgA.openDB('src', { defaultKeyId: 'k' })
      dbB = await orgB.openDB('dst')
      await dbB.trustPartner(orgA.getPublicInfo())
      const doc = await dbA.createDocument()
      for (let i = 0; i < 5; i++) await dbA.changeDoc(doc, (d) => { d.getData().step = i })
      changes = await dbA.getStore().getChanges(await dbA.getStore().getAllChangeHashes())
    })

    it('should apply changes that arrive before their dependencies once those land', async () => {
      const reversed = [...changes].reverse()
      for (const [i, change] of reversed.entries()) {
        expect(await dbB.getStore().append(change)).to.equal(true)
        if (i < reversed.length - 1) {
          expect((await errorOf(dbB.getDocument(change.docId))).code).to.equal('DOCUMENT_NOT_FOUND')
        }
      }
      expect((await dbB.getDocument(changes[0].docId)).getData().step).to.equal(4)
      expect(await feed(dbB)).to.have.length(1)
    })

    it('should be idempotent', async () => {
      for (const change of changes) await dbB.getStore().append(change)
      const count = await dbB.getStore().count()
      for (const change of changes) expect(await dbB.getStore().append(change)).to.equal(false)
      expect(await dbB.getStore().count()).to.equal(count)
    })

    it('should round-trip a change through bytes exactly', () => {
      for (const change of changes) {
        const bytes = encodeChange(change)
        const back = decodeChange(bytes)
        expect(back.hash).to.equal(change.hash)
        expect(Buffer.from(encodeChange(back)).equals(Buffer.from(bytes))).to.equal(true)
      }
    })

    const badInputs: Array<[string, (c: StoreChange) => StoreChange | (() => StoreChange), string]> = [
      ['tampered ciphertext', (c) => ({ ...c, payload: flip(c.payload) }), 'HASH_MISMATCH'],
      ['a hash that does not match', (c) => ({ ...c, hash: 'f'.repeat(64) }), 'HASH_MISMATCH'],
      ['tampered metadata', (c) => ({ ...c, time: c.time + 1 }), 'HASH_MISMATCH'],
      ['a forged signature', (c) => ({ ...c, signature: flip(c.signature) }), 'INVALID_SIGNATURE'],
      ['a missing signature', (c) => ({ ...c, signature: new Uint8Array(3) }), 'MALFORMED_CHANGE'],
      ['an invalid document id', (c) => ({ ...c, docId: '' }), 'MALFORMED_CHANGE']
    ]
    for (const [what, mutate, code] of badInputs) {
      it(`should reject ${what} with ${code} and store nothing`, async () => {
        const bad = mutate(changes[0]) as StoreChange
        const before = await dbB.getStore().getAllChangeHashes()
        expect((await errorOf(dbB.getStore().append(bad))).code).to.equal(code)
        expect(await dbB.getStore().getAllChangeHashes()).to.deep.equal(before)
        // the store carries on
        expect(await dbB.getStore().append(changes[0])).to.equal(true)
      })
    }

    it('should check a large batch on several cores and refuse exactly the bad ones', async () => {
      const many: StoreChange[] = []
      for (let i = 0; i < 120; i++) {
        const doc = await dbA.createDocument()
        many.push(...await dbA.getStore().getChanges(await dbA.getStore().getAllChangeHashesForDoc(doc.getId())))
      }
      const outsider = await factory.createTenant({ tenantId: 'org-x', tenantEncryptionKeyPassword: 'x' })
      const dbX = await outsider.openDB('x')
      await dbX.createDocument()
      const [foreign] = await dbX.getStore().getChanges(await dbX.getStore().getAllChangeHashes())
      const forgedAt = [3, 77, 119]
      const batch = many.map((c, i) => forgedAt.includes(i) ? { ...c, signature: flip(c.signature) } : c)
      batch.splice(60, 0, foreign)
      const result = await dbB.getStore().appendMany(batch)
      expect(result.rejected.map((r) => [r.hash, r.error.code])).to.deep.equal([
        ...forgedAt.filter((i) => i < 60).map((i) => [many[i].hash, 'INVALID_SIGNATURE']),
        [foreign.hash, 'UNTRUSTED_AUTHOR'],
        ...forgedAt.filter((i) => i >= 60).map((i) => [many[i].hash, 'INVALID_SIGNATURE'])
      ])
      expect(result.added).to.have.length(many.length - forgedAt.length)
      expect(await dbB.getStore().count()).to.equal(many.length - forgedAt.length)
    })

    it('should reject changes of an untrusted author', async () => {
      const dbC = await orgB.openDB('no-trust')
      expect((await errorOf(dbC.getStore().append(changes[0]))).code).to.equal('UNTRUSTED_AUTHOR')
      expect(await dbC.getStore().count()).to.equal(0)
      await dbB.untrustPartner(orgA.getPublicInfo().signingPublicKey)
      expect((await errorOf(dbB.getStore().append(changes[0]))).code).to.equal('UNTRUSTED_AUTHOR')
    })

    it('should reject a change forged by a trusted tenant in another author\'s name', async () => {
      // org B signs a change but claims org A wrote it (a later change: a creation would fail NOT_CREATOR first)
      const dbOwn = await orgB.openDB('own', { defaultKeyId: 'k' })
      const made = await dbOwn.createDocument()
      await dbOwn.changeDoc(made, (d) => { d.getData().x = 1 })
      const all = await dbOwn.getStore().getChanges(await dbOwn.getStore().getAllChangeHashes())
      const byB = all.find((c) => c.deps.length > 0) as StoreChange
      const { computeChangeHash } = await import('../../src/store/change.js')
      const claimed = { ...byB, author: orgA.getPublicInfo().signingPublicKey }
      const forged = { ...claimed, hash: computeChangeHash(claimed, claimed.payload) }
      expect((await errorOf(dbB.getStore().append(forged))).code).to.equal('INVALID_SIGNATURE')
    })

    it('should reject truncated and garbage bytes', async () => {
      const bytes = encodeChange(changes[0])
      for (const cut of [0, 3, 10, 60, bytes.length - 1]) {
        expect(() => decodeChange(bytes.subarray(0, cut))).to.throw().with.property('code', 'MALFORMED_CHANGE')
      }
      expect(() => decodeChange(new Uint8Array(300).fill(7))).to.throw().with.property('code', 'MALFORMED_CHANGE')
      expect(() => decodeChange(Buffer.concat([bytes, Buffer.from([0])]))).to.throw().with.property('code', 'MALFORMED_CHANGE')
      expect((await errorOf(dbB.getStore().append('junk' as unknown as StoreChange))).code).to.equal('MALFORMED_CHANGE')
      expect(await dbB.getStore().count()).to.equal(0)
    })
  })
})

function flip (bytes: Uint8Array): Uint8Array {
  const copy = Uint8Array.from(bytes)
  copy[copy.length >> 1] ^= 0x01
  return copy
}
