/**
 * The JSON-RPC methods of the daemon: one entry per method with its parameter schema, summary and handler.
 * The same table drives dispatch, parameter validation (-32602 naming the parameter) and the OpenRPC document
 * (`rpc.discover`). Handlers are thin: they validate, call the library or the node, and shape the result.
 */
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv'
import { isDocString, spliceText, toScalarStrings, type MindooDoc, type MindooTenant, type ProcessChangesCursor } from '../core/index.js'
import { InvalidArgumentError, InvalidParamsError, KeyExistsError } from '../errors.js'
import { diagnose, type MindooNode } from '../p2p/index.js'
import { readAudit, verifyAudit } from './audit.js'
import { AUDIT_MAX_SHOW, EVENTS_MAX_TIMEOUT_MS, MIN_TOPIC_SECRET_CHARS } from './constants.js'
import { EVENT_TYPES, type EventBus, type EventType } from './events.js'
import type { RevocationResult } from './daemon.js'
import { validateShare, type ShareConfig, type ShareUpdate } from '../sync/share.js'
import { PREVIEW_SAMPLE_MAX } from '../sync/preview.js'
import type { BackupResult } from './backup.js'

/** What the handlers need from the daemon. */
export interface RpcContext {
  tenant: MindooTenant
  node: MindooNode
  dataDir: string
  startedAt: number
  version: string
  /** Adds a share and remembers it across restarts. */
  addShare: (share: ShareConfig) => Promise<void>
  updateShare: (id: string, update: ShareUpdate) => Promise<void>
  removeShare: (id: string) => Promise<void>
  /** Shares that came from the config file (their changes over RPC last until the next reload). */
  configShareIds: () => Set<string>
  /** Revokes a partner on every share (see Daemon.revokePartner). */
  revokePartner: (who: string, password: string) => Promise<RevocationResult>
  /** The event stream of this run. */
  events: EventBus
  /** Where the audit trail is (`<dataDir>/audit`). */
  auditDir: string
  /** Publishes a daemon event (audited types also go to the audit trail). */
  emit: (type: EventType, data: Record<string, unknown>) => void
  /** Writes a backup file (see Daemon.backup). */
  backup: (path: string) => Promise<BackupResult>
  /** Per database of a share, changes stored but not yet materialised (see Daemon.materialiseBacklog). */
  materialiseBacklog: () => Array<{ database: string, backlog: number }>
  /** What a share (a config, or an existing share's id) would serve (see Daemon.previewShare). */
  previewShare: (share: ShareConfig | undefined, options: { id?: string, sample?: number }) => Promise<unknown>
}

export type JsonSchema = Record<string, unknown>

export interface RpcMethod {
  summary: string
  /** JSON schema of the params object. */
  params: JsonSchema
  /** JSON schema of the result (for the OpenRPC document). */
  result: JsonSchema
  handler: (params: any, ctx: RpcContext) => Promise<unknown> // eslint-disable-line @typescript-eslint/no-explicit-any
}

export { InvalidParamsError }

const id = { type: 'string', pattern: '^[A-Za-z0-9._:@-]{1,128}$' }
const keyId = { type: 'string', pattern: '^[A-Za-z0-9._:@/-]{1,256}$' }
const database = { type: 'string', pattern: '^[A-Za-z0-9._-]{1,128}$' }
const docId = { type: 'string', pattern: '^[A-Za-z0-9._:@/-]{1,256}$' }
const password = { type: 'string', minLength: 1, maxLength: 1024 }
const none = { type: 'object', additionalProperties: false, properties: {} }
const obj = (properties: Record<string, unknown>, required: string[] = []): JsonSchema =>
  ({ type: 'object', additionalProperties: false, properties, required })
const any = {}
const docView = obj({ docId, data: { type: 'object' }, deleted: { type: 'boolean' }, keyId, heads: { type: 'array' }, createdAt: { type: 'number' }, modifiedAt: { type: 'number' } })

function view (doc: MindooDoc): Record<string, unknown> {
  return {
    docId: doc.getId(),
    data: JSON.parse(JSON.stringify(doc.getData())),
    deleted: doc.isDeleted(),
    keyId: doc.getKeyId(),
    heads: doc.getHeads(),
    createdAt: doc.getCreatedAt(),
    modifiedAt: doc.getLastModified()
  }
}

