/**
 * `node.doctor`: how this node can be reached and how it reaches each partner, with findings in plain words.
 * Read-only: it looks at the node's addresses, its connections, its peer store, the shares' status and what
 * AutoNAT and the relays found (src/p2p/nat.ts); it dials nobody and sends nothing.
 */
import { peerIdFromString } from '@libp2p/peer-id'
import { isLinkLocal, isLoopback, isPrivate } from '@libp2p/utils'
import { multiaddr } from '@multiformats/multiaddr'
import { addressKind, type NatReport } from './nat.js'
import type { MindooNode, PartnerStatus } from './node.js'

/** One open connection to a partner. */
export interface ConnectionInfo {
  /** The remote multiaddr of the connection (a relayed one contains `/p2p-circuit`). */
  address: string
  direction: 'inbound' | 'outbound'
  /** Through a relay (`/p2p-circuit` in the address). */
  relayed: boolean
  /** The connection carries limits (data or time), as relayed connections do. */
  limited: boolean
}

/** A partner of a share as the doctor sees it. */
export interface PartnerDiagnosis {
  peerId: string
  tenantId: string
  /** This node dials the partner (`dial` in the share). */
  dial: boolean
  connected: boolean
  /** `direct`, `relayed` (every open connection goes through a relay) or `none` (not connected). */
  via: 'direct' | 'relayed' | 'none'
  connections: ConnectionInfo[]
  /** Addresses in the peer store: from the share, the DHT or identify. */
  knownAddresses: string[]
  /** How it can be dialled: at a direct address, through a relay (`/p2p-circuit`), both or neither. */
  dialable: { direct: boolean, relayed: boolean }
  /** The last round this node started with it, if any: `ok`, `failed`, or `running` (it has not ended yet). */
  lastRound?: { at: number, result: 'ok' | 'failed' | 'running' }
  lastSuccessAt?: number
  /** The last error with this partner: of a round this node started, a session the partner started, or a long-lived one. */
  lastError?: { code: string, message: string, at: number }
  /** Consecutive failed rounds, and when the next one is due while backing off. */
  backoff: { failures: number, retryAt?: number }
}

export interface ShareDiagnosis {
  id: string
  enabled: boolean
  partners: PartnerDiagnosis[]
}

/** A finding: `problem` when something stops or may stop sync, `note` when it is worth knowing. */
export interface Finding {
  level: 'problem' | 'note'
  /** A stable name for scripts (`NO_ADDRESS`, `NOT_DIALLED`, `UNREACHABLE`, ...). */
  code: string
  share?: string
  peerId?: string
  text: string
}

export interface DoctorReport {
  peerId: string
  /** Every address the node listens on (loopback and private ones too). */
  listen: string[]
  /** What partners and the DHT are told (identify, provider records). */
  announced: string[]
  /** Some announced address is loopback, private or link-local. */
  announcesPrivate: boolean
  /** Reachability (AutoNAT's verdict), NAT status, relay reservations held on relays and served to partners. */
  nat: NatReport
  shares: ShareDiagnosis[]
  findings: Finding[]
}

function isPrivateAddress (addr: string): boolean {
  try {
    const ma = multiaddr(addr)
    return isPrivate(ma) || isLoopback(ma) || isLinkLocal(ma)
  } catch {
    return false
  }
}

function isLoopbackAddress (addr: string): boolean {
  try {
    return isLoopback(multiaddr(addr))
  } catch {
    return false
  }
}

async function knownAddresses (node: MindooNode, peerId: string): Promise<string[]> {
  try {
    const peer = await node.libp2p.peerStore.get(peerIdFromString(peerId))
    return peer.addresses.map((a) => a.multiaddr.toString())
  } catch {
    return []
  }
}

function connectionsTo (node: MindooNode, peerId: string): ConnectionInfo[] {
  return node.libp2p.getConnections(peerIdFromString(peerId)).filter((c) => c.status === 'open').map((c) => {
    const address = c.remoteAddr.toString()
    return { address, direction: c.direction, relayed: !c.direct || address.includes('/p2p-circuit'), limited: c.limits !== undefined }
  })
}

async function diagnosePartner (node: MindooNode, p: PartnerStatus): Promise<PartnerDiagnosis> {
  const connections = connectionsTo(node, p.peerId)
  const via = connections.length === 0 ? 'none' : connections.every((c) => c.relayed) ? 'relayed' : 'direct'
  const known = await knownAddresses(node, p.peerId)
  const at = p.lastRoundAt
  const lastRound = at === undefined ? undefined : { at, result: p.lastRoundResult ?? 'running' as const }
  return {
    peerId: p.peerId,
    tenantId: p.tenantId,
    dial: p.dial,
    connected: connections.length > 0,
    via,
    connections,
    knownAddresses: known,
    dialable: { direct: known.some((a) => addressKind(a) === 'direct'), relayed: known.some((a) => addressKind(a) === 'relayed') },
    ...(lastRound === undefined ? {} : { lastRound }),
    ...(p.lastSuccessAt === undefined ? {} : { lastSuccessAt: p.lastSuccessAt }),
    ...(p.lastError === undefined ? {} : { lastError: p.lastError }),
    backoff: { failures: p.failures, ...(p.retryAt === undefined ? {} : { retryAt: p.retryAt }) }
  }
}

