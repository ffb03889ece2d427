import type { Command } from 'commander'
import type { CliContext } from '../context.js'
import { parseJsonObject, readInput } from '../input.js'

export function registerRpc (program: Command, ctx: () => CliContext): void {
  program.command('rpc')
    .description('call any JSON-RPC method with by-name params and print the result as JSON (rpc.discover lists them all)')
    .argument('<method>', 'method name, e.g. node.info, doc.get, rpc.discover')
    .argument('[params]', 'params as a JSON object, or - to read them from stdin (default {})')
    .addHelpText('after', `
Examples:
  mindoodb rpc rpc.discover
  mindoodb rpc doc.get '{"database":"orders","docId":"o-1"}'
  echo '{"keyId":"k","password":"..."}' | mindoodb rpc key.export -     (keeps the password out of argv)`)
    .action(async (method: string, params: string | undefined) => {
      const c = ctx()
      const value = params === undefined ? {} : parseJsonObject(params === '-' ? await readInput(c, '-', 'params') : params, 'params')
      const result: unknown = await (await c.client()).call(method, value)
      c.print(result, (r) => JSON.stringify(r, null, 2))
    })
}