/** Shares as shown over RPC: the topic secret is never sent back. */
function redact (share: ShareConfig, ctx: RpcContext): Record<string, unknown> {
  const rest: Partial<ShareConfig> = { ...share }
  delete rest.topicSecret
  return { ...rest, origin: ctx.configShareIds().has(share.id) ? 'config' : 'rpc' }
}

/**
 * Applies a JSON merge patch (RFC 7396) to an Automerge proxy: null deletes, objects merge, the rest replaces.
 * Strings (in arrays too) are written as scalar strings (Automerge ImmutableString): a patch replaces a string
 * whole, and concurrent patches of one field resolve to one of them. Collaborative text is edited with
 * `doc.text.splice`; a patch that sets such a field replaces it with a scalar string.
 */
export function applyMergePatch (target: Record<string, unknown>, patch: Record<string, unknown>): void {
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) {
      delete target[key]
    } else if (typeof value === 'object' && !Array.isArray(value)) {
      const current = target[key]
      if (current === null || typeof current !== 'object' || Array.isArray(current) || isDocString(current)) target[key] = {}
      applyMergePatch(target[key] as Record<string, unknown>, value as Record<string, unknown>)
    } else {
      target[key] = toScalarStrings(value)
    }
  }
}

function versionsOf (ctx: RpcContext, keyId: string): number {
  return ctx.tenant.listNamedKeys().find((k) => k.keyId === keyId)?.versions ?? 0
}

const eventSchema = obj({ seq: { type: 'integer' }, time: { type: 'string' }, type: { enum: [...EVENT_TYPES] }, data: { type: 'object' } })
const auditRecordSchema = obj({ seq: { type: 'integer' }, time: { type: 'string' }, type: { type: 'string' }, data: { type: 'object' }, prev: { type: 'string' }, hash: { type: 'string' } })

const shareSchema = { type: 'object', description: 'A share, as in the config file (see config/mindoodb.schema.json)' }

/** A topic secret given over RPC must be as long as the config schema asks (the share's other fields: validateShare). */
function checkTopicSecret (at: string, value: unknown): void {
  if (value === undefined && at.endsWith('update.topicSecret')) return
  if (typeof value !== 'string' || value.length < MIN_TOPIC_SECRET_CHARS) {
    throw new InvalidParamsError(`${at}: must be a string of ${MIN_TOPIC_SECRET_CHARS} or more characters (\`mindoodb share secret\` prints one)`)
  }
}