/** The findings, in plain words, from a report's facts. */
export function findingsOf (report: Omit<DoctorReport, 'findings'>, now: number = Date.now()): Finding[] {
  const findings: Finding[] = []
  const direct = report.listen.filter((a) => addressKind(a) === 'direct')
  const reserved = report.nat.reservations.filter((r) => r.state === 'reserved')
  for (const r of report.nat.reservations) {
    if (r.state !== 'reserved') {
      const error = r.lastError === undefined ? '' : ` (last error ${r.lastError.code}: ${r.lastError.message})`
      findings.push({ level: 'problem', code: 'RELAY_NOT_RESERVED', peerId: r.peerId, text: `no reservation on relay ${r.relay}: partners cannot reach this node through it${error}` })
    }
  }
  if (direct.length === 0 && reserved.length > 0) {
    findings.push({ level: 'note', code: 'RELAYED_ONLY', text: `this node listens on no address of its own: partners reach it through ${reserved.map((r) => r.relay).join(', ')} only (dial it at <relay>/p2p-circuit/p2p/${report.peerId})` })
  } else if (direct.length === 0) {
    findings.push({ level: 'problem', code: 'NOT_LISTENING', text: 'this node listens on no address: no partner can dial it; it syncs only with the partners it dials (or set "relay.via" to be reachable through a relay)' })
  } else if (direct.every(isLoopbackAddress)) {
    findings.push({ level: 'note', code: 'LOOPBACK_ONLY', text: 'this node listens on loopback only: no other machine can dial it (set "listen", e.g. /ip4/0.0.0.0/tcp/4001)' })
  }
  if (report.nat.reachability === 'unknown') {
    findings.push({ level: 'note', code: 'REACHABILITY_UNKNOWN', text: report.nat.autonat ? 'AutoNAT has not confirmed a public address of this node yet: partners confirm it when they connect' : 'AutoNAT is off: whether partners elsewhere can dial this node is not known' })
  } else if (report.nat.reachability === 'private' && report.nat.reservations.length === 0) {
    findings.push({ level: 'note', code: 'PRIVATE_ONLY', text: 'this node has no public address and no relay: only peers on its own network can dial it (set "relay.via" to be reachable through a partner that serves as a relay)' })
  }
  if (report.nat.nat === 'behind-nat') {
    findings.push({ level: 'note', code: 'BEHIND_NAT', text: 'partners see this node at a public address it does not listen on: it is behind a NAT (forward a port, or listen through a relay)' })
  }
  if (report.announced.length === 0) {
    findings.push({ level: 'note', code: 'NOTHING_ANNOUNCED', text: 'this node announces no address (only public addresses are announced): partners must be configured with its address, or set announcePrivateAddresses on a LAN' })
  } else if (report.announcesPrivate) {
    findings.push({ level: 'note', code: 'ANNOUNCES_PRIVATE', text: 'this node announces loopback or private addresses: fine on a LAN, of no use to partners elsewhere' })
  }
  for (const s of report.shares) {
    if (!s.enabled) {
      findings.push({ level: 'note', code: 'SHARE_DISABLED', share: s.id, text: `share ${s.id} is disabled: nothing is synced on it` })
      continue
    }
    if (s.partners.length === 0) findings.push({ level: 'note', code: 'NO_PARTNERS', share: s.id, text: `share ${s.id} has no partners` })
    for (const p of s.partners) {
      const who = `partner ${p.tenantId} (${p.peerId}) of share ${s.id}`
      const base = { share: s.id, peerId: p.peerId }
      const error = p.lastError === undefined || (p.lastSuccessAt ?? 0) >= p.lastError.at ? '' : ` (last error ${p.lastError.code}: ${p.lastError.message})`
      const retry = p.backoff.retryAt === undefined ? '' : `; next try in ${Math.max(0, Math.round((p.backoff.retryAt - now) / 1000))} s`
      if (p.connected) {
        if (p.via === 'relayed') findings.push({ level: 'note', code: 'RELAYED', ...base, text: `${who} is connected through a relay only: the relay's limits apply` })
        if (p.lastRound?.result === 'failed') findings.push({ level: 'problem', code: 'ROUND_FAILED', ...base, text: `${who} is connected but the last round with it failed${error}${retry}` })
        continue
      }
      if (!p.dial) {
        findings.push({ level: 'note', code: 'NOT_DIALLED', ...base, text: `${who} is not to be dialled and is not connected: it syncs only when it dials this node` })
      } else if (p.knownAddresses.length === 0) {
        findings.push({ level: 'problem', code: 'NO_ADDRESS', ...base, text: `${who} has no known address and is not connected: it can only sync when it dials this node (add its addresses to the share, or find it on the DHT)` })
      } else if (p.backoff.failures > 0) {
        findings.push({ level: 'problem', code: 'UNREACHABLE', ...base, text: `${who} is not connected and could not be reached at ${p.knownAddresses.join(', ')}${error}${retry}` })
      } else {
        findings.push({ level: 'note', code: 'NOT_CONNECTED', ...base, text: `${who} is not connected; it is dialled at ${p.knownAddresses.join(', ')} on the next round` })
      }
    }
  }
  return findings
}

/** Looks at the node and its partners; dials nobody. */
export async function diagnose (node: MindooNode): Promise<DoctorReport> {
  const listen = node.getMultiaddrs()
  const announced = node.getAnnouncedMultiaddrs()
  const shares: ShareDiagnosis[] = []
  for (const s of node.status()) {
    const partners: PartnerDiagnosis[] = []
    for (const p of s.partners) partners.push(await diagnosePartner(node, p))
    shares.push({ id: s.id, enabled: s.enabled, partners })
  }
  const facts = { peerId: node.peerId, listen, announced, announcesPrivate: announced.some(isPrivateAddress), nat: node.natReport(), shares }
  return { ...facts, findings: findingsOf(facts) }
}
