import { mkdir, open, readFile, rename, stat, chmod } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import type { Command } from 'commander'
import { createTenantFactory, type MindooTenant } from '../../core/index.js'
import { ConfigError, resolveConfig, type ConfigFile } from '../../daemon/config.js'
import { DEFAULT_DATA_DIR, GENERATED_PASSWORD_FILE } from '../../daemon/constants.js'
import { openOrCreateTenant } from '../../daemon/daemon.js'
import { TenantNotFoundError } from '../../errors.js'
import { loadOrCreatePeerKey } from '../../p2p/identity.js'
import type { SharePartner } from '../../sync/share.js'
import { silentLogger } from '../../util/logger.js'
import { UsageError, type CliContext, type GlobalOptions } from '../context.js'
import { readInput, readSecret } from '../input.js'

/** Where `init` writes the config when --config is not given. */
export const DEFAULT_CONFIG_FILE = 'mindoodb.json'
/** The daemon keeps the node's libp2p identity here, under the data directory (see Daemon.start). */
const NODE_DIR = 'node'

interface InitOptions {
  tenant: string
  dataDir?: string
  listen?: string[]
  rpcSocket?: string
  passwordFile?: string
  passphraseFile?: string
  force?: boolean
}

/** What `init` reports: the partner entry other organisations put in their share, and where things are. */
export interface InitResult {
  partner: SharePartner
  configFile: string
  dataDir: string
  tenantCreated: boolean
  /** The generated tenant encryption key password's file, when one was generated. */
  passwordFile?: string
}

