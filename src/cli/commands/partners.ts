import type { Command } from 'commander'
import type { PartnerStatus } from '../../p2p/index.js'
import type { CliContext } from '../context.js'
import { ago } from '../format.js'

export type PartnerView = PartnerStatus & { share: string }

export function formatPartner (p: PartnerStatus): string {
  const err = p.lastError === undefined ? '' : `, last error ${p.lastError.code} ${ago(p.lastError.at)}`
  return `${p.tenantId} ${p.peerId} ${p.connected ? 'connected' : 'not connected'}, last sync ${ago(p.lastSuccessAt)}, lag ${p.lag ?? '?'}, rounds ${p.rounds} (${p.roundsFailed} failed)${err}`
}

export function formatPartners (r: { partners: PartnerView[] }): string {
  if (r.partners.length === 0) return 'no partners (add a share with `mindoodb share add`)'
  return r.partners.map((p) => `share ${p.share}: ${formatPartner(p)}`).join('\n')
}

export function registerPartners (program: Command, ctx: () => CliContext): void {
  program.command('partners')
    .description('the partners of every share: connected or not, last sync, lag (changes they lack), errors')
    .action(async () => {
      const c = ctx()
      c.print(await (await c.client()).call('partners.list'), formatPartners)
    })
}
