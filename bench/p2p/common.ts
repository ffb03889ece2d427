/**
 * What the peer-to-peer scenarios share: options, constants, small helpers, and the traffic counters (TCP bytes of
 * every socket of this process; every sync-protocol frame encoded, by type).
 */
import { randomBytes } from 'node:crypto'
import diagnosticsChannel from 'node:diagnostics_channel'
import { readFile } from 'node:fs/promises'
import type { Socket } from 'node:net'
import { join } from 'node:path'
import * as varint from 'uint8-varint'
import { createTenantFactory, type MindooTenant, type TenantFactory } from '../../src/index.js'
import { Frame } from '../../src/p2p/pb/sync.js'

export interface BenchP2POptions {
  /** A small, fast run (also env BENCH_QUICK=1). */
  quick?: boolean
  /** Parts to run. Default all: reconcile, docs, cold, live, mesh. */
  parts?: Array<'reconcile' | 'docs' | 'cold' | 'live' | 'mesh'>
  /** Part 1: set sizes. Default [1e4, 1e5, 1e6]. */
  sizes?: number[]
  /** Part 1: differences. Default [0, 1, 10, 1000]. */
  diffs?: number[]
  /**
   * The scenario (`docs.ts`): documents made with createDocument + changeDoc, two changes each, with a
   * 1,000-character body. Default 10,000 (quick: 2,000).
   */
  docs?: number
  /** The docs scenario's body kinds, each run in turn. Default ['text', 'immutable']. */
  docsBodies?: Array<'text' | 'immutable'>
  /** Part 2: changes A holds, with the ~1 KB field an opaque string (Automerge ImmutableString). Default 100,000. */
  coldChanges?: number
  /**
   * Part 2, second run: changes A holds, with the ~1 KB field a collaborative text (Automerge's default for a
   * string), which Automerge applies character by character. Default 10,000; 0 skips it.
   */
  coldTextChanges?: number
  /** Part 2: characters of the field of each change (a payload of about 1 KB). Default 850. */
  contentChars?: number
  /** Part 2: changes sampled for the primitive bound. Default 5,000. */
  boundSample?: number
  /** Part 2/3: run org A in a child process. Default true. */
  serverProcess?: boolean
  /** Part 2: cache A's database under os.tmpdir(). Default true. */
  cache?: boolean
  /** Part 3: changes timed. Default 1,000. */
  liveChanges?: number
  /** Part 4. */
  mesh?: {
    orgs?: number
    changes?: number
    burst?: number
    docsPerOrg?: number
    contentChars?: number
    /**
     * `all` (default): every org lists every other org as a share partner (so it trusts their authors), with
     * addresses for its neighbours only. `neighbours`: partners are the neighbours only (shows what happens).
     */
    partners?: 'all' | 'neighbours'
    /** The nodes' liveDebounceMs (default: the node's default, 5 ms). */
    liveDebounceMs?: number
  }
}

/** scrypt at its lowest accepted cost: key wrapping is not what is measured. */
export const BENCH_KDF = { N: 2 ** 14, r: 8, p: 1 }
export const KEY_ID = 'k'
export const KEY_PASSWORD = 'bench-shared-key'
export const TOPIC_SECRET = 'bench-p2p-topic-secret-0123456789'
/** Bumped when the way A's cached database is built changes. */
export const CACHE_FORMAT = 3
export const NAIVE_PROTOCOL = '/mindoodb-bench/naive/1.0.0'

/**
 * Org A as the data builders make it, in a factory at `dataDir`: a new tenant holding the benchmark's named key.
 * `signingKey` reads the tenant's own signing key (PKCS#8, base64) for builders that sign changes themselves.
 */
export async function createBenchTenant (dataDir: string): Promise<{ factory: TenantFactory, tenant: MindooTenant, keyBlob: string, signingKey: () => Promise<string> }> {
  const factory = await createTenantFactory({ dataDir, keyWrapping: BENCH_KDF })
  try {
    const tenant = await factory.createTenant({ tenantId: 'org-a', tenantEncryptionKeyPassword: 'org-a-pw' })
    const keyBlob = await factory.createSymmetricEncryptedPrivateKey(KEY_PASSWORD)
    await tenant.importNamedKey(KEY_ID, keyBlob, KEY_PASSWORD)
    const signingKey = async (): Promise<string> =>
      JSON.parse(await readFile(join(dataDir, 'tenants', 'org-a', 'tenant.json'), 'utf8')).secrets.data.signingPrivateKey as string
    return { factory, tenant, keyBlob, signingKey }
  } catch (err) {
    await factory.close()
    throw err
  }
}

