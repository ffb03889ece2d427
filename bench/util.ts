/** Small helpers the benchmarks share. */
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'

/** A forced GC when the flag can be set at run time, so phases start from similar heaps. */
export const gc: () => void = (() => {
  try {
    setFlagsFromString('--expose-gc')
    const fn = runInNewContext('gc') as unknown
    if (typeof fn === 'function') return fn as () => void
  } catch {
    // not available: phases simply run one after the other
  }
  return () => {}
})()

/** xorshift32: a small deterministic PRNG, so that runs are comparable. */
export function prng (seed: number): () => number {
  let x = (seed | 0) === 0 ? 0x9e3779b9 : seed | 0
  return () => {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    return x >>> 0
  }
}
