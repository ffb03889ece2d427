/**
 * A document's content as text, for the copy kept beside its Automerge state (so reads need no Automerge load):
 * JSON, with Automerge's own value types tagged so they come back as themselves (`ImmutableString`, `Counter`,
 * `Date`, bytes). An object of the document that has the tag's key itself is wrapped, so no content is mistaken
 * for a tag.
 */
import * as Automerge from '@automerge/automerge'
import type { DocData } from './doc.js'

const TAG = '$mdb'

function toPlain (v: unknown): unknown {
  if (v === null || typeof v !== 'object') return v
  if (v instanceof Automerge.ImmutableString) return { [TAG]: 's', v: v.val }
  if (v instanceof Automerge.Counter) return { [TAG]: 'c', v: v.value }
  if (v instanceof Date) return { [TAG]: 'd', v: v.getTime() }
  if (v instanceof Uint8Array) return { [TAG]: 'b', v: Buffer.from(v).toString('base64') }
  if (Array.isArray(v)) return v.map(toPlain)
  const out: Record<string, unknown> = {}
  for (const [k, x] of Object.entries(v)) out[k] = toPlain(x)
  return Object.hasOwn(v, TAG) ? { [TAG]: 'o', v: out } : out
}

function fromPlain (v: unknown): unknown {
  if (v === null || typeof v !== 'object') return v
  if (Array.isArray(v)) return v.map(fromPlain)
  const o = v as Record<string, unknown>
  if (Object.hasOwn(o, TAG)) {
    switch (o[TAG]) {
      case 's': return new Automerge.ImmutableString(o.v as string)
      case 'c': return new Automerge.Counter(o.v as number)
      case 'd': return new Date(o.v as number)
      case 'b': return new Uint8Array(Buffer.from(o.v as string, 'base64'))
      default: return fromObject(o.v as Record<string, unknown>)
    }
  }
  return fromObject(o)
}

function fromObject (o: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [k, x] of Object.entries(o)) out[k] = fromPlain(x)
  return out
}

/** The text of a document's content (an Automerge document or its `toJS`). */
export function encodeData (data: DocData): string {
  return JSON.stringify(toPlain(data))
}

/** A fresh copy of the content `encodeData` wrote. */
export function decodeData (text: string): DocData {
  return fromPlain(JSON.parse(text)) as DocData
}
