/**
 * One organisation's node in a process of its own, for tests that kill it (SIGKILL) and start it again.
 *
 * Run as `node dist/test/utils/node-child.js '<ChildConfig as JSON>'`. On first start it creates the tenant and
 * imports the named key; later starts reopen them from the same data directory (same tenant, same libp2p
 * identity, same listen port). It reports on stdout, one JSON object a line:
 * - `{ event: 'ready', peerId, tenant, count }` once the node listens (`count`: changes stored at start, before
 *   any sync);
 * - `{ event: 'progress', count, totals }` every `progressMs`;
 * - `{ event: 'killing', count, totals }` when `killAt` is set and an append brought the store to `killAt` changes
 *   or more; then it kills itself with SIGKILL (a crash at a known point of a transfer, whatever the load);
 * - `{ event: 'stopped', count, totals }` after a clean stop, on a `stop` line on stdin or SIGTERM; then it exits 0;
 * - `{ event: 'error', message }` when it fails; then it exits 1.
 */
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { createTenantFactory, type ShareConfig } from '../../src/index.js'
import { createMindooNode } from '../../src/p2p/index.js'
import { TEST_KDF } from './tmp.js'

export interface ChildConfig {
  /** The organisation's data directory: tenants under it, the node's identity in `node/`. */
  dataDir: string
  /** TCP port to listen on, on 127.0.0.1. */
  port: number
  tenantId: string
  /** The named key to import on first start. */
  keyId: string
  keyBlob: string
  keyPassword: string
  share: ShareConfig
  /** Default 100. */
  progressMs?: number
  /** SIGKILL itself once the store holds this many changes (see `killing` above). */
  killAt?: number
}

function print (line: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify(line) + '\n')
}

async function main (config: ChildConfig): Promise<void> {
  const factory = await createTenantFactory({ dataDir: config.dataDir, keyWrapping: TEST_KDF })
  const tenant = (await factory.listTenants()).includes(config.tenantId)
    ? await factory.openTenant(config.tenantId)
    : await factory.createTenant({ tenantId: config.tenantId, tenantEncryptionKeyPassword: `${config.tenantId}-pw` })
  if (!tenant.hasNamedKey(config.keyId)) await tenant.importNamedKey(config.keyId, config.keyBlob, config.keyPassword)
  const db = await tenant.openDB(config.share.database)
  const node = await createMindooNode({
    tenant,
    dataDir: join(config.dataDir, 'node'),
    listen: [`/ip4/127.0.0.1/tcp/${config.port}`],
    dht: false,
    syncIntervalMs: 0,
    backoffBaseMs: 100,
    backoffMaxMs: 500
  })
  await node.start()
  print({ event: 'ready', peerId: node.peerId, tenant: tenant.getPublicInfo(), count: await db.getStore().count() })
  const totals = (): unknown => node.status(config.share.id)[0]?.totals
  if (config.killAt !== undefined) {
    const killAt = config.killAt
    let count = await db.getStore().count()
    db.getStore().onAppend((event) => {
      count += event.changes.length
      if (count < killAt) return
      print({ event: 'killing', count, totals: totals() }) // stdout is a pipe: written synchronously
      process.kill(process.pid, 'SIGKILL')
    })
  }
  await node.addShare(config.share)

  const timer = setInterval(() => {
    void db.getStore().count().then((count) => { print({ event: 'progress', count, totals: totals() }) })
  }, config.progressMs ?? 100)

  const lines = createInterface({ input: process.stdin })
  let stopping = false
  const stop = async (): Promise<void> => {
    if (stopping) return
    stopping = true
    clearInterval(timer)
    lines.close()
    const last = totals()
    await node.stop()
    const count = await db.getStore().count()
    await factory.close()
    print({ event: 'stopped', count, totals: last })
    process.exit(0)
  }
  const stopOrFail = (): void => { stop().catch(fail) }
  lines.on('line', (line) => { if (line.trim() === 'stop') stopOrFail() })
  process.on('SIGTERM', stopOrFail)
}

function fail (err: unknown): void {
  print({ event: 'error', message: String((err as Error)?.stack ?? err) })
  process.exit(1)
}

main(JSON.parse(process.argv[2] ?? '{}') as ChildConfig).catch(fail)
