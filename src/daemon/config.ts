/**
 * The daemon's configuration: one JSON file per organisation, validated against `config/mindoodb.schema.json`.
 * Errors name the key (as a JSON pointer such as `/shares/0/topicSecret`) and what is wrong with it.
 */
import { readFile } from 'node:fs/promises'
import { isAbsolute, join, resolve } from 'node:path'
import { Ajv, type ErrorObject } from 'ajv'
import { ConfigError, InvalidArgumentError } from '../errors.js'
import { validateNatInit, type NatInit } from '../p2p/nat.js'
import { compileSelector, InvalidFilterError } from '../sync/filter.js'
import { validateShare, type ShareConfig } from '../sync/share.js'
import { DEFAULT_DATA_DIR, DEFAULT_LOG_LEVEL, DEFAULT_SOCKET_NAME, DEFAULT_TENANT } from './constants.js'

export { ConfigError }

export type LogLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent'

/** The config file as written (every key optional). */
export interface ConfigFile {
  dataDir?: string
  tenant?: string
  passphraseFile?: string
  listen?: string[]
  bootstrap?: string[]
  dht?: boolean
  announcePrivateAddresses?: boolean
  allowPeers?: string[]
  relay?: { serve?: boolean, maxReservations?: number, limits?: { dataBytes?: number, durationSeconds?: number }, via?: string[] }
  nat?: { autonat?: boolean, holePunching?: boolean }
  rpc?: { socket?: string, http?: { port: number, tokenFile: string } }
  metrics?: { port: number }
  logLevel?: LogLevel
  sync?: { intervalSeconds?: number, backoffBaseSeconds?: number, backoffMaxSeconds?: number, maxFrameBytes?: number }
  shares?: Array<Partial<ShareConfig> & Pick<ShareConfig, 'id' | 'topicSecret' | 'database' | 'partners'>>
}

/** The config with defaults applied and paths made absolute. */
export interface DaemonConfig {
  /** The file it came from, if any (SIGHUP re-reads it). */
  file?: string
  dataDir: string
  tenant: string
  passphraseFile?: string
  listen?: string[]
  bootstrap: string[]
  dht: boolean
  /** Announce loopback and private addresses (default false). */
  announcePrivateAddresses: boolean
  /** Peer ids the connection gater admits besides partners and bootstrap peers (default none). */
  allowPeers: string[]
  /** AutoNAT, the relay served and the relays listened through, hole punching (from `relay` and `nat`). */
  nat: NatInit
  rpc: { socket: string, http?: { port: number, tokenFile: string } }
  metrics?: { port: number }
  logLevel: LogLevel
  sync: { intervalMs?: number, backoffBaseMs?: number, backoffMaxMs?: number, maxFrameBytes?: number }
  shares: ShareConfig[]
}

let validator: ReturnType<Ajv['compile']> | undefined

async function schemaValidator (): Promise<ReturnType<Ajv['compile']>> {
  if (validator === undefined) {
    const schema = JSON.parse(await readFile(new URL('../../../config/mindoodb.schema.json', import.meta.url), 'utf8'))
    validator = new Ajv({ allErrors: false, strict: true, useDefaults: true }).compile(schema)
  }
  return validator
}

function describe (e: ErrorObject): ConfigError {
  switch (e.keyword) {
    case 'additionalProperties':
      return new ConfigError(`${e.instancePath}/${String(e.params.additionalProperty)}`, 'unknown key')
    case 'required':
      return new ConfigError(`${e.instancePath}/${String(e.params.missingProperty)}`, 'is required')
    default:
      return new ConfigError(e.instancePath, e.message ?? 'is invalid')
  }
}

