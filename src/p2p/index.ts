/**
 * The peer-to-peer node: libp2p (TCP, Noise, Yamux, identify, ping, a private Kad-DHT; AutoNAT, circuit relay v2 and
 * DCUtR for nodes behind firewalls), topic announcement and
 * discovery, and the `/mindoodb/sync/1.0.0` protocol that keeps shares in sync with partner organisations.
 *
 * @example
 * ```ts
 * const node = await createMindooNode({ tenant, dataDir: './node' })
 * await node.start()
 * await node.addShare({ id: 'orders', topicSecret, database: 'customer-orders', partners, direction: 'both',
 *   filter: { kind: 'selector', selector: { type: 'order', visibility: 'public' } }, enabled: true })
 * console.log(node.status('orders'))
 * ```
 */
export { announceEpochs, createMindooNode, dhtEpochOf, lookupEpochs, MindooNode, topicCidOf } from './node.js'
export type { LiveStatus, LiveTotals, MindooNodeInit, PartnerStatus, RoundProgress, RoundResult, ShareStatus, ShareTotals } from './node.js'
export { RoundScheduler, systemClock } from './scheduler.js'
export type { Clock } from './scheduler.js'
export { DHT_EPOCH_LEAD_MS, DHT_EPOCH_MS, DHT_PROTOCOL, SYNC_PROTOCOL } from './constants.js'
export { clip, MAX_EVENT_TEXT, NodeEvents } from './events.js'
export type { ChangesRejectedEvent, NodeEvent, NodeEventListener, NodeEventType, PartnerConnectionEvent, RelayRefusedEvent, RelayReservationEvent, RoundFinishedEvent, RoundStartedEvent, SessionEvent } from './events.js'
export { diagnose, findingsOf } from './doctor.js'
export type { ConnectionInfo, DoctorReport, Finding, PartnerDiagnosis, ShareDiagnosis } from './doctor.js'
export { reachabilityOf, RELAY_CHECK_INTERVAL_MS, RELAY_RETRY_BASE_MS, RELAY_RETRY_MAX_MS } from './nat.js'
export type { AddressInfo, NatInit, NatReport, RelayRefusal, RelayReservationStatus, RelayServeInit } from './nat.js'
