import { expect } from 'chai'
import { readdir } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { loadConfig, resolveConfig } from '../../src/daemon/config.js'

const configDir = fileURLToPath(new URL('../../../config/', import.meta.url))

describe('config', () => {
  it('should accept every example in config/', async () => {
    const examples = (await readdir(configDir)).filter((f) => f.endsWith('.example.json'))
    expect(examples.sort()).to.deep.equal(['behind-firewall.example.json', 'customer.example.json', 'research-partner.example.json', 'supplier.example.json'])
    for (const file of examples) {
      const config = await loadConfig(configDir + file)
      expect(config.shares.length, file).to.be.greaterThan(0)
      expect(config.shares.every((s) => s.enabled && s.direction === 'both'), file).to.equal(true)
    }
  })

  it('should start on embedded defaults with no file at all', async () => {
    const config = await loadConfig()
    expect(config).to.include({ tenant: 'local', dht: true, logLevel: 'info' })
    expect(config.dataDir).to.match(/data\/node$/)
    expect(config.rpc.socket).to.equal(`${config.dataDir}/rpc.sock`)
    expect(config.shares).to.deep.equal([])
  })

  it('should name the key of a mistake', async () => {
    const cases: Array<[unknown, string]> = [
      [{ listen: 'x' }, '/listen'],
      [{ metrics: {} }, '/metrics/port'],
      [{ shares: [{ id: 's', topicSecret: 'short', database: 'd', partners: [] }] }, '/shares/0/topicSecret'],
      [{ colour: 'blue' }, '/colour']
    ]
    for (const [input, key] of cases) {
      const err = await resolveConfig(input).catch((e: unknown) => e) as { code?: string, key?: string }
      expect(err.code, JSON.stringify(input)).to.equal('INVALID_CONFIG')
      expect(err.key, JSON.stringify(input)).to.equal(key)
    }
  })

  describe('share security fields', () => {
    const PEER = '12D3KooWPc3CauzUzJQ6kHvKU9C4qm1dozN9B5RseyyPoYRk553s'
    const tenant = { tenantId: 'bob', signingPublicKey: 'SzEadV_zrJe8G-gK3pTzXwPG_D--kipYSNaFX_wKIuA' }
    const share = (extra: Record<string, unknown> = {}, partner: Record<string, unknown> = {}): Record<string, unknown> =>
      ({ id: 's', topicSecret: 'x'.repeat(22), database: 'd', partners: [{ peerId: PEER, tenant, ...partner }], ...extra })

    it('should refuse a topic secret under 22 characters and accept one of 22', async () => {
      const err = await resolveConfig({ shares: [share({ topicSecret: 'x'.repeat(21) })] }).catch((e: unknown) => e) as { key?: string, message?: string }
      expect(err.key).to.equal('/shares/0/topicSecret')
      expect(err.message).to.include('22')
      expect((await resolveConfig({ shares: [share()] })).shares).to.have.length(1)
    })

    it('should accept dial, write policies, participants and the node options', async () => {
      const config = await resolveConfig({
        announcePrivateAddresses: true,
        allowPeers: [PEER],
        shares: [share({ participants: [{ tenant, write: 'none' }, { tenant, write: { created: true, served: false, keyIds: ['k'], types: ['order'] } }] }, { dial: false, write: { served: false } })]
      })
      expect(config.announcePrivateAddresses).to.equal(true)
      expect(config.allowPeers).to.deep.equal([PEER])
      const defaults = await resolveConfig({})
      expect(defaults.announcePrivateAddresses).to.equal(false)
      expect(defaults.allowPeers).to.deep.equal([])
    })

    it('should name the key of a mistake in the new fields', async () => {
      const cases: Array<[unknown, string]> = [
        [{ shares: [share({}, { dial: 'no' })] }, '/shares/0/partners/0/dial'],
        [{ shares: [share({}, { write: { created: 'yes' } })] }, '/shares/0/partners/0/write/created'],
        [{ shares: [share({}, { write: { owner: true } })] }, '/shares/0/partners/0/write/owner'],
        [{ shares: [share({ participants: [{ tenant: { tenantId: 'bob' } }] })] }, '/shares/0/participants/0/tenant/signingPublicKey'],
        [{ shares: [share({ participants: [{ tenant, peerId: PEER }] })] }, '/shares/0/participants/0/peerId'],
        [{ allowPeers: ['not a peer id'] }, '/allowPeers/0'],
        [{ announcePrivateAddresses: 'yes' }, '/announcePrivateAddresses']
      ]
      for (const [input, key] of cases) {
        const err = await resolveConfig(input).catch((e: unknown) => e) as { code?: string, key?: string }
        expect(err.code, JSON.stringify(input)).to.equal('INVALID_CONFIG')
        expect(err.key, JSON.stringify(input)).to.equal(key)
      }
    })
  })

  describe('reaching nodes behind firewalls (relay, nat)', () => {
    const RELAY = '/ip4/203.0.113.5/tcp/4001/p2p/12D3KooWPc3CauzUzJQ6kHvKU9C4qm1dozN9B5RseyyPoYRk553s'

    it('should resolve relay and nat into the node\'s options, with the defaults', async () => {
      const defaults = await resolveConfig({})
      expect(defaults.nat).to.deep.equal({ autonat: true, dcutr: true, relays: [], serve: false })
      const config = await resolveConfig({
        listen: [],
        relay: { serve: true, maxReservations: 8, limits: { dataBytes: 1048576, durationSeconds: 600 }, via: [RELAY] },
        nat: { autonat: false, holePunching: false }
      })
      expect(config.listen).to.deep.equal([])
      expect(config.nat).to.deep.equal({
        autonat: false,
        dcutr: false,
        relays: [RELAY],
        serve: { maxReservations: 8, dataLimitBytes: 1048576, durationLimitMs: 600_000 }
      })
    })

    it('should name the key of a mistake', async () => {
      const cases: Array<[unknown, string]> = [
        [{ relay: { serve: 'yes' } }, '/relay/serve'],
        [{ relay: { via: ['/ip4/1.2.3.4/tcp/1'] } }, '/relay/via/0'],
        [{ relay: { via: [`${RELAY}/p2p-circuit/p2p/12D3KooWPc3CauzUzJQ6kHvKU9C4qm1dozN9B5RseyyPoYRk553s`] } }, '/relay/via/0'],
        [{ relay: { via: ['/ip4/999.1.1.1/tcp/1/p2p/12D3KooWPc3CauzUzJQ6kHvKU9C4qm1dozN9B5RseyyPoYRk553s'] } }, '/relay/via/0'],
        [{ relay: { serve: true, maxReservations: 0 } }, '/relay/maxReservations'],
        [{ relay: { serve: true, limits: { dataBytes: 10 } } }, '/relay/limits/dataBytes'],
        [{ relay: { serve: true, limits: { seconds: 10 } } }, '/relay/limits/seconds'],
        [{ relay: { limits: { dataBytes: 1048576 } } }, '/relay/limits'],
        [{ relay: { hops: 3 } }, '/relay/hops'],
        [{ nat: { upnp: true } }, '/nat/upnp']
      ]
      for (const [input, key] of cases) {
        const err = await resolveConfig(input).catch((e: unknown) => e) as { code?: string, key?: string }
        expect(err.code, JSON.stringify(input)).to.equal('INVALID_CONFIG')
        expect(err.key, JSON.stringify(input)).to.equal(key)
      }
    })
  })
})
