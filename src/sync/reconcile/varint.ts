/**
 * Unsigned LEB128 varints for non-negative integers up to 2^53 (exact in a double). Arithmetic, not bit
 * operations, so values above 2^31 work.
 */

/** Largest value a varint may carry: 2^53 (a bound's `timestamp delta + 1` can reach it). */
export const MAX_VARINT = 2 ** 53

/** Most bytes of a varint (8 * 7 = 56 bits, enough for 2^53). */
export const MAX_VARINT_BYTES = 8

/** Encoded length of `value`. */
export function varintLength (value: number): number {
  let n = 1
  while (value >= 128) {
    value = Math.floor(value / 128)
    n++
  }
  return n
}

/** Writes `value` at `offset`; returns the offset after it. The caller makes room. */
export function writeVarint (buf: Uint8Array, offset: number, value: number): number {
  while (value >= 128) {
    buf[offset++] = (value % 128) | 0x80
    value = Math.floor(value / 128)
  }
  buf[offset++] = value
  return offset
}