export const METHODS: Record<string, RpcMethod> = {
  health: {
    summary: 'Liveness and readiness of the daemon.',
    params: none,
    result: obj({ status: { const: 'ok' }, uptimeSeconds: { type: 'number' } }),
    handler: async (_p, ctx) => ({ status: 'ok', uptimeSeconds: Math.round((Date.now() - ctx.startedAt) / 1000) })
  },
  'node.info': {
    summary: 'Peer id, listen addresses and the tenant\'s public info (what partners put in their shares).',
    params: none,
    result: obj({ peerId: { type: 'string' }, addresses: { type: 'array' }, tenant: { type: 'object' }, dataDir: { type: 'string' }, version: { type: 'string' }, pid: { type: 'number' } }),
    handler: async (_p, ctx) => ({
      peerId: ctx.node.peerId,
      addresses: ctx.node.getMultiaddrs(),
      tenant: ctx.tenant.getPublicInfo(),
      dataDir: ctx.dataDir,
      version: ctx.version,
      pid: process.pid
    })
  },
  'node.doctor': {
    summary: 'How this node can be reached and how it reaches each partner: listen and announced addresses, reachability (AutoNAT\'s verdict), NAT status, reservations on relays and the relay it serves, per share and partner whether it is dialable (directly, through a relay), dialled, connected and how (the connection\'s address; direct or relayed), known addresses, last round, last error, backoff; and findings in plain words. Dials nobody.',
    params: none,
    result: obj({
      peerId: { type: 'string' },
      listen: { type: 'array', items: { type: 'string' } },
      announced: { type: 'array', items: { type: 'string' } },
      announcesPrivate: { type: 'boolean' },
      nat: obj({
        reachability: { enum: ['public', 'relayed', 'private', 'unknown'] },
        nat: { enum: ['none', 'behind-nat', 'unknown'] },
        autonat: { type: 'boolean' },
        dcutr: { type: 'boolean' },
        addresses: { type: 'array' },
        reservations: { type: 'array', items: obj({ relay: { type: 'string' }, peerId: { type: 'string' }, state: { enum: ['reserved', 'pending', 'failed'] }, addresses: { type: 'array', items: { type: 'string' } }, failures: { type: 'integer' }, retryAt: { type: 'number' }, lastError: { type: 'object' } }) },
        relay: { type: 'object' }
      }),
      shares: { type: 'array', items: obj({ id, enabled: { type: 'boolean' }, partners: { type: 'array' } }) },
      findings: { type: 'array', items: obj({ level: { enum: ['problem', 'note'] }, code: { type: 'string' }, share: { type: 'string' }, peerId: { type: 'string' }, text: { type: 'string' } }) }
    }),
    handler: async (_p, ctx) => await diagnose(ctx.node)
  },
  'db.list': {
    summary: 'Databases of the tenant.',
    params: none,
    result: obj({ databases: { type: 'array', items: { type: 'string' } } }),
    handler: async (_p, ctx) => ({ databases: await ctx.tenant.listDatabases() })
  },
  'doc.create': {
    summary: 'Creates a document, optionally with content and under a named key.',
    params: obj({ database, data: { type: 'object' }, keyId }, ['database']),
    result: docView,
    handler: async (p: { database: string, data?: Record<string, unknown>, keyId?: string }, ctx) => {
      const db = await ctx.tenant.openDB(p.database)
      let doc = await db.createDocument({ keyId: p.keyId })
      if (p.data !== undefined && Object.keys(p.data).length > 0) {
        doc = await db.changeDoc(doc, (d) => { applyMergePatch(d.getData(), p.data as Record<string, unknown>) })
      }
      return view(doc)
    }
  },
  'doc.change': {
    summary: 'Changes a document with a JSON merge patch (RFC 7396): null removes a field.',
    params: obj({ database, docId, patch: { type: 'object' } }, ['database', 'docId', 'patch']),
    result: docView,
    handler: async (p: { database: string, docId: string, patch: Record<string, unknown> }, ctx) => {
      const db = await ctx.tenant.openDB(p.database)
      return view(await db.changeDoc(p.docId, (d) => { applyMergePatch(d.getData(), p.patch) }))
    }
  },
  'doc.text.splice': {
    summary: 'Edits a collaborative text field (Automerge text: concurrent edits merge character by character): deletes deleteCount UTF-16 code units at index, then inserts insert there. path names the field by keys and list indexes, e.g. ["notes"] or ["items", 0, "text"]. A missing field of an object is created as text (index and deleteCount 0). A path to anything but collaborative text (a string written by doc.create or doc.change is a scalar string) is NOT_TEXT; an index or count outside the text, or one that splits a character, is INVALID_ARGUMENT.',
    params: obj({
      database,
      docId,
      path: { type: 'array', minItems: 1, maxItems: 32, items: { oneOf: [{ type: 'string', minLength: 1, maxLength: 256 }, { type: 'integer', minimum: 0 }] } },
      index: { type: 'integer', minimum: 0 },
      deleteCount: { type: 'integer', minimum: 0 },
      insert: { type: 'string' }
    }, ['database', 'docId', 'path', 'index']),
    result: docView,
    handler: async (p: { database: string, docId: string, path: Array<string | number>, index: number, deleteCount?: number, insert?: string }, ctx) => {
      const db = await ctx.tenant.openDB(p.database)
      return view(await db.changeDoc(p.docId, (d) => { spliceText(d.getData(), p.path, p.index, p.deleteCount ?? 0, p.insert ?? '') }))
    }
  },
  'doc.get': {
    summary: 'A document at its current state (deleted documents come back with deleted: true).',
    params: obj({ database, docId }, ['database', 'docId']),
    result: docView,
    handler: async (p: { database: string, docId: string }, ctx) => view(await (await ctx.tenant.openDB(p.database)).getDocument(p.docId))
  },
  'doc.delete': {
    summary: 'Deletes a document (a signed tombstone every replica applies).',
    params: obj({ database, docId }, ['database', 'docId']),
    result: obj({ docId, deleted: { const: true } }),
    handler: async (p: { database: string, docId: string }, ctx) => {
      await (await ctx.tenant.openDB(p.database)).deleteDocument(p.docId)
      return { docId: p.docId, deleted: true }
    }
  },
  'doc.list': {
    summary: 'Documents changed after a cursor, in commit order (the changefeed); pass the returned cursor to continue.',
    params: obj({
      database,
      cursor: { oneOf: [{ type: 'null' }, obj({ seq: { type: 'integer', minimum: 0 }, docId }, ['seq'])] },
      limit: { type: 'integer', minimum: 1, maximum: 1000 }
    }, ['database']),
    result: obj({ documents: { type: 'array', items: docView }, cursor: any, more: { type: 'boolean' } }),
    handler: async (p: { database: string, cursor?: ProcessChangesCursor | null, limit?: number }, ctx) => {
      const db = await ctx.tenant.openDB(p.database)
      const limit = p.limit ?? 100
      const documents: unknown[] = []
      let cursor = p.cursor ?? null
      let more = false
      for await (const entry of db.iterateChangesSince(cursor)) {
        if (documents.length === limit) {
          more = true
          break
        }
        documents.push(view(entry.doc))
        cursor = entry.cursor
      }
      return { documents, cursor, more }
    }
  },
  'key.list': {
    summary: 'Named keys the tenant holds and their number of versions.',
    params: none,
    result: obj({ keys: { type: 'array' } }),
    handler: async (_p, ctx) => ({ keys: ctx.tenant.listNamedKeys() })
  },
  'key.create': {
    summary: 'Creates a named key; returns it wrapped under the password, for partners to import.',
    params: obj({ keyId, password }, ['keyId', 'password']),
    result: obj({ keyId, blob: { type: 'string' } }),
    handler: async (p: { keyId: string, password: string }, ctx) => {
      if (ctx.tenant.hasNamedKey(p.keyId)) throw new KeyExistsError(`key ${p.keyId} exists (use key.rotate)`)
      const blob = await ctx.tenant.createNamedKey(p.keyId, p.password)
      ctx.emit('key.created', { keyId: p.keyId, versions: versionsOf(ctx, p.keyId) })
      return { keyId: p.keyId, blob }
    }
  },
  'key.import': {
    summary: 'Imports a named key (or new versions of it) from a wrapped blob and its password.',
    params: obj({ keyId, blob: { type: 'string', minLength: 1, maxLength: 65536 }, password }, ['keyId', 'blob', 'password']),
    result: obj({ keyId, versions: { type: 'integer' } }),
    handler: async (p: { keyId: string, blob: string, password: string }, ctx) => {
      await ctx.tenant.importNamedKey(p.keyId, p.blob, p.password)
      ctx.emit('key.imported', { keyId: p.keyId, versions: versionsOf(ctx, p.keyId) })
      return { keyId: p.keyId, versions: versionsOf(ctx, p.keyId) }
    }
  },
  'key.export': {
    summary: 'All versions of a named key wrapped under a password.',
    params: obj({ keyId, password }, ['keyId', 'password']),
    result: obj({ keyId, blob: { type: 'string' } }),
    handler: async (p: { keyId: string, password: string }, ctx) => {
      const blob = await ctx.tenant.exportNamedKey(p.keyId, p.password)
      ctx.emit('key.exported', { keyId: p.keyId, versions: versionsOf(ctx, p.keyId) })
      return { keyId: p.keyId, blob }
    }
  },
  'key.rotate': {
    summary: 'Adds a new version of a named key (it encrypts from now on); returns all versions wrapped.',
    params: obj({ keyId, password }, ['keyId', 'password']),
    result: obj({ keyId, blob: { type: 'string' }, versions: { type: 'integer' } }),
    handler: async (p: { keyId: string, password: string }, ctx) => {
      const blob = await ctx.tenant.rotateNamedKey(p.keyId, p.password)
      ctx.emit('key.rotated', { keyId: p.keyId, versions: versionsOf(ctx, p.keyId), reason: 'rpc' })
      return { keyId: p.keyId, blob, versions: versionsOf(ctx, p.keyId) }
    }
  },
  'share.list': {
    summary: 'The shares (topic secrets are not returned).',
    params: none,
    result: obj({ shares: { type: 'array' } }),
    handler: async (_p, ctx) => ({ shares: ctx.node.listShares().map((s) => redact(s, ctx)) })
  },
  'share.get': {
    summary: 'One share (without its topic secret).',
    params: obj({ id }, ['id']),
    result: shareSchema,
    handler: async (p: { id: string }, ctx) => redact(ctx.node.getShare(p.id), ctx)
  },
  'share.add': {
    summary: 'Adds a share and starts syncing it; kept across restarts.',
    params: obj({ share: shareSchema }, ['share']),
    result: shareSchema,
    handler: async (p: { share: Partial<ShareConfig> & { id: string } }, ctx) => {
      checkTopicSecret('params.share.topicSecret', p.share.topicSecret)
      await ctx.addShare({ direction: 'both', enabled: true, filter: { kind: 'all' }, ...p.share } as ShareConfig)
      return redact(ctx.node.getShare(p.share.id), ctx)
    }
  },
  'share.update': {
    summary: 'Changes a share (partners, filter, direction, database...).',
    params: obj({ id, update: { type: 'object' } }, ['id', 'update']),
    result: shareSchema,
    handler: async (p: { id: string, update: ShareUpdate }, ctx) => {
      if ('id' in p.update) throw new InvalidParamsError('params.update.id: a share\'s id cannot change')
      checkTopicSecret('params.update.topicSecret', p.update.topicSecret)
      await ctx.updateShare(p.id, p.update)
      return redact(ctx.node.getShare(p.id), ctx)
    }
  },
  'share.enable': {
    summary: 'Enables a share.',
    params: obj({ id }, ['id']),
    result: shareSchema,
    handler: async (p: { id: string }, ctx) => {
      await ctx.updateShare(p.id, { enabled: true })
      return redact(ctx.node.getShare(p.id), ctx)
    }
  },
  'share.disable': {
    summary: 'Disables a share: serving stops at once, open sessions are closed (how access is revoked).',
    params: obj({ id }, ['id']),
    result: shareSchema,
    handler: async (p: { id: string }, ctx) => {
      await ctx.updateShare(p.id, { enabled: false })
      return redact(ctx.node.getShare(p.id), ctx)
    }
  },
  'share.remove': {
    summary: 'Removes a share.',
    params: obj({ id }, ['id']),
    result: obj({ id, removed: { const: true } }),
    handler: async (p: { id: string }, ctx) => {
      await ctx.removeShare(p.id)
      return { id: p.id, removed: true }
    }
  },
  'share.preview': {
    summary: 'What a share would serve, without adding, starting or announcing it, or contacting anyone: give a share config (as for share.add; topicSecret may be left out) or the id of an existing share. Documents and changes by type and by key id, a sample of document ids, what a field filter would refuse because this node cannot read the document (fails closed), and what it leaves out.',
    params: {
      ...obj({ share: shareSchema, id, sample: { type: 'integer', minimum: 0, maximum: PREVIEW_SAMPLE_MAX } }),
      oneOf: [{ required: ['share'] }, { required: ['id'] }]
    },
    result: obj({
      share: { type: 'string' },
      database: { type: 'string' },
      filter: { type: 'string' },
      direction: { type: 'string' },
      databaseExists: { type: 'boolean' },
      total: { type: 'object' },
      served: { type: 'object', description: 'documents, changes, byType, byKey, sample' },
      refused: { type: 'object', description: 'documents, changes, byKey, missingKey, sample: not readable here, so a field filter does not serve them' },
      notServed: { type: 'object' }
    }),
    handler: async (p: { share?: Record<string, unknown>, id?: string, sample?: number }, ctx) => {
      if (p.id !== undefined) {
        ctx.node.getShare(p.id) // unknown share: its typed error
        return await ctx.previewShare(undefined, { id: p.id, sample: p.sample })
      }
      let share: ShareConfig
      try {
        // the topic secret plays no part in what is served; a share file without one can be previewed
        share = validateShare({
          id: 'preview', direction: 'both', enabled: true, filter: { kind: 'all' }, partners: [], topicSecret: 'x'.repeat(MIN_TOPIC_SECRET_CHARS), ...p.share
        })
      } catch (err) {
        if (err instanceof InvalidArgumentError) throw new InvalidParamsError(`params.${err.message}`, { cause: err })
        throw err
      }
      return await ctx.previewShare(share, { sample: p.sample })
    }
  },
  'backup.create': {
    summary: 'Writes a backup of this node to an absolute path the daemon can write (mode 0600, atomically: temp file, fsync, rename): one consistent snapshot of the store and database state, the tenant key file as at rest, the node identity, the shares, the revocation list, the config and the audit trail (as it is between two of its records: its chain verifies). Restore it with `mindoodb restore` while no daemon runs.',
    params: obj({ path: { type: 'string', minLength: 2, maxLength: 4096, pattern: '^/' } }, ['path']),
    result: obj({
      path: { type: 'string' },
      bytes: { type: 'integer' },
      sha256: { type: 'string' },
      entries: { type: 'integer' },
      files: { type: 'array', items: { type: 'string' } },
      createdAt: { type: 'integer' },
      tenantId: { type: 'string' },
      peerId: { type: 'string' }
    }),
    handler: async (p: { path: string }, ctx) => await ctx.backup(p.path)
  },
  'peers.list': {
    summary: 'Peers connected now.',
    params: none,
    result: obj({ peers: { type: 'array' } }),
    handler: async (_p, ctx) => ({ peers: ctx.node.getPeers() })
  },
  'partners.list': {
    summary: 'The partners of every share, with their connection and sync state.',
    params: none,
    result: obj({ partners: { type: 'array' } }),
    handler: async (_p, ctx) => ({
      partners: ctx.node.status().flatMap((s) => s.partners.map((p) => ({ share: s.id, ...p })))
    })
  },
  'partner.revoke': {
    summary: 'Revokes a partner (peer id, tenant id or signing key) on every share: its sessions close, changes it signs from now on are rejected (what is stored stays), the named keys the shares let it hold are rotated. Returns per rotated key all versions wrapped under the password and the remaining partners that should import it.',
    params: obj({ partner: { type: 'string', minLength: 1, maxLength: 256 }, password }, ['partner', 'password']),
    result: obj({
      revoked: { type: 'array', items: obj({ peerId: { type: 'string' }, tenantId: { type: 'string' }, signingPublicKey: { type: 'string' } }) },
      shares: { type: 'array', items: { type: 'string' } },
      rotated: {
        type: 'array',
        items: obj({
          keyId,
          versions: { type: 'integer' },
          blob: { type: 'string' },
          importers: { type: 'array', items: obj({ share: { type: 'string' }, peerId: { type: 'string' }, tenantId: { type: 'string' } }) }
        })
      },
      alreadyRevoked: { type: 'boolean' }
    }),
    handler: async (p: { partner: string, password: string }, ctx) => await ctx.revokePartner(p.partner, p.password)
  },
  'sync.now': {
    summary: 'Starts a round with every partner of a share (or of all enabled shares); with wait, returns when done.',
    params: obj({ share: id, wait: { type: 'boolean' } }),
    result: obj({ started: { type: 'boolean' }, results: { type: 'array' } }),
    handler: async (p: { share?: string, wait?: boolean }, ctx) => {
      if (p.share !== undefined) ctx.node.getShare(p.share) // unknown share: an error now, not later
      const rounds = ctx.node.syncNow(p.share)
      if (p.wait !== true) {
        rounds.catch(() => {})
        return { started: true }
      }
      return { started: true, results: await rounds }
    }
  },
  'events.since': {
    summary: 'Events after a cursor, in order; waits up to timeoutMs for one when there is none (long poll). Pass the returned cursor to the next call; without a cursor, the events still buffered, at once (no wait). A cursor whose events fell out of the buffer, or from a previous run of the daemon, gets EVENTS_CURSOR_STALE: resync, then call without one.',
    params: obj({
      cursor: { type: 'string', maxLength: 64 },
      timeoutMs: { type: 'integer', minimum: 0, maximum: EVENTS_MAX_TIMEOUT_MS },
      types: { type: 'array', items: { enum: [...EVENT_TYPES] }, maxItems: EVENT_TYPES.length }
    }),
    result: obj({ events: { type: 'array', items: eventSchema }, cursor: { type: 'string' }, more: { type: 'boolean' } }),
    handler: async (p: { cursor?: string, timeoutMs?: number, types?: string[] }, ctx) => await ctx.events.since(p)
  },
  'audit.verify': {
    summary: 'Checks the whole audit trail (every record\'s hash, its link to the one before, across rotated files, and the head). Fails with AUDIT_TAMPERED or AUDIT_TORN and data.location { file, line, seq } where the chain breaks.',
    params: none,
    result: obj({ ok: { const: true }, files: { type: 'array' }, records: { type: 'integer' }, firstSeq: { type: 'integer' }, lastSeq: { type: 'integer' }, lastHash: { type: 'string' } }),
    handler: async (_p, ctx) => await verifyAudit(ctx.auditDir)
  },
  'audit.show': {
    summary: 'Records of the audit trail, oldest first, from a seq number or an ISO time on (not verified: audit.verify checks the chain).',
    params: obj({
      since: { oneOf: [{ type: 'integer', minimum: 0 }, { type: 'string', minLength: 1, maxLength: 64 }] },
      limit: { type: 'integer', minimum: 1, maximum: AUDIT_MAX_SHOW }
    }),
    result: obj({ records: { type: 'array', items: auditRecordSchema }, more: { type: 'boolean' } }),
    handler: async (p: { since?: number | string, limit?: number }, ctx) => {
      if (typeof p.since === 'string' && Number.isNaN(Date.parse(p.since))) throw new InvalidParamsError('params.since: not an ISO time')
      const limit = p.limit ?? 1000
      const records: unknown[] = []
      let more = false
      for await (const r of readAudit(ctx.auditDir, { since: p.since })) {
        if (records.length === limit) {
          more = true
          break
        }
        records.push(r)
      }
      return { records, more }
    }
  },
  'sync.status': {
    summary: 'Per share: partners, last round, errors, changes and bytes in and out, rejections, and its database\'s materialisation backlog (changes stored but not yet readable).',
    params: obj({ share: id }),
    result: obj({ shares: { type: 'array', items: { type: 'object', properties: { materialiseBacklog: { type: 'integer', description: 'changes of the share\'s database stored but not yet materialised' } } } } }),
    handler: async (p: { share?: string }, ctx) => {
      const backlog = new Map(ctx.materialiseBacklog().map((b) => [b.database, b.backlog]))
      return { shares: ctx.node.status(p.share).map((s) => ({ ...s, materialiseBacklog: backlog.get(s.database) ?? 0 })) }
    }
  }
}

