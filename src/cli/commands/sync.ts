import { SingleBar } from 'cli-progress'
import type { Command } from 'commander'
import type { RoundResult, ShareStatus } from '../../p2p/index.js'
import { RoundsFailedError } from '../../errors.js'
import type { CliClient, CliContext } from '../context.js'
import { bytes, count, duration } from '../format.js'
import { positiveNumberArg } from '../input.js'

export { RoundsFailedError }

/** Progress of the rounds since `sync now` started, from the share totals. */
export interface SyncProgress {
  elapsedMs: number
  changesReceived: number
  changesSent: number
  bytesReceived: number
  bytesSent: number
  /**
   * Changes the running rounds will move (what reconciliation found), or else the partners' lag when the rounds
   * started (undefined when neither is known).
   */
  expected?: number
  /** Seconds left, from `expected` and the rate of sending (undefined when not known). */
  etaSeconds?: number
}

interface Totals { changesReceived: number, changesSent: number, bytesReceived: number, bytesSent: number, lag?: number, planned: number, moved: number }

function totals (shares: ShareStatus[]): Totals {
  const t: Totals = { changesReceived: 0, changesSent: 0, bytesReceived: 0, bytesSent: 0, planned: 0, moved: 0 }
  for (const s of shares) {
    t.changesReceived += s.totals.changesReceived
    t.changesSent += s.totals.changesSent
    t.bytesReceived += s.totals.bytesReceived
    t.bytesSent += s.totals.bytesSent
    if (!s.enabled) continue
    for (const p of s.partners) {
      if (p.lag !== undefined) t.lag = (t.lag ?? 0) + p.lag
      const c = p.current
      if (c?.toSend !== undefined && c.toReceive !== undefined) {
        t.planned += c.toSend + c.toReceive
        t.moved += c.sent + c.received
      }
    }
  }
  return t
}

export function progressOf (start: Totals, now: Totals, elapsedMs: number): SyncProgress {
  const p: SyncProgress = {
    elapsedMs,
    changesReceived: now.changesReceived - start.changesReceived,
    changesSent: now.changesSent - start.changesSent,
    bytesReceived: now.bytesReceived - start.bytesReceived,
    bytesSent: now.bytesSent - start.bytesSent
  }
  const rate = (p.changesSent + p.changesReceived) / (elapsedMs / 1000)
  if (now.planned > 0) {
    // the running rounds know exactly what they will move
    p.expected = now.planned
    const left = now.planned - now.moved
    if (rate > 0 && left > 0) p.etaSeconds = left / rate
  } else if (start.lag !== undefined && start.lag > 0) {
    p.expected = start.lag
    const sendRate = p.changesSent / (elapsedMs / 1000)
    const left = start.lag - p.changesSent
    if (sendRate > 0 && left > 0) p.etaSeconds = left / sendRate
  }
  return p
}

/** `120 changes (100 in, 20 out), 1.2 MiB (1.0 MiB in, 200 KiB out), 300 KiB/s, ETA 4s` */
export function formatProgress (p: SyncProgress): string {
  const seconds = Math.max(p.elapsedMs / 1000, 0.001)
  const total = p.bytesReceived + p.bytesSent
  return [
    `${count(p.changesReceived + p.changesSent, 'change')} (${p.changesReceived} in, ${p.changesSent} out)`,
    `${bytes(total)} (${bytes(p.bytesReceived)} in, ${bytes(p.bytesSent)} out)`,
    `${bytes(Math.round(total / seconds))}/s`,
    ...(p.etaSeconds === undefined ? [] : [`ETA ${duration(p.etaSeconds)}`])
  ].join(', ')
}

/** Shows progress while the rounds run. */
interface Reporter {
  update: (p: SyncProgress) => void
  stop: (p: SyncProgress) => void
}

/** Not a terminal: a plain line at most every `lineMs`, and one at the end. */
function lineReporter (c: CliContext, lineMs: number): Reporter {
  let last = 0
  return {
    update: (p) => {
      if (p.elapsedMs - last < lineMs) return
      last = p.elapsedMs
      c.note(`sync ${duration(p.elapsedMs / 1000)}: ${formatProgress(p)}`)
    },
    stop: (p) => { c.note(`sync done in ${duration(p.elapsedMs / 1000)}: ${formatProgress(p)}`) }
  }
}

const BAR_WIDTH = 24

function barLine (p: SyncProgress): string {
  if (p.expected === undefined) return `sync ${duration(p.elapsedMs / 1000)} | ${formatProgress(p)}`
  const ratio = Math.min(1, p.changesSent / p.expected)
  const done = Math.round(ratio * BAR_WIDTH)
  return `sync [${'█'.repeat(done)}${'░'.repeat(BAR_WIDTH - done)}] ${Math.floor(ratio * 100)}% | ${formatProgress(p)}`
}

/** A terminal: a cli-progress bar on stderr (changes, bytes, rate, ETA when the partners' lag is known). */
function barReporter (c: CliContext): Reporter {
  const bar = new SingleBar({
    stream: c.progressStream,
    format: (_options, _params, payload: { line: string }) => payload.line,
    hideCursor: false, // a Ctrl-C would leave the terminal without a cursor
    fps: 5
  })
  let started = false
  return {
    update: (p) => {
      const payload = { line: barLine(p) }
      if (!started) bar.start(p.expected ?? 1, 0, payload)
      started = true
      bar.update(Math.min(p.changesSent, p.expected ?? 0), payload)
    },
    stop: (p) => {
      if (!started) bar.start(p.expected ?? 1, 0, { line: barLine(p) })
      bar.update(Math.min(p.changesSent, p.expected ?? 0), { line: barLine(p) })
      bar.stop()
    }
  }
}

