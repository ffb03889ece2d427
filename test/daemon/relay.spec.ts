/**
 * Reaching a node behind a firewall with real daemon processes (issue 9): `relay` serves as a circuit relay
 * (`relay.serve`) for the partners of its shares; `hidden` listens nowhere (`listen: []`) and holds a reservation on
 * the relay (`relay.via`); `partner` dials `hidden` at `<relay>/p2p-circuit/p2p/<hidden>`. Documents written on
 * either side reach the other through the relay, and `mindoodb doctor` on `hidden` says it is reached through the
 * relay and that its partner is connected relayed.
 */
import { join } from 'node:path'
import { expect } from 'chai'
import type { DoctorReport } from '../../src/p2p/index.js'
import { eventually, killAll, runCli, startDaemon, testConfig, writeJson, type DaemonProcess } from '../utils/daemon-proc.js'
import { removeDir, tempDir } from '../utils/tmp.js'

interface NodeInfo { peerId: string, addresses: string[], tenant: { tenantId: string, signingPublicKey: string } }

const TOPIC = 'relayed-topic-secret-0123456789'

describe('daemon: a node that listens nowhere syncs through a relay', function () {
  this.timeout(120_000)
  let dir: string
  let relay: DaemonProcess
  let hidden: DaemonProcess
  let partner: DaemonProcess
  let info: Record<'relay' | 'hidden' | 'partner', NodeInfo>

  before(async () => {
    dir = await tempDir('mindoodb-daemon-relay-')
    relay = await startDaemon(await writeJson(join(dir, 'relay.json'), testConfig(dir, 'relay', { relay: { serve: true } })))
    const ir = await relay.client.call<NodeInfo>('node.info')
    ;[hidden, partner] = await Promise.all([
      startDaemon(await writeJson(join(dir, 'hidden.json'), testConfig(dir, 'hidden', { listen: [], relay: { via: [ir.addresses[0]] } }))),
      startDaemon(await writeJson(join(dir, 'partner.json'), testConfig(dir, 'partner')))
    ])
    const [ih, ip] = await Promise.all([hidden, partner].map(async (x) => await x.client.call<NodeInfo>('node.info')))
    info = { relay: ir, hidden: ih, partner: ip }
    expect(ih.addresses.filter((a) => !a.includes('/p2p-circuit'))).to.deep.equal([])
    // a named key both hold; the relay holds none
    const { blob } = await hidden.client.call<{ blob: string }>('key.create', { keyId: 'k', password: 'key-password-1' })
    await partner.client.call('key.import', { keyId: 'k', blob, password: 'key-password-1' })
    // the relay serves the partners of its shares: one that names both, never dialled
    await relay.client.call('share.add', {
      share: { id: 'clients', topicSecret: 'relay-clients-topic-secret-01', database: 'clients', partners: [ih, ip].map((x) => ({ peerId: x.peerId, tenant: x.tenant, dial: false })) }
    })
    await hidden.client.call('share.add', { share: { id: 'mesh', topicSecret: TOPIC, database: 'mesh', partners: [{ peerId: ip.peerId, tenant: ip.tenant }] } })
    await partner.client.call('share.add', {
      share: { id: 'mesh', topicSecret: TOPIC, database: 'mesh', partners: [{ peerId: ih.peerId, tenant: ih.tenant, addresses: [`${ir.addresses[0]}/p2p-circuit/p2p/${ih.peerId}`] }] }
    })
  })

  after(async () => {
    await Promise.all([relay?.dispose(), hidden?.dispose(), partner?.dispose()])
    await killAll()
    await removeDir(dir)
  })

  it('should sync documents both ways through the relay, and the doctor should say "relayed"', async () => {
    await eventually(async () => {
      const r = await hidden.client.call<DoctorReport>('node.doctor')
      return r.nat.reservations[0]?.state === 'reserved' ? r : undefined
    }, 'hidden to hold a reservation on the relay', 40_000)
    const fromHidden = await hidden.client.call<{ docId: string }>('doc.create', { database: 'mesh', keyId: 'k', data: { by: 'hidden' } })
    const fromPartner = await partner.client.call<{ docId: string }>('doc.create', { database: 'mesh', keyId: 'k', data: { by: 'partner' } })
    await eventually(async () => {
      const doc = await partner.client.call<{ data: { by?: string } }>('doc.get', { database: 'mesh', docId: fromHidden.docId })
      return doc.data.by === 'hidden' ? true : undefined
    }, 'the partner to get the hidden node\'s document', 40_000)
    await eventually(async () => {
      const doc = await hidden.client.call<{ data: { by?: string } }>('doc.get', { database: 'mesh', docId: fromPartner.docId })
      return doc.data.by === 'partner' ? true : undefined
    }, 'the hidden node to get the partner\'s document', 40_000)

    const report = await hidden.client.call<DoctorReport>('node.doctor')
    expect(report.nat.reachability).to.equal('relayed')
    expect(report.nat.reservations[0]).to.include({ peerId: info.relay.peerId, state: 'reserved' })
    const p = report.shares.find((s) => s.id === 'mesh')?.partners[0]
    expect(p?.via).to.equal('relayed')
    expect(p?.connections.every((c) => c.relayed)).to.equal(true)
    expect(report.findings.map((f) => f.code)).to.include.members(['RELAYED_ONLY', 'RELAYED'])

    // the relay's doctor: it serves them, and has refused no one
    const served = (await relay.client.call<DoctorReport>('node.doctor')).nat.relay
    expect(served?.clients).to.include(info.hidden.peerId)
    expect(served?.refused).to.include({ reservations: 0, hops: 0 })

    // the CLI prints it for people
    const human = await runCli(['--socket', hidden.ready.rpcSocket, 'doctor'])
    expect(human.code, human.stderr).to.equal(0)
    expect(human.stdout).to.include('reachability: relayed')
    expect(human.stdout).to.include(`relay ${info.relay.addresses[0]}: reserved`)
    expect(human.stdout).to.match(/connected relayed/)
  })
})
