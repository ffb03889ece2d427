/**
 * Runs the CLI on a Node that can run it. libp2p 3 needs Node 24 (`Promise.withResolvers`, ...); a machine's
 * system Node may be older. This module imports only Node builtins and uses no recent syntax or API, so any Node
 * that loads ES modules gets this far: on Node 24 or newer the CLI runs in this process; on an older Node the
 * same command is run again with the Node 24 that the package pins (`node_modules/node/bin/node`, installed by
 * `npm ci`), passing arguments, standard streams, signals and the exit code through; when there is none, one
 * sentence says what to run instead and the exit code is 2 (bad usage), never a stack of a missing builtin.
 */
import { spawn, spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** The oldest Node major version the project runs on. */
export const MIN_NODE_MAJOR = 24
/** Set in the environment of the re-executed process: a second re-execution is never tried. */
export const REEXEC_ENV = 'MINDOODB_REEXECUTED'
/** Exit code when no suitable Node can be found (the CLI's "bad usage"). */
export const UNSUPPORTED_NODE_EXIT = 2
/** Signals passed on to the re-executed process (SIGTERM stops the daemon, SIGHUP reloads it). */
const FORWARDED: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2']

/** The major version of a Node version string ("20.20.2" -> 20). */
export function nodeMajor (version: string): number {
  const major = parseInt(String(version).split('.')[0], 10)
  return isNaN(major) ? 0 : major
}

/** The major version `bin` reports, or 0 when it does not run. */
function majorOf (bin: string): number {
  const r = spawnSync(bin, ['-p', 'process.versions.node'], { encoding: 'utf8', timeout: 10000, stdio: ['ignore', 'pipe', 'ignore'] })
  return r.status === 0 ? nodeMajor(String(r.stdout).trim()) : 0
}

/**
 * The pinned Node: `node_modules/node/bin/node` (or `node_modules/.bin/node`) in the directory of `start` or the
 * nearest one above it that has one and that reports Node `MIN_NODE_MAJOR` or newer (a checkout, an installed
 * package, or a project that depends on this one). Undefined when there is none.
 */
export function findPinnedNode (start: string): string | undefined {
  let dir = start
  for (;;) {
    const candidates = [join(dir, 'node_modules', 'node', 'bin', 'node'), join(dir, 'node_modules', '.bin', 'node')]
    for (const bin of candidates) {
      if (existsSync(bin) && majorOf(bin) >= MIN_NODE_MAJOR) return bin
    }
    const parent = dirname(dir)
    if (parent === dir) return undefined
    dir = parent
  }
}

/** The sentence printed when this Node is too old and no suitable one can be found. */
export function unsupportedNodeMessage (version: string): string {
  return `mindoodb: this is Node ${version}, MindooDB needs Node ${MIN_NODE_MAJOR} or newer, and no Node ${MIN_NODE_MAJOR} was found in the package's node_modules: run \`npm ci\` in the checkout, then \`npx mindoodb ...\` (or \`npm exec -- mindoodb ...\`).\n`
}

/**
 * The CLI could not load (a part it needs does not load on this machine, e.g. libsodium's prebuilt binary):
 * writes the error's first line as one sentence and sets the unsupported exit code.
 */
export function cannotLoad (err: unknown): void {
  const message = String((err as Error)?.message ?? err).split('\n')[0]
  process.stderr.write(`mindoodb: ${message}\n`)
  process.exitCode = UNSUPPORTED_NODE_EXIT
}

/** Runs `script` again with `bin`, passes signals on, and ends this process as the child ended. */
function reexec (bin: string, script: string): void {
  // the IPC channel is how the child learns that this process is gone, however it ended (SIGKILL too)
  const child = spawn(bin, process.execArgv.concat([script], process.argv.slice(2)), {
    stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
    env: Object.assign({}, process.env, { [REEXEC_ENV]: '1' })
  })
  const handlers: Array<[NodeJS.Signals, () => void]> = FORWARDED.map((signal) => [signal, () => { child.kill(signal) }])
  for (const [signal, handler] of handlers) process.on(signal, handler)
  child.on('error', (err) => {
    process.stderr.write(`mindoodb: cannot run ${bin}: ${err.message}\n`)
    process.exit(1)
  })
  child.on('exit', (code, signal) => {
    for (const [s, handler] of handlers) process.off(s, handler)
    if (signal !== null) {
      // end the same way, so a parent (a shell, systemd, a test) sees the signal
      process.kill(process.pid, signal)
      return
    }
    process.exit(code === null ? 1 : code)
  })
}

/**
 * In the re-executed process: when the launcher that started it is gone (killed with SIGKILL, say), stop as if
 * sent SIGTERM (a daemon then closes its store and socket), so no process is left behind holding the data
 * directory. The channel does not keep this process alive.
 */
function followLauncher (): void {
  const channel = process.channel
  if (channel === undefined) return
  channel.unref()
  process.on('disconnect', () => { process.kill(process.pid, 'SIGTERM') })
}

/**
 * Decides where the CLI runs: `true` when it can run in this process; otherwise it has re-executed the command
 * with the pinned Node (this process ends when that one ends) or printed why it cannot, and returns `false`.
 * `entryUrl` is the entry module's `import.meta.url`.
 */
export function launch (entryUrl: string): boolean {
  const version = process.versions.node
  if (nodeMajor(version) >= MIN_NODE_MAJOR) {
    if (process.env[REEXEC_ENV] !== undefined) followLauncher()
    return true
  }
  const script = fileURLToPath(entryUrl)
  // dist/src/cli/main.js: the package root is three directories up
  const bin = process.env[REEXEC_ENV] === undefined ? findPinnedNode(join(dirname(script), '..', '..', '..')) : undefined
  if (bin === undefined) {
    process.stderr.write(unsupportedNodeMessage(version))
    process.exitCode = UNSUPPORTED_NODE_EXIT
    return false
  }
  reexec(bin, script)
  return false
}
