import type { Command } from 'commander'
import type { PartnerStatus } from '../../p2p/index.js'
import type { CliContext } from '../context.js'
import type { RevocationResult } from '../../daemon/daemon.js'
import { ago, count } from '../format.js'
import { readSecret } from '../input.js'

export type PartnerView = PartnerStatus & { share: string }

export function formatPartner (p: PartnerStatus): string {
  const err = p.lastError === undefined ? '' : `, last error ${p.lastError.code} ${ago(p.lastError.at)}`
  return `${p.tenantId} ${p.peerId} ${p.connected ? 'connected' : 'not connected'}, last sync ${ago(p.lastSuccessAt)}, lag ${p.lag ?? '?'}, rounds ${p.rounds} (${p.roundsFailed} failed)${p.sessionsFailed > 0 ? `, other sessions failed: ${p.sessionsFailed}` : ''}${err}`
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

/** What the operator does next after a revocation: per rotated key, the blob and who should import it. */
export function formatRevocation (r: RevocationResult): string {
  if (r.alreadyRevoked === true) return 'already revoked: no share names it'
  const lines = r.revoked.map((p) => `revoked ${p.tenantId}${p.peerId === undefined ? '' : ` peer ${p.peerId}`} (signing key ${p.signingPublicKey})`)
  lines.push(`removed from ${count(r.shares.length, 'share')}: ${r.shares.join(', ')}; its sessions are closed, changes it signs from now on are rejected`)
  if (r.rotated.length === 0) lines.push('no named keys to rotate')
  for (const k of r.rotated) {
    lines.push('', `rotated ${k.keyId} (${count(k.versions, 'version')}): new documents under it are encrypted with a version the revoked partner lacks`)
    if (k.importers.length === 0) lines.push('  no remaining partner serves it')
    for (const i of k.importers) lines.push(`  import at ${i.tenantId}${i.peerId === undefined ? ' (participant)' : ` peer ${i.peerId}`}, share ${i.share}`)
    lines.push(`  blob (wrapped under the password given; send blob and password by different channels; mindoodb key import ${k.keyId} --blob-file ... --password-file ...):`, `  ${k.blob}`)
  }
  return lines.join('\n')
}

export function registerPartner (program: Command, ctx: () => CliContext): void {
  const partner = program.command('partner')
    .description('act on one partner across every share (see `mindoodb partners` for the list)')

  partner.command('revoke')
    .description('revoke a partner on every share: close its sessions, reject what it signs from now on, rotate the named keys it held')
    .argument('<partner>', 'its peer id, tenant id or tenant signing key')
    .requiredOption('--password-file <file>', 'file holding the password to wrap the rotated keys under (first line), or - for stdin')
    .addHelpText('after', `
What it authored and this node already stored stays valid. The revocation is kept in the data directory: a share
in the config file that still names the partner does not re-admit it (the daemon logs a warning). Prints, per
rotated key, all its versions wrapped under the password and which remaining partners should import them.`)
    .action(async (who: string, opts: { passwordFile: string }) => {
      const c = ctx()
      const password = await readSecret(c, opts.passwordFile)
      c.print(await (await c.client()).call<RevocationResult>('partner.revoke', { partner: who, password }), formatRevocation)
    })
}
