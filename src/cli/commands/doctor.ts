import type { Command } from 'commander'
import type { DoctorReport } from '../../p2p/index.js'
import type { CliContext } from '../context.js'
import { ago } from '../format.js'

/** The doctor's report for people: addresses, then per share and partner, then the findings. */
export function formatDoctor (r: DoctorReport, now = Date.now()): string {
  const lines = [`peer ${r.peerId}`]
  lines.push(...(r.listen.length === 0 ? ['  listening nowhere'] : r.listen.map((a) => `  listening  ${a}`)))
  lines.push(...(r.announced.length === 0 ? ['  announcing nothing'] : r.announced.map((a) => `  announcing ${a}`)))
  if (r.announcesPrivate) lines.push('  (private or loopback addresses are announced)')
  const n = r.nat
  lines.push(`  reachability: ${n.reachability} (AutoNAT ${n.autonat ? 'on' : 'off'}, hole punching ${n.dcutr ? 'on' : 'off'}); NAT: ${n.nat}`)
  for (const x of n.reservations) {
    const state = x.state === 'reserved'
      ? `reserved, reachable at ${x.addresses.join(' ')}`
      : `${x.state === 'failed' ? 'FAILED' : 'pending'}${x.lastError === undefined ? '' : ` (${x.lastError.code} ${ago(x.lastError.at, now)}: ${x.lastError.message})`}${x.retryAt === undefined ? '' : `, next try in ${Math.max(0, Math.round((x.retryAt - now) / 1000))} s`}`
    lines.push(`  relay ${x.relay}: ${state}`)
  }
  if (n.relay !== undefined) {
    const { clients, maxReservations, limits, refused } = n.relay
    lines.push(`  serving as a relay for partners: ${clients.length} of ${maxReservations} reservation(s) held; per relayed connection at most ${limits.dataBytes} bytes and ${Math.round(limits.durationMs / 1000)} s`)
    if (refused.reservations + refused.hops + refused.inboundRelayed > 0) {
      lines.push(`    refused: ${refused.reservations} reservation(s), ${refused.hops} hop(s), ${refused.inboundRelayed} relayed connection(s) from peers that are no partner${refused.last === undefined ? '' : ` (last: ${refused.last.kind} by ${refused.last.peerId} ${ago(refused.last.at, now)})`}`)
    }
  }
  for (const s of r.shares) {
    lines.push(`share ${s.id}${s.enabled ? '' : ' (DISABLED)'}`)
    for (const p of s.partners) {
      const how = p.connected ? `connected ${p.via} (${p.connections.map((c) => `${c.direction} ${c.address}`).join(', ')})` : 'not connected'
      lines.push(`  partner ${p.tenantId} ${p.peerId}`)
      lines.push(`    ${p.dial ? 'dialled' : 'not dialled (dial: false)'}, ${how}`)
      lines.push(`    known addresses: ${p.knownAddresses.length === 0 ? 'none' : p.knownAddresses.join(' ')}`)
      const dialable = [p.dialable.direct ? 'directly' : '', p.dialable.relayed ? 'through a relay' : ''].filter((x) => x !== '')
      lines.push(`    dialable: ${dialable.length === 0 ? 'no' : dialable.join(' and ')}`)
      const round = p.lastRound === undefined ? 'none yet' : `${p.lastRound.result === 'failed' ? 'FAILED' : p.lastRound.result} (started ${ago(p.lastRound.at, now)})`
      const error = p.lastError === undefined ? '' : `; last error ${p.lastError.code} ${ago(p.lastError.at, now)}: ${p.lastError.message}`
      lines.push(`    last round: ${round}; last sync ${ago(p.lastSuccessAt, now)}${error}`)
      if (p.backoff.failures > 0) {
        const next = p.backoff.retryAt === undefined ? '' : `, next try in ${Math.max(0, Math.round((p.backoff.retryAt - now) / 1000))} s`
        lines.push(`    backing off: ${p.backoff.failures} failed round(s) in a row${next}`)
      }
    }
  }
  lines.push(r.findings.length === 0 ? 'findings: none, all partners are reachable' : 'findings:')
  for (const f of r.findings) lines.push(`  ${f.level === 'problem' ? 'PROBLEM' : 'note'}: ${f.text}`)
  return lines.join('\n')
}

export function registerDoctor (program: Command, ctx: () => CliContext): void {
  program.command('doctor')
    .description('how this node is reached and reaches each partner: addresses, reachability (AutoNAT), NAT status, relay reservations, per partner whether it is dialable and how it is connected (direct or relayed), last errors, backoff, findings in plain words')
    .action(async () => {
      const c = ctx()
      c.print(await (await c.client()).call<DoctorReport>('node.doctor'), (r: DoctorReport) => formatDoctor(r))
    })
}
