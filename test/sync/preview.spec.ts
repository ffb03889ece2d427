/**
 * previewShare in one process (real LevelDB, real crypto): the same served set a started share builds, for each
 * filter kind and direction, and the documents a field filter refuses because this tenant cannot read them.
 */
import { expect } from 'chai'
import type { MindooDB, MindooTenant, TenantFactory } from '../../src/index.js'
import { previewShare, UNREADABLE_TYPE } from '../../src/sync/preview.js'
import type { ShareDirection, ShareFilter } from '../../src/sync/share.js'
import { testFactory } from '../utils/tmp.js'

describe('sync: share preview', () => {
  let factory: TenantFactory
  let cleanup: () => Promise<void>
  let a: MindooTenant
  let dbA: MindooDB
  let foreignDoc: string

  beforeEach(async () => {
    ({ factory, cleanup } = await testFactory())
    a = await factory.createTenant({ tenantId: 'org-a', tenantEncryptionKeyPassword: 'pw-a' })
    const b = await factory.createTenant({ tenantId: 'org-b', tenantEncryptionKeyPassword: 'pw-b' })
    const blob = await factory.createSymmetricEncryptedPrivateKey('shared-pw')
    await a.importNamedKey('shared', blob, 'shared-pw')
    await b.importNamedKey('shared', blob, 'shared-pw')
    dbA = await a.openDB('main')
    const dbB = await b.openDB('main')
    await dbA.trustPartner(b.getPublicInfo())
    for (const [type, keyId] of [['order', 'shared'], ['order', undefined], ['memo', 'shared']] as const) {
      const doc = await dbA.createDocument({ keyId })
      await dbA.changeDoc(doc, (d) => { d.getData().type = type })
    }
    // B's document under B's own key: A stores it but cannot read it
    const foreign = await dbB.createDocument()
    await dbB.changeDoc(foreign, (d) => { d.getData().type = 'order' })
    foreignDoc = foreign.getId()
    const hashes = await dbB.getStore().getAllChangeHashes()
    for (const c of await dbB.getStore().getChanges(hashes)) await dbA.getStore().append(c)
    await dbA.syncStoreChanges(hashes)
  })

  afterEach(async () => {
    await cleanup()
  })

  const preview = async (filter: ShareFilter, direction: ShareDirection = 'both'): ReturnType<typeof previewShare> =>
    await previewShare({ db: dbA, hasKey: (k) => a.hasNamedKey(k) }, { filter, direction, ownAuthor: a.getPublicInfo().signingPublicKey })

  it('should count served documents by type and key, and refuse the unreadable one under a field filter', async () => {
    const p = await preview({ kind: 'type', types: ['order'] })
    expect(p.total).to.deep.equal({ documents: 4, changes: 8 })
    expect(p.served.byType).to.deep.equal({ order: { documents: 2, changes: 4 } })
    expect(p.served.byKey).to.deep.equal({ shared: { documents: 1, changes: 2 }, 'tenant:org-a': { documents: 1, changes: 2 } })
    expect(p.refused).to.deep.include({ documents: 1, changes: 2, missingKey: 1, sample: [foreignDoc] })
    expect(p.notServed).to.deep.equal({ documents: 1, changes: 2 })
  })

  it('should serve ciphertext under `all` and by key id under `keys`, refusing nothing', async () => {
    const all = await preview({ kind: 'all' })
    expect(all.served.documents).to.equal(4)
    expect(all.served.byType[UNREADABLE_TYPE]).to.deep.equal({ documents: 1, changes: 2 })
    expect(all.refused.documents).to.equal(0)
    const keys = await preview({ kind: 'keys', keyIds: ['shared'] })
    expect(keys.served).to.include({ documents: 2, changes: 4 })
    expect(keys.served.byKey).to.deep.equal({ shared: { documents: 2, changes: 4 } })
    expect(keys.refused.documents).to.equal(0)
    expect(keys.notServed).to.deep.equal({ documents: 2, changes: 4 })
  })

  it('should leave this side\'s own changes out with direction receive, and serve nothing from a missing database', async () => {
    const p = await preview({ kind: 'all' }, 'receive')
    expect(p.served).to.include({ documents: 1, changes: 2 })
    expect(p.served.sample).to.deep.equal([foreignDoc])
    const none = await previewShare({ db: undefined, hasKey: () => true }, { filter: { kind: 'all' }, direction: 'both', ownAuthor: 'x' })
    expect(none).to.deep.include({ databaseExists: false, total: { documents: 0, changes: 0 } })
  })
})
