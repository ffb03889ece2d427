/**
 * Strings in documents, and the two kinds Automerge 3 keeps:
 *
 * - **Collaborative text**: what `changeDoc` makes of a string assigned in the library (`d.getData().body = '…'`).
 *   Concurrent edits merge character by character (`spliceText`); reading it gives a plain string. It costs one
 *   operation per character to write and to load.
 * - **Scalar strings** (`ImmutableString`): replaced whole, like a number; concurrent assignments resolve to one of
 *   them. The JSON-RPC API and the CLI write every string this way (`toScalarStrings`), so a JSON merge patch
 *   replaces whole values and a 1 KB field is one operation. Reading it gives an `ImmutableString` object whose
 *   `toString()` and `toJSON()` are the string: `plainValue` turns it into the string, as filters and document
 *   types read it, and `JSON.stringify` of a document shows plain strings.
 *
 * @example
 * ```ts
 * await db.changeDoc(doc, (d) => { Object.assign(d.getData(), toScalarStrings({ type: 'order', tags: ['a'] })) })
 * await db.changeDoc(doc, (d) => { spliceText(d.getData(), ['notes'], 0, 0, 'collaborative ') })
 * plainValue((await db.getDocument(id)).getData().type) // 'order'
 * ```
 */
import { ImmutableString, isImmutableString, splice } from '@automerge/automerge'
import { InvalidArgumentError, NotTextError } from '../errors.js'

/**
 * True for a scalar string (ImmutableString). Automerge's own check also says true for a list proxy inside a
 * change (the proxy answers for any symbol), so lists are ruled out first.
 */
export function isScalarString (value: unknown): value is ImmutableString {
  return !Array.isArray(value) && isImmutableString(value)
}

/** A value read from a document with a scalar string as its string; any other value as it is. */
export function plainValue (value: unknown): unknown {
  return isScalarString(value) ? value.toString() : value
}

/** True for a string of either kind (collaborative text reads as a plain string, a scalar string as ImmutableString). */
export function isDocString (value: unknown): boolean {
  return typeof value === 'string' || isScalarString(value)
}

/**
 * Plain JSON with every string (nested in objects and arrays too) as a scalar string, to assign into a document
 * inside `changeDoc`. Other values are kept; the input is not changed.
 */
export function toScalarStrings (value: unknown): unknown {
  if (typeof value === 'string') return new ImmutableString(value)
  if (Array.isArray(value)) return value.map(toScalarStrings)
  if (value !== null && typeof value === 'object' && !isScalarString(value)) {
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(value)) out[k] = toScalarStrings(v)
    return out
  }
  return value
}

/** A path into a document: object keys and array indexes. */
export type DocPath = ReadonlyArray<string | number>

function isHighSurrogate (code: number): boolean {
  return code >= 0xd800 && code <= 0xdbff
}

/**
 * Edits a collaborative text field in place, inside `changeDoc` (`root` is `d.getData()`, the document's proxy):
 * deletes `deleteCount` UTF-16 code units at `index`, then inserts `insert` there. Indexes count as JavaScript
 * string indexes do; one that would split a character made of two code units is refused.
 *
 * A missing field of an object is created as text when `index` and `deleteCount` are 0. A path that leads to
 * anything but collaborative text (a scalar string, a number, an object, a list, or through a missing field) is
 * NotTextError; an index or count outside the text is InvalidArgumentError.
 */
export function spliceText (root: Record<string, unknown>, path: DocPath, index: number, deleteCount: number, insert: string): void {
  if (!Array.isArray(path) || path.length === 0) throw new InvalidArgumentError('path: must name a field (one or more keys and indexes)')
  if (!Number.isSafeInteger(index) || index < 0) throw new InvalidArgumentError('index: must be an integer of 0 or more')
  if (!Number.isSafeInteger(deleteCount) || deleteCount < 0) throw new InvalidArgumentError('deleteCount: must be an integer of 0 or more')
  if (typeof insert !== 'string') throw new InvalidArgumentError('insert: must be a string')
  let parent: unknown = root
  for (let i = 0; i < path.length - 1; i++) {
    parent = step(parent, path[i], path.slice(0, i + 1))
    if (parent === undefined) throw new NotTextError(`${where(path.slice(0, i + 1))} does not exist`)
  }
  const last = path[path.length - 1]
  const current = step(parent, last, path)
  if (current === undefined) {
    if (Array.isArray(parent) || typeof last !== 'string') throw new NotTextError(`${where(path)} does not exist`)
    if (index !== 0 || deleteCount !== 0) throw new InvalidArgumentError(`index, deleteCount: ${where(path)} does not exist yet; create it with index 0 and deleteCount 0`)
    ;(parent as Record<string, unknown>)[last] = insert // a string assigned in a change is collaborative text
    return
  }
  if (typeof current !== 'string') {
    const kind = isScalarString(current)
      ? 'a scalar string (replaced whole; as the RPC writes strings)'
      : Array.isArray(current) ? 'a list' : current === null ? 'null' : typeof current === 'object' ? 'an object' : `a ${typeof current}`
    throw new NotTextError(`${where(path)} is ${kind}, not collaborative text`)
  }
  if (index > current.length) throw new InvalidArgumentError(`index: ${index} is past the end of the text (${current.length} UTF-16 code units)`)
  if (deleteCount > current.length - index) throw new InvalidArgumentError(`deleteCount: ${deleteCount} runs past the end of the text (${current.length - index} code units after index)`)
  const splits = (at: number): boolean => at > 0 && at < current.length && isHighSurrogate(current.charCodeAt(at - 1))
  if (splits(index) || splits(index + deleteCount)) throw new InvalidArgumentError('index, deleteCount: would split a character made of two UTF-16 code units')
  if (deleteCount === 0 && insert === '') return
  splice(root, [...path], index, deleteCount, insert)
}

/** One step down a path: an object's own field or a list's item; undefined when there is none. */
function step (from: unknown, key: string | number, at: DocPath): unknown {
  if (Array.isArray(from)) {
    if (typeof key !== 'number' || !Number.isSafeInteger(key) || key < 0) throw new NotTextError(`${where(at)}: a list is indexed by numbers`)
    return key < from.length ? from[key] : undefined
  }
  if (from !== null && typeof from === 'object' && !isScalarString(from)) {
    if (typeof key !== 'string') throw new NotTextError(`${where(at)}: an object's fields are named by strings`)
    return Object.hasOwn(from, key) ? (from as Record<string, unknown>)[key] : undefined
  }
  throw new NotTextError(`${where(at.slice(0, -1))} is not an object or a list`)
}

function where (path: DocPath): string {
  return path.length === 0 ? 'the document' : `path ${JSON.stringify(path)}`
}
