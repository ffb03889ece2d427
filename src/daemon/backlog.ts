/**
 * The materialisation backlog of the shared databases, as the operator sees it: a gauge per database
 * (`mindoodb_materialise_backlog_changes`), a field of `sync.status`, and `materialise.backlog` events sent only
 * when the backlog changed meaningfully: it started (from 0), drained (to 0), or moved from the last value sent by
 * at least `minDelta` changes and `minRatio` of that value. Looked at every `pollMs`, so a database sends at most
 * one event per poll, however fast changes arrive; a steady backlog sends none.
 */
import { EVENTS_BACKLOG_MIN_DELTA, EVENTS_BACKLOG_MIN_RATIO } from './constants.js'

export interface BacklogThreshold {
  /** Default EVENTS_BACKLOG_MIN_DELTA. */
  minDelta?: number
  /** Default EVENTS_BACKLOG_MIN_RATIO. */
  minRatio?: number
}

/** Whether a backlog of `now` changes is worth an event after `last` was sent. */
export function backlogChangedEnough (last: number, now: number, init: BacklogThreshold = {}): boolean {
  if (now === last) return false
  if (last === 0 || now === 0) return true
  const delta = Math.abs(now - last)
  return delta >= (init.minDelta ?? EVENTS_BACKLOG_MIN_DELTA) && delta >= last * (init.minRatio ?? EVENTS_BACKLOG_MIN_RATIO)
}

/** Remembers the last backlog sent per database and says which new readings to send. */
export class BacklogWatch {
  readonly #sent = new Map<string, number>()
  readonly #threshold: BacklogThreshold

  constructor (threshold: BacklogThreshold = {}) {
    this.#threshold = threshold
  }

  /** The readings that deserve an event (and records them as sent). */
  look (readings: Iterable<{ database: string, backlog: number }>): Array<{ database: string, backlog: number }> {
    const out: Array<{ database: string, backlog: number }> = []
    for (const { database, backlog } of readings) {
      if (!backlogChangedEnough(this.#sent.get(database) ?? 0, backlog, this.#threshold)) continue
      this.#sent.set(database, backlog)
      out.push({ database, backlog })
    }
    return out
  }

  clear (): void {
    this.#sent.clear()
  }
}
