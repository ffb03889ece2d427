import { expect } from 'chai'
import { readdir } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { loadConfig, resolveConfig } from '../../src/daemon/config.js'

const configDir = fileURLToPath(new URL('../../../config/', import.meta.url))

describe('config', () => {
  it('should accept every example in config/', async () => {
    const examples = (await readdir(configDir)).filter((f) => f.endsWith('.example.json'))
    expect(examples.sort()).to.deep.equal(['customer.example.json', 'research-partner.example.json', 'supplier.example.json'])
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
})
