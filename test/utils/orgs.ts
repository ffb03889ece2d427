import { join } from 'node:path'
import { createMindooNode, type MindooNode, type MindooNodeInit } from '../../src/p2p/index.js'
import type { MindooTenant, ShareConfig, TenantFactory } from '../../src/index.js'
import { testFactory } from './tmp.js'

/** One organisation of a test: its own data directory, tenant and (started) node on 127.0.0.1. */
export interface TestOrg {
  name: string
  factory: TenantFactory
  tenant: MindooTenant
  node: MindooNode
  dataDir: string
  /** Stops the node and starts a fresh one on the same data directory (same identity). */
  restart: (init?: Partial<MindooNodeInit>) => Promise<void>
  cleanup: () => Promise<void>
}

export async function createOrg (name: string, init: Partial<MindooNodeInit> = {}): Promise<TestOrg> {
  const { factory, dataDir, cleanup } = await testFactory()
  const tenant = await factory.createTenant({ tenantId: name, tenantEncryptionKeyPassword: `${name}-pw` })
  const nodeInit = (extra: Partial<MindooNodeInit>): MindooNodeInit => ({
    tenant, dataDir: join(dataDir, 'node'), syncIntervalMs: 0, dht: false, ...init, ...extra
  })
  const org: TestOrg = {
    name,
    factory,
    tenant,
    node: await createMindooNode(nodeInit({})),
    dataDir,
    restart: async (extra = {}) => {
      const shares = org.node.listShares()
      await org.node.stop()
      org.node = await createMindooNode(nodeInit({ shares, listen, ...extra }))
      await org.node.start()
    },
    cleanup: async () => {
      await org.node.stop()
      await cleanup()
    }
  }
  await org.node.start()
  // restarts listen where the node listened first, so partners' configured addresses stay right
  const listen = org.node.getMultiaddrs().map((a) => a.replace(/\/p2p\/.*$/, ''))
  return org
}

/** A share on `self`'s side with `partners`; everything but the partners can be overridden. */
export function shareWith (partners: TestOrg[], overrides: Partial<ShareConfig> = {}): ShareConfig {
  return {
    id: 'shared',
    topicSecret: 'test-topic-secret-0123456789',
    database: 'shared',
    direction: 'both',
    filter: { kind: 'all' },
    enabled: true,
    partners: partners.map((p) => ({ peerId: p.node.peerId, tenant: p.tenant.getPublicInfo(), addresses: p.node.getMultiaddrs() })),
    ...overrides
  }
}

/** Gives every org the same named key. */
export async function shareKey (orgs: TestOrg[], keyId: string): Promise<void> {
  const blob = await orgs[0].factory.createSymmetricEncryptedPrivateKey('shared-key-pw')
  for (const org of orgs) await org.tenant.importNamedKey(keyId, blob, 'shared-key-pw')
}

/** Polls `condition` until it holds, at most `timeoutMs`; throws with `what` when it never does. */
export async function waitFor (condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 15_000, intervalMs = 20): Promise<void> {
  const end = Date.now() + timeoutMs
  while (Date.now() < end) {
    if (await condition()) return
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
  throw new Error(`timed out waiting for ${what}`)
}
