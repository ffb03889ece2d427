/**
 * The edge between the public representation of items (hex change hashes, number timestamps) and the internal
 * one (32-byte ids in packed typed arrays).
 */
import { InvalidArgumentError } from '../../errors.js'
import type { ChangeHash } from '../../store/change.js'
import { ID_BYTES, MAX_TIMESTAMP } from './constants.js'

const HEX_ID = /^[0-9a-fA-F]{64}$/

/** The 32 bytes of a hex id; throws InvalidArgumentError for anything but 64 hex characters. */
export function idToBytes (id: ChangeHash): Uint8Array {
  if (typeof id !== 'string') throw new TypeError('id must be a string of 64 hex characters')
  if (!HEX_ID.test(id)) throw new InvalidArgumentError('id must be 64 hex characters (a SHA-256 change hash)')
  return Buffer.from(id, 'hex')
}

/** The lower-case hex id of the 32 bytes at `offset`. */
export function bytesToId (bytes: Uint8Array, offset: number): ChangeHash {
  return Buffer.from(bytes.buffer, bytes.byteOffset + offset, ID_BYTES).toString('hex')
}

/** Throws unless `timestamp` is an integer number of milliseconds in 0..2^53-1. */
export function checkTimestamp (timestamp: number): void {
  if (typeof timestamp !== 'number') throw new TypeError('timestamp must be a number')
  if (!Number.isSafeInteger(timestamp) || timestamp < 0 || timestamp > MAX_TIMESTAMP) {
    throw new InvalidArgumentError('timestamp must be an integer number of milliseconds in 0..2^53-1')
  }
}