export const now = (): number => performance.now()
/** Milliseconds on a clock shared by processes on this machine (sub-millisecond resolution). */
export const wall = (): number => performance.timeOrigin + performance.now()
export const round = (x: number, digits = 1): number => Number(x.toFixed(digits))
export const perSec = (count: number, ms: number): number => Math.round(count / (ms / 1000))
export const sleep = async (ms: number): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, ms)) }
export const text = (chars: number): string => randomBytes(Math.ceil(chars * 3 / 4) + 3).toString('base64').slice(0, chars)

export function percentile (sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p / 100 * sorted.length) - 1))
  return sorted[i]
}

export async function waitFor (condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 60_000, intervalMs = 10): Promise<void> {
  const end = Date.now() + timeoutMs
  while (Date.now() < end) {
    if (await condition()) return
    await sleep(intervalMs)
  }
  throw new Error(`timed out waiting for ${what}`)
}

export function cpuMs (since?: NodeJS.CpuUsage): number {
  const u = process.cpuUsage(since)
  return (u.user + u.system) / 1000
}

// ====================================================================== traffic counters

/** Bytes written and read by every TCP socket of this process (libp2p traffic: Noise, Yamux and all protocols). */
export class SocketTally {
  readonly #sockets = new Set<Socket>()
  readonly #onSocket = (msg: unknown): void => {
    const socket = (msg as { socket?: Socket }).socket
    if (socket !== undefined) this.#sockets.add(socket)
  }

  start (): void {
    diagnosticsChannel.subscribe('net.client.socket', this.#onSocket)
    diagnosticsChannel.subscribe('net.server.socket', this.#onSocket)
  }

  stop (): void {
    diagnosticsChannel.unsubscribe('net.client.socket', this.#onSocket)
    diagnosticsChannel.unsubscribe('net.server.socket', this.#onSocket)
    this.#sockets.clear()
  }

  get written (): number {
    let n = 0
    for (const s of this.#sockets) n += s.bytesWritten ?? 0
    return n
  }

  get read (): number {
    let n = 0
    for (const s of this.#sockets) n += s.bytesRead ?? 0
    return n
  }
}

export type FrameCounts = Record<string, { frames: number, bytes: number }>

/**
 * Counts every sync-protocol frame this process encodes, by type, with its length prefix (wraps `Frame.encode`,
 * which the codec calls for every frame sent).
 */
export class FrameTally {
  counts: FrameCounts = {}
  #restore: (() => void) | undefined

  install (): void {
    if (this.#restore !== undefined) return
    const frame = Frame as unknown as { encode: (obj: Partial<Frame>) => Uint8Array }
    const original = frame.encode
    frame.encode = (obj: Partial<Frame>): Uint8Array => {
      const bytes = original(obj)
      const type = String(obj.type ?? 'UNKNOWN').toLowerCase()
      const c = this.counts[type] ??= { frames: 0, bytes: 0 }
      c.frames++
      c.bytes += bytes.length + varint.encodingLength(bytes.length)
      return bytes
    }
    this.#restore = () => { frame.encode = original }
  }

  uninstall (): void {
    this.#restore?.()
    this.#restore = undefined
  }

  snapshot (): FrameCounts {
    return JSON.parse(JSON.stringify(this.counts))
  }

  static diff (after: FrameCounts, before: FrameCounts): FrameCounts & { total: { frames: number, bytes: number } } {
    const out: FrameCounts = {}
    const total = { frames: 0, bytes: 0 }
    for (const [type, c] of Object.entries(after)) {
      const b = before[type] ?? { frames: 0, bytes: 0 }
      if (c.frames === b.frames) continue
      out[type] = { frames: c.frames - b.frames, bytes: c.bytes - b.bytes }
      total.frames += c.frames - b.frames
      total.bytes += c.bytes - b.bytes
    }
    return { ...out, total }
  }
}
