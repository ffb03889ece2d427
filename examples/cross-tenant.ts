/**
 * A runnable tour of the cross-tenant collaboration patterns, in one process, on LevelDB on disk.
 * `npm start` runs it; data goes to ./data/example (or MINDOODB_EXAMPLE_DIR), recreated on each run.
 */
import { rm } from 'node:fs/promises'
import { resolve } from 'node:path'
import { createTenantFactory, type MindooDB, type MindooDoc } from '../src/index.js'

async function syncStores (source: MindooDB, target: MindooDB): Promise<number> {
  const newHashes = await source.getStore().findNewChanges(await target.getStore().getAllChangeHashes())
  if (newHashes.length > 0) {
    for (const change of await source.getStore().getChanges(newHashes)) await target.getStore().append(change)
    await target.syncStoreChanges(newHashes)
  }
  return newHashes.length
}

async function syncFiltered (source: MindooDB, target: MindooDB, filter: (doc: MindooDoc) => boolean): Promise<number> {
  let moved = 0
  for await (const { doc } of source.iterateChangesSince(null)) {
    if (!filter(doc)) continue
    const hashes = await source.getStore().getAllChangeHashesForDoc(doc.getId())
    for (const change of await source.getStore().getChanges(hashes)) {
      if (await target.getStore().append(change)) moved++
    }
  }
  return moved
}

async function list (db: MindooDB): Promise<string[]> {
  const out: string[] = []
  for await (const { doc } of db.iterateChangesSince(null)) out.push(JSON.stringify(doc.getData()))
  return out
}

async function main (): Promise<void> {
  const dataDir = resolve(process.env.MINDOODB_EXAMPLE_DIR ?? 'data/example')
  await rm(dataDir, { recursive: true, force: true })
  const factory = await createTenantFactory({ dataDir })
  console.log(`MindooDB cross-tenant example — data in ${dataDir}\n`)

  const supplier = await factory.createTenant({ tenantId: 'acme-supplier', tenantEncryptionKeyPassword: 'supplier-pw' })
  const customer = await factory.createTenant({ tenantId: 'globex-customer', tenantEncryptionKeyPassword: 'customer-pw' })
  console.log('tenants:', supplier.getPublicInfo(), customer.getPublicInfo())

  // a named key both organisations hold: only documents under it are readable by the partner
  const ordersKey = await factory.createSymmetricEncryptedPrivateKey('orders-key-password')
  await supplier.importNamedKey('orders-key', ordersKey, 'orders-key-password')
  await customer.importNamedKey('orders-key', ordersKey, 'orders-key-password')

  const supplierDB = await supplier.openDB('customer-orders')
  const customerDB = await customer.openDB('supplier-orders')
  await supplierDB.trustPartner(customer.getPublicInfo())
  await customerDB.trustPartner(supplier.getPublicInfo())

  // the customer places an order; the supplier keeps an internal note under its own key
  const order = await customerDB.createDocument({ keyId: 'orders-key' })
  await customerDB.changeDoc(order, (d) => { Object.assign(d.getData(), { type: 'order', item: 'widgets', quantity: 500, status: 'pending', visibility: 'public' }) })
  const note = await supplierDB.createDocument()
  await supplierDB.changeDoc(note, (d) => { Object.assign(d.getData(), { type: 'note', text: 'margin 40%', visibility: 'private' }) })

  console.log(`\ncustomer -> supplier: ${await syncStores(customerDB, supplierDB)} changes`)
  await supplierDB.changeDoc(order.getId(), (d) => { d.getData().status = 'shipped' })
  await customerDB.changeDoc(order.getId(), (d) => { d.getData().deliveryWindow = 'week 49' })
  console.log(`supplier -> customer (filtered to public documents): ${await syncFiltered(supplierDB, customerDB, (doc) => doc.getData().visibility === 'public')} changes`)
  console.log(`customer -> supplier: ${await syncStores(customerDB, supplierDB)} changes`)

  console.log('\nsupplier sees:', await list(supplierDB))
  console.log('customer sees:', await list(customerDB))
  const merged = (await customerDB.getDocument(order.getId())).getData()
  console.log(`\nconcurrent edits merged by Automerge: status=${merged.status}, deliveryWindow=${merged.deliveryWindow}`)
  console.log(`customer store holds ${await customerDB.getStore().count()} signed, encrypted changes; the supplier's private note never left it`)
  await factory.close()
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