const ajv = new Ajv({ allErrors: false, strict: false })
const validators = new Map<string, ValidateFunction>()

function paramError (e: ErrorObject): string {
  const at = `params${e.instancePath.replaceAll('/', '.')}`
  switch (e.keyword) {
    case 'additionalProperties': return `${at}.${String(e.params.additionalProperty)}: unknown parameter`
    case 'required': return `${at}.${String(e.params.missingProperty)}: is required`
    default: return `${at}: ${e.message ?? 'is invalid'}`
  }
}

/** Validates a method's params; throws InvalidParamsError naming the parameter. */
export function checkParams (method: string, params: unknown): unknown {
  const m = METHODS[method]
  let validate = validators.get(method)
  if (validate === undefined) {
    validate = ajv.compile(m.params)
    validators.set(method, validate)
  }
  const value = params ?? {}
  if (typeof value !== 'object' || Array.isArray(value)) throw new InvalidParamsError('params: must be an object (by-name parameters)')
  if (!validate(value)) throw new InvalidParamsError(paramError((validate.errors ?? [])[0]))
  return value
}

/** The OpenRPC document of this API. */
export function openRpcDocument (version: string): Record<string, unknown> {
  return {
    openrpc: '1.2.6',
    info: {
      title: 'MindooDB mesh daemon',
      version,
      description: 'Control API of a MindooDB mesh node. Errors: -32700 parse error, -32600 invalid request, -32601 unknown method, -32602 invalid params (the message names the parameter), -32000 application error with error.data.code one of the codes in the README.'
    },
    methods: [
      {
        name: 'rpc.discover',
        summary: 'This document.',
        params: [],
        result: { name: 'openrpc', schema: { type: 'object' } }
      },
      ...Object.entries(METHODS).map(([name, m]) => ({
        name,
        summary: m.summary,
        paramStructure: 'by-name',
        params: Object.entries((m.params.properties ?? {}) as Record<string, JsonSchema>).map(([param, schema]) => ({
          name: param,
          required: ((m.params.required ?? []) as string[]).includes(param),
          schema
        })),
        result: { name: 'result', schema: m.result }
      }))
    ]
  }
}
