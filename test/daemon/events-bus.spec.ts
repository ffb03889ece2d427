/**
 * The event bus behind `events.since`: ordered events and resumable cursors, a long poll that an event wakes,
 * type filters that still move the cursor, and typed errors for stale and malformed cursors.
 */
import { expect } from 'chai'
import { EventBus } from '../../src/daemon/events.js'
import { EventsCursorStaleError, InvalidParamsError } from '../../src/errors.js'

async function thrown (p: Promise<unknown>): Promise<Error> {
  try {
    await p
  } catch (err) {
    return err as Error
  }
  throw new Error('the call succeeded')
}

describe('event bus', () => {
  let bus: EventBus

  beforeEach(() => {
    bus = new EventBus({ size: 8 })
  })

  afterEach(() => {
    bus.close()
  })

  it('should return events in order and resume after the cursor', async () => {
    for (let i = 0; i < 3; i++) bus.publish('share.added', { share: `s${i}` })
    const first = await bus.since({ timeoutMs: 0 })
    expect(first.events.map((e) => e.seq)).to.deep.equal([1, 2, 3])
    bus.publish('share.removed', { share: 's0' })
    const next = await bus.since({ cursor: first.cursor, timeoutMs: 0 })
    expect(next.events.map((e) => [e.seq, e.type])).to.deep.equal([[4, 'share.removed']])
    const empty = await bus.since({ cursor: next.cursor, timeoutMs: 0 })
    expect(empty.events).to.deep.equal([])
    expect(empty.cursor).to.equal(next.cursor)
  })

  it('should answer at once without a cursor, even when nothing is buffered', async () => {
    const r = await bus.since({ timeoutMs: 30_000 })
    expect(r.events).to.deep.equal([])
    expect(r.cursor).to.equal(bus.cursor)
  })

  it('should wait for the next event and answer with it (long poll)', async () => {
    const { cursor } = await bus.since({ timeoutMs: 0 })
    const waiting = bus.since({ cursor, timeoutMs: 30_000 })
    setImmediate(() => { bus.publish('key.created', { keyId: 'k' }) })
    const r = await waiting
    expect(r.events.map((e) => e.type)).to.deep.equal(['key.created'])
  })

  it('should filter by type and still move the cursor past the others', async () => {
    bus.publish('round.started', { share: 's' })
    bus.publish('key.created', { keyId: 'k' })
    bus.publish('round.started', { share: 's' })
    const r = await bus.since({ timeoutMs: 0, types: ['key.created'] })
    expect(r.events.map((e) => e.seq)).to.deep.equal([2])
    expect(r.cursor.endsWith('-3')).to.equal(true)
    const waiting = bus.since({ cursor: r.cursor, timeoutMs: 30_000, types: ['key.created'] })
    setImmediate(() => {
      bus.publish('round.started', { share: 's' })
      bus.publish('key.created', { keyId: 'k2' })
    })
    expect((await waiting).events.map((e) => e.data.keyId)).to.deep.equal(['k2'])
  })

  it('should refuse a cursor whose events fell out of the buffer, and one of another run, as stale', async () => {
    const { cursor } = await bus.since({ timeoutMs: 0 })
    for (let i = 0; i < 20; i++) bus.publish('round.started', { n: i })
    const stale = await thrown(bus.since({ cursor, timeoutMs: 0 }))
    expect(stale).to.be.instanceOf(EventsCursorStaleError)
    expect((stale as EventsCursorStaleError).code).to.equal('EVENTS_CURSOR_STALE')
    const other = new EventBus()
    const foreign = await thrown(other.since({ cursor: bus.cursor, timeoutMs: 0 }))
    expect((foreign as EventsCursorStaleError).code).to.equal('EVENTS_CURSOR_STALE')
    // the oldest kept is still reachable: the cursor right before it is not stale
    const r = await bus.since({ timeoutMs: 0 })
    expect(r.events.length).to.equal(8)
    expect(r.events[0].seq).to.equal(13)
    await bus.since({ cursor: `${bus.run}-12`, timeoutMs: 0 })
  })

  it('should refuse a malformed cursor, one from the future and a bad timeout as invalid params', async () => {
    for (const cursor of ['nope', `${bus.run}-99`, '']) {
      expect((await thrown(bus.since({ cursor, timeoutMs: 0 }))).name).to.equal(InvalidParamsError.name)
    }
    expect(await thrown(bus.since({ timeoutMs: -1 }))).to.be.instanceOf(InvalidParamsError)
    expect(await thrown(bus.since({ timeoutMs: 10 ** 9 }))).to.be.instanceOf(InvalidParamsError)
  })

  it('should answer waiting calls when closed', async () => {
    const waiting = bus.since({ cursor: bus.cursor, timeoutMs: 30_000 })
    bus.close()
    expect((await waiting).events).to.deep.equal([])
  })
})
