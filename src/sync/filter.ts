/**
 * Document filters: a documented subset of CouchDB's Mango selectors.
 *
 * Operators: `$eq $ne $in $nin $exists $gt $gte $lt $lte $and $or $not`. A selector is an object whose keys are
 * field paths (dotted for nested fields: `"address.city"`) or combinators. `{ field: value }` means
 * `{ field: { $eq: value } }`; several keys in one object must all match (an implicit `$and`).
 *
 * As in Mango, a condition on a field is false when the field is missing, except `$exists: false` (and `$not`
 * of a condition, which negates its result). `$gt $gte $lt $lte` compare numbers with numbers and strings with
 * strings; across types they are false. `$eq`, `$in` and friends compare JSON values deeply.
 *
 * Strings of both kinds a document holds match alike: collaborative text and scalar strings (Automerge
 * `ImmutableString`, as the JSON-RPC API and the CLI write every string) are compared as the strings they are.
 */
import { plainValue } from '../core/values.js'
import { InvalidFilterError } from '../errors.js'

/** A Mango selector (validated with `compileSelector`). */
export type MangoSelector = Record<string, unknown>

/** A compiled selector: true when the document data matches. */
export type DocPredicate = (data: Record<string, unknown>) => boolean

export { InvalidFilterError }

const MAX_DEPTH = 32
const FIELD_OPS = new Set(['$eq', '$ne', '$in', '$nin', '$exists', '$gt', '$gte', '$lt', '$lte', '$not'])
const MISSING = Symbol('missing')

type Cond = (value: unknown) => boolean

function isPlainObject (v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

function deepEqual (x: unknown, y: unknown): boolean {
  const a = plainValue(x)
  const b = plainValue(y)
  if (a === b) return true
  if (Array.isArray(a)) {
    return Array.isArray(b) && a.length === b.length && a.every((x, i) => deepEqual(x, b[i]))
  }
  if (isPlainObject(a) && isPlainObject(b)) {
    const ka = Object.keys(a)
    return ka.length === Object.keys(b).length && ka.every((k) => Object.hasOwn(b, k) && deepEqual(a[k], b[k]))
  }
  return false
}

function compare (op: string, x: unknown, b: unknown): boolean {
  const a = plainValue(x)
  if (!((typeof a === 'number' && typeof b === 'number') || (typeof a === 'string' && typeof b === 'string'))) return false
  switch (op) {
    case '$gt': return a > b
    case '$gte': return a >= b
    case '$lt': return a < b
    default: return a <= b
  }
}

function getPath (data: unknown, path: string[]): unknown {
  let v: unknown = data
  for (const part of path) {
    if (!isPlainObject(v) || !Object.hasOwn(v, part)) return MISSING
    v = plainValue(v[part])
  }
  return v
}

function compileCondition (cond: unknown, where: string, depth: number): Cond {
  if (depth > MAX_DEPTH) throw new InvalidFilterError(where, 'nested too deeply')
  if (!isPlainObject(cond) || !Object.keys(cond).some((k) => k.startsWith('$'))) {
    return (v) => v !== MISSING && deepEqual(v, cond)
  }
  const parts: Cond[] = []
  for (const [op, arg] of Object.entries(cond)) {
    const at = `${where}.${op}`
    if (!FIELD_OPS.has(op)) throw new InvalidFilterError(at, `unknown operator ${op}`)
    switch (op) {
      case '$eq': parts.push((v) => v !== MISSING && deepEqual(v, arg)); break
      case '$ne': parts.push((v) => v !== MISSING && !deepEqual(v, arg)); break
      case '$in':
      case '$nin': {
        if (!Array.isArray(arg)) throw new InvalidFilterError(at, 'expects an array')
        const inList = (v: unknown): boolean => arg.some((x) => deepEqual(v, x))
        parts.push(op === '$in' ? (v) => v !== MISSING && inList(v) : (v) => v !== MISSING && !inList(v))
        break
      }
      case '$exists':
        if (typeof arg !== 'boolean') throw new InvalidFilterError(at, 'expects true or false')
        parts.push((v) => (v !== MISSING) === arg)
        break
      case '$not': {
        const inner = compileCondition(arg, at, depth + 1)
        parts.push((v) => !inner(v))
        break
      }
      default:
        if (typeof arg !== 'number' && typeof arg !== 'string') throw new InvalidFilterError(at, 'expects a number or a string')
        parts.push((v) => v !== MISSING && compare(op, v, arg))
    }
  }
  return (v) => parts.every((p) => p(v))
}

function compileNode (selector: unknown, where: string, depth: number): DocPredicate {
  if (depth > MAX_DEPTH) throw new InvalidFilterError(where, 'nested too deeply')
  if (!isPlainObject(selector)) throw new InvalidFilterError(where, 'a selector must be an object')
  const parts: DocPredicate[] = []
  for (const [key, value] of Object.entries(selector)) {
    const at = where === '' ? key : `${where}.${key}`
    if (key === '$and' || key === '$or') {
      if (!Array.isArray(value) || value.length === 0) throw new InvalidFilterError(at, 'expects a non-empty array of selectors')
      const subs = value.map((s, i) => compileNode(s, `${at}[${i}]`, depth + 1))
      parts.push(key === '$and' ? (d) => subs.every((s) => s(d)) : (d) => subs.some((s) => s(d)))
    } else if (key === '$not') {
      const sub = compileNode(value, at, depth + 1)
      parts.push((d) => !sub(d))
    } else if (key.startsWith('$')) {
      throw new InvalidFilterError(at, `unknown combinator ${key}`)
    } else {
      if (key.split('.').some((p) => p === '')) throw new InvalidFilterError(at, 'empty field name')
      const path = key.split('.')
      const cond = compileCondition(value, at, depth + 1)
      parts.push((d) => cond(getPath(d, path)))
    }
  }
  return (d) => parts.every((p) => p(d))
}

/** Validates a selector and turns it into a predicate. Throws InvalidFilterError naming the bad part. */
export function compileSelector (selector: MangoSelector): DocPredicate {
  return compileNode(selector, '', 0)
}
