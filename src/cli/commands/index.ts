import type { Command } from 'commander'
import type { CliContext } from '../context.js'
import { registerDaemon } from './daemon.js'
import { registerDoc } from './doc.js'
import { registerInit } from './init.js'
import { registerKey } from './key.js'
import { registerPartner, registerPartners } from './partners.js'
import { registerPeers } from './peers.js'
import { registerRpc } from './rpc.js'
import { registerShare } from './share.js'
import { registerStatus } from './status.js'
import { registerSync } from './sync.js'

/** Adds every subcommand; each gets the context lazily, once global options are parsed. */
export function registerCommands (program: Command, ctx: () => CliContext): void {
  registerInit(program, ctx)
  registerDaemon(program)
  registerStatus(program, ctx)
  registerDoc(program, ctx)
  registerKey(program, ctx)
  registerShare(program, ctx)
  registerPeers(program, ctx)
  registerPartners(program, ctx)
  registerPartner(program, ctx)
  registerSync(program, ctx)
  registerRpc(program, ctx)
}
