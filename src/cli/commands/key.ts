import type { Command } from 'commander'
import { UsageError, type CliContext } from '../context.js'
import { count } from '../format.js'
import { readInput, readSecret } from '../input.js'

const PASSWORD_HELP = 'file holding the password (first line), or - for stdin. Passwords are never taken as arguments: ps would show them'

interface KeyBlob { keyId: string, blob: string, versions?: number }

export function formatKeyList (r: { keys: Array<{ keyId: string, versions: number }> }): string {
  if (r.keys.length === 0) return 'no named keys'
  const width = Math.max(...r.keys.map((k) => k.keyId.length))
  return r.keys.map((k) => `${k.keyId.padEnd(width)}  ${count(k.versions, 'version')}`).join('\n')
}

export function registerKey (program: Command, ctx: () => CliContext): void {
  const key = program.command('key')
    .description('named keys: documents encrypted under one are readable by every tenant that holds it')
    .addHelpText('after', `
A key travels to partners as a blob wrapped under a password: send the blob and the password by different
channels. Passwords are read from files (--password-file FILE) or stdin (--password-file -), never from argv.`)

  // Prints the blob alone on stdout (so `> key.blob` works), the explanation on stderr.
  const printBlob = (c: CliContext, r: KeyBlob, what: string): void => {
    c.print(r, (v: KeyBlob) => v.blob)
    if (!c.json) c.note(`${what} ${r.keyId}${r.versions === undefined ? '' : ` (${count(r.versions, 'version')})`}: the blob above, wrapped under the password`)
  }

  key.command('create')
    .description('create a named key; prints it wrapped under the password, for partners to import')
    .argument('<keyId>', 'key id')
    .requiredOption('--password-file <file>', PASSWORD_HELP)
    .action(async (keyId: string, opts: { passwordFile: string }) => {
      const c = ctx()
      const password = await readSecret(c, opts.passwordFile)
      printBlob(c, await (await c.client()).call<KeyBlob>('key.create', { keyId, password }), 'created')
    })

  key.command('import')
    .description('import a named key (or new versions of it) from a partner\'s blob and its password')
    .argument('<keyId>', 'key id')
    .requiredOption('--blob-file <file>', 'file holding the wrapped blob, or - for stdin')
    .requiredOption('--password-file <file>', PASSWORD_HELP)
    .action(async (keyId: string, opts: { blobFile: string, passwordFile: string }) => {
      const c = ctx()
      if (opts.blobFile === '-' && opts.passwordFile === '-') throw new UsageError('only one of --blob-file and --password-file can be stdin')
      const blob = (await readInput(c, opts.blobFile, 'blob')).trim()
      if (blob === '') throw new UsageError(`the blob file ${opts.blobFile} is empty`)
      const password = await readSecret(c, opts.passwordFile)
      const r = await (await c.client()).call<{ keyId: string, versions: number }>('key.import', { keyId, blob, password })
      c.print(r, (v: typeof r) => `imported ${v.keyId} (${count(v.versions, 'version')})`)
    })

  key.command('export')
    .description('all versions of a named key wrapped under a password (prints the blob)')
    .argument('<keyId>', 'key id')
    .requiredOption('--password-file <file>', PASSWORD_HELP)
    .action(async (keyId: string, opts: { passwordFile: string }) => {
      const c = ctx()
      const password = await readSecret(c, opts.passwordFile)
      printBlob(c, await (await c.client()).call<KeyBlob>('key.export', { keyId, password }), 'exported')
    })

  key.command('rotate')
    .description('add a new version of a named key (it encrypts from now on); prints all versions wrapped, for partners')
    .argument('<keyId>', 'key id')
    .requiredOption('--password-file <file>', PASSWORD_HELP)
    .action(async (keyId: string, opts: { passwordFile: string }) => {
      const c = ctx()
      const password = await readSecret(c, opts.passwordFile)
      printBlob(c, await (await c.client()).call<KeyBlob>('key.rotate', { keyId, password }), 'rotated')
    })

  key.command('list')
    .description('named keys the tenant holds and their number of versions')
    .action(async () => {
      const c = ctx()
      c.print(await (await c.client()).call('key.list'), formatKeyList)
    })
}
