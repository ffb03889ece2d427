/**
 * What of the event stream goes into the audit trail, and how: sessions accepted and refused (aggregated per
 * window), changes rejected per session, share and partner changes, key operations, partner revocations, config
 * reloads, backups written (the trail's own recoveries are written by AuditLog.open, a restore's by the restore).
 * Rounds, connections and documents changed are not audited (they are operations, not decisions). Only ids, codes and counts are written: the events carry no secrets and no content.
 *
 * Aggregation: per (type, peer, share, direction, code) the first session of a window is written at once; the
 * ones after it in the same window are counted and written as one line (`count`) when the window ends, so a
 * partner that opens thousands of sessions adds at most two lines per window and key. At most
 * AUDIT_MAX_SESSION_KEYS keys are counted at once; beyond them, sessions are counted under peer `*`.
 */
import type { Logger } from '../util/logger.js'
import type { AuditLog } from './audit.js'
import { AUDIT_MAX_SESSION_KEYS, AUDIT_SESSION_WINDOW_MS } from './constants.js'
import type { DaemonEvent, EventType } from './events.js'

/** Event types written to the audit trail. */
export const AUDITED: ReadonlySet<EventType> = new Set<EventType>([
  'session.accepted', 'session.refused', 'changes.rejected', 'share.added', 'share.updated', 'share.enabled',
  'share.disabled', 'share.removed', 'partner.revoked', 'key.created', 'key.imported', 'key.rotated', 'key.exported',
  'config.reloaded', 'backup.created'
])

const AGGREGATED: ReadonlySet<string> = new Set(['session.accepted', 'session.refused'])

interface Window {
  type: string
  data: Record<string, unknown>
  /** Sessions after the first, not written yet. */
  count: number
  timer: NodeJS.Timeout
}

export interface AuditFeedInit {
  windowMs?: number
  maxKeys?: number
  logger: Logger
}

export class AuditFeed {
  readonly #log: AuditLog
  readonly #logger: Logger
  readonly #windowMs: number
  readonly #maxKeys: number
  readonly #windows = new Map<string, Window>()
  #pending: Promise<unknown> = Promise.resolve()

  constructor (log: AuditLog, init: AuditFeedInit) {
    this.#log = log
    this.#logger = init.logger
    this.#windowMs = init.windowMs ?? AUDIT_SESSION_WINDOW_MS
    this.#maxKeys = init.maxKeys ?? AUDIT_MAX_SESSION_KEYS
  }

  /** Takes one event of the stream (call it from an EventBus subscriber). */
  accept (event: DaemonEvent): void {
    if (!AUDITED.has(event.type)) return
    if (!AGGREGATED.has(event.type)) {
      this.#write(event.type, event.data)
      return
    }
    let data = event.data
    let key = JSON.stringify([event.type, data.peerId, data.share, data.direction, data.code])
    if (!this.#windows.has(key) && this.#windows.size >= this.#maxKeys) {
      data = { ...data, peerId: '*', share: undefined, message: undefined }
      key = JSON.stringify([event.type, '*'])
    }
    const open = this.#windows.get(key)
    if (open !== undefined) {
      open.count++
      return
    }
    this.#write(event.type, { ...data, count: 1 })
    const timer = setTimeout(() => { this.#close(key) }, this.#windowMs)
    timer.unref()
    this.#windows.set(key, { type: event.type, data, count: 0, timer })
  }

  /** Ends a window: writes what it counted; a window that counted nothing is forgotten. */
  #close (key: string): void {
    const w = this.#windows.get(key)
    if (w === undefined) return
    clearTimeout(w.timer)
    this.#windows.delete(key)
    if (w.count > 0) this.#write(w.type, { ...w.data, count: w.count, windowMs: this.#windowMs })
  }

  #write (type: string, data: Record<string, unknown>): void {
    const clean = JSON.parse(JSON.stringify(data)) as Record<string, unknown>
    this.#pending = this.#log.append(type, clean).catch((err: unknown) => {
      this.#logger.error({ err: String(err), type }, 'audit append failed')
    })
  }

  /** Writes every open window's count and waits for the appends (at stop). */
  async flush (): Promise<void> {
    for (const key of [...this.#windows.keys()]) this.#close(key)
    await this.#pending
    await this.#log.flush()
  }
}
