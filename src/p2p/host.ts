/**
 * The libp2p host of a node: transports, encryption, muxer, connection gater and manager, identify, ping and the
 * private Kad-DHT, all in one options object (`createHost`). The node owns what runs on top (the sync protocol,
 * discovery, shares); this file only says how the host is built.
 */
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { identify } from '@libp2p/identify'
import type { Libp2p, PeerId, PrivateKey } from '@libp2p/interface'
import { kadDHT, type KadDHT } from '@libp2p/kad-dht'
import { ping } from '@libp2p/ping'
import { prometheusMetrics } from '@libp2p/prometheus-metrics'
import { tcp } from '@libp2p/tcp'
import { isLinkLocal, isLoopback, isPrivate } from '@libp2p/utils'
import { multiaddr, type Multiaddr } from '@multiformats/multiaddr'
import { createLibp2p } from 'libp2p'
import type { Registry } from 'prom-client'
import {
  DEFAULT_LISTEN, DHT_PROTOCOL, INBOUND_UPGRADE_TIMEOUT_MS, MAX_CONNECTIONS, MAX_MUXED_STREAMS,
  MAX_PENDING_INBOUND_CONNECTIONS, MAX_STREAM_WINDOW_BYTES, INBOUND_CONNECTIONS_PER_HOST_PER_SECOND
} from './constants.js'
import type { Nat } from './nat.js'

/** The services the node's host runs (the DHT only when enabled). */
export type Services = { dht?: KadDHT, identify: unknown, ping: unknown }

export interface HostInit {
  privateKey: PrivateKey
  /** Multiaddrs to listen on. Default `DEFAULT_LISTEN` (a random TCP port on 127.0.0.1). */
  listen?: string[]
  /** Announce loopback, private and link-local addresses too. Default false. */
  announcePrivateAddresses?: boolean
  /** Run the private Kad-DHT. Default true. */
  dht?: boolean
  /** A prom-client registry for libp2p's own metrics (off when not given). */
  metricsRegistry?: Registry
  /** The connection gater's one question: may this peer connect or be dialled? */
  admits: (peerId: string) => boolean
  /** Called with every address the host has, each time libp2p filters them for announcement. */
  onAddresses?: (addrs: Multiaddr[]) => void
  /** nat: AutoNAT, relays served and listened through, DCUtR (src/p2p/nat.ts); none when not given. */
  nat?: Nat
}

/** Addresses worth announcing to peers: public ones only, unless private ones are wanted too. */
export function isPublicAddress (ma: Multiaddr): boolean {
  return !isPrivate(ma) && !isLoopback(ma) && !isLinkLocal(ma)
}

/** The peer id at the end of a multiaddr (`/p2p/<id>`), if any. */
export function peerIdOfAddress (addr: string): string | undefined {
  return multiaddr(addr).getComponents().findLast((c) => c.name === 'p2p')?.value
}

/** Builds the node's libp2p host (not started). */
export async function createHost (init: HostInit): Promise<Libp2p<Services>> {
  const denied = (peerId: PeerId): boolean => !init.admits(peerId.toString())
  const announcePrivate = init.announcePrivateAddresses ?? false
  const useDht = init.dht ?? true
  return await createLibp2p({
    privateKey: init.privateKey,
    start: false,
    metrics: init.metricsRegistry === undefined ? undefined : prometheusMetrics({ registry: init.metricsRegistry, collectDefaultMetrics: false }),
    addresses: {
      listen: init.listen ?? DEFAULT_LISTEN,
      announceFilter: (addrs) => {
        init.onAddresses?.(addrs)
        return announcePrivate ? addrs : addrs.filter(isPublicAddress)
      }
    },
    transports: [tcp(), ...init.nat?.transports() ?? []], // nat: + circuit relay
    connectionEncrypters: [noise()],
    streamMuxers: [yamux({ maxInboundStreams: MAX_MUXED_STREAMS, streamOptions: { maxStreamWindowSize: MAX_STREAM_WINDOW_BYTES } })],
    // only partners of some share, bootstrap peers and allowPeers connect, in either direction: a stranger is
    // turned away as soon as Noise proves its peer id, so it can open no stream, DHT queries included; and
    // peers learned from the DHT outside that list are never dialled
    connectionGater: {
      ...init.nat?.gater(), // nat: who may reserve on, hop through and reach us through a relay
      denyDialPeer: denied,
      denyInboundEncryptedConnection: denied,
      denyOutboundEncryptedConnection: denied
    },
    connectionManager: {
      maxConnections: MAX_CONNECTIONS,
      maxIncomingPendingConnections: MAX_PENDING_INBOUND_CONNECTIONS,
      inboundConnectionThreshold: INBOUND_CONNECTIONS_PER_HOST_PER_SECOND,
      inboundUpgradeTimeout: INBOUND_UPGRADE_TIMEOUT_MS
    },
    services: {
      identify: identify(),
      ping: ping(),
      // without the DHT the node takes no part in it at all: it answers no queries, runs none, and libp2p
      // cannot look up the address of a peer it was not given, so it only reaches configured addresses
      ...(useDht ? { dht: kadDHT({ protocol: DHT_PROTOCOL, clientMode: false, peerInfoMapper: (p) => p, allowQueryWithZeroPeers: true }) } : {}),
      ...init.nat?.services() // nat: AutoNAT, DCUtR, relay server, relay reservations
    }
  })
}
