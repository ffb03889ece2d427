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
