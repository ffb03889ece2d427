/**
 * Bare libp2p hosts for adversary tests: TCP, Noise and Yamux and nothing else (no gater, no limits of ours),
 * optionally a Kad-DHT on the project's private protocol. A raw host may carry a fresh identity (a stranger)
 * or the identity of a test org's node (a partner that misbehaves below the node's own code).
 */
import { noise } from '@chainsafe/libp2p-noise'
import { yamux } from '@chainsafe/libp2p-yamux'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { identify } from '@libp2p/identify'
import type { Libp2p, PrivateKey } from '@libp2p/interface'
import { kadDHT, type KadDHT } from '@libp2p/kad-dht'
import { ping } from '@libp2p/ping'
import { tcp } from '@libp2p/tcp'
import { createLibp2p } from 'libp2p'
import { join } from 'node:path'
import { DHT_PROTOCOL } from '../../src/p2p/constants.js'
import { loadOrCreatePeerKey } from '../../src/p2p/identity.js'
import type { TestOrg } from './orgs.js'

export interface RawNodeOptions {
  /** The identity (default: a fresh Ed25519 key, a stranger). */
  privateKey?: PrivateKey
  /** Run a Kad-DHT server on the project's private protocol (default false). */
  dht?: boolean
  /** Listen on 127.0.0.1 (default false: dial only). */
  listen?: boolean
}

export type RawLibp2p = Libp2p<{ dht?: KadDHT, identify?: unknown, ping?: unknown }>

export async function createRawNode (options: RawNodeOptions = {}): Promise<RawLibp2p> {
  return await createLibp2p({
    privateKey: options.privateKey ?? await generateKeyPair('Ed25519'),
    addresses: { listen: options.listen === true ? ['/ip4/127.0.0.1/tcp/0'] : [] },
    transports: [tcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    services: (options.dht === true
      ? { identify: identify(), ping: ping(), dht: kadDHT({ protocol: DHT_PROTOCOL, clientMode: false, peerInfoMapper: (p) => p, allowQueryWithZeroPeers: true }) }
      : {}) as Record<string, never>
  }) as unknown as RawLibp2p
}

/** A raw host carrying `org`'s node identity (its peer key): the org's peer id, none of its node's code. */
export async function rawNodeOf (org: TestOrg, options: Omit<RawNodeOptions, 'privateKey'> = {}): Promise<RawLibp2p> {
  return await createRawNode({ ...options, privateKey: await loadOrCreatePeerKey(join(org.dataDir, 'node')) })
}
