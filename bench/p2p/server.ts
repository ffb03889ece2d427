/**
 * Organisations (a tenant, its database `shared` and a node) as the scenarios open them, and org A (the serving
 * side) in this process or in a child process behind IPC. On this 2-core machine two nodes in one process would
 * share one JavaScript thread, and the receiver would pay the sender's work too: A runs in a child by default.
 */
import { fork, type ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import {
  createTenantFactory, type MindooDB, type MindooTenant, type ShareConfig, type TenantFactory, type TenantPublicInfo
} from '../../src/index.js'
import { createMindooNode, type MindooNode, type MindooNodeInit, type ShareStatus } from '../../src/p2p/index.js'
import { BENCH_KDF, cpuMs, KEY_ID, KEY_PASSWORD, TOPIC_SECRET, wall } from './common.js'

export interface Org {
  name: string
  factory: TenantFactory
  tenant: MindooTenant
  db: MindooDB
  node: MindooNode
  dir: string
}

export const factoryDir = (dir: string): string => join(dir, 'tenants-root')

export async function openOrg (name: string, dir: string, create: boolean, init: Partial<MindooNodeInit> = {}, keyBlob?: string): Promise<Org> {
  const factory = await createTenantFactory({ dataDir: factoryDir(dir), keyWrapping: BENCH_KDF })
  const tenant = create
    ? await factory.createTenant({ tenantId: name, tenantEncryptionKeyPassword: `${name}-pw` })
    : await factory.openTenant(name)
  if (keyBlob !== undefined && !tenant.hasNamedKey(KEY_ID)) await tenant.importNamedKey(KEY_ID, keyBlob, KEY_PASSWORD)
  const db = await tenant.openDB('shared', { defaultKeyId: KEY_ID })
  const node = await createMindooNode({ tenant, dataDir: join(dir, 'node'), dht: false, syncIntervalMs: 0, ...init })
  await node.start()
  return { name, factory, tenant, db, node, dir }
}

export async function closeOrg (org: Org): Promise<void> {
  await org.node.stop()
  await org.factory.close()
}

export interface PartnerInfo { peerId: string, tenant: TenantPublicInfo, addresses: string[] }

export const partnerOf = (org: Org): PartnerInfo => ({ peerId: org.node.peerId, tenant: org.tenant.getPublicInfo(), addresses: org.node.getMultiaddrs() })

export function shareFor (partners: Array<{ peerId: string, tenant: TenantPublicInfo, addresses?: string[] }>, overrides: Partial<ShareConfig> = {}): ShareConfig {
  return {
    id: 'shared',
    topicSecret: TOPIC_SECRET,
    database: 'shared',
    direction: 'both',
    filter: { kind: 'all' },
    enabled: true,
    partners: partners.map((p) => ({ peerId: p.peerId, tenant: p.tenant, addresses: p.addresses })),
    ...overrides
  }
}

/** Org A as the cold and live parts use it, wherever it runs. */
export interface ServerHandle {
  info: PartnerInfo
  addShare: (share: ShareConfig) => Promise<void>
  /** Changes a document; resolves with the wall-clock time taken just before `changeDoc`. */
  change: (docId: string, value: number) => Promise<{ t0: number }>
  status: () => Promise<ShareStatus[]>
  cpuMs: () => Promise<number>
  stop: () => Promise<void>
  where: 'child process' | 'same process'
}

/** The operations of org A, used directly in this process or behind the child's IPC. */
export function serverOps (org: Org): Omit<ServerHandle, 'where'> {
  return {
    info: partnerOf(org),
    addShare: async (share) => {
      await org.node.addShare(share)
      // the round it starts at once is refused (B's share is still disabled); wait for that, so it is over
      await org.node.syncNow(share.id)
    },
    change: async (docId, value) => {
      const t0 = wall()
      await org.db.changeDoc(docId, (d) => { d.getData().live = value })
      return { t0 }
    },
    status: async () => org.node.status(),
    cpuMs: async () => cpuMs(),
    stop: async () => { await closeOrg(org) }
  }
}

export type ChildRequest = { id: number, cmd: 'open', dir: string } | { id: number, cmd: 'addShare', share: ShareConfig } |
{ id: number, cmd: 'change', docId: string, value: number } | { id: number, cmd: 'status' } | { id: number, cmd: 'cpu' } | { id: number, cmd: 'stop' }
export type ChildReply = { id: number, ok: true, result: unknown } | { id: number, ok: false, error: string }
export type WithoutId<T> = T extends unknown ? Omit<T, 'id'> : never

export const SERVER_INIT: Partial<MindooNodeInit> = { backoffBaseMs: 3_600_000 }

export async function startServer (dir: string, inProcess: boolean): Promise<ServerHandle> {
  if (inProcess) {
    return { ...serverOps(await openOrg('org-a', dir, false, SERVER_INIT)), where: 'same process' }
  }
  const execArgv = ['--expose-gc']
  const prof = process.env.BENCH_CHILD_PROF
  if (prof !== undefined && prof !== '') execArgv.push('--cpu-prof', `--cpu-prof-dir=${prof}`)
  const child: ChildProcess = fork(fileURLToPath(import.meta.url), ['--p2p-child'], {
    execArgv, serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc']
  })
  let nextId = 0
  const pending = new Map<number, PromiseWithResolvers<unknown>>()
  child.on('message', (msg: unknown) => {
    const m = msg as ChildReply
    const p = pending.get(m.id)
    pending.delete(m.id)
    if (m.ok) p?.resolve(m.result)
    else p?.reject(new Error(`child: ${m.error}`))
  })
  const exited = new Promise<void>((resolve) => {
    child.on('exit', (code) => {
      for (const p of pending.values()) p.reject(new Error(`child exited with ${String(code)}`))
      pending.clear()
      resolve()
    })
  })
  const call = async <T>(req: WithoutId<ChildRequest>): Promise<T> => {
    const id = nextId++
    const p = Promise.withResolvers<unknown>()
    pending.set(id, p)
    child.send({ ...req, id })
    return await p.promise as T
  }
  const info = await call<PartnerInfo>({ cmd: 'open', dir })
  return {
    info,
    addShare: async (share) => { await call({ cmd: 'addShare', share }) },
    change: async (docId, value) => await call<{ t0: number }>({ cmd: 'change', docId, value }),
    status: async () => await call<ShareStatus[]>({ cmd: 'status' }),
    cpuMs: async () => await call<number>({ cmd: 'cpu' }),
    stop: async () => {
      await call({ cmd: 'stop' })
      await exited
    },
    where: 'child process'
  }
}

/** The child's side: org A behind IPC. */
export async function childMain (): Promise<void> {
  let ops: Omit<ServerHandle, 'where'> | undefined
  const need = (): Omit<ServerHandle, 'where'> => {
    if (ops === undefined) throw new Error('not open')
    return ops
  }
  process.on('message', (msg: unknown) => {
    const req = msg as ChildRequest
    const handle = async (): Promise<unknown> => {
      switch (req.cmd) {
        case 'open':
          ops = serverOps(await openOrg('org-a', req.dir, false, SERVER_INIT))
          return ops.info
        case 'addShare': return await need().addShare(req.share)
        case 'change': return await need().change(req.docId, req.value)
        case 'status': return await need().status()
        case 'cpu': return await need().cpuMs()
        case 'stop':
          await need().stop()
          setImmediate(() => process.exit(0))
          return null
      }
    }
    handle().then(
      (result) => { process.send?.({ id: req.id, ok: true, result } satisfies ChildReply) },
      (err: unknown) => { process.send?.({ id: req.id, ok: false, error: String((err as Error)?.stack ?? err) } satisfies ChildReply) }
    )
  })
}


if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href && process.argv.includes('--p2p-child')) {
  void childMain()
}
