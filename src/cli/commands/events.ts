import { join } from 'node:path'
import type { Command } from 'commander'
import { AUDIT_DIR, EVENTS_MAX_TIMEOUT_MS } from '../../daemon/constants.js'
import { readAudit, verifyAudit, type AuditRecord, type AuditVerifyResult } from '../../daemon/audit.js'
import { EVENT_TYPES, type DaemonEvent, type SinceResult } from '../../daemon/events.js'
import { RpcError, UsageError } from '../../errors.js'
import type { CliContext } from '../context.js'
import { time } from '../format.js'

/** How long one `events.since` call of `events --follow` waits, ms. */
const FOLLOW_POLL_MS = 30_000

/** A string printed as it is: ids, codes, times (anything else is quoted as JSON, so one event stays one line). */
const PLAIN = /^[\w.:@/+=-]*$/

/**
 * `key=value` pairs of an event's or record's data: plain strings as they are, other strings and values as compact
 * JSON (a partner's message with newlines or escape sequences stays on its line; the sanitizer removes the rest).
 */
function fields (data: Record<string, unknown>): string {
  return Object.entries(data)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${typeof v === 'string' && PLAIN.test(v) ? v : JSON.stringify(v)}`)
    .join(' ')
}

/** `2026-12-01T11:40:04Z #12 session.refused peerId=12D3… code=NOT_AUTHORIZED` */
export function formatEvent (e: DaemonEvent): string {
  return `${time(Date.parse(e.time))} #${e.seq} ${e.type} ${fields(e.data)}`.trimEnd()
}

export function formatAuditRecord (r: AuditRecord): string {
  return `#${r.seq} ${time(Date.parse(r.time))} ${r.type} ${fields(r.data ?? {})}`.trimEnd()
}

export function formatVerify (r: AuditVerifyResult): string {
  if (r.records === 0) return 'audit trail ok: empty'
  return `audit trail ok: ${r.records} records (seq ${r.firstSeq ?? 0}..${r.lastSeq ?? 0}) in ${r.files.length} file${r.files.length === 1 ? '' : 's'}, last hash ${r.lastHash ?? ''}`
}

function typesArg (value: string): string[] {
  const types = value.split(',').map((t) => t.trim()).filter((t) => t !== '')
  const unknown = types.filter((t) => !(EVENT_TYPES as readonly string[]).includes(t))
  if (unknown.length > 0) throw new UsageError(`--types: unknown event type ${unknown.join(', ')} (known: ${EVENT_TYPES.join(', ')})`)
  return types
}

function sinceArg (value: string): number | string {
  if (/^\d+$/.test(value)) return Number(value)
  if (Number.isNaN(Date.parse(value))) throw new UsageError(`--since: ${value} is neither a seq number nor an ISO time`)
  return value
}

function auditDirOf (dataDir: string | undefined): string | undefined {
  return dataDir === undefined ? undefined : join(dataDir, AUDIT_DIR)
}

export function registerEvents (program: Command, ctx: () => CliContext): void {
  program.command('events')
    .description('the daemon\'s events (partners, sessions, rounds, rejections, shares, keys, documents changed); with --follow, as they happen')
    .option('-f, --follow', 'keep waiting for new events (long poll) until interrupted')
    .option('--types <a,b>', `only these event types (${EVENT_TYPES.join(', ')})`)
    .option('--cursor <cursor>', 'resume after this cursor (from a previous --json line\'s "cursor")')
    .option('--max <n>', 'stop after this many events')
    .addHelpText('after', `
Human lines pass through the terminal sanitizer; --json prints one JSON object per line: the event with the
cursor to resume after it. A cursor whose events fell out of the daemon's buffer, or from a previous run of the
daemon, fails with EVENTS_CURSOR_STALE (exit 1); --follow then notes the gap on stderr and goes on from the oldest
event still buffered.`)
    .action(async (opts: { follow?: boolean, types?: string, cursor?: string, max?: string }) => {
      const c = ctx()
      const types = opts.types === undefined ? undefined : typesArg(opts.types)
      const max = opts.max === undefined ? Infinity : Number(opts.max)
      if (!(max > 0) || !Number.isInteger(max === Infinity ? 1 : max)) throw new UsageError('--max: must be a positive integer')
      const client = await c.client({ timeoutMs: EVENTS_MAX_TIMEOUT_MS + 15_000 })
      const printLine = c.printLine ?? c.print
      let cursor = opts.cursor
      let printed = 0
      while (true) {
        let r: SinceResult
        try {
          r = await client.call<SinceResult>('events.since', {
            ...(cursor === undefined ? {} : { cursor }),
            ...(types === undefined ? {} : { types }),
            timeoutMs: opts.follow === true ? FOLLOW_POLL_MS : 0
          })
        } catch (err) {
          if (opts.follow === true && err instanceof RpcError && err.dataCode === 'EVENTS_CURSOR_STALE') {
            c.note(`events were missed (${err.message}); going on from the oldest event still buffered`)
            cursor = undefined
            continue
          }
          throw err
        }
        for (const e of r.events) {
          printLine({ ...e, cursor: r.cursor }, () => formatEvent(e))
          if (++printed >= max) return
        }
        cursor = r.cursor
        if (opts.follow !== true && !r.more) return
      }
    })

  const audit = program.command('audit')
    .description('the node\'s hash-chained audit trail (sessions, shares, partners, keys, rejections, reloads)')

  audit.command('verify')
    .description('check the whole chain, across rotated files; exit 1 with AUDIT_TAMPERED (or AUDIT_TORN) and the file and line where it breaks')
    .option('--data-dir <dir>', 'check the files of this data directory here, without a daemon (a stopped node, a copy)')
    .action(async (opts: { dataDir?: string }) => {
      const c = ctx()
      const dir = auditDirOf(opts.dataDir)
      const result = dir === undefined
        ? await (await c.client()).call<AuditVerifyResult>('audit.verify')
        : await verifyAudit(dir)
      c.print(result, formatVerify)
    })

  audit.command('show')
    .description('audit records for people, oldest first (audit verify checks them)')
    .option('--since <seq|time>', 'from this seq number or ISO time on')
    .option('--data-dir <dir>', 'read the files of this data directory here, without a daemon')
    .option('--limit <n>', 'at most this many records (through the daemon: default 1000)')
    .action(async (opts: { since?: string, dataDir?: string, limit?: string }) => {
      const c = ctx()
      const since = opts.since === undefined ? undefined : sinceArg(opts.since)
      const limit = opts.limit === undefined ? undefined : Number(opts.limit)
      if (limit !== undefined && !(Number.isInteger(limit) && limit > 0)) throw new UsageError('--limit: must be a positive integer')
      const dir = auditDirOf(opts.dataDir)
      let records: AuditRecord[] = []
      if (dir === undefined) {
        records = (await (await c.client()).call<{ records: AuditRecord[] }>('audit.show', {
          ...(since === undefined ? {} : { since }),
          ...(limit === undefined ? {} : { limit })
        })).records
      } else {
        for await (const r of readAudit(dir, { since })) {
          if (limit !== undefined && records.length === limit) break
          records.push(r)
        }
      }
      c.print({ records }, (v: { records: AuditRecord[] }) => v.records.length === 0 ? 'no audit records' : v.records.map(formatAuditRecord).join('\n'))
    })
}

