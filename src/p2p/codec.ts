/**
 * SyncMessage <-> protobuf Frame. Decoding validates every field a frame type needs before the session sees it.
 */
import type { Uint8ArrayList } from 'uint8arraylist'
import {
  SyncProtocolError, type SyncErrorCode, type SyncMessage
} from '../sync/messages.js'
import { LIVE_MAX_ANNOUNCE_HASHES } from '../limits.js'
import { Frame } from './pb/sync.js'

const ERROR_CODES = new Set<SyncErrorCode>(['NOT_AUTHORIZED', 'SHARE_DISABLED', 'VERSION_UNSUPPORTED', 'PROTOCOL_ERROR', 'INTERNAL'])
/** Bounds on repeated fields, so a frame cannot make us allocate without limit. */
const MAX_CAPABILITIES = 32
const MAX_HASHES = 4096
const MAX_CHANGES = 65536

export function encodeFrame (m: SyncMessage): Uint8Array {
  const f: Partial<Frame> = {}
  switch (m.type) {
    case 'hello':
      Object.assign(f, { type: Frame.Type.HELLO, topic: m.topic, version: m.version, capabilities: m.capabilities, maxFrameBytes: m.maxFrameBytes })
      break
    case 'welcome':
      Object.assign(f, { type: Frame.Type.WELCOME, version: m.version, capabilities: m.capabilities, maxFrameBytes: m.maxFrameBytes })
      break
    case 'error':
      Object.assign(f, { type: Frame.Type.ERROR, code: m.code, message: m.message })
      break
    case 'reconcile':
      Object.assign(f, { type: Frame.Type.RECONCILE, data: m.data })
      break
    case 'want':
      Object.assign(f, { type: Frame.Type.WANT, hashes: m.hashes, done: m.done })
      break
    case 'changes':
      Object.assign(f, { type: Frame.Type.CHANGES, changes: m.changes, last: m.last })
      break
    case 'live':
      f.type = Frame.Type.LIVE
      break
    case 'announce':
      Object.assign(f, { type: Frame.Type.ANNOUNCE, hashes: m.hashes, changes: m.changes })
      break
    case 'ack':
      f.type = Frame.Type.ACK
      break
  }
  return Frame.encode(f)
}

/** A peer's text as well-formed UTF-16: protons reads invalid UTF-8 as lone surrogates, and a cut can split a pair. */
function wellFormed (text: string): string {
  return text.toWellFormed()
}

/** Decodes and validates one frame. Throws SyncProtocolError for anything malformed or unknown. */
export function decodeFrame (bytes: Uint8Array | Uint8ArrayList): SyncMessage {
  let f: Frame
  try {
    f = Frame.decode(bytes, { limits: { capabilities: MAX_CAPABILITIES, hashes: MAX_HASHES, changes: MAX_CHANGES } })
  } catch (err) {
    throw new SyncProtocolError('malformed frame', { cause: err })
  }
  const need = (ok: boolean, what: string): void => {
    if (!ok) throw new SyncProtocolError(`invalid ${String(f.type)} frame: ${what}`)
  }
  switch (f.type) {
    case Frame.Type.HELLO:
      need(f.topic.length === 32, 'topic must have 32 bytes')
      need(f.version > 0, 'version missing')
      need(f.maxFrameBytes >= 1024, 'maxFrameBytes too small')
      return { type: 'hello', topic: f.topic, version: f.version, capabilities: f.capabilities.map(wellFormed), maxFrameBytes: f.maxFrameBytes }
    case Frame.Type.WELCOME:
      need(f.version > 0, 'version missing')
      need(f.maxFrameBytes >= 1024, 'maxFrameBytes too small')
      return { type: 'welcome', version: f.version, capabilities: f.capabilities.map(wellFormed), maxFrameBytes: f.maxFrameBytes }
    case Frame.Type.ERROR:
      return { type: 'error', code: ERROR_CODES.has(f.code as SyncErrorCode) ? f.code as SyncErrorCode : 'INTERNAL', message: wellFormed(f.message.slice(0, 1000)) }
    case Frame.Type.RECONCILE:
      return { type: 'reconcile', data: f.data }
    case Frame.Type.WANT:
      need(f.hashes.every((h) => h.length === 32), 'hashes must have 32 bytes')
      return { type: 'want', hashes: f.hashes, done: f.done }
    case Frame.Type.CHANGES:
      return { type: 'changes', changes: f.changes, last: f.last }
    case Frame.Type.LIVE:
      return { type: 'live' }
    case Frame.Type.ANNOUNCE:
      need(f.hashes.length > 0 && f.hashes.length <= LIVE_MAX_ANNOUNCE_HASHES, `1..${LIVE_MAX_ANNOUNCE_HASHES} hashes`)
      need(f.hashes.every((h) => h.length === 32), 'hashes must have 32 bytes')
      need(f.changes.length <= f.hashes.length, 'more changes than hashes')
      return { type: 'announce', hashes: f.hashes, changes: f.changes }
    case Frame.Type.ACK:
      return { type: 'ack' }
    default:
      throw new SyncProtocolError(`unknown frame type ${String(f.type)}`)
  }
}
