import { decodeMessage, encodeMessage, enumeration, MaxLengthError, message, streamMessage } from 'protons-runtime'
import { alloc as uint8ArrayAlloc } from 'uint8arrays/alloc'
import type { Codec, DecodeOptions } from 'protons-runtime'
import type { Uint8ArrayList } from 'uint8arraylist'

export interface Frame {
  type: Frame.Type
  topic: Uint8Array<ArrayBuffer>
  version: number
  capabilities: string[]
  maxFrameBytes: number
  code: string
  message: string
  data: Uint8Array<ArrayBuffer>
  hashes: Uint8Array<ArrayBuffer>[]
  done: boolean
  changes: Uint8Array<ArrayBuffer>[]
  last: boolean
}

export namespace Frame {
  export enum Type {
    UNKNOWN = 'UNKNOWN',
    HELLO = 'HELLO',
    WELCOME = 'WELCOME',
    ERROR = 'ERROR',
    RECONCILE = 'RECONCILE',
    WANT = 'WANT',
    CHANGES = 'CHANGES',
    LIVE = 'LIVE',
    ANNOUNCE = 'ANNOUNCE',
    ACK = 'ACK'
  }

  enum __TypeValues {
    UNKNOWN = 0,
    HELLO = 1,
    WELCOME = 2,
    ERROR = 3,
    RECONCILE = 4,
    WANT = 5,
    CHANGES = 6,
    LIVE = 7,
    ANNOUNCE = 8,
    ACK = 9
  }

  export namespace Type {
    export const codec = (): Codec<Type> => {
      return enumeration<Type>(__TypeValues)
    }
  }

  let _codec: Codec<Frame>

  export const codec = (): Codec<Frame> => {
    if (_codec == null) {
      _codec = message<Frame>((obj, w, opts = {}) => {
        if (opts.lengthDelimited !== false) {
          w.fork()
        }

        if (obj.type != null && __TypeValues[obj.type] !== 0) {
          w.uint32(8)
          Frame.Type.codec().encode(obj.type, w)
        }

        if ((obj.topic != null && obj.topic.byteLength > 0)) {
          w.uint32(18)
          w.bytes(obj.topic)
        }

        if ((obj.version != null && obj.version !== 0)) {
          w.uint32(24)
          w.uint32(obj.version)
        }

        if (obj.capabilities != null && obj.capabilities.length > 0) {
          for (const value of obj.capabilities) {
            w.uint32(34)
            w.string(value)
          }
        }

        if ((obj.maxFrameBytes != null && obj.maxFrameBytes !== 0)) {
          w.uint32(40)
          w.uint32(obj.maxFrameBytes)
        }

        if ((obj.code != null && obj.code !== '')) {
          w.uint32(50)
          w.string(obj.code)
        }

        if ((obj.message != null && obj.message !== '')) {
          w.uint32(58)
          w.string(obj.message)
        }

        if ((obj.data != null && obj.data.byteLength > 0)) {
          w.uint32(66)
          w.bytes(obj.data)
        }

        if (obj.hashes != null && obj.hashes.length > 0) {
          for (const value of obj.hashes) {
            w.uint32(74)
            w.bytes(value)
          }
        }

        if ((obj.done != null && obj.done !== false)) {
          w.uint32(80)
          w.bool(obj.done)
        }

        if (obj.changes != null && obj.changes.length > 0) {
          for (const value of obj.changes) {
            w.uint32(90)
            w.bytes(value)
          }
        }

        if ((obj.last != null && obj.last !== false)) {
          w.uint32(96)
          w.bool(obj.last)
        }

        if (opts.lengthDelimited !== false) {
          w.ldelim()
        }
      }, (reader, length, opts = {}) => {
        const obj: any = {
          type: Type.UNKNOWN,
          topic: uint8ArrayAlloc(0),
          version: 0,
          capabilities: [],
          maxFrameBytes: 0,
          code: '',
          message: '',
          data: uint8ArrayAlloc(0),
          hashes: [],
          done: false,
          changes: [],
          last: false
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              obj.type = Frame.Type.codec().decode(reader)
              break
            }
            case 2: {
              obj.topic = reader.bytes()
              break
            }
            case 3: {
              obj.version = reader.uint32()
              break
            }
            case 4: {
              if (opts.limits?.capabilities != null && obj.capabilities.length === opts.limits.capabilities) {
                throw new MaxLengthError('Decode error - repeated field "capabilities" had too many elements')
              }

              obj.capabilities.push(reader.string())
              break
            }
            case 5: {
              obj.maxFrameBytes = reader.uint32()
              break
            }
            case 6: {
              obj.code = reader.string()
              break
            }
            case 7: {
              obj.message = reader.string()
              break
            }
            case 8: {
              obj.data = reader.bytes()
              break
            }
            case 9: {
              if (opts.limits?.hashes != null && obj.hashes.length === opts.limits.hashes) {
                throw new MaxLengthError('Decode error - repeated field "hashes" had too many elements')
              }

              obj.hashes.push(reader.bytes())
              break
            }
            case 10: {
              obj.done = reader.bool()
              break
            }
            case 11: {
              if (opts.limits?.changes != null && obj.changes.length === opts.limits.changes) {
                throw new MaxLengthError('Decode error - repeated field "changes" had too many elements')
              }

              obj.changes.push(reader.bytes())
              break
            }
            case 12: {
              obj.last = reader.bool()
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }

        return obj
      }, function * (reader, length, prefix, opts = {}) {
        const obj = {
          capabilities: 0,
          hashes: 0,
          changes: 0
        }

        const end = length == null ? reader.len : reader.pos + length

        while (reader.pos < end) {
          const tag = reader.uint32()

          switch (tag >>> 3) {
            case 1: {
              yield {
                field: `${prefix}.type`,
                value: Frame.Type.codec().decode(reader)
              }
              break
            }
            case 2: {
              yield {
                field: `${prefix}.topic`,
                value: reader.bytes()
              }
              break
            }
            case 3: {
              yield {
                field: `${prefix}.version`,
                value: reader.uint32()
              }
              break
            }
            case 4: {
              if (opts.limits?.capabilities != null && obj.capabilities === opts.limits.capabilities) {
                throw new MaxLengthError('Streaming decode error - repeated field "capabilities" had too many elements')
              }

              yield {
                field: `${prefix}.capabilities[]`,
                index: obj.capabilities,
                value: reader.string()
              }

              obj.capabilities++

              break
            }
            case 5: {
              yield {
                field: `${prefix}.maxFrameBytes`,
                value: reader.uint32()
              }
              break
            }
            case 6: {
              yield {
                field: `${prefix}.code`,
                value: reader.string()
              }
              break
            }
            case 7: {
              yield {
                field: `${prefix}.message`,
                value: reader.string()
              }
              break
            }
            case 8: {
              yield {
                field: `${prefix}.data`,
                value: reader.bytes()
              }
              break
            }
            case 9: {
              if (opts.limits?.hashes != null && obj.hashes === opts.limits.hashes) {
                throw new MaxLengthError('Streaming decode error - repeated field "hashes" had too many elements')
              }

              yield {
                field: `${prefix}.hashes[]`,
                index: obj.hashes,
                value: reader.bytes()
              }

              obj.hashes++

              break
            }
            case 10: {
              yield {
                field: `${prefix}.done`,
                value: reader.bool()
              }
              break
            }
            case 11: {
              if (opts.limits?.changes != null && obj.changes === opts.limits.changes) {
                throw new MaxLengthError('Streaming decode error - repeated field "changes" had too many elements')
              }

              yield {
                field: `${prefix}.changes[]`,
                index: obj.changes,
                value: reader.bytes()
              }

              obj.changes++

              break
            }
            case 12: {
              yield {
                field: `${prefix}.last`,
                value: reader.bool()
              }
              break
            }
            default: {
              reader.skipType(tag & 7)
              break
            }
          }
        }
      })
    }

    return _codec
  }

