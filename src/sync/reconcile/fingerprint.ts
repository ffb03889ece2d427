/**
 * Range fingerprints, as in Negentropy: the ids of a range are read as 256-bit little-endian unsigned integers
 * and added modulo 2^256; the fingerprint is the first 16 bytes of SHA-256(sum as 32 bytes little-endian ||
 * LEB128 varint of the item count).
 *
 * Addition modulo 2^256 is a group, so sums are cached per chunk, prefix-summed across chunks and subtracted,
 * and an insert or delete updates a cached sum with one addition or subtraction. The arithmetic works on eight
 * 32-bit limbs in typed arrays; hot loops accumulate limbs in doubles without carries (exact for fewer than 2^21
 * ids) and propagate carries once at the end.
 */
import { createHash } from 'node:crypto'
import { FINGERPRINT_BYTES, ID_BYTES } from './constants.js'
import { writeVarint } from './varint.js'

/** Limbs of a sum: eight 32-bit words, least significant first. */
export const LIMBS = 8

const TWO32 = 4294967296

/** True when a Uint32Array view reads id bytes as little-endian words (every common platform). */
export const LITTLE_ENDIAN = new Uint8Array(Uint32Array.of(1).buffer)[0] === 1

/**
 * Adds ids `from..to` (item indices) of a packed id array into `acc`, eight unnormalised double limbs.
 * `words`, when given, is a little-endian Uint32Array view of `ids` (faster).
 */
export function accumulate (acc: Float64Array, ids: Uint8Array, words: Uint32Array | undefined, from: number, to: number): void {
  let a0 = acc[0]; let a1 = acc[1]; let a2 = acc[2]; let a3 = acc[3]
  let a4 = acc[4]; let a5 = acc[5]; let a6 = acc[6]; let a7 = acc[7]
  if (words !== undefined) {
    for (let i = from * LIMBS, end = to * LIMBS; i < end; i += LIMBS) {
      a0 += words[i]; a1 += words[i + 1]; a2 += words[i + 2]; a3 += words[i + 3]
      a4 += words[i + 4]; a5 += words[i + 5]; a6 += words[i + 6]; a7 += words[i + 7]
    }
  } else {
    for (let o = from * ID_BYTES, end = to * ID_BYTES; o < end; o += ID_BYTES) {
      a0 += readWord(ids, o); a1 += readWord(ids, o + 4); a2 += readWord(ids, o + 8); a3 += readWord(ids, o + 12)
      a4 += readWord(ids, o + 16); a5 += readWord(ids, o + 20); a6 += readWord(ids, o + 24); a7 += readWord(ids, o + 28)
    }
  }
  acc[0] = a0; acc[1] = a1; acc[2] = a2; acc[3] = a3
  acc[4] = a4; acc[5] = a5; acc[6] = a6; acc[7] = a7
}

function readWord (b: Uint8Array, o: number): number {
  return (b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24)) >>> 0
}

/** Propagates the carries of an accumulator into a normalised sum (mod 2^256) at `out[oo..oo+8]`. */
export function normalise (acc: Float64Array, out: Uint32Array, oo = 0): void {
  let carry = 0
  for (let w = 0; w < LIMBS; w++) {
    const v = acc[w] + carry
    const lo = v % TWO32
    out[oo + w] = lo
    carry = (v - lo) / TWO32
  }
}

/** out = a + b (mod 2^256); each operand is eight limbs at its offset. `out` may alias an operand. */
export function addSums (a: Uint32Array, ao: number, b: Uint32Array, bo: number, out: Uint32Array, oo: number): void {
  let carry = 0
  for (let w = 0; w < LIMBS; w++) {
    const v = a[ao + w] + b[bo + w] + carry
    if (v >= TWO32) {
      out[oo + w] = v - TWO32
      carry = 1
    } else {
      out[oo + w] = v
      carry = 0
    }
  }
}

/** out = a - b (mod 2^256); each operand is eight limbs at its offset. `out` may alias an operand. */
export function subSums (a: Uint32Array, ao: number, b: Uint32Array, bo: number, out: Uint32Array, oo: number): void {
  let borrow = 0
  for (let w = 0; w < LIMBS; w++) {
    const v = a[ao + w] - b[bo + w] - borrow
    if (v < 0) {
      out[oo + w] = v + TWO32
      borrow = 1
    } else {
      out[oo + w] = v
      borrow = 0
    }
  }
}

/** Adds (sign 1) or subtracts (sign -1) the single id at item index `i` of `ids` to/from `sum`. */
export function addId (sum: Uint32Array, ids: Uint8Array, i: number, sign: 1 | -1): void {
  const id = new Uint32Array(LIMBS)
  const o = i * ID_BYTES
  for (let w = 0; w < LIMBS; w++) id[w] = readWord(ids, o + w * 4)
  if (sign === 1) addSums(sum, 0, id, 0, sum, 0)
  else subSums(sum, 0, id, 0, sum, 0)
}

const FP_INPUT = new Uint8Array(ID_BYTES + 8)

/** The fingerprint of a range whose ids sum to `sum` (eight limbs at `so`) and which holds `count` items. */
export function fingerprint (sum: Uint32Array, so: number, count: number): Uint8Array {
  const input = FP_INPUT
  for (let w = 0; w < LIMBS; w++) {
    const v = sum[so + w]
    input[w * 4] = v & 0xff
    input[w * 4 + 1] = (v >>> 8) & 0xff
    input[w * 4 + 2] = (v >>> 16) & 0xff
    input[w * 4 + 3] = (v >>> 24) & 0xff
  }
  const end = writeVarint(input, ID_BYTES, count)
  // the digest is a fresh buffer of its own: a plain view of its first bytes needs no copy
  const digest = createHash('sha256').update(input.subarray(0, end)).digest()
  return new Uint8Array(digest.buffer, digest.byteOffset, FINGERPRINT_BYTES)
}

/** True when two fingerprints are equal. */
export function equalFingerprints (a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  for (let k = 0; k < a.length; k++) if (a[k] !== b[k]) return false
  return true
}
