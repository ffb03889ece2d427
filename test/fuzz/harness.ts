/**
 * A small fuzzing harness over fast-check, shared by `npm run fuzz` (scripts/fuzz.ts, 10^5 cases per target) and
 * the short runs in `npm test` (test/fuzz/fuzz.spec.ts).
 *
 * A target turns a generated input into one run of the code under test. Each case ends in one of:
 * - accepted: the input was decoded/answered, and the target's own checks on the result held;
 * - rejected: the code threw one of the target's documented typed errors;
 * - crash: anything else (another error, or a broken property of an accepted result);
 * - hang: the case took longer than the per-case deadline (async cases are also raced against it, so a promise
 *   that never settles is a hang; a synchronous endless loop is caught by the watchdog in scripts/fuzz.ts).
 *
 * Allocation is measured structurally, not from the heap (which the GC makes noisy): `estimateBytes` walks the
 * result and counts its byte arrays, strings and a fixed overhead per object and array slot. The ratio to the
 * input's length (plus one object's overhead) shows that what a decoder builds is bounded by what it was given, not by lengths or counts the
 * input merely declares.
 */
import fc from 'fast-check'

/** The documented result of one case that did not crash. */
export interface CaseOutcome {
  /** True when the input was rejected with one of the allowed typed errors. */
  rejected: boolean
  /** Structural size of what the case built from its input (decoded values, replies), see `estimateBytes`. */
  allocated: number
  /** What happened, for the summary's tally (an error code or reason, `accepted`...). */
  label?: string
}

export interface FuzzTarget<T> {
  readonly name: string
  /** What the target feeds the code under test. */
  readonly arbitrary: fc.Arbitrary<T>
  /** Length in bytes of the input as an attacker would send it. */
  inputBytes: (input: T) => number
  /**
   * Runs one case. Throws only for a crash: an error the code under test may not throw, or a property of the
   * result that does not hold (the harness records it; it never escapes `runTarget`).
   */
  run: (input: T) => CaseOutcome | Promise<CaseOutcome>
  /** Releases what the target set up for its cases (temp directories, databases); called after the last case. */
  cleanup?: () => Promise<void>
}

export interface FuzzOptions {
  cases: number
  seed: number
  /** A case running longer than this is counted as a hang. Default 2000 ms (generous for a loaded machine). */
  deadlineMs?: number
  /** Called after every case (the watchdog of scripts/fuzz.ts counts progress with it). */
  onCase?: (index: number) => void
}

export interface FuzzFailure {
  kind: 'crash' | 'hang'
  case: number
  error: string
  /** The input, for replay (hex for byte inputs, JSON otherwise; cut to 4 KB). */
  input: string
}

export interface FuzzSummary {
  target: string
  seed: number
  cases: number
  accepted: number
  rejected: number
  crashes: number
  hangs: number
  /**
   * Largest `allocated / (inputBytes + OBJECT_OVERHEAD)` over all cases: what a case built per byte of input,
   * with one object's worth of allowance so that an empty input's empty result is not an infinite ratio.
   */
  maxAllocationRatio: number
  /** Largest input, in bytes. */
  maxInputBytes: number
  /** Slowest case, in milliseconds. */
  maxCaseMs: number
  elapsedMs: number
  /** Cases per outcome label (error codes and reasons reached, accepted inputs), showing what was covered. */
  outcomes: Record<string, number>
  /** The first few failures, for replay. */
  failures: FuzzFailure[]
}

/** Per object, array or typed array: a conservative V8 header size (pointers compressed, a few fields). */
export const OBJECT_OVERHEAD = 64
/** Per array slot (a tagged pointer, rounded up). */
export const SLOT_BYTES = 8

/**
 * Structural size of a value: byte arrays count their length plus an object header, strings two bytes per code
 * unit, arrays a header plus a slot per element (holes included: preallocating `new Array(count)` counts), plain
 * objects a header plus a slot per key. Shared references are counted once.
 */