  export interface FrameTypeFieldEvent {
    field: '$.type'
    value: Frame.Type
  }

  export interface FrameTopicFieldEvent {
    field: '$.topic'
    value: Uint8Array<ArrayBuffer>
  }

  export interface FrameVersionFieldEvent {
    field: '$.version'
    value: number
  }

  export interface FrameCapabilitiesFieldEvent {
    field: '$.capabilities[]'
    index: number
    value: string
  }

  export interface FrameMaxFrameBytesFieldEvent {
    field: '$.maxFrameBytes'
    value: number
  }

  export interface FrameCodeFieldEvent {
    field: '$.code'
    value: string
  }

  export interface FrameMessageFieldEvent {
    field: '$.message'
    value: string
  }

  export interface FrameDataFieldEvent {
    field: '$.data'
    value: Uint8Array<ArrayBuffer>
  }

  export interface FrameHashesFieldEvent {
    field: '$.hashes[]'
    index: number
    value: Uint8Array<ArrayBuffer>
  }

  export interface FrameDoneFieldEvent {
    field: '$.done'
    value: boolean
  }

  export interface FrameChangesFieldEvent {
    field: '$.changes[]'
    index: number
    value: Uint8Array<ArrayBuffer>
  }

  export interface FrameLastFieldEvent {
    field: '$.last'
    value: boolean
  }

  export function encode (obj: Partial<Frame>): Uint8Array<ArrayBuffer> {
    return encodeMessage(obj, Frame.codec())
  }

  export function decode (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Frame>): Frame {
    return decodeMessage(buf, Frame.codec(), opts)
  }

  export function stream (buf: Uint8Array | Uint8ArrayList, opts?: DecodeOptions<Frame>): Generator<FrameTypeFieldEvent | FrameTopicFieldEvent | FrameVersionFieldEvent | FrameCapabilitiesFieldEvent | FrameMaxFrameBytesFieldEvent | FrameCodeFieldEvent | FrameMessageFieldEvent | FrameDataFieldEvent | FrameHashesFieldEvent | FrameDoneFieldEvent | FrameChangesFieldEvent | FrameLastFieldEvent> {
    return streamMessage(buf, Frame.codec(), opts)
  }
}
