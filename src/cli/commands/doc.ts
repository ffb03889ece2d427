import type { Command } from 'commander'
import { UsageError, type CliClient, type CliContext } from '../context.js'
import { brief, time } from '../format.js'
import { InvalidArgumentError } from 'commander'
import { jsonObjectArg, positiveIntArg, readInput } from '../input.js'

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

/**
 * A field path for `doc text`: a JSON array (`'["items",0,"text"]'`), or keys joined by dots (`notes`,
 * `items.0.text`), where a part made only of digits is a list index.
 */
export function textPathArg (value: string): Array<string | number> {
  if (value.startsWith('[')) {
    let path: unknown
    try {
      path = JSON.parse(value)
    } catch (err) {
      throw new InvalidArgumentError(`not a JSON array: ${(err as Error).message}`)
    }
    if (!Array.isArray(path) || path.length === 0 || !path.every((p) => typeof p === 'string' || (Number.isInteger(p) && (p as number) >= 0))) {
      throw new InvalidArgumentError('a JSON path is a non-empty array of keys (strings) and list indexes (integers of 0 or more)')
    }
    return path as Array<string | number>
  }
  const parts = value.split('.')
  if (parts.some((p) => p === '')) throw new InvalidArgumentError('empty key in the path (use a JSON array for keys with dots)')
  return parts.map((p) => /^\d+$/.test(p) ? Number(p) : p)
}

/** commander argument parser: an integer of 0 or more. */
function countArg (value: string): number {
  const n = Number(value)
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n)) throw new InvalidArgumentError('must be an integer of 0 or more')
  return n
}

export function registerDoc (program: Command, ctx: () => CliContext): void {
  const doc = program.command('doc')
    .description('documents of a database: create, get, change (JSON merge patch), text (edit collaborative text), delete, list (the changefeed)')
    .addHelpText('after', `
Strings given to create and change are stored as scalar strings (Automerge ImmutableString): a change replaces a
string whole, and concurrent changes of one field resolve to one of them. Collaborative text, where concurrent
edits merge character by character, is edited with \`doc text\`.`)

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

  doc.command('text')
    .description('edit a collaborative text field: delete some characters at an index, insert text there (concurrent edits merge)')
    .argument('<database>', 'database name')
    .argument('<docId>', 'document id')
    .argument('<path>', 'the field: keys joined by dots (items.0.text: digits are list indexes) or a JSON array (\'["items",0,"text"]\')', textPathArg)
    .option('--at <index>', 'where to edit, in UTF-16 code units as JavaScript counts them (default 0)', countArg)
    .option('--delete <n>', 'code units to delete at that index (default 0)', countArg)
    .option('--insert <text>', 'text to insert at that index (default none)')
    .option('--insert-file <file>', 'read the text to insert from a file (- for stdin), as it is')
    .addHelpText('after', `
A field that does not exist yet is created as collaborative text (with --at 0 and no --delete). A field written
by \`doc create\` or \`doc change\` is a scalar string, not text: editing it fails with NOT_TEXT (remove it with
a patch '{"field":null}', then create it here). An index or count past the end of the text, or one that would
split a character, fails with INVALID_ARGUMENT. Examples:
  mindoodb doc text orders <docId> notes --insert 'first line'
  mindoodb doc text orders <docId> notes --at 6 --delete 4 --insert 'row'`)
    .action(async (database: string, docId: string, path: Array<string | number>, opts: { at?: number, delete?: number, insert?: string, insertFile?: string }) => {
      const c = ctx()
      if (opts.insert !== undefined && opts.insertFile !== undefined) throw new UsageError('give --insert or --insert-file, not both')
      const insert = opts.insertFile !== undefined ? await readInput(c, opts.insertFile, 'insert') : opts.insert
      c.print(await (await c.client()).call<DocView>('doc.text.splice', {
        database,
        docId,
        path,
        index: opts.at ?? 0,
        ...(opts.delete === undefined ? {} : { deleteCount: opts.delete }),
        ...(insert === undefined ? {} : { insert })
      }), formatDoc)
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
