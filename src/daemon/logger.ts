import { pino } from 'pino'
import type { Logger } from '../util/logger.js'
import type { LogLevel } from './config.js'

/** Fields that must never reach a log line. */
const REDACT = [
  'password', '*.password', 'passphrase', '*.passphrase', 'token', '*.token', 'blob', '*.blob', 'topicSecret',
  '*.topicSecret', '*.*.topicSecret', 'data', '*.data', 'patch', '*.patch', 'authorization', '*.authorization'
]

/** JSON lines on stdout, one event per line, secrets and document contents redacted. */
export function createDaemonLogger (level: LogLevel, bindings: Record<string, unknown> = {}): Logger {
  return pino({
    level,
    base: { pid: process.pid, ...bindings },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: REDACT, censor: '[redacted]' },
    formatters: { level: (label) => ({ level: label }) }
  }, pino.destination({ dest: 1, sync: false }))
}
