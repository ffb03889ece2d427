/**
 * The intake of a sync session: asking for what this side lacks and storing the answers (the receiving half of
 * phase 3 in session.ts, and the answers and pushes of the live phase, phase 5).
 *
 * The session makes one Intake. `fetch` sends the transfer's wants, a bounded number in flight, and ends with
 * `want{done}`; the session's reader hands each `changes` frame to `onChanges`, which stores it as (part of) the
 * answer to the oldest outstanding want; the live phase stores an announcement's pushes with `store` and registers
 * its own wants with `expect`. What the intake shares with the rest of the session (sending, the idle deadline and
 * the count of frames that move nothing, the session's failure, the result's and the stats' counters) the session
 * lends it through IntakeHost; the wants outstanding and the answer frames being stored are its own.
 *
 * Invariants I2 and I4 of the session (the others are in session.ts; I3 and I5 are cited here where enforced):
 * I2. A received change is stored only if it was asked for in this session, its author is a participant of the
 *     share, the share's write policy admits it (`admit`), and the store verifies its hash and signature; a bad
 *     change is rejected alone, the rest go on. Refusals tied to a change's bytes are remembered per peer
 *     (`refusals`); a peer's refusals never keep this side from fetching the change from another peer.
 * I4. A hash that another session of the same database is already fetching is not asked for again, unless that
 *     session holds it longer than SESSION_CLAIM_WAIT_MS (then this session asks its own peer). A claim is given
 *     back only once its change is stored or refused, or was never sent: a session that fails while frames are
 *     being stored keeps their claims until they are.
 */
import type { MindooDB } from '../core/index.js'
import {
  MindooError, SessionIdleError, SyncProtocolError, UnrequestedChangeError, UntrustedAuthorError, WriteUndecidedError,
  type ChangeRejectedError
} from '../errors.js'
import { ANSWER_FRAMES_IN_FLIGHT, SESSION_CLAIM_WAIT_MS, WANT_HASHES, WANTS_IN_FLIGHT } from '../limits.js'
import { decodeChange, type ChangeHash, type StoreChange } from '../store/change.js'
import type { AbortOptions } from '../store/types.js'
import type { Logger } from '../util/logger.js'
import type { WantClaims } from './claims.js'
import type { ChangesMessage, SyncMessage } from './messages.js'
import type { Refusals } from './refusals.js'

/** The write policy of a share: why a received change may not be stored, or undefined when it may. */
export type AdmitChange = (change: StoreChange, earlier?: readonly StoreChange[]) => ChangeRejectedError | undefined | Promise<ChangeRejectedError | undefined>

/** What the session lends its intake: the parts it shares with the rest of the session. */
export interface IntakeHost {
  /** Sends a frame; a peer that does not read for the idle timeout fails the session (I5). */
  send: (message: SyncMessage, options: AbortOptions) => Promise<void>
  /** The peer made progress (I5). */
  progress: () => void
  /** A frame that moved nothing; too many end the session (I5). */
  noop: () => void
  /** An answer frame arrived: the peer is not idle while this side stores it, the idle deadline counts from now (I5). */
  arrived: () => void
  /** Runs `fn` with a signal that aborts at `deadline` (SessionIdleError) or with the caller's signal (I5). */
  bounded: (options: AbortOptions, fn: (signal: AbortSignal) => Promise<void>, deadline: number) => Promise<void>
  /** Why the session failed, if it did. */
  failed: () => Error | undefined
  /** Changes received and stored (into the result and the stats). */
  received: (changes: number, bytes: number) => void
  /** A change refused, by reason code (into the result and the stats). */
  rejected: (code: string, hash: string) => void
}

export interface IntakeComponents {
  session: IntakeHost
  db: Pick<MindooDB, 'getStore' | 'receiveChanges'>
  claims: Pick<WantClaims, 'claim' | 'takeOver' | 'release' | 'released'>
  logger: Logger
}

