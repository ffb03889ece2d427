/**
 * `npm run demo`: three organisations as three real `mindoodb daemon` processes on 127.0.0.1 — a supplier, a
 * customer and a research partner — set up entirely through the `mindoodb` CLI, showing filtered, two-way,
 * cross-tenant sync; then all three are stopped. Data goes to ./data/demo (MINDOODB_DEMO_DIR), recreated each run.
 *
 *   supplier <-- share "orders": the supplier serves only {type: "order"}; the customer serves everything -->  customer
 *   supplier <-- share "research": documents under the named key "research-key" only -->  university
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'

const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url))
const dir = resolve(process.env.MINDOODB_DEMO_DIR ?? 'data/demo')

interface Org { name: string, config: string, socket: string, daemon?: ChildProcess, partner?: Record<string, unknown> }

/** Runs `mindoodb <args>` and returns its stdout; a non-zero exit is an error with its stderr. */
async function cli (org: Org | undefined, ...args: string[]): Promise<string> {
  const global = org === undefined ? [] : ['--config', org.config]
  return await new Promise((resolve, reject) => {
    execFile(process.execPath, [CLI, ...global, ...args], { timeout: 60_000 }, (err, stdout, stderr) => {
      if (err != null) reject(new Error(`mindoodb ${args.join(' ')} failed: ${stderr.trim() || err.message}`))
      else resolve(stdout)
    })
  })
}

const json = async (org: Org, ...args: string[]): Promise<any> => JSON.parse(await cli(org, '--json', ...args)) // eslint-disable-line @typescript-eslint/no-explicit-any

async function startDaemon (org: Org): Promise<void> {
  const child = spawn(process.execPath, [CLI, 'daemon', '--config', org.config], { stdio: ['ignore', 'pipe', 'ignore'] })
  org.daemon = child
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { reject(new Error(`${org.name} did not become ready`)) }, 30_000)
    child.once('exit', (code) => { reject(new Error(`${org.name} exited with ${String(code)}`)) })
    createInterface({ input: child.stdout }).on('line', (line) => {
      if (line.includes('"msg":"ready"')) {
        clearTimeout(timer)
        resolve()
      }
    })
  })
}

async function stopDaemon (org: Org): Promise<void> {
  const child = org.daemon
  if (child === undefined || child.exitCode !== null) return
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill('SIGTERM')
  await exited
}

