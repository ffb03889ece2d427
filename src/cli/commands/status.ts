import type { Command } from 'commander'
import type { ShareStatus } from '../../p2p/index.js'
import type { CliContext } from '../context.js'
import { ago } from '../format.js'

/** A share's status as `sync.status` returns it: the node's, with its database's materialisation backlog. */
export type ShareStatusView = ShareStatus & { materialiseBacklog?: number }

export function formatStatus (info: { peerId: string, addresses: string[], tenant: { tenantId: string } }, shares: ShareStatusView[]): string {
  const lines = [`tenant ${info.tenant.tenantId}  peer ${info.peerId}`, ...info.addresses.map((a) => `  listening ${a}`)]
  if (shares.length === 0) lines.push('no shares')
  for (const s of shares) {
    const t = s.totals
    lines.push(`share ${s.id} (${s.enabled ? 'enabled' : 'DISABLED'}, ${s.direction}, filter ${s.filter}) -> database ${s.database}`)
    lines.push(`  served ${s.servedSetSize} changes; sent ${t.changesSent} (${t.bytesSent} B), received ${t.changesReceived} (${t.bytesReceived} B); rounds ${t.rounds}, failed ${t.roundsFailed}`)
    if (s.materialiseBacklog !== undefined) lines.push(`  materialisation backlog ${s.materialiseBacklog} changes (stored, not yet readable)`)
    if (Object.keys(t.rejected).length > 0) lines.push(`  rejected: ${Object.entries(t.rejected).map(([k, v]) => `${k} ${v}`).join(', ')}`)
    for (const p of s.partners) {
      // an error older than the last successful sync is history, not state
      const err = p.lastError === undefined || (p.lastSuccessAt ?? 0) > p.lastError.at ? '' : `, last error ${p.lastError.code} ${ago(p.lastError.at)}`
      lines.push(`  partner ${p.tenantId} ${p.connected ? 'connected' : 'not connected'}, last sync ${ago(p.lastSuccessAt)}, lag ${p.lag ?? '?'}${err}`)
    }
  }
  return lines.join('\n')
}

export function registerStatus (program: Command, ctx: () => CliContext): void {
  program.command('status')
    .description('the node, its shares and partners at a glance')
    .action(async () => {
      const c = ctx()
      const client = await c.client()
      const info = await client.call('node.info')
      const { shares } = await client.call<{ shares: ShareStatusView[] }>('sync.status')
      c.print({ ...info, shares }, (v) => formatStatus(v, v.shares))
    })
}