export function estimateBytes (value: unknown, seen = new Set<object>()): number {
  if (value === null || value === undefined) return 0
  if (typeof value === 'string') return 2 * value.length
  if (typeof value !== 'object') return SLOT_BYTES
  if (seen.has(value)) return 0
  seen.add(value)
  if (ArrayBuffer.isView(value)) return OBJECT_OVERHEAD + value.byteLength
  if (Array.isArray(value)) {
    let n = OBJECT_OVERHEAD + SLOT_BYTES * value.length
    for (const v of value) n += estimateBytes(v, seen)
    return n
  }
  let n = OBJECT_OVERHEAD
  for (const v of Object.values(value)) n += SLOT_BYTES + estimateBytes(v, seen)
  return n
}

function describeInput (input: unknown): string {
  const text = input instanceof Uint8Array
    ? Buffer.from(input).toString('hex')
    : JSON.stringify(input, (_k, v: unknown) => v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v)
  return text.length > 4096 ? `${text.slice(0, 4096)}...` : text
}

const HANG = Symbol('hang')

/**
 * Runs `options.cases` generated cases of a target with a fixed seed and counts what happened. Never throws for
 * a failing case: crashes and hangs are counted and the first few kept in `failures`.
 */
export async function runTarget<T> (target: FuzzTarget<T>, options: FuzzOptions): Promise<FuzzSummary> {
  const deadlineMs = options.deadlineMs ?? 2000
  const summary: FuzzSummary = {
    target: target.name,
    seed: options.seed,
    cases: 0,
    accepted: 0,
    rejected: 0,
    crashes: 0,
    hangs: 0,
    maxAllocationRatio: 0,
    maxInputBytes: 0,
    maxCaseMs: 0,
    elapsedMs: 0,
    outcomes: {},
    failures: []
  }
  const record = (kind: FuzzFailure['kind'], input: T, error: unknown): void => {
    if (kind === 'crash') summary.crashes++
    else summary.hangs++
    if (summary.failures.length < 5) {
      const text = error instanceof Error ? `${error.name}: ${error.message}\n${error.stack ?? ''}` : String(error)
      summary.failures.push({ kind, case: summary.cases, error: text.slice(0, 2000), input: describeInput(input) })
    }
  }
  const started = performance.now()
  // fc.check drives generation (seeded, reproducible); the property records and never fails, so all cases run
  const property = fc.asyncProperty(target.arbitrary, async (input) => {
    const t0 = performance.now()
    let timer: NodeJS.Timeout | undefined
    try {
      const result = target.run(input)
      const outcome = result instanceof Promise
        ? await Promise.race([result, new Promise<typeof HANG>((resolve) => { timer = setTimeout(() => resolve(HANG), deadlineMs) })])
        : result
      const ms = performance.now() - t0
      if (outcome === HANG || ms > deadlineMs) {
        record('hang', input, new Error(`case took ${Math.round(ms)} ms (deadline ${deadlineMs} ms)`))
      } else {
        if (outcome.rejected) summary.rejected++
        else summary.accepted++
        const label = outcome.label ?? (outcome.rejected ? 'rejected' : 'accepted')
        summary.outcomes[label] = (summary.outcomes[label] ?? 0) + 1
        const ratio = outcome.allocated / (target.inputBytes(input) + OBJECT_OVERHEAD)
        if (ratio > summary.maxAllocationRatio) summary.maxAllocationRatio = ratio
      }
      summary.maxCaseMs = Math.max(summary.maxCaseMs, ms)
    } catch (err) {
      record('crash', input, err)
    } finally {
      clearTimeout(timer)
    }
    summary.maxInputBytes = Math.max(summary.maxInputBytes, target.inputBytes(input))
    options.onCase?.(summary.cases)
    summary.cases++
    return true
  })
  try {
    await fc.check(property, { numRuns: options.cases, seed: options.seed })
  } finally {
    await target.cleanup?.()
  }
  summary.elapsedMs = Math.round(performance.now() - started)
  summary.maxCaseMs = Math.round(summary.maxCaseMs * 10) / 10
  summary.maxAllocationRatio = Math.round(summary.maxAllocationRatio * 100) / 100
  return summary
}

