import { expect } from 'chai'
import { InvalidFilterError } from '../../src/errors.js'
import type { MindooDB, MindooTenant, TenantFactory } from '../../src/index.js'
import type { ChangeHash, DocId, StoreChange } from '../../src/store/change.js'
import { compileSelector, type MangoSelector } from '../../src/sync/filter.js'
import { createReconcileSet } from '../../src/sync/reconcile/index.js'
import { ServedSet } from '../../src/sync/served-set.js'
import { policyOf, type ShareFilter } from '../../src/sync/share.js'
import { testFactory } from '../utils/tmp.js'

/** True when `selector` matches `data`. */
function matches (selector: MangoSelector, data: Record<string, unknown>): boolean {
  return compileSelector(selector)(data)
}

/** The documents of `docs` (by name) that `selector` matches. */
function which (selector: MangoSelector, docs: Record<string, Record<string, unknown>>): string[] {
  const pred = compileSelector(selector)
  return Object.entries(docs).filter(([, d]) => pred(d)).map(([name]) => name)
}

/** One value of every JSON type, plus a missing field (`missing` has no `v`). */
const KINDS: Record<string, Record<string, unknown>> = {
  num: { v: 5 },
  zero: { v: 0 },
  str: { v: '5' },
  empty: { v: '' },
  t: { v: true },
  f: { v: false },
  nil: { v: null },
  arr: { v: [5] },
  obj: { v: { x: 5 } },
  missing: {}
}

function expectInvalid (selector: unknown, path: string): void {
  let err: unknown
  try {
    compileSelector(selector as MangoSelector)
  } catch (e) {
    err = e
  }
  expect(err, `${JSON.stringify(selector)} is refused`).to.be.instanceOf(InvalidFilterError)
  expect((err as InvalidFilterError).code).to.equal('INVALID_FILTER')
  expect((err as InvalidFilterError).path).to.equal(path)
}

