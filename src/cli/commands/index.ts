import type { Command } from 'commander'
import type { CliContext } from '../context.js'
import { registerDaemon } from './daemon.js'
import { registerStatus } from './status.js'

/** Adds every subcommand; each gets the context lazily, once global options are parsed. */
export function registerCommands (program: Command, ctx: () => CliContext): void {
  registerDaemon(program)
  registerStatus(program, ctx)
}
