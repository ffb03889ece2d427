/**
 * Three organisations, three libp2p nodes on 127.0.0.1, filtered two-way sync across tenant boundaries.
 * `npm start` runs it; data goes to ./data/demo (or MINDOODB_DEMO_DIR), recreated on each run.
 *
 *   supplier (acme)  <-- orders: {type: "order"} both ways -->  customer (globex)
 *   supplier (acme)  <-- research: named key "research-key" -->  research partner (uni)
 */
import { rm } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { createTenantFactory, type MindooDB, type MindooTenant, type ShareConfig } from '../src/index.js'
import { createMindooNode, type MindooNode } from '../src/p2p/index.js'

interface Org { name: string, tenant: MindooTenant, node: MindooNode }

async function until (what: string, check: () => Promise<boolean>, timeoutMs = 10_000): Promise<number> {
  const start = Date.now()
  while (Date.now() - start < timeoutMs) {
    if (await check().catch(() => false)) return Date.now() - start
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
  throw new Error(`timed out waiting for ${what}`)
}

function partner (org: Org): ShareConfig['partners'][number] {
  return { peerId: org.node.peerId, tenant: org.tenant.getPublicInfo(), addresses: org.node.getMultiaddrs() }
}

async function titles (db: MindooDB): Promise<string[]> {
  const out: string[] = []
  for await (const { doc } of db.iterateChangesSince(null)) out.push(`${String(doc.getData().type)}: ${String(doc.getData().title)}`)
  return out
}

async function main (): Promise<void> {
  const dataDir = resolve(process.env.MINDOODB_DEMO_DIR ?? 'data/demo')
  await rm(dataDir, { recursive: true, force: true })
  const factory = await createTenantFactory({ dataDir })
  const orgs: Org[] = []
  for (const name of ['acme-supplier', 'globex-customer', 'uni-research']) {
    const tenant = await factory.createTenant({ tenantId: name, tenantEncryptionKeyPassword: `${name}-password` })
    const node = await createMindooNode({ tenant, dataDir: join(dataDir, 'nodes', name), dht: false })
    await node.start()
    orgs.push({ name, tenant, node })
    console.log(`${name.padEnd(16)} peer ${node.peerId} on ${node.getMultiaddrs()[0]}`)
  }
  const [supplier, customer, research] = orgs

  // named keys, handed over out of band: orders readable by supplier and customer, research by supplier and uni
  const ordersKey = await factory.createSymmetricEncryptedPrivateKey('orders-pw')
  const researchKey = await factory.createSymmetricEncryptedPrivateKey('research-pw')
  for (const org of [supplier, customer]) await org.tenant.importNamedKey('orders-key', ordersKey, 'orders-pw')
  for (const org of [supplier, research]) await org.tenant.importNamedKey('research-key', researchKey, 'research-pw')

  const orders = { topicSecret: 'acme-globex-orders-topic-secret', direction: 'both' as const, enabled: true }
  await supplier.node.addShare({ ...orders, id: 'orders', database: 'customer-orders', partners: [partner(customer)], filter: { kind: 'type', types: ['order'] } })
  await customer.node.addShare({ ...orders, id: 'orders', database: 'supplier-orders', partners: [partner(supplier)], filter: { kind: 'all' } })
  const study = { topicSecret: 'acme-uni-research-topic-secret', direction: 'both' as const, enabled: true, database: 'research' }
  await supplier.node.addShare({ ...study, id: 'research', partners: [partner(research)], filter: { kind: 'keys', keyIds: ['research-key'] } })
  await research.node.addShare({ ...study, id: 'research', partners: [partner(supplier)], filter: { kind: 'keys', keyIds: ['research-key'] } })

  const supplierOrders = await supplier.tenant.openDB('customer-orders', { defaultKeyId: 'orders-key' })
  const customerOrders = await customer.tenant.openDB('supplier-orders', { defaultKeyId: 'orders-key' })

  console.log('\n1. the customer places an order; it reaches the supplier live')
  const order = await customerOrders.createDocument()
  await customerOrders.changeDoc(order, (d) => { Object.assign(d.getData(), { type: 'order', title: '500 widgets', status: 'pending' }) })
  console.log(`   at the supplier after ${await until('order at supplier', async () => (await supplierOrders.getDocument(order.getId())).getData().status === 'pending')} ms`)

  console.log('2. the supplier ships it and keeps an internal note in the same database (not an order: not served)')
  await supplierOrders.changeDoc(order.getId(), (d) => { d.getData().status = 'shipped' })
  console.log(`   status at the customer after ${await until('status at customer', async () => (await customerOrders.getDocument(order.getId())).getData().status === 'shipped')} ms`)
  const note = await supplierOrders.createDocument()
  await supplierOrders.changeDoc(note, (d) => { Object.assign(d.getData(), { type: 'note', title: 'margin 40% on widgets' }) })

  console.log('3. the supplier and the university work on a study under the research key')
  const supplierResearch = await supplier.tenant.openDB('research')
  const researchDB = await research.tenant.openDB('research')
  const doc = await supplierResearch.createDocument({ keyId: 'research-key' })
  await supplierResearch.changeDoc(doc, (d) => { Object.assign(d.getData(), { type: 'study', title: 'widget fatigue tests' }) })
  await until('study at uni', async () => (await researchDB.getAllDocumentIds()).length === 1)
  await researchDB.changeDoc(doc.getId(), (d) => { d.getData().result = 'passes 10^6 cycles' })
  await until('result at supplier', async () => (await supplierResearch.getDocument(doc.getId())).getData().result !== undefined)

  console.log('\nwhat each organisation sees:')
  console.log(`   supplier  customer-orders: ${JSON.stringify(await titles(supplierOrders))}`)
  console.log(`   customer  supplier-orders: ${JSON.stringify(await titles(customerOrders))}`)
  console.log(`   uni       research:        ${JSON.stringify(await titles(researchDB))}`)
  console.log(`   supplier  research result: ${String((await supplierResearch.getDocument(doc.getId())).getData().result)}`)
  for (const org of orgs) {
    for (const s of org.node.status()) {
      console.log(`   ${org.name.padEnd(16)} share ${s.id.padEnd(9)} served ${s.servedSetSize} changes, sent ${s.totals.changesSent}, received ${s.totals.changesReceived}, rejected ${JSON.stringify(s.totals.rejected)}`)
    }
  }
  for (const org of orgs) await org.node.stop()
  await factory.close()
  console.log('\nall nodes stopped.')
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
