/**
 * MindooTenant.openSnapshot (what a backup reads): one point in time across every database of the tenant, however
 * much is written while it is read.
 */
import { expect } from 'chai'
import type { MindooTenant, TenantFactory } from '../../src/index.js'
import { testFactory } from '../utils/tmp.js'

describe('core: tenant snapshot', () => {
  let factory: TenantFactory
  let cleanup: () => Promise<void>
  let tenant: MindooTenant

  beforeEach(async () => {
    ({ factory, cleanup } = await testFactory())
    tenant = await factory.createTenant({ tenantId: 'org', tenantEncryptionKeyPassword: 'pw' })
  })

  afterEach(async () => {
    await cleanup()
  })

  const count = async (snapshot: { entries: () => AsyncGenerator<[Uint8Array, Uint8Array]> }): Promise<number> => {
    let n = 0
    for await (const _ of snapshot.entries()) n++ // eslint-disable-line @typescript-eslint/no-unused-vars
    return n
  }

  it('should read the state of the moment it was opened, across databases, while writes go on', async () => {
    const [x, y] = [await tenant.openDB('x'), await tenant.openDB('y')]
    for (let i = 0; i < 5; i++) {
      await x.createDocument()
      await y.createDocument()
    }
    const first = await tenant.openSnapshot(async () => 'captured')
    const before = await count(first)
    for (let i = 0; i < 20; i++) await (i % 2 === 0 ? x : y).createDocument()
    const second = await tenant.openSnapshot(async () => 'again')
    try {
      expect(first.captured).to.equal('captured')
      expect(await count(first)).to.equal(before)
      expect(await count(second)).to.be.greaterThan(before)
    } finally {
      await first.close()
      await second.close()
    }
  })
})
