/**
 * The doctor's reachability verdicts and findings from hand-made facts (no network): what AutoNAT confirmed, what
 * peers observed, which relay reservations are held. The same facts come from libp2p in `test/p2p/relay.spec.ts`.
 */
import { expect } from 'chai'
import { findingsOf, reachabilityOf, type AddressInfo, type DoctorReport, type NatReport, type RelayReservationStatus } from '../../src/p2p/index.js'

const PEER = '12D3KooWPc3CauzUzJQ6kHvKU9C4qm1dozN9B5RseyyPoYRk553s'
const RELAY = '12D3KooWGuY9ZUSHXAVvojPAUZg7F5N4f8xDvthGvBxeWzNd3uAP'

function address (address: string, type: string, verified: boolean): AddressInfo {
  return { address, type, verified, public: !/\/ip4\/(127|10|192\.168)\./.test(address), relayed: address.includes('/p2p-circuit') }
}

function reservation (state: RelayReservationStatus['state']): RelayReservationStatus {
  return {
    relay: `/ip4/203.0.113.5/tcp/4001/p2p/${RELAY}`,
    peerId: RELAY,
    state,
    addresses: state === 'reserved' ? [`/ip4/203.0.113.5/tcp/4001/p2p/${RELAY}/p2p-circuit/p2p/${PEER}`] : [],
    failures: state === 'failed' ? 2 : 0,
    ...(state === 'failed' ? { lastError: { code: 'RELAY_REFUSED', message: 'the relay refused (PERMISSION_DENIED)', at: 1 } } : {})
  }
}

function report (listen: string[], nat: Partial<NatReport>): Omit<DoctorReport, 'findings'> {
  return {
    peerId: PEER,
    listen,
    announced: [],
    announcesPrivate: false,
    nat: { reachability: 'unknown', nat: 'unknown', autonat: true, dcutr: true, addresses: [], reservations: [], ...nat },
    shares: []
  }
}

describe('p2p: reachability verdicts and findings', () => {
  it('should call a confirmed public address of its own public, with no NAT', () => {
    expect(reachabilityOf([address('/ip4/198.51.100.7/tcp/4001', 'transport', true)], [])).to.deep.equal({ reachability: 'public', nat: 'none' })
  })

  it('should wait for AutoNAT on an unconfirmed public address', () => {
    expect(reachabilityOf([address('/ip4/198.51.100.7/tcp/4001', 'transport', false)], [])).to.deep.equal({ reachability: 'unknown', nat: 'unknown' })
  })

  it('should see a NAT when peers observe a public address it does not listen on', () => {
    const addrs = [address('/ip4/192.168.1.20/tcp/4001', 'transport', true), address('/ip4/198.51.100.7/tcp/51234', 'observed', false)]
    expect(reachabilityOf(addrs, [])).to.deep.equal({ reachability: 'unknown', nat: 'behind-nat' })
    // once AutoNAT confirms the mapped address, it is reachable there
    expect(reachabilityOf([addrs[0], { ...addrs[1], verified: true }], []).reachability).to.equal('public')
  })

  it('should call a node with private addresses only private, and relayed once it holds a reservation', () => {
    const addrs = [address('/ip4/10.0.0.5/tcp/4001', 'transport', true)]
    expect(reachabilityOf(addrs, []).reachability).to.equal('private')
    expect(reachabilityOf(addrs, [reservation('failed')]).reachability).to.equal('private')
    expect(reachabilityOf(addrs, [reservation('reserved')]).reachability).to.equal('relayed')
    expect(reachabilityOf([], [reservation('reserved')]).reachability).to.equal('relayed')
  })

  it('should say what is wrong in plain words, with stable codes', () => {
    const codes = (r: Omit<DoctorReport, 'findings'>): string[] => findingsOf(r).map((f) => f.code)
    const relayed = reservation('reserved')
    expect(codes(report([...relayed.addresses], { reachability: 'relayed', reservations: [relayed] }))).to.include('RELAYED_ONLY').and.not.include('NOT_LISTENING')
    const failed = codes(report([], { reachability: 'private', reservations: [reservation('failed')] }))
    expect(failed).to.include.members(['RELAY_NOT_RESERVED', 'NOT_LISTENING'])
    const text = findingsOf(report([], { reachability: 'private', reservations: [reservation('failed')] })).find((f) => f.code === 'RELAY_NOT_RESERVED')?.text
    expect(text).to.include('RELAY_REFUSED')
    expect(codes(report(['/ip4/10.0.0.5/tcp/4001'], { reachability: 'private' }))).to.include('PRIVATE_ONLY')
    expect(codes(report(['/ip4/192.168.1.20/tcp/4001'], { reachability: 'unknown', nat: 'behind-nat' }))).to.include.members(['REACHABILITY_UNKNOWN', 'BEHIND_NAT'])
    const healthy = codes(report(['/ip4/198.51.100.7/tcp/4001'], { reachability: 'public', nat: 'none' }))
    for (const code of ['REACHABILITY_UNKNOWN', 'PRIVATE_ONLY', 'BEHIND_NAT', 'NOT_LISTENING', 'RELAYED_ONLY']) expect(healthy).to.not.include(code)
  })
})
