/**
 * The OpenRPC document a running daemon publishes (`rpc.discover`) lists every method of the method table, with
 * the parameters each takes, and every documented method is callable (none is an unknown method). The CLI's
 * generic `rpc` command reaches the same document.
 */
import { expect } from 'chai'
import { join } from 'node:path'
import { RpcError } from '../../src/daemon/rpc-client.js'
import { METHODS } from '../../src/daemon/rpc-methods.js'
import { killAll, runCli, startDaemon, testConfig, writeJson, type DaemonProcess } from '../utils/daemon-proc.js'
import { removeDir, tempDir } from '../utils/tmp.js'

interface OpenRpcMethod {
  name: string
  summary: string
  params: Array<{ name: string, required: boolean, schema: unknown }>
  result: { name: string, schema: unknown }
}
interface OpenRpcDocument { openrpc: string, info: { title: string, version: string }, methods: OpenRpcMethod[] }

describe('daemon: rpc.discover (OpenRPC)', function () {
  this.timeout(60_000)
  let dir: string
  let d: DaemonProcess | undefined
  let doc: OpenRpcDocument

  before(async () => {
    dir = await tempDir('mindoodb-daemon-openrpc-')
    d = await startDaemon(await writeJson(join(dir, 'org.json'), testConfig(dir, 'org')))
    doc = await d.client.call<OpenRpcDocument>('rpc.discover')
  })
  after(async () => {
    await d?.dispose()
    await killAll()
    await removeDir(dir)
  })

  it('lists every method of the method table, and itself', () => {
    expect(doc.openrpc).to.match(/^1\.\d+\.\d+$/)
    expect(doc.info.version).to.match(/^\d+\.\d+\.\d+/)
    const names = doc.methods.map((m) => m.name)
    expect(new Set(names).size, 'no duplicates').to.equal(names.length)
    expect([...names].sort()).to.deep.equal([...Object.keys(METHODS), 'rpc.discover'].sort())
  })

  it('documents each method\'s summary, parameters (with the required ones) and result', () => {
    for (const m of doc.methods) {
      expect(m.summary, m.name).to.be.a('string').and.not.equal('')
      expect(m.result, m.name).to.have.property('schema')
      if (m.name === 'rpc.discover') continue
      const schema = METHODS[m.name].params as { properties?: Record<string, unknown>, required?: string[] }
      expect(m.params.map((p) => p.name), m.name).to.deep.equal(Object.keys(schema.properties ?? {}))
      expect(m.params.filter((p) => p.required).map((p) => p.name).sort(), m.name).to.deep.equal([...(schema.required ?? [])].sort())
    }
  })

  it('every documented method is callable (never -32601); the ones with required parameters say which is missing', async () => {
    const client = d?.client
    if (client === undefined) throw new Error('no daemon')
    for (const m of doc.methods) {
      let answer: unknown
      try {
        answer = await client.call(m.name)
      } catch (err) {
        expect(err, m.name).to.be.instanceOf(RpcError)
        const e = err as RpcError
        expect(e.rpcCode, `${m.name}: ${e.message}`).to.not.equal(-32601)
        const required = m.params.filter((p) => p.required)
        if (required.length > 0) {
          expect(e.rpcCode, m.name).to.equal(-32602)
          expect(e.message, m.name).to.include(`params.${required[0].name}`)
        }
        continue
      }
      expect(m.params.filter((p) => p.required), `${m.name} succeeded without its required parameters`).to.deep.equal([])
      expect(answer, m.name).to.not.equal(undefined)
    }
    expect(await client.call('health')).to.include({ status: 'ok' })
  })

  it('the CLI reaches the same document through `mindoodb rpc rpc.discover`, and reports an unknown method', async () => {
    const socket = d?.ready.rpcSocket ?? ''
    const r = await runCli(['--socket', socket, 'rpc', 'rpc.discover'])
    expect(r.code, r.stderr).to.equal(0)
    const viaCli = JSON.parse(r.stdout) as OpenRpcDocument
    expect(viaCli.methods.map((m) => m.name)).to.deep.equal(doc.methods.map((m) => m.name))
    const unknown = await runCli(['--socket', socket, 'rpc', 'no.such.method'])
    expect(unknown.code, 'usage error exit code').to.equal(2)
    expect(unknown.stderr).to.include('-32601')
    const health = await runCli(['--socket', socket, 'rpc', 'health', '{}'])
    expect(health.code, health.stderr).to.equal(0)
    expect(JSON.parse(health.stdout)).to.include({ status: 'ok' })
    const gone = await runCli(['--socket', join(dir, 'no-such.sock'), 'rpc', 'health'])
    expect(gone.code, 'daemon unavailable exit code').to.equal(3)
  })
})
