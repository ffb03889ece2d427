/** The sync protocol id. */
export const SYNC_PROTOCOL = '/mindoodb/sync/1.0.0'
/** Protocol prefix of the private Kad-DHT among participants (never the public IPFS DHT). */
export const DHT_PROTOCOL = '/mindoodb/kad/1.0.0'
/** Default listen address: a random TCP port on loopback. */
export const DEFAULT_LISTEN = ['/ip4/127.0.0.1/tcp/0']
/**
 * Largest frame sent or accepted (4 MiB), and largest reconciliation message (64 KiB; both sides use the smaller
 * of this and the frame limits): the session's own defaults.
 */
export { DEFAULT_MAX_FRAME_BYTES, DEFAULT_RECONCILE_MESSAGE_BYTES as MAX_RECONCILE_MESSAGE_BYTES } from '../sync/session.js'
/** Periodic catch-up round per partner: 30 s. */
export const DEFAULT_SYNC_INTERVAL_MS = 30_000
/** First retry after a failed round: 1 s, doubling per failure, with ±50 % jitter. */
export const DEFAULT_BACKOFF_BASE_MS = 1_000
/** Longest wait between retries: 5 min. */
export const DEFAULT_BACKOFF_MAX_MS = 300_000
/** Re-announce each topic on the DHT every hour (provider records live much longer). */
export const DEFAULT_ANNOUNCE_INTERVAL_MS = 3_600_000
/** Look for unconnected partners on the DHT every minute. */
export const DEFAULT_DISCOVERY_INTERVAL_MS = 60_000
/** Wait this long after a change before starting live rounds, so bursts share one round. */
export const DEFAULT_LIVE_DEBOUNCE_MS = 5
/**
 * When a partner connects, the side that dialled starts the round at once; the side that was dialled starts one
 * only if no session with the partner began within this time (2 s): one round per connection, not one from each
 * side.
 */
export const DEFAULT_CONNECT_GRACE_MS = 2_000
/**
 * The limits of the node and its connections live in src/limits.ts (with why each value is safe); re-exported
 * here for the code that reads them beside the defaults.
 */
export {
  HELLO_READ_SLACK_BYTES, HELLO_TIMEOUT_MS, INBOUND_UPGRADE_TIMEOUT_MS, MAX_CONNECTIONS, MAX_HELLO_FRAME_BYTES,
  MAX_INBOUND_STREAMS, MAX_MUXED_STREAMS, MAX_OUTBOUND_STREAMS, MAX_PENDING_INBOUND_CONNECTIONS, INBOUND_CONNECTIONS_PER_HOST_PER_SECOND,
  MAX_PENDING_SESSIONS, MAX_PENDING_SESSIONS_PER_PEER, MAX_RECENT_REJECTIONS, MAX_STREAM_WINDOW_BYTES
} from '../limits.js'
/**
 * Length of a DHT epoch (24 h). A topic's provider key changes every epoch (an HMAC of its secret and the
 * epoch number, see `topicDhtKeyOf`), so records of one day cannot be linked to the next day's without the
 * secret. A node announces under the current epoch, and also under the next one during the last
 * `DHT_EPOCH_LEAD_MS` of an epoch; it looks up the current and the previous epoch, so nodes whose clocks
 * differ by less than the lead still find each other.
 */
export const DHT_EPOCH_MS = 24 * 3_600_000
/** Before an epoch ends, announce under the next epoch's key too (2 h: twice the default announce interval). */
export const DHT_EPOCH_LEAD_MS = 2 * 3_600_000
/** File in the data directory that holds the node's libp2p private key. */
export const PEER_KEY_FILE = 'peer-key'
/** Refused change hashes remembered per share so that they are not asked for again. */
export const MAX_REFUSED = 10_000
