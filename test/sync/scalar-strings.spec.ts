/**
 * Strings as the JSON-RPC API writes them (Automerge scalar strings, `ImmutableString`) and as the library writes
 * them (collaborative text), in real documents of a real database: every reader of document content (Mango
 * selectors, type filters, share previews, write policies by type) sees both as the strings they are, and
 * collaborative text stays editable with `spliceText`, whose bad paths and indexes get typed errors.
 */
import { expect } from 'chai'
import { InvalidArgumentError, NotTextError } from '../../src/errors.js'
import {
  isScalarString, plainValue, spliceText, toScalarStrings, type MindooDB, type MindooDoc, type MindooTenant, type TenantFactory
} from '../../src/index.js'
import { compileSelector } from '../../src/sync/filter.js'
import { previewShare } from '../../src/sync/preview.js'
import { policyOf } from '../../src/sync/share.js'
import { testFactory } from '../utils/tmp.js'

describe('scalar strings and collaborative text in documents', () => {
  let factory: TenantFactory
  let cleanup: () => Promise<void>
  let tenant: MindooTenant
  let db: MindooDB

  beforeEach(async () => {
    ({ factory, cleanup } = await testFactory())
    tenant = await factory.createTenant({ tenantId: 'org-a', tenantEncryptionKeyPassword: 'pw-a' })
    db = await tenant.openDB('strings')
  })

  afterEach(async () => {
    await cleanup()
  })

  /** A document made as the RPC makes one: every string (nested, in lists) a scalar string. */
  async function rpcLike (data: Record<string, unknown>): Promise<MindooDoc> {
    const doc = await db.createDocument()
    await db.changeDoc(doc, (d) => { Object.assign(d.getData(), toScalarStrings(data)) })
    return await db.getDocument(doc.getId())
  }

  it('should store every string of a JSON value as a scalar string and read it back as plain JSON', async () => {
    const data = { type: 'order', qty: 5, ok: true, none: null, tags: ['a', 'b', 3], address: { city: 'Köln', lines: ['x'] }, list: [{ s: 'y' }] }
    const doc = await rpcLike(data)
    const read = doc.getData()
    expect(isScalarString(read.type)).to.equal(true)
    expect(isScalarString(read.tags[0])).to.equal(true)
    expect(isScalarString(read.address.city)).to.equal(true)
    expect(isScalarString(read.list[0].s)).to.equal(true)
    expect(isScalarString(read.tags)).to.equal(false)
    expect(plainValue(read.type)).to.equal('order')
    expect(plainValue(5)).to.equal(5)
    expect(JSON.parse(JSON.stringify(read))).to.deep.equal(data)
    // the input is not changed
    expect(toScalarStrings(data)).to.not.equal(data)
    expect(data.tags[0]).to.equal('a')
  })

  it('should match selectors, type filters and previews on scalar strings as on text', async () => {
    const order = await rpcLike({ type: 'order', status: 'open', tags: ['red', 'big'], address: { city: 'Bonn' } })
    const invoice = await rpcLike({ type: 'invoice', status: 'paid' })
    const text = await db.createDocument()
    await db.changeDoc(text, (d) => { Object.assign(d.getData(), { type: 'order', status: 'done', tags: ['red'] }) })
    const docs = [order, invoice, await db.getDocument(text.getId())]
    const which = (selector: Record<string, unknown>): number[] => {
      const pred = compileSelector(selector)
      return docs.flatMap((d, i) => pred(d.getData()) ? [i] : [])
    }
    expect(which({ type: 'order' })).to.deep.equal([0, 2])
    expect(which({ type: { $eq: 'invoice' } })).to.deep.equal([1])
    expect(which({ status: { $in: ['open', 'paid'] } })).to.deep.equal([0, 1])
    expect(which({ status: { $nin: ['open'] } })).to.deep.equal([1, 2])
    expect(which({ status: { $gt: 'open' } })).to.deep.equal([1])
    expect(which({ 'address.city': 'Bonn' })).to.deep.equal([0])
    expect(which({ tags: ['red', 'big'] })).to.deep.equal([0])
    expect(which({ tags: { $in: [['red']] } })).to.deep.equal([2])
    expect(which({ type: { $ne: 'order' } })).to.deep.equal([1])
    // the share filter kinds that read the type
    const byType = policyOf({ kind: 'type', types: ['order'] })
    expect(byType.mode).to.equal('byDoc')
    if (byType.mode === 'byDoc') expect(docs.map((d) => byType.matches(d))).to.deep.equal([true, false, true])
    const preview = await previewShare({ db, hasKey: (k) => tenant.hasNamedKey(k) }, {
      filter: { kind: 'selector', selector: { type: 'order' } }, direction: 'both', ownAuthor: tenant.getPublicInfo().signingPublicKey
    })
    expect(preview.served.documents).to.equal(2)
    expect(preview.served.byType).to.deep.include({ order: { documents: 2, changes: 4 } })
  })

  it('should edit collaborative text with spliceText, creating a missing field as text', async () => {
    const doc = await rpcLike({ type: 'note', items: [{ title: 'x' }] })
    await db.changeDoc(doc, (d) => { spliceText(d.getData(), ['body'], 0, 0, 'hello world') })
    await db.changeDoc(doc, (d) => { spliceText(d.getData(), ['body'], 6, 5, 'there') })
    await db.changeDoc(doc, (d) => { spliceText(d.getData(), ['items', 0, 'text'], 0, 0, '😀!') })
    await db.changeDoc(doc, (d) => { spliceText(d.getData(), ['items', 0, 'text'], 2, 0, '?') })
    const read = (await db.getDocument(doc.getId())).getData()
    expect(read.body).to.equal('hello there')
    expect(typeof read.body).to.equal('string') // text reads as a plain string
    expect(read.items[0].text).to.equal('😀?!')
  })

  it('should refuse a path to anything but collaborative text with NotTextError, and bad indexes with InvalidArgumentError', async () => {
    const doc = await rpcLike({ type: 'note', n: 3, o: { a: 'b' }, l: ['s'] })
    await db.changeDoc(doc, (d) => { spliceText(d.getData(), ['t'], 0, 0, 'ab😀') })
    const heads = (await db.getDocument(doc.getId())).getHeads()
    // spliceText runs inside changeDoc; a thrown error makes no change
    async function spliceErr (path: Array<string | number>, index = 0, del = 0): Promise<unknown> {
      try {
        await db.changeDoc(doc, (d) => { spliceText(d.getData(), path, index, del, 'x') })
      } catch (err) {
        return err
      }
      throw new Error(`expected an error for ${JSON.stringify(path)}`)
    }
    for (const path of [['type'], ['n'], ['o'], ['l'], ['l', 0], ['o', 'a'], ['missing', 'deeper'], ['l', 'x'], ['o', 0], ['n', 'x'], ['l', 5]]) {
      const err = await spliceErr(path)
      expect(err, JSON.stringify(path)).to.be.instanceOf(NotTextError)
      expect((err as NotTextError).code).to.equal('NOT_TEXT')
      expect(err).to.be.instanceOf(InvalidArgumentError)
    }
    for (const [index, del] of [[5, 0], [0, 5], [3, 0], [2, 1], [-1, 0], [0.5, 0]]) {
      const err = await spliceErr(['t'], index, del)
      expect(err, `${index} ${del}`).to.be.instanceOf(InvalidArgumentError)
      expect((err as InvalidArgumentError).code, `${index} ${del}`).to.equal('INVALID_ARGUMENT')
    }
    expect((await spliceErr(['new'], 1, 0) as InvalidArgumentError).code).to.equal('INVALID_ARGUMENT')
    expect((await spliceErr([]) as InvalidArgumentError).code).to.equal('INVALID_ARGUMENT')
    // nothing was written by any of them
    expect((await db.getDocument(doc.getId())).getHeads()).to.deep.equal(heads)
    expect((await db.getDocument(doc.getId())).getData().t).to.equal('ab😀')
  })
})