async function until (what: string, check: () => Promise<boolean>): Promise<number> {
  const start = Date.now()
  while (Date.now() - start < 20_000) {
    if (await check().catch(() => false)) return Date.now() - start
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  throw new Error(`timed out waiting for ${what}`)
}

async function titles (org: Org, database: string): Promise<string[]> {
  const { documents } = await json(org, 'doc', 'list', database, '--all')
  return documents.map((d: { data: { type?: string, title?: string } }) => `${d.data.type ?? '?'}: ${d.data.title ?? ''}`)
}

async function main (): Promise<void> {
  await rm(dir, { recursive: true, force: true })
  await mkdir(dir, { recursive: true })
  const orgs: Org[] = ['acme-supplier', 'globex-customer', 'uni-research'].map((name) => ({
    name, config: join(dir, `${name}.json`), socket: join(dir, name, 'rpc.sock')
  }))
  const [supplier, customer, uni] = orgs
  const step = (text: string): void => { console.log(`\n== ${text}`) }
  try {
    step('mindoodb init: a tenant, a libp2p identity and a config file per organisation')
    for (const org of orgs) {
      const id = await json(org, 'init', '--tenant', org.name, '--data-dir', join(dir, org.name), '--listen', '/ip4/127.0.0.1/tcp/0')
      console.log(`   ${org.name.padEnd(16)} peer ${String(id.peerId)}`)
    }
    step('mindoodb daemon: three processes')
    await Promise.all(orgs.map(startDaemon))
    for (const org of orgs) {
      const info = await json(org, 'rpc', 'node.info')
      org.partner = { peerId: info.peerId, tenant: info.tenant, addresses: info.addresses }
      console.log(`   ${org.name.padEnd(16)} pid ${String(info.pid)} on ${String(info.addresses[0])}`)
    }

    step('named keys, created by the supplier and handed over out of band (blob + password)')
    const secret = async (name: string, value: string): Promise<string> => {
      const path = join(dir, name)
      await writeFile(path, value, { mode: 0o600 })
      return path
    }
    for (const [keyId, partner] of [['orders-key', customer], ['research-key', uni]] as const) {
      const pw = await secret(`${keyId}.password`, `${keyId}-password-${Date.now()}`)
      const blob = await secret(`${keyId}.blob`, (await cli(supplier, 'key', 'create', keyId, '--password-file', pw)).trim())
      await cli(partner, 'key', 'import', keyId, '--blob-file', blob, '--password-file', pw)
      console.log(`   ${keyId}: supplier -> ${partner.name}`)
    }

    step('shares: each side decides what it serves')
    const share = async (org: Org, partner: Org, def: Record<string, unknown>): Promise<void> => {
      const file = await secret(`${org.name}-${String(def.id)}.share.json`, JSON.stringify({ ...def, partners: [partner.partner] }))
      await cli(org, 'share', 'add', '--file', file)
      console.log(`   ${org.name.padEnd(16)} ${String(def.id).padEnd(9)} db ${String(def.database).padEnd(16)} serves ${JSON.stringify(def.filter)}`)
    }
    // a topic secret per share: random (`mindoodb share secret`), agreed out of band by its participants
    const topicSecret = async (): Promise<string> => (await cli(supplier, 'share', 'secret')).trim()
    const orders = { id: 'orders', topicSecret: await topicSecret() }
    await share(supplier, customer, { ...orders, database: 'customer-orders', filter: { kind: 'type', types: ['order'] } })
    await share(customer, supplier, { ...orders, database: 'supplier-orders', filter: { kind: 'all' } })
    const research = { id: 'research', topicSecret: await topicSecret(), database: 'research', filter: { kind: 'keys', keyIds: ['research-key'] } }
    await share(supplier, uni, research)
    await share(uni, supplier, research)

    step('the customer places an order; the supplier ships it; both edit concurrently')
    const order = await json(customer, 'doc', 'create', 'supplier-orders', '--key', 'orders-key', '--data', JSON.stringify({ type: 'order', title: '500 widgets', status: 'pending' }))
    console.log(`   order at the supplier after ${await until('the order at the supplier', async () => (await json(supplier, 'doc', 'get', 'customer-orders', order.docId)).data.status === 'pending')} ms`)
    await cli(supplier, 'doc', 'change', 'customer-orders', order.docId, '--patch', '{"status":"shipped"}')
    await cli(customer, 'doc', 'change', 'supplier-orders', order.docId, '--patch', '{"deliveryWindow":"week 49"}')
    await until('both edits on both sides', async () => {
      const [a, b] = await Promise.all([json(supplier, 'doc', 'get', 'customer-orders', order.docId), json(customer, 'doc', 'get', 'supplier-orders', order.docId)])
      return [a, b].every((d) => d.data.status === 'shipped' && d.data.deliveryWindow === 'week 49')
    })
    await cli(supplier, 'doc', 'create', 'customer-orders', '--data', '{"type":"note","title":"margin 40% on widgets"}')

    step('the supplier and the university work on a study under the research key')
    const study = await json(supplier, 'doc', 'create', 'research', '--key', 'research-key', '--data', '{"type":"study","title":"widget fatigue tests"}')
    await cli(supplier, 'doc', 'create', 'research', '--data', '{"type":"memo","title":"supplier-only memo"}')
    await until('the study at the university', async () => (await json(uni, 'doc', 'get', 'research', study.docId)).data.title !== undefined)
    await cli(uni, 'doc', 'change', 'research', study.docId, '--patch', '{"result":"passes 10^6 cycles"}')
    await until('the result at the supplier', async () => (await json(supplier, 'doc', 'get', 'research', study.docId)).data.result !== undefined)
    await cli(supplier, 'sync', 'now', '--wait')

    step('what each organisation sees')
    console.log(`   supplier  customer-orders ${JSON.stringify(await titles(supplier, 'customer-orders'))}`)
    console.log(`   customer  supplier-orders ${JSON.stringify(await titles(customer, 'supplier-orders'))}   (no supplier note: not an order)`)
    console.log(`   supplier  research        ${JSON.stringify(await titles(supplier, 'research'))}`)
    console.log(`   uni       research        ${JSON.stringify(await titles(uni, 'research'))}   (no memo: not under research-key)`)
    step('mindoodb status (supplier)')
    console.log((await cli(supplier, 'status')).trimEnd().split('\n').map((l) => `   ${l}`).join('\n'))
  } finally {
    step('stopping the daemons')
    await Promise.all(orgs.map(stopDaemon))
    console.log('   all stopped')
  }
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
