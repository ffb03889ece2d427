import type { Command } from 'commander'
import type { CliClient, CliContext } from '../context.js'
import { brief, time } from '../format.js'
import { jsonObjectArg, positiveIntArg } from '../input.js'

/** A document as the daemon returns it (`doc.get`, `doc.create`, `doc.change`, `doc.list`). */
export interface DocView {
  docId: string
  data: Record<string, unknown>
  deleted: boolean
  keyId: string
  heads: string[]
  createdAt: number
  modifiedAt: number
}

export interface DocPage {
  documents: DocView[]
  cursor: unknown
  more: boolean
}

export function formatDoc (d: DocView): string {
  return [
    `${d.docId}${d.deleted ? '  DELETED' : ''}  key ${d.keyId}  created ${time(d.createdAt)}  modified ${time(d.modifiedAt)}`,
    JSON.stringify(d.data, null, 2)
  ].join('\n')
}

export function formatDocPage (database: string, page: DocPage): string {
  const lines = page.documents.map((d) =>
    `${d.docId}  ${time(d.modifiedAt)}  ${d.keyId}${d.deleted ? '  DELETED' : '  ' + brief(d.data)}`)
  if (lines.length === 0) lines.push('no documents')
  if (page.more) lines.push(`more: mindoodb doc list ${database} --cursor '${JSON.stringify(page.cursor)}'`)
  return lines.join('\n')
}

/** Pages through the changefeed; with `all`, follows `more` to the end. */
export async function listDocs (client: CliClient, database: string, opts: { cursor?: unknown, limit?: number, all?: boolean }): Promise<DocPage> {
  const documents: DocView[] = []
  let cursor: unknown = opts.cursor ?? null
  for (;;) {
    const page = await client.call<DocPage>('doc.list', { database, cursor, ...(opts.limit === undefined ? {} : { limit: opts.limit }) })
    documents.push(...page.documents)
    cursor = page.cursor
    if (opts.all !== true || !page.more) return { documents, cursor, more: page.more }
  }
}

export function registerDoc (program: Command, ctx: () => CliContext): void {
  const doc = program.command('doc')
    .description('documents of a database: create, get, change (JSON merge patch), delete, list (the changefeed)')

  doc.command('create')
    .description('create a document, optionally with content and under a named key; prints it with its new id')
    .argument('<database>', 'database name')
    .option('--data <json>', 'initial content, a JSON object', jsonObjectArg)
    .option('-k, --key <keyId>', 'named key to encrypt it with (default: the database\'s key)')
    .action(async (database: string, opts: { data?: Record<string, unknown>, key?: string }) => {
      const c = ctx()
      const result = await (await c.client()).call<DocView>('doc.create', {
        database,
        ...(opts.data === undefined ? {} : { data: opts.data }),
        ...(opts.key === undefined ? {} : { keyId: opts.key })
      })
      c.print(result, formatDoc)
    })

  doc.command('get')
    .description('a document at its current state (a deleted one shows DELETED)')
    .argument('<database>', 'database name')
    .argument('<docId>', 'document id')
    .action(async (database: string, docId: string) => {
      const c = ctx()
      c.print(await (await c.client()).call<DocView>('doc.get', { database, docId }), formatDoc)
    })

  doc.command('change')
    .description('change a document with a JSON merge patch (RFC 7396): fields are set, objects merged, null removes a field')
    .argument('<database>', 'database name')
    .argument('<docId>', 'document id')
    .requiredOption('-p, --patch <json>', 'the merge patch, a JSON object, e.g. \'{"status":"shipped","draft":null}\'', jsonObjectArg)
    .action(async (database: string, docId: string, opts: { patch: Record<string, unknown> }) => {
      const c = ctx()
      c.print(await (await c.client()).call<DocView>('doc.change', { database, docId, patch: opts.patch }), formatDoc)
    })

  doc.command('delete')
    .description('delete a document (a signed tombstone every replica applies)')
    .argument('<database>', 'database name')
    .argument('<docId>', 'document id')
    .action(async (database: string, docId: string) => {
      const c = ctx()
      c.print(await (await c.client()).call('doc.delete', { database, docId }), (r: { docId: string }) => `deleted ${r.docId}`)
    })

  doc.command('list')
    .description('documents changed after a cursor, in commit order (the changefeed), one page at a time')
    .argument('<database>', 'database name')
    .option('--cursor <json>', 'continue after this cursor (printed by the previous page)', jsonObjectArg)
    .option('-n, --limit <n>', 'documents per page, 1-1000 (default 100)', positiveIntArg)
    .option('-a, --all', 'follow the pages to the end')
    .action(async (database: string, opts: { cursor?: unknown, limit?: number, all?: boolean }) => {
      const c = ctx()
      const page = await listDocs(await c.client(), database, opts)
      c.print(page, (p: DocPage) => formatDocPage(database, p))
    })
}