export interface IntakeInit {
  /** The remote peer id (for refusals). */
  peer: string
  /** The session's identity for claims (I4). */
  owner: object
  /** Signing keys of the share's participants (this tenant included): the authors accepted (I2). */
  participants: ReadonlySet<string>
  /** Changes refused before for reasons tied to their bytes, per peer: not asked for again from that peer. */
  refusals?: Refusals
  /** The share's write policy (see `SessionInit.admit`). */
  admit?: AdmitChange
  /** `admit` reads what is stored: frames are judged in order (see `SessionInit.admitReadsStore`). */
  admitReadsStore?: boolean
  /** Hashes per want. Default WANT_HASHES. */
  wantBatch?: number
  /** Wants in flight. Default WANTS_IN_FLIGHT. */
  pipeline?: number
  /** The session's idle timeout, ms: a wait for another session's claim takes at most half of it (I4, I5). */
  idleTimeoutMs: number
}

interface Outstanding {
  /** Hashes asked for and not received yet. */
  hashes: Set<ChangeHash>
  asked: number
  received: number
  /** Its answer frames being verified and stored. */
  storing: Array<Promise<void>>
  resolve: () => void
  reject: (err: Error) => void
}

/** Asks for what this side lacks and stores the answers (I2, I3, I4). */
export class Intake {
  readonly #c: IntakeComponents
  readonly #init: IntakeInit
  readonly #session: IntakeHost
  /** Wants sent and not fully answered, oldest first (answers come in order). */
  readonly #outstanding: Outstanding[] = []
  /** Answer frames being verified and stored, oldest first (at most ANSWER_FRAMES_IN_FLIGHT). */
  readonly #storing: Array<Promise<void>> = []
  /** Settles when the last frame given to #store is stored or refused (see IntakeInit.admitReadsStore). */
  #lastStore: Promise<void> = Promise.resolve()

  constructor (components: IntakeComponents, init: IntakeInit) {
    this.#c = components
    this.#init = init
    this.#session = components.session
  }

  /** Wants sent and not fully answered. */
  get outstanding (): number {
    return this.#outstanding.length
  }

  /** A want for `hashes` (claimed) is about to be sent (the live phase's): its answer is taken like the transfer's. */
  expect (hashes: ChangeHash[]): void {
    this.#outstanding.push({ hashes: new Set(hashes), asked: hashes.length, received: 0, storing: [], resolve: () => {}, reject: () => {} })
  }

