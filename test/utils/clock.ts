import type { Clock } from '../../src/p2p/scheduler.js'

/** A clock whose time moves only when the test says so; timers fire in time order. */
export class FakeClock implements Clock {
  time = 1_000_000
  #next = 1
  readonly timers = new Map<number, { at: number, fn: () => void, every?: number }>()

  now = (): number => this.time
  setTimeout = (fn: () => void, ms: number): unknown => this.#add(fn, ms)
  setInterval = (fn: () => void, ms: number): unknown => this.#add(fn, ms, ms)
  clearTimeout = (h: unknown): void => { this.timers.delete(h as number) }
  clearInterval = (h: unknown): void => { this.timers.delete(h as number) }

  #add (fn: () => void, ms: number, every?: number): number {
    const id = this.#next++
    this.timers.set(id, { at: this.time + ms, fn, every })
    return id
  }

  /** Moves time on by `ms`, firing every timer due on the way. */
  advance (ms: number): void {
    const end = this.time + ms
    while (true) {
      const due = [...this.timers.entries()].filter(([, t]) => t.at <= end).sort((a, b) => a[1].at - b[1].at)[0]
      if (due === undefined) break
      const [id, t] = due
      this.time = t.at
      if (t.every !== undefined) t.at += t.every
      else this.timers.delete(id)
      t.fn()
    }
    this.time = end
  }
}