/** Listen addresses worth giving partners: a fixed port on a concrete host (not 0.0.0.0 or a random port). */
function publishable (listen: string[] = []): string[] {
  return listen.filter((a) => !/\/tcp\/0(\/|$)/.test(a) && !/^\/ip4\/0\.0\.0\.0\//.test(a) && !/^\/ip6\/::\//.test(a))
}

async function exists (path: string): Promise<boolean> {
  try {
    await stat(path)
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false
    throw new UsageError(`cannot check ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { cause: err })
  }
}

async function writeConfig (path: string, content: string, force: boolean): Promise<void> {
  await mkdir(dirname(path), { recursive: true }).catch((err: NodeJS.ErrnoException) => {
    throw new UsageError(`cannot create ${dirname(path)}: ${err.code ?? String(err)}`, { cause: err })
  })
  const target = force ? `${path}.${process.pid}.tmp` : path
  let handle
  try {
    handle = await open(target, 'wx', 0o640)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new UsageError(`${path} exists (--force overwrites it)`, { cause: err })
    throw new UsageError(`cannot write ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { cause: err })
  }
  try {
    await handle.writeFile(content)
    await handle.sync()
  } finally {
    await handle.close()
  }
  await chmod(target, 0o640) // the umask may have taken bits away
  if (force) await rename(target, path)
}

/** Creates (or opens) the tenant and the node identity and writes a config file. Needs no daemon. */
export async function init (c: CliContext, configFile: string, opts: InitOptions): Promise<InitResult> {
  const abs = (p: string): string => resolve(p)
  const dataDir = abs(opts.dataDir ?? DEFAULT_DATA_DIR)
  const file: ConfigFile = {
    dataDir,
    tenant: opts.tenant,
    ...(opts.passphraseFile === undefined ? {} : { passphraseFile: abs(opts.passphraseFile) }),
    ...(opts.listen === undefined ? {} : { listen: opts.listen }),
    ...(opts.rpcSocket === undefined ? {} : { rpc: { socket: abs(opts.rpcSocket) } }),
    shares: []
  }
  try {
    await resolveConfig(file)
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(`the config would be invalid: ${err.message}`, { cause: err })
    throw err
  }
  if (opts.force !== true && await exists(configFile)) throw new UsageError(`${configFile} exists (--force overwrites it)`)
  const password = opts.passwordFile === undefined ? undefined : await readSecret(c, opts.passwordFile, 'tenant encryption key password')
  // the daemon reads the passphrase file the same way (trimmed)
  const passphrase = opts.passphraseFile === undefined ? undefined : (await readInput(c, opts.passphraseFile, 'passphrase')).trim()
  if (passphrase === '') throw new UsageError(`the passphrase file ${opts.passphraseFile ?? ''} is empty`)

  await mkdir(dataDir, { recursive: true, mode: 0o700 })
  const factory = await createTenantFactory({ dataDir, passphrase, logger: silentLogger })
  let tenant: MindooTenant
  let tenantCreated = false
  try {
    try {
      tenant = await factory.openTenant(opts.tenant, { tenantEncryptionKeyPassword: password })
    } catch (err) {
      if (!(err instanceof TenantNotFoundError)) throw err
      tenantCreated = true
      tenant = password === undefined
        ? await openOrCreateTenant(factory, opts.tenant, dataDir, silentLogger)
        : await factory.createTenant({ tenantId: opts.tenant, tenantEncryptionKeyPassword: password })
    }
  } finally {
    await factory.close()
  }
  const peerId = peerIdFromPrivateKey(await loadOrCreatePeerKey(join(dataDir, NODE_DIR))).toString()
  await writeConfig(configFile, JSON.stringify(file, null, 2) + '\n', opts.force === true)

  const addresses = publishable(opts.listen)
  const generated = join(dataDir, GENERATED_PASSWORD_FILE)
  return {
    partner: { peerId, tenant: tenant.getPublicInfo(), ...(addresses.length === 0 ? {} : { addresses }) },
    configFile,
    dataDir,
    tenantCreated,
    passwordFile: password === undefined && await readFile(generated).then(() => true, () => false) ? generated : undefined
  }
}

export function formatInit (r: InitResult): string {
  return [
    `tenant   ${r.partner.tenant.tenantId} (${r.tenantCreated ? 'created' : 'existed, opened'})`,
    `signing  ${r.partner.tenant.signingPublicKey}`,
    `peer     ${r.partner.peerId}`,
    ...(r.partner.addresses ?? []).map((a) => `address  ${a}`),
    `config   ${r.configFile}`,
    `data     ${r.dataDir}`,
    ...(r.passwordFile === undefined ? [] : [`password ${r.passwordFile} (tenant encryption key password, generated: keep it safe)`]),
    '',
    'Partners put this in the "partners" of their share (`mindoodb --json init ...` prints just this):',
    JSON.stringify(r.partner),
    '',
    `Start the node: mindoodb daemon --config ${r.configFile}`
  ].join('\n')
}

export function registerInit (program: Command, ctx: () => CliContext): void {
  program.command('init')
    .description('create the tenant, the node identity and a config file (no daemon needed); prints what partners need')
    .requiredOption('-t, --tenant <id>', 'the organisation\'s tenant id (A-Z a-z 0-9 . _ : @ -)')
    .option('-d, --data-dir <dir>', `data directory (default: ./${DEFAULT_DATA_DIR})`)
    .option('-l, --listen <addr...>', 'libp2p listen multiaddrs, e.g. /ip4/0.0.0.0/tcp/4001 (default: a random port on 127.0.0.1)')
    .option('--rpc-socket <path>', 'JSON-RPC socket (default: <data-dir>/rpc.sock)')
    .option('--password-file <file>', 'file (or - for stdin) with the tenant encryption key password; default: generate one into <data-dir>/tenant-password (0600). Never give passwords as arguments: ps shows them')
    .option('--passphrase-file <file>', 'file with a passphrase that encrypts the tenant\'s keys at rest (kept in the config)')
    .option('-f, --force', 'overwrite an existing config file')
    .addHelpText('after', `
The config goes to the global --config FILE (default ./${DEFAULT_CONFIG_FILE}), mode 0640. Running init again on the
same data directory opens the existing tenant and identity. With --json, prints only the partner entry:
{"peerId": ..., "tenant": {"tenantId": ..., "signingPublicKey": ...}} for a partner's share.`)
    .action(async (opts: InitOptions) => {
      const c = ctx()
      const configFile = resolve(program.opts<GlobalOptions>().config ?? DEFAULT_CONFIG_FILE)
      const result = await init(c, configFile, opts)
      c.print(c.json ? result.partner : result, formatInit)
    })
}
