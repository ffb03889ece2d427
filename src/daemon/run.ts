/**
 * `mindoodb daemon`: runs a Daemon in the foreground until SIGTERM/SIGINT; SIGHUP reloads the config's shares.
 */
import { readFile } from 'node:fs/promises'
import type { Logger } from '../util/logger.js'
import { loadConfig } from './config.js'
import { Daemon } from './daemon.js'
import { createDaemonLogger } from './logger.js'

export async function packageVersion (): Promise<string> {
  const pkg = JSON.parse(await readFile(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }
  return pkg.version
}

/**
 * Starts the daemon and resolves when it has stopped after a signal. Start-up errors (bad config, data
 * directory in use...) reject; the caller prints them and exits non-zero.
 */
export async function runDaemon (configFile: string | undefined, onReady?: (daemon: Daemon) => void): Promise<void> {
  const config = await loadConfig(configFile)
  const log: Logger = createDaemonLogger(config.logLevel)
  const daemon = new Daemon({ config, logger: log, version: await packageVersion() })
  // a SIGHUP before the daemon is ready must not kill it (Node's default): it is ignored until then
  let ready = false
  process.on('SIGHUP', () => {
    if (!ready) {
      log.info({}, 'SIGHUP before ready: ignored')
      return
    }
    daemon.reload().catch((err: unknown) => {
      log.error({ err: String(err), code: (err as { code?: string }).code }, 'reload failed; keeping the running shares')
    })
  })
  await daemon.start()
  ready = true
  onReady?.(daemon)
  await new Promise<void>((resolve) => {
    let stopping = false
    const stop = (signal: string): void => {
      if (stopping) return
      stopping = true
      log.info({ signal }, 'stopping')
      daemon.stop().then(() => {
        log.info({}, 'stopped')
        resolve()
      }, (err: unknown) => {
        log.error({ err: String(err) }, 'stop failed')
        process.exitCode = 1
        resolve()
      })
    }
    process.on('SIGTERM', () => { stop('SIGTERM') })
    process.on('SIGINT', () => { stop('SIGINT') })
  })
}
