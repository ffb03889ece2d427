/** Defaults of the daemon; every config key's default lives here. */
export const DEFAULT_DATA_DIR = 'data/node'
export const DEFAULT_TENANT = 'local'
export const DEFAULT_LOG_LEVEL = 'info'
/** Name of the RPC socket inside the data directory when `rpc.socket` is not set. */
export const DEFAULT_SOCKET_NAME = 'rpc.sock'
/** Largest JSON-RPC request body accepted: 1 MiB. */
export const MAX_RPC_BODY_BYTES = 1024 * 1024
/** Lock file that keeps a second daemon off the same data directory. */
export const LOCK_FILE = 'daemon.lock'
/** The tenant encryption key password of a tenant created on embedded defaults lives here (mode 0600). */
export const GENERATED_PASSWORD_FILE = 'tenant-password'
/** The HTTP RPC and the metrics endpoint only ever listen here. */
export const LOCAL_HOST = '127.0.0.1'
/**
 * Shortest topic secret the config and the RPC accept: 22 characters. The DHT key and the session's topic id are
 * derived from the secret, so a guessable secret lets anyone find and join the topic's announcements offline;
 * 22 base64url characters carry 132 bits, above the 128 a random secret needs (`mindoodb share secret` prints 43).
 */
export const MIN_TOPIC_SECRET_CHARS = 22
/** Bytes of randomness in a secret printed by `mindoodb share secret`: 256 bits (43 base64url characters). */
export const TOPIC_SECRET_BYTES = 32
/** The daemon keeps the list of revoked partners here, in the data directory (mode 0600). */
export const REVOKED_FILE = 'revoked.json'
