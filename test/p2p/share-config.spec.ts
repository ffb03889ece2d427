import { expect } from 'chai'
import { InvalidArgumentError } from '../../src/errors.js'
import { participantKeysOf, topicDhtKeyOf, validateShare, validateWritePolicy, type ShareConfig } from '../../src/sync/share.js'

const KEY = Buffer.alloc(32, 1).toString('base64url')
const KEY2 = Buffer.alloc(32, 2).toString('base64url')
const PEER = '12D3KooWGzxzKZYveHXtpG6AsrUJBcWxHBFS2HsEoGTxrMLvKXtf'
const PEER2 = '12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK'

function base (extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id: 'orders',
    topicSecret: 'abcdefghijklmnopqrstuv', // 22 characters
    database: 'orders',
    partners: [{ peerId: PEER, tenant: { tenantId: 'bob', signingPublicKey: KEY } }],
    direction: 'both',
    filter: { kind: 'all' },
    enabled: true,
    ...extra
  }
}

function refusal (input: unknown): string {
  try {
    validateShare(input)
  } catch (err) {
    expect(err).to.be.instanceOf(InvalidArgumentError)
    return (err as Error).message
  }
  throw new Error('accepted')
}

describe('share config', () => {
  it('should refuse topic secrets shorter than 22 characters and accept 22', () => {
    expect(refusal(base({ topicSecret: 'abcdefghijklmnopqrstu' }))).to.match(/^share\.topicSecret:/)
    expect(validateShare(base()).topicSecret).to.have.length(22)
  })

  it('should keep dial and write of partners, and participants with their write policies', () => {
    const config = validateShare(base({
      partners: [{ peerId: PEER, tenant: { tenantId: 'bob', signingPublicKey: KEY }, dial: false, write: { keyIds: ['k1'], types: ['order'] } }],
      participants: [{ tenant: { tenantId: 'carol', signingPublicKey: KEY2 }, write: 'none' }]
    }))
    expect(config.partners[0]).to.deep.include({ dial: false, write: { keyIds: ['k1'], types: ['order'] } })
    expect(config.participants).to.deep.equal([{ tenant: { tenantId: 'carol', signingPublicKey: KEY2 }, write: 'none' }])
    // the authors a session accepts: own, partners', participants'
    expect([...participantKeysOf(config, 'own')].sort()).to.deep.equal(['own', KEY, KEY2].sort())
  })

  it('should name the bad field of a partner, a participant or a write policy', () => {
    const partner = { peerId: PEER, tenant: { tenantId: 'bob', signingPublicKey: KEY } }
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ partners: [{ ...partner, dial: 'yes' }] }, 'share.partners[0].dial'],
      [{ partners: [{ ...partner, write: 'all' }] }, 'share.partners[0].write'],
      [{ partners: [{ ...partner, write: { created: 1 } }] }, 'share.partners[0].write.created'],
      [{ partners: [{ ...partner, write: { keyIds: ['bad key'] } }] }, 'share.partners[0].write.keyIds'],
      [{ partners: [{ ...partner, write: { types: [''] } }] }, 'share.partners[0].write.types'],
      [{ partners: [{ ...partner, write: { everything: true } }] }, 'share.partners[0].write.everything'],
      [{ partners: [partner, { ...partner }] }, 'share.partners'],
      [{ participants: {} }, 'share.participants'],
      [{ participants: [{ tenant: { tenantId: 'carol', signingPublicKey: 'short' } }] }, 'share.participants[0].tenant.signingPublicKey'],
      [{ participants: [{ tenant: { tenantId: 'carol', signingPublicKey: KEY2 }, peerId: PEER2 }] }, 'share.participants[0].peerId']
    ]
    for (const [extra, field] of cases) expect(refusal(base(extra)), field).to.match(new RegExp(`^${field.replace(/[[\].]/g, '\\$&')}:`))
  })

  it('should normalise write policies and keep only the fields given', () => {
    expect(validateWritePolicy('none')).to.equal('none')
    expect(validateWritePolicy({})).to.deep.equal({})
    expect(validateWritePolicy({ created: true, served: false })).to.deep.equal({ created: true, served: false })
    const policy = validateWritePolicy({ keyIds: ['k1'] }) as Exclude<ShareConfig['partners'][0]['write'], 'none' | undefined>
    expect(policy.keyIds).to.deep.equal(['k1'])
  })

  it('should derive a different DHT key per epoch and per secret, never the old unsalted one', () => {
    const secret = 'abcdefghijklmnopqrstuv'
    const k1 = Buffer.from(topicDhtKeyOf(secret, 20_000)).toString('hex')
    expect(Buffer.from(topicDhtKeyOf(secret, 20_000)).toString('hex')).to.equal(k1)
    expect(Buffer.from(topicDhtKeyOf(secret, 20_001)).toString('hex')).to.not.equal(k1)
    expect(Buffer.from(topicDhtKeyOf(secret + 'x', 20_000)).toString('hex')).to.not.equal(k1)
    expect(() => topicDhtKeyOf(secret, -1)).to.throw(TypeError)
  })
})
