/**
 * Topic announcement and partner lookup on the private Kad-DHT. A topic is announced under a content id that
 * changes every DHT epoch (an HMAC of the topic secret and the epoch), so outsiders can neither name a topic nor
 * link one day's records to the next day's.
 */
import type { Libp2p } from '@libp2p/interface'
import type { PeerInfo } from '@libp2p/interface'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { topicDhtKeyOf } from '../sync/share.js'
import type { Logger } from '../util/logger.js'
import { DHT_EPOCH_LEAD_MS, DHT_EPOCH_MS } from './constants.js'

/** The DHT epoch a time falls in (see DHT_EPOCH_MS). */
export function dhtEpochOf (time: number): number {
  return Math.floor(time / DHT_EPOCH_MS)
}

/** The DHT content id a topic is announced under in one epoch. */
export function topicCidOf (topicSecret: string, epoch: number): CID {
  return CID.createV1(0x55, Digest.create(0x12, topicDhtKeyOf(topicSecret, epoch)))
}

/** Epochs a node announces a topic under at `time`: the current one, and the next one near its end. */
export function announceEpochs (time: number): number[] {
  const epoch = dhtEpochOf(time)
  return (epoch + 1) * DHT_EPOCH_MS - time <= DHT_EPOCH_LEAD_MS ? [epoch, epoch + 1] : [epoch]
}

/** Epochs a node looks a topic up under at `time`: the current one and the previous one. */
export function lookupEpochs (time: number): number[] {
  const epoch = dhtEpochOf(time)
  return epoch > 0 ? [epoch, epoch - 1] : [epoch]
}

/** Announces a topic under the epochs due at `time`; failures are logged (the next announce retries). */
export function announceTopic (node: Libp2p, topicSecret: string, time: number, signal: AbortSignal, log: Logger): void {
  for (const epoch of announceEpochs(time)) {
    node.contentRouting.provide(topicCidOf(topicSecret, epoch), { signal }).catch((err: unknown) => {
      log.debug({ err: String(err) }, 'announce failed; retried on the next announce')
    })
  }
}

/** The providers of a topic under the epochs looked up at `time` (a failed lookup is logged and skipped). */
export async function * findTopicProviders (node: Libp2p, topicSecret: string, time: number, signal: AbortSignal, log: Logger): AsyncGenerator<PeerInfo> {
  for (const epoch of lookupEpochs(time)) {
    try {
      yield * node.contentRouting.findProviders(topicCidOf(topicSecret, epoch), { signal })
    } catch (err) {
      log.debug({ err: String(err) }, 'provider lookup failed')
    }
  }
}