// ---- byte mutations of valid inputs ----

/** One edit of a byte string; positions are taken modulo the length at the time of the edit. */
export type Mutation =
  | { op: 'flip', at: number, bit: number }
  | { op: 'set', at: number, value: number }
  | { op: 'truncate', at: number }
  | { op: 'insert', at: number, bytes: Uint8Array }
  | { op: 'delete', at: number, count: number }
  | { op: 'duplicate', at: number, count: number }
  | { op: 'boundary', at: number, width: 1 | 2 | 4, value: 'zero' | 'max' | 'high' }

/** Values that tend to break length and count fields. */
const BOUNDARY: Record<1 | 2 | 4, Record<'zero' | 'max' | 'high', number[]>> = {
  1: { zero: [0], max: [0xff], high: [0x80] },
  2: { zero: [0, 0], max: [0xff, 0xff], high: [0x80, 0x00] },
  4: { zero: [0, 0, 0, 0], max: [0xff, 0xff, 0xff, 0xff], high: [0x7f, 0xff, 0xff, 0xff] }
}

export const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant('flip' as const), at: fc.nat(), bit: fc.nat(7) }) },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('set' as const), at: fc.nat(), value: fc.nat(255) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('insert' as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 40 }) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('delete' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 40 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('duplicate' as const), at: fc.nat(), count: fc.integer({ min: 1, max: 200 }) }) },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant('boundary' as const), at: fc.nat(), width: fc.constantFrom<1 | 2 | 4>(1, 2, 4), value: fc.constantFrom<'zero' | 'max' | 'high'>('zero', 'max', 'high')
    })
  }
)

/** Applies edits in order to a copy of `bytes`. */
export function mutate (bytes: Uint8Array, mutations: readonly Mutation[]): Uint8Array {
  let b: Uint8Array = Uint8Array.from(bytes)
  for (const m of mutations) {
    const len = b.length
    const at = len === 0 ? 0 : m.at % len
    switch (m.op) {
      case 'flip': if (len > 0) b[at] ^= 1 << m.bit; break
      case 'set': if (len > 0) b[at] = m.value; break
      case 'truncate': b = b.slice(0, at); break
      case 'insert': b = concat(b.subarray(0, at), m.bytes, b.subarray(at)); break
      case 'delete': b = concat(b.subarray(0, at), b.subarray(at + m.count)); break
      case 'duplicate': b = concat(b.subarray(0, at + m.count), b.subarray(at)); break
      case 'boundary': {
        const v = BOUNDARY[m.width][m.value]
        for (let k = 0; k < v.length && at + k < len; k++) b[at + k] = v[k]
        break
      }
    }
  }
  return b
}

export function concat (...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let o = 0
  for (const p of parts) {
    out.set(p, o)
    o += p.length
  }
  return out
}

/** Mutations to apply to a valid input: none (1 in 8 cases, so valid inputs are run too), or 1 to 4 edits. */
export const mutationsArb: fc.Arbitrary<Mutation[]> = fc.oneof(
  { weight: 1, arbitrary: fc.constant<Mutation[]>([]) },
  { weight: 7, arbitrary: fc.array(mutationArb, { minLength: 1, maxLength: 4 }) }
)

/** The outcome of a case refused with `err`, labelled by its code (and reason, when it has one). */
export function refused (err: unknown): CaseOutcome {
  const e = err as { code?: string, reason?: string }
  return { rejected: true, allocated: 0, label: e.reason !== undefined ? `${String(e.code)}:${e.reason}` : String(e.code) }
}

/** True when `err` is an instance of one of `allowed`. */
export function isOneOf (err: unknown, allowed: ReadonlyArray<abstract new (...args: never[]) => Error>): boolean {
  return allowed.some((cls) => err instanceof cls)
}
