import { relative } from 'node:path'
import type { Command } from 'commander'
import { runDaemon } from '../../daemon/run.js'

export function registerDaemon (program: Command): void {
  program.command('daemon')
    .description('run the node in the foreground (logs JSON lines on stdout; SIGTERM stops, SIGHUP reloads shares)')
    .option('-c, --config <file>', 'config file (default: embedded defaults)')
    .action(async (opts: { config?: string }) => {
      await runDaemon(opts.config ?? program.opts<{ config?: string }>().config, (daemon) => {
        if (process.env.NOTIFY_SOCKET !== undefined) return // under systemd: the journal has the ready line
        const node = daemon.node
        process.stderr.write([
          '',
          `MindooDB node running: peer ${node.peerId}`,
          ...node.getMultiaddrs().map((a) => `  libp2p   ${a}`),
          `  JSON-RPC ${daemon.rpcSocket}${daemon.httpPort === undefined ? '' : ` and http://127.0.0.1:${daemon.httpPort}/`}`,
          ...(daemon.metricsPort === undefined ? [] : [`  metrics  http://127.0.0.1:${daemon.metricsPort}/metrics`]),
          `try: node ${relative(process.cwd(), process.argv[1] ?? 'dist/src/cli/main.js')} --socket ${daemon.rpcSocket} status      (Ctrl-C stops the node)`,
          ''
        ].join('\n'))
      })
    })
}
