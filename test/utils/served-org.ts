/**
 * Shared by the persisted served-set tests (test/sync/served-index.spec.ts) and their crash child
 * (test/utils/index-writer.ts): an organisation on disk with a database and a partner writing into it, the
 * served sets under test, and random writes that make documents start and stop matching.
 */
import type { MindooDB, MindooTenant, TenantFactory } from '../../src/index.js'
import { createReconcileSet } from '../../src/sync/reconcile/index.js'
import { ServedSet } from '../../src/sync/served-set.js'
import { filterIdentity, policyOf, type ShareDirection, type ShareFilter } from '../../src/sync/share.js'
import { testFactory } from './tmp.js'

export interface SetSpec {
  name: string
  filter: ShareFilter
  direction: ShareDirection
}

export const SPECS: SetSpec[] = [
  { name: 'all', filter: { kind: 'all' }, direction: 'both' },
  { name: 'all-receive', filter: { kind: 'all' }, direction: 'receive' },
  { name: 'keys', filter: { kind: 'keys', keyIds: ['k1'] }, direction: 'both' },
  { name: 'selector', filter: { kind: 'selector', selector: { type: 'a' } }, direction: 'both' },
  { name: 'type-receive', filter: { kind: 'type', types: ['b'] }, direction: 'receive' }
]

export interface Org {
  factory: TenantFactory
  tenant: MindooTenant
  partner: MindooTenant
  db: MindooDB
  outbox: MindooDB
}

export async function openOrg (dataDir: string, create: boolean): Promise<Org> {
  const { factory } = await testFactory({ dataDir })
  let tenant: MindooTenant
  let partner: MindooTenant
  if (create) {
    tenant = await factory.createTenant({ tenantId: 'org-a', tenantEncryptionKeyPassword: 'a' })
    partner = await factory.createTenant({ tenantId: 'org-b', tenantEncryptionKeyPassword: 'b' })
    for (const keyId of ['k1', 'k2']) {
      const blob = await factory.createSymmetricEncryptedPrivateKey(`${keyId}-pw`)
      await tenant.importNamedKey(keyId, blob, `${keyId}-pw`)
      await partner.importNamedKey(keyId, blob, `${keyId}-pw`)
    }
  } else {
    tenant = await factory.openTenant('org-a')
    partner = await factory.openTenant('org-b')
  }
  const db = await tenant.openDB('orders', { defaultKeyId: 'k1' })
  await db.trustPartner(partner.getPublicInfo())
  const outbox = await partner.openDB('outbox', { defaultKeyId: 'k1' })
  return { factory, tenant, partner, db, outbox }
}

export function makeSet (org: Org, spec: SetSpec, persisted: boolean, checkpointEvery?: number): ServedSet {
  return new ServedSet({
    db: org.db, index: createReconcileSet(), state: persisted ? org.tenant.openIndexState('orders', spec.name) : undefined
  }, {
    policy: policyOf(spec.filter),
    identity: filterIdentity(spec.filter),
    direction: spec.direction,
    ownAuthor: org.tenant.getPublicInfo().signingPublicKey,
    checkpointEvery
  })
}

export const itemsOf = (set: ServedSet): string[] => [...set.index.items()].map((i) => `${i.timestamp}:${i.id}`)

export /** One random write: local creates and changes (under k1 or k2, type a or b), deletes, and a partner's writes. */
async function randomWrite (org: Org, rnd: () => number, docs: string[], theirs: string[]): Promise<void> {
  const r = rnd()
  const type = rnd() < 0.5 ? 'a' : 'b'
  if (docs.length === 0 || r < 0.25) {
    const doc = await org.db.createDocument({ keyId: rnd() < 0.7 ? 'k1' : 'k2' })
    await org.db.changeDoc(doc, (d) => { d.getData().type = type })
    docs.push(doc.getId())
  } else if (r < 0.65) {
    // flips the type (a document starts or stops matching) or touches another field
    const docId = docs[Math.floor(rnd() * docs.length)]
    await org.db.changeDoc(docId, (d) => { if (rnd() < 0.6) d.getData().type = type; else d.getData().n = Math.floor(rnd() * 100) })
  } else if (r < 0.72) {
    const docId = docs.splice(Math.floor(rnd() * docs.length), 1)[0]
    await org.db.deleteDocument(docId)
  } else {
    // the partner writes; its changes arrive through the store, as sync brings them
    if (theirs.length === 0 || rnd() < 0.4) {
      const doc = await org.outbox.createDocument()
      await org.outbox.changeDoc(doc, (d) => { d.getData().type = type })
      theirs.push(doc.getId())
    } else {
      const docId = theirs[Math.floor(rnd() * theirs.length)]
      await org.outbox.changeDoc(docId, (d) => { d.getData().type = type })
    }
    const missing = await org.outbox.getStore().findNewChanges(await org.db.getStore().getAllChangeHashes())
    const { added } = await org.db.getStore().appendMany(await org.outbox.getStore().getChanges(missing))
    await org.db.syncStoreChanges(added)
  }
}

