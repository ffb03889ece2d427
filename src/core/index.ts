/**
 * The MindooDB library: tenants, databases, documents, named keys and the changefeed, on LevelDB.
 * No network here: sync moves changes between stores through the AppendOnlyStore API.
 *
 * @example
 * ```ts
 * const factory = await createTenantFactory({ dataDir: './data' })
 * const orgA = await factory.createTenant({ tenantId: 'org-a', tenantEncryptionKeyPassword: 'pw' })
 * const db = await orgA.openDB('collaboration')
 * const doc = await db.createDocument()
 * await db.changeDoc(doc, (d) => { d.getData().content = 'hello' })
 * for await (const { doc, cursor } of db.iterateChangesSince(null)) console.log(doc.getId(), cursor)
 * ```
 */
export { createTenantFactory, TenantFactory, tenantPaths } from './factory.js'
export type { CreateTenantOptions, OpenTenantOptions, TenantFactoryOptions } from './factory.js'
export { MindooTenant, TENANT_KEY_PREFIX } from './tenant.js'
export type { IndexState } from './tenant.js'
export type { TenantSnapshot } from './tenant.js'
export { MindooDB } from './db.js'
export type {
  CreateDocumentOptions, DocumentsChangedEvent, DocumentsChangedListener, MaterialiseQueueLimits, MaterialiseResult, MaterialiseStats,
  OpenDBOptions, ProcessChangesCursor,
  TenantPublicInfo
} from './db.js'
export { MindooDoc } from './doc.js'
export type { DocData, DocMeta } from './doc.js'
export type { KeyInfo } from './keyring.js'
export { isDocString, isScalarString, plainValue, spliceText, toScalarStrings } from './values.js'
export type { DocPath } from './values.js'