export interface WaitOptions {
  /** How often `sync.status` is polled while the rounds run, ms. Default 200. */
  pollMs?: number
  /** Without a terminal, at most one progress line per this many ms. Default 1 000. */
  lineMs?: number
}

export interface SyncNowResult {
  started: boolean
  results?: RoundResult[]
}

/**
 * `sync.now {wait: true}`, polling `sync.status` meanwhile to show progress (a bar on a terminal, plain lines
 * otherwise). Returns the rounds' results and the shares' status at the end.
 */
export async function syncAndWait (c: CliContext, client: CliClient, share: string | undefined, options: WaitOptions = {}): Promise<{ result: SyncNowResult, shares: ShareStatus[] }> {
  const pollMs = options.pollMs ?? 200
  const which = share === undefined ? {} : { share }
  const status = async (): Promise<ShareStatus[]> => (await client.call<{ shares: ShareStatus[] }>('sync.status', which)).shares
  let shares = await status()
  const start = totals(shares)
  const t0 = Date.now()
  const reporter = c.isTTY ? barReporter(c) : lineReporter(c, options.lineMs ?? 1000)
  let settled = false
  const rounds = client.call<SyncNowResult>('sync.now', { ...which, wait: true })
  const finished = rounds.then(() => { settled = true }, () => { settled = true })
  let timer: NodeJS.Timeout | undefined
  try {
    while (!settled) {
      await Promise.race([finished, new Promise<void>((resolve) => { timer = setTimeout(resolve, pollMs) })])
      clearTimeout(timer)
      if (settled) break
      try {
        shares = await status()
      } catch {
        continue // a missed poll only delays the display; sync.now reports real failures
      }
      reporter.update(progressOf(start, totals(shares), Date.now() - t0))
    }
    const result = await rounds
    shares = await status().catch(() => shares)
    reporter.stop(progressOf(start, totals(shares), Date.now() - t0))
    return { result, shares }
  } catch (err) {
    reporter.stop(progressOf(start, totals(shares), Date.now() - t0))
    throw err
  }
}

export function formatResults (r: SyncNowResult, shares: ShareStatus[]): string {
  const results = r.results ?? []
  if (results.length === 0) return 'no partners to sync with'
  const tenantOf = new Map(shares.flatMap((s) => s.partners.map((p) => [p.peerId, p.tenantId] as const)))
  const lines = results.map((x) => {
    const who = `${tenantOf.get(x.peerId) ?? '?'} ${x.peerId}`
    if (!x.ok || x.result === undefined) return `${who} FAILED ${x.error?.code ?? ''}: ${x.error?.message ?? ''}`
    const s = x.result
    const rejected = Object.entries(s.rejected).map(([k, v]) => `${k} ${v}`).join(', ')
    return `${who} ok: received ${s.received} (${bytes(s.bytesReceived)}), sent ${s.sent} (${bytes(s.bytesSent)})${rejected === '' ? '' : `, rejected ${rejected}`}`
  })
  const failed = results.filter((x) => !x.ok).length
  lines.push(failed === 0 ? `${count(results.length, 'round')} ok` : `${failed} of ${count(results.length, 'round')} FAILED`)
  return lines.join('\n')
}

export function registerSync (program: Command, ctx: () => CliContext): void {
  const sync = program.command('sync')
    .description('sync rounds with partners (they also run on their own: live after changes and periodically)')

  sync.command('now')
    .description('start a round with every partner of a share (or of all enabled shares) now')
    .option('--share <id>', 'only this share')
    .option('-w, --wait', 'wait for the rounds, showing progress on stderr, then print each partner\'s result; exit 1 if any failed')
    .option('--timeout <seconds>', 'with --wait, give up when the daemon stays silent this long (default: wait as long as it takes)', positiveNumberArg)
    .addHelpText('after', `
With --wait, progress goes to stderr: a bar on a terminal (changes and bytes in and out, rate, ETA when the
partners' lag is known), plain lines once a second otherwise. The results go to stdout.`)
    .action(async (opts: { share?: string, wait?: boolean, timeout?: number }) => {
      const c = ctx()
      const which = opts.share === undefined ? {} : { share: opts.share }
      if (opts.wait !== true) {
        const r = await (await c.client()).call<SyncNowResult>('sync.now', which)
        c.print(r, () => 'sync rounds started (`mindoodb status` or `mindoodb partners` follows them)')
        return
      }
      const client = await c.client({ timeoutMs: opts.timeout === undefined ? 0 : opts.timeout * 1000 })
      const { result, shares } = await syncAndWait(c, client, opts.share)
      c.print(result, (r: SyncNowResult) => formatResults(r, shares))
      const failed = (result.results ?? []).filter((x) => !x.ok).length
      if (failed > 0) throw new RoundsFailedError(`${failed} of ${count(result.results?.length ?? 0, 'round')} failed`)
    })
}
