import { randomBytes } from 'node:crypto'
import { Option, type Command } from 'commander'
import { MIN_TOPIC_SECRET_CHARS, TOPIC_SECRET_BYTES } from '../../daemon/constants.js'
import type { ShareConfig } from '../../sync/share.js'
import { UsageError, type CliContext } from '../context.js'
import { brief } from '../format.js'
import { collect, jsonObjectArg, readInput, readJsonObject, readSecret } from '../input.js'

/** A share as the daemon shows it: no topic secret, and where it came from. */
export type ShareView = Omit<ShareConfig, 'topicSecret'> & { origin: 'config' | 'rpc' }

function describeFilter (f: ShareView['filter'] | undefined): string {
  if (f === undefined) return 'all'
  switch (f.kind) {
    case 'type': return `type ${f.types.join(',')}`
    case 'keys': return `keys ${f.keyIds.join(',')}`
    case 'selector': return `selector ${brief(f.selector, 60)}`
    default: return f.kind
  }
}

export function formatShare (s: ShareView): string {
  return [
    `share ${s.id} (${s.enabled ? 'enabled' : 'DISABLED'}, ${s.direction}, filter ${describeFilter(s.filter)}) -> database ${s.database}, from ${s.origin}`,
    ...(s.partners.length === 0 ? ['  no partners'] : s.partners.map((p) =>
      `  partner ${p.tenant.tenantId} ${p.peerId}${(p.addresses ?? []).length === 0 ? '' : ' ' + (p.addresses ?? []).join(' ')}`))
  ].join('\n')
}

/** A random topic secret: 256 bits, base64url (43 characters). */
export function newTopicSecret (): string {
  return randomBytes(TOPIC_SECRET_BYTES).toString('base64url')
}

/** Partners from files: each holds one partner entry (what `mindoodb --json init` prints) or an array of them. */
async function readPartners (c: CliContext, files: string[]): Promise<unknown[]> {
  const partners: unknown[] = []
  for (const file of files) {
    const text = await readInput(c, file, 'partner')
    let value: unknown
    try {
      value = JSON.parse(text)
    } catch (err) {
      throw new UsageError(`partner file ${file} is not valid JSON: ${(err as Error).message}`, { cause: err })
    }
    partners.push(...(Array.isArray(value) ? value : [value]))
  }
  return partners
}

interface ShareFlags {
  file?: string
  id?: string
  database?: string
  topicSecretFile?: string
  partnerFile?: string[]
  filter?: Record<string, unknown>
  direction?: string
  disabled?: boolean
}

/** The fields given as flags, over those of --file. */
async function fromFlags (c: CliContext, opts: ShareFlags, what: string): Promise<Record<string, unknown>> {
  const stdin = [opts.file, opts.topicSecretFile, ...(opts.partnerFile ?? [])].filter((f) => f === '-').length
  if (stdin > 1) throw new UsageError('only one file can be - (stdin)')
  const base = opts.file === undefined ? {} : await readJsonObject(c, opts.file, what)
  return {
    ...base,
    ...(opts.id === undefined ? {} : { id: opts.id }),
    ...(opts.database === undefined ? {} : { database: opts.database }),
    ...(opts.topicSecretFile === undefined ? {} : { topicSecret: await readSecret(c, opts.topicSecretFile, 'topic secret') }),
    ...(opts.partnerFile === undefined ? {} : { partners: await readPartners(c, opts.partnerFile) }),
    ...(opts.filter === undefined ? {} : { filter: opts.filter }),
    ...(opts.direction === undefined ? {} : { direction: opts.direction }),
    ...(opts.disabled === true ? { enabled: false } : {})
  }
}

const direction = (): Option => new Option('--direction <direction>', 'both, serve (we only send) or receive (we only take)').choices(['both', 'serve', 'receive'])
const filterHelp = 'what this side serves, JSON: {"kind":"all"}, {"kind":"type","types":["order"]}, {"kind":"keys","keyIds":["k"]} or {"kind":"selector","selector":{...}}'
const secretHelp = `file holding the topic secret (first line, ${MIN_TOPIC_SECRET_CHARS}+ characters, e.g. from \`mindoodb share secret\`; only participants know it), or - for stdin`