describe('sync/filter: Mango selectors', () => {
  describe('operators', () => {
    it('should match $eq by deep equality of the same type, never across types or on a missing field', () => {
      expect(which({ v: { $eq: 5 } }, KINDS)).to.deep.equal(['num'])
      expect(which({ v: { $eq: '5' } }, KINDS)).to.deep.equal(['str'])
      expect(which({ v: { $eq: null } }, KINDS)).to.deep.equal(['nil'])
      expect(which({ v: { $eq: false } }, KINDS)).to.deep.equal(['f'])
      expect(which({ v: { $eq: 0 } }, KINDS)).to.deep.equal(['zero'])
      // arrays and objects compare as whole values: no element matching
      expect(which({ v: { $eq: [5] } }, KINDS)).to.deep.equal(['arr'])
      expect(which({ v: { $eq: { x: 5 } } }, KINDS)).to.deep.equal(['obj'])
      expect(matches({ v: { $eq: { x: 5 } } }, { v: { x: 5, y: 1 } })).to.equal(false)
      expect(matches({ v: { $eq: [5, 6] } }, { v: [6, 5] })).to.equal(false)
      // the implicit form is $eq
      expect(which({ v: 5 }, KINDS)).to.deep.equal(['num'])
      expect(which({ v: { x: 5 } }, KINDS)).to.deep.equal(['obj'])
    })

    it('should match $ne on every present value that differs, and not on a missing field', () => {
      expect(which({ v: { $ne: 5 } }, KINDS)).to.deep.equal(['zero', 'str', 'empty', 't', 'f', 'nil', 'arr', 'obj'])
      expect(which({ v: { $ne: null } }, KINDS)).to.deep.equal(['num', 'zero', 'str', 'empty', 't', 'f', 'arr', 'obj'])
    })

    it('should match $in when the value deeply equals one of the list, and not on a missing field', () => {
      expect(which({ v: { $in: [5, null] } }, KINDS)).to.deep.equal(['num', 'nil'])
      expect(which({ v: { $in: ['5', [5], { x: 5 }] } }, KINDS)).to.deep.equal(['str', 'arr', 'obj'])
      expect(which({ v: { $in: [] } }, KINDS)).to.deep.equal([])
    })

    it('should match $nin when the value equals none of the list, and not on a missing field', () => {
      expect(which({ v: { $nin: [5, '5', [5], { x: 5 }] } }, KINDS)).to.deep.equal(['zero', 'empty', 't', 'f', 'nil'])
      expect(which({ v: { $nin: [] } }, KINDS)).to.deep.equal(Object.keys(KINDS).filter((k) => k !== 'missing'))
    })

    it('should match $exists on presence alone: null, false, 0 and empty values exist', () => {
      expect(which({ v: { $exists: true } }, KINDS)).to.deep.equal(Object.keys(KINDS).filter((k) => k !== 'missing'))
      expect(which({ v: { $exists: false } }, KINDS)).to.deep.equal(['missing'])
    })

    it('should compare $gt only numbers with numbers and strings with strings', () => {
      expect(which({ v: { $gt: 4 } }, KINDS)).to.deep.equal(['num'])
      expect(which({ v: { $gt: 5 } }, KINDS)).to.deep.equal([])
      expect(which({ v: { $gt: -1 } }, KINDS)).to.deep.equal(['num', 'zero'])
      // '5' > '' and '5' > '4' as strings; never the number 5, true, an array or an object
      expect(which({ v: { $gt: '4' } }, KINDS)).to.deep.equal(['str'])
      expect(which({ v: { $gt: '' } }, KINDS)).to.deep.equal(['str'])
      expect(matches({ n: { $gt: 9 } }, { n: '10' })).to.equal(false)
      expect(matches({ s: { $gt: 'Z' } }, { s: 'a' })).to.equal(true) // code unit order
    })

    it('should compare $gte including equality, across types never', () => {
      expect(which({ v: { $gte: 5 } }, KINDS)).to.deep.equal(['num'])
      expect(which({ v: { $gte: 0 } }, KINDS)).to.deep.equal(['num', 'zero'])
      expect(which({ v: { $gte: '5' } }, KINDS)).to.deep.equal(['str'])
      expect(which({ v: { $gte: '' } }, KINDS)).to.deep.equal(['str', 'empty'])
    })

    it('should compare $lt only within a type', () => {
      expect(which({ v: { $lt: 5 } }, KINDS)).to.deep.equal(['zero'])
      expect(which({ v: { $lt: 6 } }, KINDS)).to.deep.equal(['num', 'zero'])
      expect(which({ v: { $lt: '6' } }, KINDS)).to.deep.equal(['str', 'empty'])
      expect(which({ v: { $lt: '5' } }, KINDS)).to.deep.equal(['empty'])
      expect(matches({ n: { $lt: 10 } }, { n: '9' })).to.equal(false)
    })

    it('should compare $lte including equality, across types never', () => {
      expect(which({ v: { $lte: 5 } }, KINDS)).to.deep.equal(['num', 'zero'])
      expect(which({ v: { $lte: 0 } }, KINDS)).to.deep.equal(['zero'])
      expect(which({ v: { $lte: '' } }, KINDS)).to.deep.equal(['empty'])
      // a range: both bounds on one field
      expect(which({ v: { $gt: 0, $lte: 5 } }, KINDS)).to.deep.equal(['num'])
    })

    it('should match $and only when every selector matches, and several keys as an implicit $and', () => {
      const docs = { both: { a: 1, b: 2 }, onlyA: { a: 1, b: 3 }, onlyB: { a: 2, b: 2 }, none: {} }
      expect(which({ $and: [{ a: 1 }, { b: 2 }] }, docs)).to.deep.equal(['both'])
      expect(which({ a: 1, b: 2 }, docs)).to.deep.equal(['both'])
      expect(which({ $and: [{ a: 1 }] }, docs)).to.deep.equal(['both', 'onlyA'])
    })

    it('should match $or when any selector matches', () => {
      const docs = { both: { a: 1, b: 2 }, onlyA: { a: 1, b: 3 }, onlyB: { a: 2, b: 2 }, none: {} }
      expect(which({ $or: [{ a: 1 }, { b: 2 }] }, docs)).to.deep.equal(['both', 'onlyA', 'onlyB'])
      expect(which({ $or: [{ a: { $exists: false } }, { b: 3 }] }, docs)).to.deep.equal(['onlyA', 'none'])
      // $or beside a field condition: both must hold
      expect(which({ b: 2, $or: [{ a: 2 }, { a: 3 }] }, docs)).to.deep.equal(['onlyB'])
    })

    it('should negate with $not, as a combinator and on a field (a missing field then matches)', () => {
      const docs = { order: { type: 'order' }, invoice: { type: 'invoice' }, untyped: {}, numeric: { type: 1 } }
      expect(which({ $not: { type: 'order' } }, docs)).to.deep.equal(['invoice', 'untyped', 'numeric'])
      expect(which({ type: { $not: { $eq: 'order' } } }, docs)).to.deep.equal(['invoice', 'untyped', 'numeric'])
      expect(which({ type: { $not: { $in: ['order', 'invoice'] } } }, docs)).to.deep.equal(['untyped', 'numeric'])
      // $not of $exists: false is presence
      expect(which({ type: { $not: { $exists: false } } }, docs)).to.deep.equal(['order', 'invoice', 'numeric'])
      // double negation is the condition itself
      expect(which({ $not: { $not: { type: 'order' } } }, docs)).to.deep.equal(['order'])
    })
  })

  describe('paths and types', () => {
    const docs: Record<string, Record<string, unknown>> = {
      nested: { address: { city: 'Zurich', zip: 8000, geo: { lat: 47 } } },
      flat: { 'address.city': 'Zurich' },
      stringAddress: { address: 'Zurich' },
      arrayAddress: { address: [{ city: 'Zurich' }] },
      nullAddress: { address: null },
      noAddress: {}
    }

    it('should follow dotted paths through nested objects only', () => {
      expect(which({ 'address.city': 'Zurich' }, docs)).to.deep.equal(['nested'])
      expect(which({ 'address.geo.lat': { $gte: 47 } }, docs)).to.deep.equal(['nested'])
      expect(which({ 'address.zip': { $in: [8000, 8001] } }, docs)).to.deep.equal(['nested'])
      // through a string, an array, null or nothing the field is missing
      expect(which({ 'address.city': { $exists: false } }, docs)).to.deep.equal(['flat', 'stringAddress', 'arrayAddress', 'nullAddress', 'noAddress'])
      expect(which({ 'address.0.city': 'Zurich' }, docs)).to.deep.equal([])
      expect(which({ 'address.length': { $exists: true } }, docs)).to.deep.equal([])
    })

    it('should not read inherited properties as fields', () => {
      expect(matches({ constructor: { $exists: true } }, {})).to.equal(false)
      expect(matches({ 'a.toString': { $exists: true } }, { a: {} })).to.equal(false)
      // a JSON selector (as in a config file) can name __proto__ as an own key
      expect(matches(JSON.parse('{ "__proto__": { "$exists": true } }') as MangoSelector, {})).to.equal(false)
      expect(matches(JSON.parse('{ "__proto__": { "$exists": true } }') as MangoSelector, JSON.parse('{ "__proto__": 1 }') as Record<string, unknown>)).to.equal(true)
    })

    it('should treat numbers and their strings, booleans and numbers, null and missing as different', () => {
      expect(matches({ n: 1 }, { n: '1' })).to.equal(false)
      expect(matches({ n: '1' }, { n: 1 })).to.equal(false)
      expect(matches({ n: 1 }, { n: true })).to.equal(false)
      expect(matches({ n: 0 }, { n: false })).to.equal(false)
      expect(matches({ n: null }, {})).to.equal(false)
      expect(matches({ n: { $in: [1] } }, { n: [1] })).to.equal(false)
      expect(matches({ n: { $gt: 0 } }, { n: [1] })).to.equal(false)
      expect(matches({ n: { $lt: 1 } }, { n: null })).to.equal(false)
      expect(matches({ n: { $gte: 0 } }, { n: { v: 1 } })).to.equal(false)
    })
  })

  describe('invalid selectors', () => {
    it('should refuse an unknown field operator, naming its path', () => {
      expectInvalid({ type: { $regex: 'o.*' } }, 'type.$regex')
      expectInvalid({ 'a.b': { $eq: 1, $size: 2 } }, 'a.b.$size')
      // an object with a $ key is an operator object: its other keys are operators too
      expectInvalid({ a: { $eq: 1, x: 2 } }, 'a.x')
    })

    it('should refuse an unknown combinator, naming its path', () => {
      expectInvalid({ $nor: [{ a: 1 }] }, '$nor')
      expectInvalid({ $or: [{ a: 1 }, { $where: 'true' }] }, '$or[1].$where')
    })

    it('should refuse operator arguments of the wrong type, naming the operator', () => {
      expectInvalid({ a: { $in: 'x' } }, 'a.$in')
      expectInvalid({ a: { $nin: { x: 1 } } }, 'a.$nin')
      expectInvalid({ a: { $exists: 'yes' } }, 'a.$exists')
      expectInvalid({ a: { $exists: 1 } }, 'a.$exists')
      for (const op of ['$gt', '$gte', '$lt', '$lte']) {
        expectInvalid({ a: { [op]: null } }, `a.${op}`)
        expectInvalid({ a: { [op]: [1] } }, `a.${op}`)
        expectInvalid({ a: { [op]: true } }, `a.${op}`)
      }
      expectInvalid({ a: { $not: { $gt: {} } } }, 'a.$not.$gt')
    })

    it('should refuse $and and $or without a non-empty array of selectors', () => {
      expectInvalid({ $and: [] }, '$and')
      expectInvalid({ $or: {} }, '$or')
      expectInvalid({ $and: [{ a: 1 }, 'b'] }, '$and[1]')
      expectInvalid({ $or: [null] }, '$or[0]')
      expectInvalid({ $not: [{ a: 1 }] }, '$not')
    })

    it('should refuse empty field names and selectors that are not objects', () => {
      expectInvalid({ 'a..b': 1 }, 'a..b')
      expectInvalid({ '': 1 }, '')
      expectInvalid({ 'a.': 1 }, 'a.')
      for (const s of [null, [], 'type', 5]) expectInvalid(s, '')
    })

    it('should refuse a selector nested deeper than its limit', () => {
      let deep: MangoSelector = { a: 1 }
      for (let i = 0; i < 40; i++) deep = { $not: deep }
      expectInvalid(deep, Array.from({ length: 33 }, () => '$not').join('.'))
      let field: unknown = { $eq: 1 }
      for (let i = 0; i < 40; i++) field = { $not: field }
      expect(() => compileSelector({ a: field } as MangoSelector)).to.throw(InvalidFilterError)
    })
  })

  describe('on documents of a database', () => {
    let cleanup: (() => Promise<void>) | undefined

    afterEach(async () => {
      await cleanup?.()
      cleanup = undefined
    })

    it('should evaluate paths, arrays and types on real documents as on plain data', async () => {
      const t = await testFactory()
      cleanup = t.cleanup
      const tenant = await t.factory.createTenant({ tenantId: 'org-f', tenantEncryptionKeyPassword: 'pw' })
      const db = await tenant.openDB('docs')
      const doc = await db.createDocument()
      await db.changeDoc(doc, (d) => {
        const data = d.getData()
        data.type = 'order'
        data.total = 120
        data.tags = ['a', 'b']
        data.customer = { name: 'Ada', address: { city: 'Zurich' } }
        data.note = null
      })
      const data = (await db.getDocument(doc.getId())).getData()
      const yes: MangoSelector[] = [
        { type: 'order' }, { total: { $gt: 100, $lte: 120 } }, { tags: ['a', 'b'] }, { tags: { $in: [['a', 'b']] } },
        { 'customer.address.city': 'Zurich' }, { 'customer.name': { $gte: 'A' } }, { note: null }, { note: { $exists: true } },
        { $or: [{ type: 'invoice' }, { 'customer.name': 'Ada' }] }, { $not: { total: { $lt: 100 } } }, { missing: { $exists: false } }
      ]
      const no: MangoSelector[] = [
        { type: 'invoice' }, { total: { $gt: '100' } }, { total: '120' }, { tags: 'a' }, { 'tags.0': 'a' },
        { 'customer.address': 'Zurich' }, { 'customer.address.city.x': { $exists: true } }, { note: { $ne: null } },
        { $and: [{ type: 'order' }, { total: { $lt: 100 } }] }
      ]
      for (const s of yes) expect(compileSelector(s)(data), JSON.stringify(s)).to.equal(true)
      for (const s of no) expect(compileSelector(s)(data), JSON.stringify(s)).to.equal(false)
    })
  })

  describe('fail-closed: documents the serving node cannot read', () => {
    let server: { factory: TenantFactory, tenant: MindooTenant, cleanup: () => Promise<void> }
    let partner: { factory: TenantFactory, tenant: MindooTenant, cleanup: () => Promise<void> }
    let dbS: MindooDB
    let dbP: MindooDB
    const sets: ServedSet[] = []

    async function org (tenantId: string): Promise<typeof server> {
      const t = await testFactory()
      return { factory: t.factory, tenant: await t.factory.createTenant({ tenantId, tenantEncryptionKeyPassword: `${tenantId}-pw` }), cleanup: t.cleanup }
    }

    async function changesOf (db: MindooDB, docId: DocId): Promise<StoreChange[]> {
      return await db.getStore().getChanges(await db.getStore().getAllChangeHashesForDoc(docId))
    }

    async function served (db: MindooDB, filter: ShareFilter, ownAuthor: string): Promise<ServedSet> {
      const set = new ServedSet({ db, index: createReconcileSet() }, { policy: policyOf(filter), direction: 'both', ownAuthor })
      sets.push(set)
      await set.start()
      await set.settled()
      return set
    }

    beforeEach(async () => {
      // two tenants, each with its own LevelDB data directory; both hold key k, only the partner holds p-only
      server = await org('org-server')
      partner = await org('org-partner')
      const shared = await server.factory.createSymmetricEncryptedPrivateKey('k-pw')
      await server.tenant.importNamedKey('k', shared, 'k-pw')
      await partner.tenant.importNamedKey('k', shared, 'k-pw')
      await partner.tenant.importNamedKey('p-only', await partner.factory.createSymmetricEncryptedPrivateKey('p-pw'), 'p-pw')
      dbS = await server.tenant.openDB('orders')
      dbP = await partner.tenant.openDB('orders')
      await dbS.trustPartner(partner.tenant.getPublicInfo())
    })

    afterEach(async () => {
      for (const s of sets.splice(0)) s.stop()
      await server.cleanup()
      await partner.cleanup()
    })

    it('should not serve a stored document under a key the server lacks, whatever the selector, while the partner would', async () => {
      // on the server: one of its own orders, and the partner's orders (one readable here, one not), all stored
      const own = await dbS.createDocument({ keyId: 'k' })
      await dbS.changeDoc(own, (d) => { d.getData().type = 'order' })
      const readable = await dbP.createDocument({ keyId: 'k' })
      await dbP.changeDoc(readable, (d) => { d.getData().type = 'order' })
      const secret = await dbP.createDocument({ keyId: 'p-only' })
      await dbP.changeDoc(secret, (d) => { d.getData().type = 'order' })
      for (const doc of [readable, secret]) {
        for (const c of await changesOf(dbP, doc.getId())) await dbS.getStore().append(c)
      }
      const secretChanges = await changesOf(dbS, secret.getId())
      expect(secretChanges).to.have.length(2)
      let unreadable: unknown
      await dbS.getDocument(secret.getId()).catch((err: unknown) => { unreadable = err })
      expect(unreadable, 'the server cannot read the document').to.be.instanceOf(Error)

      // selectors the document matches, and selectors an unreadable (empty-looking) document would match
      const selectors: MangoSelector[] = [
        { type: 'order' },
        { type: { $in: ['order'] } },
        { $not: { type: 'invoice' } },
        { secret: { $exists: false } },
        { type: { $ne: 'invoice' } },
        { $or: [{ type: 'order' }, { type: { $exists: false } }] },
        { type: { $not: { $eq: 'invoice' } } }
      ]
      const serverAuthor = server.tenant.getPublicInfo().signingPublicKey
      const partnerAuthor = partner.tenant.getPublicInfo().signingPublicKey
      const hashesOf = async (db: MindooDB, id: DocId): Promise<ChangeHash[]> => await db.getStore().getAllChangeHashesForDoc(id)
      for (const selector of selectors) {
        const filter: ShareFilter = { kind: 'selector', selector }
        const onServer = await served(dbS, filter, serverAuthor)
        for (const c of secretChanges) expect(onServer.includes(c), `${JSON.stringify(selector)} serves the unreadable document`).to.equal(false)
        // readable documents matching the same selector are served, the partner's included
        for (const id of [own.getId(), readable.getId()]) {
          for (const c of await changesOf(dbS, id)) expect(onServer.includes(c), JSON.stringify(selector)).to.equal(true)
        }
        expect(onServer.size).to.equal((await hashesOf(dbS, own.getId())).length + (await hashesOf(dbS, readable.getId())).length)
        // the partner, which can read it, would serve it under the same selector
        const onPartner = await served(dbP, filter, partnerAuthor)
        for (const c of secretChanges) expect(onPartner.includes(c), `the partner serves it under ${JSON.stringify(selector)}`).to.equal(true)
      }

      // the type shortcut and a predicate fail closed the same way; the all filter serves what it stores (relay)
      const byType = await served(dbS, { kind: 'type', types: ['order'] }, serverAuthor)
      const byPredicate = await served(dbS, { kind: 'predicate', predicate: () => true }, serverAuthor)
      const all = await served(dbS, { kind: 'all' }, serverAuthor)
      for (const c of secretChanges) {
        expect(byType.includes(c)).to.equal(false)
        expect(byPredicate.includes(c)).to.equal(false)
        expect(all.includes(c)).to.equal(true)
      }
    })

    it('should not serve a document whose filter throws', async () => {
      const doc = await dbS.createDocument({ keyId: 'k' })
      await dbS.changeDoc(doc, (d) => { d.getData().type = 'order' })
      const set = await served(dbS, { kind: 'predicate', predicate: () => { throw new Error('broken predicate') } }, server.tenant.getPublicInfo().signingPublicKey)
      expect(set.size).to.equal(0)
      for (const c of await changesOf(dbS, doc.getId())) expect(set.includes(c)).to.equal(false)
    })
  })
})
