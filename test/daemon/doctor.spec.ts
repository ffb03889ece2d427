/**
 * `mindoodb doctor` (RPC `node.doctor`) against real daemon processes: node A has one share with a reachable
 * partner B, a partner C listed with a wrong address (a closed port), and a partner D with `dial: false`. The
 * doctor reports each as it is (connected directly and how; backing off with the dial error; not dialled), says
 * so in plain words, and shows D as connected inbound once D dials A. The CLI prints the same, and cleans what a
 * partner could have written (an error message) before it reaches the terminal.
 */
import { join } from 'node:path'
import { expect } from 'chai'
import { runCli as runCliInProcess, type CliContext } from '../../src/cli/index.js'
import type { DoctorReport, PartnerDiagnosis } from '../../src/p2p/index.js'
import { eventually, killAll, runCli, startDaemon, testConfig, writeJson, type DaemonProcess } from '../utils/daemon-proc.js'
import { removeDir, tempDir } from '../utils/tmp.js'
import { closedPort } from '../utils/net.js'

interface NodeInfo { peerId: string, addresses: string[], tenant: { tenantId: string, signingPublicKey: string } }

const TOPIC = 'doctor-topic-secret-0123456789'

describe('daemon: mindoodb doctor', function () {
  this.timeout(90_000)
  let dir: string
  let a: DaemonProcess
  let b: DaemonProcess
  let d: DaemonProcess
  let info: Record<'a' | 'b' | 'c' | 'd', NodeInfo>
  let wrong: string

  const partner = (r: DoctorReport, peerId: string): PartnerDiagnosis => {
    const p = r.shares.find((s) => s.id === 'mesh')?.partners.find((x) => x.peerId === peerId)
    if (p === undefined) throw new Error(`no partner ${peerId} in ${JSON.stringify(r)}`)
    return p
  }

  before(async () => {
    dir = await tempDir('mindoodb-daemon-doctor-')
    let c: DaemonProcess
    ;[a, b, c, d] = await Promise.all(['alpha', 'beta', 'gamma', 'delta'].map(async (n) => await startDaemon(await writeJson(join(dir, `${n}.json`), testConfig(dir, n)))))
    const [ia, ib, ic, id] = await Promise.all([a, b, c, d].map(async (x) => await x.client.call<NodeInfo>('node.info')))
    info = { a: ia, b: ib, c: ic, d: id }
    // C exists (a real peer id and tenant) but is listed at an address where nothing listens
    await c.dispose()
    wrong = `/ip4/127.0.0.1/tcp/${await closedPort()}`
    await b.client.call('share.add', { share: { id: 'mesh', topicSecret: TOPIC, database: 'mesh', partners: [{ peerId: ia.peerId, tenant: ia.tenant, addresses: ia.addresses }] } })
    await a.client.call('share.add', {
      share: {
        id: 'mesh',
        topicSecret: TOPIC,
        database: 'mesh',
        partners: [
          { peerId: ib.peerId, tenant: ib.tenant, addresses: ib.addresses },
          { peerId: ic.peerId, tenant: ic.tenant, addresses: [wrong] },
          { peerId: id.peerId, tenant: id.tenant, dial: false }
        ]
      }
    })
  })

  after(async () => {
    await Promise.all([a?.dispose(), b?.dispose(), d?.dispose()])
    await killAll()
    await removeDir(dir)
  })

  it('should report addresses, each partner\'s state and plain-word findings', async () => {
    // wait until the round with B succeeded and the one with C failed
    const report = await eventually(async () => {
      const r = await a.client.call<DoctorReport>('node.doctor')
      const pb = partner(r, info.b.peerId)
      const pc = partner(r, info.c.peerId)
      return pb.lastRound?.result === 'ok' && pc.backoff.failures > 0 ? r : undefined
    }, 'a round with B and a failed one with C')
    expect(report.peerId).to.equal(info.a.peerId)
    expect(report.listen).to.deep.equal(info.a.addresses)
    // loopback only, and private addresses are not announced by default
    expect(report.announced).to.deep.equal([])
    expect(report.announcesPrivate).to.equal(false)
    const codes = report.findings.map((f) => f.code)
    expect(codes).to.include('NOTHING_ANNOUNCED').and.include('LOOPBACK_ONLY')

    const pb = partner(report, info.b.peerId)
    expect(pb).to.include({ tenantId: 'beta', dial: true, connected: true, via: 'direct' })
    expect(pb.connections.length).to.be.at.least(1)
    expect(pb.connections.every((c) => !c.relayed && !c.limited)).to.equal(true)
    expect(pb.connections.map((c) => c.address).some((addr) => info.b.addresses.some((x) => x.startsWith(addr)))).to.equal(true)
    expect(pb.knownAddresses.some((addr) => info.b.addresses.some((x) => x.startsWith(addr)))).to.equal(true)
    expect(pb.backoff.failures).to.equal(0)
    expect(report.findings.filter((f) => f.peerId === info.b.peerId)).to.deep.equal([])

    const pc = partner(report, info.c.peerId)
    expect(pc).to.include({ tenantId: 'gamma', dial: true, connected: false, via: 'none' })
    expect(pc.knownAddresses).to.deep.equal([wrong])
    expect(pc.lastRound?.result).to.equal('failed')
    expect(pc.lastError?.code).to.be.a('string')
    expect(pc.backoff.failures).to.be.at.least(1)
    const fc = report.findings.filter((f) => f.peerId === info.c.peerId)
    expect(fc.map((f) => f.code)).to.deep.equal(['UNREACHABLE'])
    expect(fc[0]).to.include({ level: 'problem', share: 'mesh' })
    expect(fc[0].text).to.include(wrong).and.include('could not be reached')

    const pd = partner(report, info.d.peerId)
    expect(pd).to.include({ tenantId: 'delta', dial: false, connected: false, via: 'none' })
    expect(pd.knownAddresses).to.deep.equal([])
    expect(pd).to.not.have.property('lastRound')
    const fd = report.findings.filter((f) => f.peerId === info.d.peerId)
    expect(fd.map((f) => f.code)).to.deep.equal(['NOT_DIALLED'])
    expect(fd[0].text).to.include('syncs only when it dials this node')
  })

  it('should show a dial: false partner that dials in as connected inbound', async () => {
    await d.client.call('share.add', { share: { id: 'mesh', topicSecret: TOPIC, database: 'mesh', partners: [{ peerId: info.a.peerId, tenant: info.a.tenant, addresses: info.a.addresses }] } })
    const pd = await eventually(async () => {
      const p = partner(await a.client.call<DoctorReport>('node.doctor'), info.d.peerId)
      // A runs its rounds with D over the connection D opened
      return p.connected && p.lastRound?.result === 'ok' ? p : undefined
    }, 'D connected to A and a round with it')
    expect(pd.via).to.equal('direct')
    expect(pd.connections.map((c) => c.direction)).to.include('inbound')
    const report = await a.client.call<DoctorReport>('node.doctor')
    expect(report.findings.filter((f) => f.peerId === info.d.peerId)).to.deep.equal([])
  })

  it('should print the same through `mindoodb doctor` and `--json`', async () => {
    const human = await runCli(['--socket', a.ready.rpcSocket, 'doctor'])
    expect(human.code, human.stderr).to.equal(0)
    expect(human.stdout).to.include(`peer ${info.a.peerId}`)
    expect(human.stdout).to.include('announcing nothing')
    expect(human.stdout).to.include(`partner gamma ${info.c.peerId}`).and.include(`known addresses: ${wrong}`)
    expect(human.stdout).to.include('not dialled (dial: false)')
    expect(human.stdout).to.match(/PROBLEM: partner gamma .* could not be reached/)
    const json = await runCli(['--socket', a.ready.rpcSocket, '--json', 'doctor'])
    expect(json.code, json.stderr).to.equal(0)
    const parsed = JSON.parse(json.stdout) as DoctorReport
    expect(parsed.peerId).to.equal(info.a.peerId)
    expect(parsed.shares.map((s) => s.id)).to.deep.equal(['mesh'])
    expect(parsed.findings.map((f) => f.code)).to.include('UNREACHABLE')
  })

  it('should strip control characters and escape sequences a partner could put into an error message', async () => {
    const evil = 'boom \u001b[2J\u001b]0;owned\u0007 \u202e gone'
    const report: DoctorReport = {
      peerId: 'P',
      listen: [],
      announced: [],
      announcesPrivate: false,
      nat: { reachability: 'private', nat: 'unknown', autonat: true, dcutr: true, addresses: [], reservations: [{ relay: '/ip4/5.6.7.8/tcp/1/p2p/R', peerId: 'R', state: 'failed', addresses: [], failures: 1, lastError: { code: 'RELAY_REFUSED', message: evil, at: 1 } }] },
      shares: [{ id: 's', enabled: true, partners: [{ peerId: 'Q', tenantId: 't\u001b[31m', dial: true, connected: false, via: 'none', connections: [], knownAddresses: ['/ip4/1.2.3.4/tcp/1'], dialable: { direct: true, relayed: false }, lastRound: { at: 1, result: 'failed' }, lastError: { code: 'REMOTE_ERROR', message: evil, at: 1 }, backoff: { failures: 2 } }] }],
      findings: [{ level: 'problem', code: 'UNREACHABLE', share: 's', peerId: 'Q', text: `partner t could not be reached (last error REMOTE_ERROR: ${evil})` }]
    }
    const out: string[] = []
    const context = (): CliContext => ({
      json: false,
      isTTY: false,
      progressStream: process.stderr,
      client: async () => ({ call: async () => report as never }),
      print: (value, human) => { out.push(human(value)) },
      note: () => {},
      readStdin: async () => ''
    })
    const code = await runCliInProcess(['doctor'], { from: 'user', context, output: { writeOut: (s) => { out.push(s) }, writeErr: (s) => { out.push(s) } } })
    expect(code).to.equal(0)
    const text = out.join('')
    expect(text).to.include('boom').and.include('gone')
    expect(text).to.not.match(/[\u001b\u0007\u202e]/) // eslint-disable-line no-control-regex
  })
})
