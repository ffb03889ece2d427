import type { Command } from 'commander'
import type { CliContext } from '../context.js'

export interface PeerView { peerId: string, addresses: string[] }

export function formatPeers (r: { peers: PeerView[] }): string {
  if (r.peers.length === 0) return 'no peers connected'
  return r.peers.map((p) => `${p.peerId}  ${p.addresses.join(' ')}`).join('\n')
}

export function registerPeers (program: Command, ctx: () => CliContext): void {
  program.command('peers')
    .description('peers connected now (partners and other participants of the private DHT)')
    .action(async () => {
      const c = ctx()
      c.print(await (await c.client()).call('peers.list'), formatPeers)
    })
}