export function registerShare (program: Command, ctx: () => CliContext): void {
  const share = program.command('share')
    .description('shares: which database syncs with which partners, in which direction, serving what')
    .addHelpText('after', `
A share file is a JSON object as in the config's "shares" (see config/mindoodb.schema.json):
  {"id": "orders", "topicSecret": "...", "database": "orders", "partners": [<partner>...],
   "direction": "both", "filter": {"kind": "type", "types": ["order"]}, "enabled": true}
A <partner> is what the partner's \`mindoodb --json init\` printed. Shares added here survive restarts.
Topic secrets come from files, never from arguments, and are never shown back.`)

  /** The share fields both add and update take as flags. */
  const withFieldOptions = (cmd: Command): Command => cmd
    .option('--database <name>', 'the local database it maps to')
    .option('--topic-secret-file <file>', secretHelp)
    .option('--partner-file <file>', 'a partner entry (or an array of them) as JSON; repeatable', collect)
    .option('--filter <json>', filterHelp, jsonObjectArg)
    .addOption(direction())

  const run = (method: string, params: (id: string) => Record<string, unknown>) => async (id: string): Promise<void> => {
    const c = ctx()
    c.print(await (await c.client()).call<ShareView>(method, params(id)), formatShare)
  }

  share.command('secret')
    .description(`print a new random topic secret (${TOPIC_SECRET_BYTES * 8} bits, base64url) to agree with the partners; needs no daemon`)
    .addHelpText('after', `
Write it to a file that only you can read (umask 077; mindoodb share secret > orders.topic) and give it to the
partners by a channel you trust; every participant uses the same secret for the share.`)
    .action(async () => {
      const c = ctx()
      c.print({ topicSecret: newTopicSecret() }, (r: { topicSecret: string }) => r.topicSecret)
    })

  withFieldOptions(share.command('add')
    .description('add a share and start syncing it: from a JSON file, flags override its fields')
    .option('-f, --file <file>', 'the share as JSON (or - for stdin)')
    .option('--id <id>', 'local name of the share'))
    .option('--disabled', 'add it disabled')
    .action(async (opts: ShareFlags) => {
      const c = ctx()
      const s = await fromFlags(c, opts, 'share')
      if (typeof s.id !== 'string') throw new UsageError('a share needs an id (--id or "id" in --file)')
      c.print(await (await c.client()).call<ShareView>('share.add', { share: s }), formatShare)
    })

  withFieldOptions(share.command('update')
    .description('change a share: fields from a JSON file (a partial share), flags override them; --partner-file replaces the partners')
    .argument('<id>', 'share id')
    .option('-f, --file <file>', 'the fields to change as JSON (or - for stdin)'))
    .action(async (id: string, opts: ShareFlags) => {
      const c = ctx()
      const update = await fromFlags(c, opts, 'update')
      if (Object.keys(update).length === 0) throw new UsageError('nothing to change: give --file or a flag')
      c.print(await (await c.client()).call<ShareView>('share.update', { id, update }), formatShare)
    })

  share.command('enable')
    .description('enable a share')
    .argument('<id>', 'share id')
    .action(run('share.enable', (id) => ({ id })))

  share.command('disable')
    .description('disable a share: serving stops at once and open sessions close (how access is revoked)')
    .argument('<id>', 'share id')
    .action(run('share.disable', (id) => ({ id })))

  share.command('remove')
    .description('remove a share (its database stays)')
    .argument('<id>', 'share id')
    .action(async (id: string) => {
      const c = ctx()
      c.print(await (await c.client()).call('share.remove', { id }), (r: { id: string }) => `removed share ${r.id}`)
    })

  share.command('list')
    .description('the shares (topic secrets are never shown)')
    .action(async () => {
      const c = ctx()
      c.print(await (await c.client()).call('share.list'), (r: { shares: ShareView[] }) =>
        r.shares.length === 0 ? 'no shares' : r.shares.map(formatShare).join('\n'))
    })

  share.command('show')
    .description('one share (without its topic secret)')
    .argument('<id>', 'share id')
    .action(run('share.get', (id) => ({ id })))
}