  /** Releases the claims of the wants not answered, for the other sessions (I4). */
  releaseWants (): void {
    for (const o of this.#outstanding.splice(0)) this.#c.claims.release(o.hashes, this.#init.owner)
  }

  /** The session failed with `err`: the wants not answered are given up, their claims released (I4). */
  fail (err: Error): void {
    for (const o of this.#outstanding.splice(0)) {
      this.#c.claims.release(o.hashes, this.#init.owner)
      o.reject(err)
    }
  }

  /** Waits for every answer frame in flight; the first failure is thrown once all have settled. */
  async drainStoring (): Promise<void> {
    const failed = (await Promise.allSettled(this.#storing.splice(0))).find((r) => r.status === 'rejected')
    if (failed !== undefined) throw failed.reason
  }

  /** Waits for every answer frame in flight, whatever their outcome (a failed session ends with nothing of it still writing). */
  async settle (): Promise<void> {
    await Promise.allSettled(this.#storing.splice(0))
  }

  /** Stores each answer frame as it arrives (memory stays at one frame), completing the want on its last. */
  async onChanges (m: ChangesMessage): Promise<void> {
    const o = this.#outstanding[0]
    if (o === undefined) throw new SyncProtocolError('changes that were not asked for')
    if (m.changes.length === 0 && !m.last) {
      this.#session.noop() // (I5)
      return
    }
    o.received += m.changes.length
    // a few extra changes are rejected one by one (UNREQUESTED); a flood ends the session
    if (o.received > 2 * o.asked + 16) throw new SyncProtocolError('far more changes than asked for')
    // the next frame is read, decoded and verified while this one is still being verified or written: the
    // signature checks run on the verify pool's threads, and this thread does not wait for them frame by frame.
    // The peer is not idle while this side stores what it sent: the idle deadline counts from this frame (its
    // progress, which resets the count of frames that moved nothing, is known once it is stored)
    this.#session.arrived()
    const stored = this.store(o.hashes, m.changes).then(({ taken }) => {
      // progress: a change asked for arrived, or the answer ended (unrequested changes alone are no progress)
      if (taken > 0 || m.last) this.#session.progress()
      else this.#session.noop()
    })
    stored.catch(() => {}) // awaited below, or settled before the session ends on a failure
    this.#storing.push(stored)
    o.storing.push(stored)
    if (m.last) {
      // the answer is whole: the next frame answers the next want, and what the peer did not send is not being
      // fetched any more (what it sent leaves the want as its frame's storing begins: I4). The want is done once
      // its frames are stored; the reader does not wait for that, so the next answer is verified meanwhile
      this.#outstanding.shift()
      this.#c.claims.release(o.hashes, this.#init.owner)
      void Promise.allSettled(o.storing).then((settled) => {
        const failed = settled.find((r) => r.status === 'rejected')
        if (failed === undefined) o.resolve()
        else o.reject(failed.reason as Error)
      })
    }
    if (this.#storing.length >= ANSWER_FRAMES_IN_FLIGHT) await this.#storing.shift()
  }

  /**
   * Verifies, admits and stores one frame of a want's answer, or an announcement's pushes (I2): only changes
   * among `wanted` (taken out of it); bad changes are rejected one by one. The claims of what it settles are
   * released (I4). Returns how many of the frame's changes were asked for (`taken`), and how many of those this
   * call stored (`added`: not refused, and not stored before or meanwhile).
   */
  async store (wanted: Set<ChangeHash>, frame: Uint8Array[]): Promise<{ taken: number, added: number }> {
    const { db, claims } = this.#c
    // first, before anything is awaited: the frame's changes leave the want, so that this session failing
    // while the frame is being stored never gives back the claim of a change it is storing (I4); they are
    // released once stored or refused
    const taken: StoreChange[] = []
    let bytes = 0
    for (const bytesIn of frame) {
      bytes += bytesIn.length
      let change: StoreChange
      try {
        change = decodeChange(bytesIn)
      } catch (err) {
        this.#reject(err as MindooError, '')
        continue
      }
      if (!wanted.has(change.hash)) {
        this.#reject(new UnrequestedChangeError('a change that was not asked for'), change.hash)
        continue
      }
      wanted.delete(change.hash)
      taken.push(change)
    }
    const previous = this.#lastStore
    let settled = (): void => {}
    this.#lastStore = new Promise((resolve) => { settled = resolve })
    const good: StoreChange[] = []
    let added = 0
    /** Changes a write rule could not judge yet (WRITE_UNDECIDED): judged again once the rest of the frame is. */
    let undecided: Array<{ change: StoreChange, why: ChangeRejectedError }> = []
    /** Admits the change (into `good`) or refuses it; returns why when the write policy cannot judge it yet. */
    const judge = async (change: StoreChange): Promise<WriteUndecidedError | undefined> => {
      // the changes of this frame admitted so far: a change may depend on them (I2)
      const denied = await this.#init.admit?.(change, good)
      if (denied instanceof WriteUndecidedError) return denied
      if (denied !== undefined) this.#refuseChange(denied, change.hash)
      else good.push(change)
      return undefined
    }
    try {
      if (this.#init.admitReadsStore === true) await previous
      for (const change of taken) {
        if (!this.#init.participants.has(change.author)) {
          this.#refuseChange(new UntrustedAuthorError('author is not a participant of this share'), change.hash)
          continue
        }
        const why = await judge(change)
        if (why !== undefined) undecided.push({ change, why })
      }
      // a change the frame carried before what it depends on is judged again with the rest of the frame admitted,
      // for as long as that decides some
      for (let progress = true; progress && undecided.length > 0;) {
        progress = false
        const again: typeof undecided = []
        for (const { change } of undecided) {
          const why = await judge(change)
          if (why !== undefined) again.push({ change, why })
          else progress = true
        }
        undecided = again
      }
      for (const { change, why } of undecided) this.#refuseChange(why, change.hash)
      if (good.length > 0) {
        const result = await db.receiveChanges(good)
        for (const r of result.rejected) this.#reject(r.error, r.hash)
        added = result.added.length
        this.#session.received(added, bytes)
      }
    } finally {
      // stored, refused, or left where a failure stopped: none of them is being fetched by this session any more
      claims.release(taken.map((c) => c.hash), this.#init.owner)
      settled()
    }
    return { taken: taken.length, added }
  }

  /** Rejects a change this session claimed, and gives its claim back. */
  #refuseChange (err: ChangeRejectedError, hash: ChangeHash): void {
    this.#reject(err, hash)
    this.#c.claims.release([hash], this.#init.owner)
  }

  #reject (err: MindooError, hash: string): void {
    const code = err instanceof MindooError ? err.code : 'MALFORMED_CHANGE'
    this.#session.rejected(code, hash)
    // only reasons tied to the change's bytes are remembered, and only for this peer (I2)
    this.#init.refusals?.add(this.#init.peer, hash, code)
    this.#c.logger.warn({ hash, code }, 'change rejected')
  }

  /**
   * Asks for `need` (what this side lacks), a bounded number of wants at a time (I3, I4), then sends `want{done}`;
   * resolves once every want is answered and its frames stored.
   */
  async fetch (need: ChangeHash[], options: AbortOptions): Promise<void> {
    const { db, claims } = this.#c
    const batch = this.#init.wantBatch ?? WANT_HASHES
    const pipeline = this.#init.pipeline ?? WANTS_IN_FLIGHT
    const { peer, refusals, owner } = this.#init
    const inFlight: Array<Promise<void>> = []
    const store = db.getStore()
    const claimWaitMs = Math.min(SESSION_CLAIM_WAIT_MS, Math.floor(this.#init.idleTimeoutMs / 2))
    // hashes another session was fetching are waited for, then asked for here if that session failed or held
    // them past the claim deadline (I4)
    let takeOver = false
    for (let attempt = 0; attempt < 3 && need.length > 0; attempt++) {
      const busy: ChangeHash[] = []
      let i = 0
      while (i < need.length) {
        const failed = this.#session.failed()
        if (failed !== undefined) throw failed
        // one batched read for a want's worth of hashes (those refused before by this peer are not asked again)
        const next: ChangeHash[] = []
        while (i < need.length && next.length < batch) {
          const h = need[i++]
          if (refusals?.has(peer, h) !== true) next.push(h)
        }
        const stored = await store.hasMany(next, options)
        const candidates = next.filter((_h, k) => !stored[k])
        let hashes: ChangeHash[]
        if (takeOver || attempt === 2) {
          // hashes still claimed were held past the deadline (or on the last attempt): ask this peer for them too
          hashes = claims.takeOver(candidates, owner)
        } else {
          const claimed = claims.claim(candidates, owner)
          busy.push(...claimed.busy)
          hashes = claimed.mine
        }
        // refused by this peer while the batched read ran (another session asked for it first, and got it
        // refused): not asked again, its claim given back
        const refusedMeanwhile = hashes.filter((h) => refusals?.has(peer, h) === true)
        if (refusedMeanwhile.length > 0) {
          claims.release(refusedMeanwhile, owner)
          hashes = hashes.filter((h) => refusals?.has(peer, h) !== true)
        }
        if (hashes.length === 0) continue
        const done = new Promise<void>((resolve, reject) => {
          this.#outstanding.push({ hashes: new Set(hashes), asked: hashes.length, received: 0, storing: [], resolve, reject })
        })
        done.catch(() => {}) // observed below; this only keeps an early failure from going unhandled
        inFlight.push(done)
        await this.#session.send({ type: 'want', hashes: hashes.map((h) => Buffer.from(h, 'hex')), done: false }, options)
        if (inFlight.length >= pipeline) await inFlight.shift() // at most `pipeline` wants outstanding (I3)
      }
      await Promise.all(inFlight.splice(0))
      if (busy.length > 0) takeOver = !await this.#awaitClaims(busy, claimWaitMs, options)
      need = busy
    }
    await this.#session.send({ type: 'want', hashes: [], done: true }, options)
  }

  /**
   * Waits for other sessions to release `hashes`, at most `ms` and never past an abort or this session's failure
   * (I4, I5). Returns false when the deadline passed first.
   */
  async #awaitClaims (hashes: ChangeHash[], ms: number, options: AbortOptions): Promise<boolean> {
    let released = true
    try {
      await this.#session.bounded(options, async (signal) => {
        await Promise.all(hashes.map(async (h) => { await this.#c.claims.released(h, { signal }) }))
      }, Date.now() + ms)
    } catch (err) {
      if (!(err instanceof SessionIdleError)) throw err
      // past the deadline: the caller asks its own peer for what is still claimed
      released = false
    }
    const failed = this.#session.failed()
    if (failed !== undefined) throw failed
    return released
  }
}
