/**
 * The logging interface components receive: a subset of pino's, so a pino child logger fits as it is.
 * Components never use `console`; the daemon hands in pino, tests and the library default to silence.
 */
export interface Logger {
  debug: (obj: object | string, msg?: string) => void
  info: (obj: object | string, msg?: string) => void
  warn: (obj: object | string, msg?: string) => void
  error: (obj: object | string, msg?: string) => void
  child: (bindings: Record<string, unknown>) => Logger
}

const noop = (): void => {}

/** A logger that drops everything. */
export const silentLogger: Logger = {
  debug: noop,
  info: noop,
  warn: noop,
  error: noop,
  child: () => silentLogger
}