/** Validates a parsed config object and resolves defaults. Throws ConfigError naming the bad key. */
export async function resolveConfig (input: unknown, file?: string): Promise<DaemonConfig> {
  const validate = await schemaValidator()
  const raw = structuredClone(input ?? {}) as ConfigFile
  if (!validate(raw)) {
    // oneOf failures report every branch; the most specific error is the deepest one
    // (an unknown key's error names the key itself, one level below where ajv reports it)
    const errors = (validate.errors ?? []).map(describe).sort((a, b) => b.key.length - a.key.length)
    throw errors[0]
  }
  const abs = (p: string): string => isAbsolute(p) ? p : resolve(p)
  const dataDir = abs(raw.dataDir ?? DEFAULT_DATA_DIR)
  const seen = new Set<string>()
  const shares = (raw.shares ?? []).map((s, i) => {
    if (seen.has(s.id)) throw new ConfigError(`/shares/${i}/id`, `duplicate share id ${s.id}`)
    seen.add(s.id)
    // the schema checks a selector's shape only; its operators are checked here, so the error names the key
    const filter = s.filter as { kind?: string, selector?: Record<string, unknown> } | undefined
    if (filter?.kind === 'selector') {
      try {
        compileSelector(filter.selector ?? {})
      } catch (err) {
        if (err instanceof InvalidFilterError) throw new ConfigError(`/shares/${i}/filter/selector`, err.message, { cause: err })
        throw err
      }
    }
    try {
      return validateShare({ direction: 'both', enabled: true, filter: { kind: 'all' }, ...s })
    } catch (err) {
      throw new ConfigError(`/shares/${i}`, (err as Error).message, { cause: err })
    }
  })
  const sec = (s: number | undefined): number | undefined => s === undefined ? undefined : Math.round(s * 1000)
  const nat = natOf(raw)
  return {
    file,
    dataDir,
    tenant: raw.tenant ?? DEFAULT_TENANT,
    passphraseFile: raw.passphraseFile === undefined ? undefined : abs(raw.passphraseFile),
    listen: raw.listen,
    bootstrap: raw.bootstrap ?? [],
    dht: raw.dht ?? true,
    announcePrivateAddresses: raw.announcePrivateAddresses ?? false,
    allowPeers: raw.allowPeers ?? [],
    nat,
    rpc: {
      socket: abs(raw.rpc?.socket ?? join(dataDir, DEFAULT_SOCKET_NAME)),
      http: raw.rpc?.http === undefined ? undefined : { port: raw.rpc.http.port, tokenFile: abs(raw.rpc.http.tokenFile) }
    },
    metrics: raw.metrics,
    logLevel: raw.logLevel ?? DEFAULT_LOG_LEVEL,
    sync: {
      intervalMs: sec(raw.sync?.intervalSeconds),
      backoffBaseMs: sec(raw.sync?.backoffBaseSeconds),
      backoffMaxMs: sec(raw.sync?.backoffMaxSeconds),
      maxFrameBytes: raw.sync?.maxFrameBytes
    },
    shares
  }
}

/** `relay` and `nat` of the file as the node's NatInit; a bad value is a ConfigError naming its key. */
function natOf (raw: ConfigFile): NatInit {
  const relay = raw.relay ?? {}
  if (relay.serve !== true) {
    for (const key of ['maxReservations', 'limits'] as const) {
      if (relay[key] !== undefined) throw new ConfigError(`/relay/${key}`, 'applies only with "serve": true')
    }
  }
  const nat: NatInit = {
    autonat: raw.nat?.autonat ?? true,
    dcutr: raw.nat?.holePunching ?? true,
    relays: relay.via ?? [],
    serve: relay.serve === true
      ? {
          ...(relay.maxReservations === undefined ? {} : { maxReservations: relay.maxReservations }),
          ...(relay.limits?.dataBytes === undefined ? {} : { dataLimitBytes: relay.limits.dataBytes }),
          ...(relay.limits?.durationSeconds === undefined ? {} : { durationLimitMs: relay.limits.durationSeconds * 1000 })
        }
      : false
  }
  for (const [i, via] of (relay.via ?? []).entries()) {
    try {
      validateNatInit({ relays: [via] })
    } catch (err) {
      if (err instanceof InvalidArgumentError) throw new ConfigError(`/relay/via/${i}`, err.message, { cause: err })
      throw err
    }
  }
  return nat
}

/** Reads and validates a config file; without a file, the embedded defaults. */
export async function loadConfig (file?: string): Promise<DaemonConfig> {
  if (file === undefined) return await resolveConfig({})
  let text: string
  try {
    text = await readFile(file, 'utf8')
  } catch (err) {
    throw new ConfigError('', `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { cause: err })
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (err) {
    throw new ConfigError('', `${file} is not valid JSON: ${(err as Error).message}`, { cause: err })
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new ConfigError('', 'the config must be a JSON object')
  return await resolveConfig(parsed, resolve(file))
}
