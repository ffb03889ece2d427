/**
 * First contact: the commands the README and the start banner print work as printed with the machine's system
 * Node, even when it is older than the Node 24 the project needs (the CLI re-executes itself with the pinned
 * Node, passing arguments, output, signals and exit codes through), and an unsupported Node with no pinned Node
 * to fall back on gets one sentence saying what to run, with a usage exit code, not a stack trace.
 */
import { spawn, spawnSync } from 'node:child_process'
import { copyFile, cp, mkdir, readdir, readFile, readlink, symlink, writeFile } from 'node:fs/promises'
import { existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { expect } from 'chai'
import { findPinnedNode, MIN_NODE_MAJOR, nodeMajor, REEXEC_ENV, UNSUPPORTED_NODE_EXIT } from '../../src/cli/launch.js'
import { CLI, eventually, killAll, runCli, startDaemon, testConfig, writeJson, type DaemonProcess } from '../utils/daemon-proc.js'
import { removeDir, tempDir } from '../utils/tmp.js'

const SYSTEM_NODE = '/usr/bin/node'
/** The package root (dist/src/cli/main.js is three levels below it, in dist/). */
const ROOT = join(dirname(CLI), '..', '..', '..')

/** The system Node's major version, or 0 when there is none. */
function systemMajor (): number {
  if (!existsSync(SYSTEM_NODE)) return 0
  const r = spawnSync(SYSTEM_NODE, ['-p', 'process.versions.node'], { encoding: 'utf8' })
  return r.status === 0 ? nodeMajor(r.stdout.trim()) : 0
}

async function run (cmd: string, args: string[], options: { cwd?: string, env?: NodeJS.ProcessEnv } = {}): Promise<{ code: number | null, stdout: string, stderr: string }> {
  const child = spawn(cmd, args, { cwd: options.cwd, env: options.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  child.stdout.setEncoding('utf8').on('data', (c: string) => { stdout += c })
  child.stderr.setEncoding('utf8').on('data', (c: string) => { stderr += c })
  const timer = setTimeout(() => { child.kill('SIGKILL') }, 60_000)
  return await new Promise((resolve, reject) => {
    child.on('error', reject)
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }) })
  })
}

describe('first contact: the CLI on an older system Node', function () {
  this.timeout(90_000)
  const major = systemMajor()
  let dir: string

  before(function () {
    if (major === 0) this.skip() // no /usr/bin/node on this machine: nothing older to run the printed commands with
    if (major >= MIN_NODE_MAJOR) this.skip() // the system Node is new enough: no re-execution to test
  })
  beforeEach(async () => { dir = await tempDir('mindoodb-first-contact-') })
  afterEach(async () => {
    await killAll()
    await removeDir(dir)
  })

  it('should print --help with the system Node, as the README shows it', async () => {
    const r = await runCli(['--help'], 30_000, SYSTEM_NODE)
    expect(r.code, r.stderr).to.equal(0)
    expect(r.stdout).to.include('Usage: mindoodb')
    expect(r.stdout).to.include('doctor')
    expect(r.stderr).to.not.include('withResolvers')
  })

  it('should run the daemon with the system Node on the pinned Node, answer health, pass SIGHUP and SIGTERM on and exit as it did', async () => {
    const d: DaemonProcess = await startDaemon(await writeJson(join(dir, 'org.json'), testConfig(dir, 'org')), { node: SYSTEM_NODE })
    const info = await d.client.call<{ pid: number }>('node.info')
    // the daemon is a child of the launcher, running the pinned Node 24
    expect(info.pid).to.not.equal(d.pid)
    const exe = await readlink(`/proc/${info.pid}/exe`)
    expect(nodeMajor(spawnSync(exe, ['-p', 'process.versions.node'], { encoding: 'utf8' }).stdout.trim())).to.be.at.least(MIN_NODE_MAJOR)
    // the CLI, with the system Node too
    const health = await runCli(['--socket', d.ready.rpcSocket, 'rpc', 'health'], 30_000, SYSTEM_NODE)
    expect(health.code, health.stderr).to.equal(0)
    expect(JSON.parse(health.stdout)).to.include({ status: 'ok' })
    // exit codes come through: an unknown method is bad usage (2), a missing socket is "unreachable" (3)
    expect((await runCli(['--socket', d.ready.rpcSocket, 'rpc', 'no.such.method'], 30_000, SYSTEM_NODE)).code).to.equal(2)
    expect((await runCli(['--socket', join(dir, 'none.sock'), 'status'], 30_000, SYSTEM_NODE)).code).to.equal(3)
    // the banner's command, run as printed from the directory it was printed in
    await d.waitForLog((l) => l.msg === 'ready', 'ready')
    const banner = d.stderr.split('\n').find((l) => l.startsWith('try: node '))
    expect(banner, d.stderr).to.be.a('string')
    const printed = (banner ?? '').slice('try: '.length).split('  ')[0].trim().split(' ')
    expect(printed[0]).to.equal('node')
    const status = await run(SYSTEM_NODE, printed.slice(1), { cwd: process.cwd() })
    expect(status.code, status.stderr).to.equal(0)
    expect(status.stdout).to.include(`peer ${d.ready.peerId}`)
    // signals reach the daemon: SIGHUP reloads, SIGTERM stops it cleanly, and the launcher exits with its code
    const from = d.lines.length
    d.signal('SIGHUP')
    await d.waitForLog((l) => l.msg === 'config reloaded', 'the reload', 15_000, from)
    const exit = await d.stop('SIGTERM')
    expect(exit).to.deep.equal({ code: 0, signal: null })
    expect(d.lines.some((l) => l.msg === 'stopped')).to.equal(true)
    expect(existsSync(`/proc/${info.pid}`), 'the pinned Node process is gone').to.equal(false)
  })

  it('should stop the daemon when the launcher is killed with SIGKILL, leaving no process behind', async () => {
    const d: DaemonProcess = await startDaemon(await writeJson(join(dir, 'org.json'), testConfig(dir, 'org')), { node: SYSTEM_NODE })
    const { pid } = await d.client.call<{ pid: number }>('node.info')
    expect(pid).to.not.equal(d.pid)
    await d.stop('SIGKILL')
    // the daemon stops as on SIGTERM: its socket goes, and a new daemon can take the data directory
    await eventually(async () => existsSync(`/proc/${pid}`) ? undefined : true, 'the daemon to exit', 20_000)
    expect(existsSync(d.ready.rpcSocket)).to.equal(false)
    const again = await startDaemon(d.configFile)
    expect((await again.client.call<{ status: string }>('health')).status).to.equal('ok')
    await again.stop()
  })

  it('should run `npm exec -- mindoodb --help` from the checkout with the system Node first on the PATH', async () => {
    const r = await run('npm', ['exec', '--no', '--', 'mindoodb', '--help'], {
      cwd: ROOT,
      env: { ...process.env, PATH: `${dirname(SYSTEM_NODE)}:${process.env.PATH ?? ''}`, npm_config_update_notifier: 'false' }
    })
    expect(r.code, r.stderr).to.equal(0)
    expect(r.stdout).to.include('Usage: mindoodb')
  })

  it('should print one sentence and exit with the usage code when no pinned Node can be found', async () => {
    // the two files of the launcher alone, outside any checkout: no node_modules above them
    const bare = join(dir, 'pkg', 'dist', 'src', 'cli')
    await mkdir(bare, { recursive: true })
    for (const f of ['main.js', 'launch.js']) await copyFile(join(dirname(CLI), f), join(bare, f))
    expect(findPinnedNode(join(dir, 'pkg'))).to.equal(undefined)
    for (const args of [['--help'], ['daemon']]) {
      const r = await run(SYSTEM_NODE, [join(bare, 'main.js'), ...args])
      expect(r.code).to.equal(UNSUPPORTED_NODE_EXIT)
      expect(r.stdout).to.equal('')
      const lines = r.stderr.trim().split('\n')
      expect(lines, r.stderr).to.have.length(1)
      expect(lines[0]).to.match(/^mindoodb: this is Node 2?\d+\.\d+\.\d+, MindooDB needs Node 24 or newer/)
      expect(lines[0]).to.include('npm ci').and.include('npx mindoodb').and.include('npm exec -- mindoodb')
      expect(r.stderr).to.not.match(/\n\s+at |withResolvers|Error/)
    }
  })

  it('should not re-execute twice: a re-executed process on an old Node prints the sentence', async () => {
    const r = await run(SYSTEM_NODE, [CLI, '--help'], { env: { ...process.env, [REEXEC_ENV]: '1' } })
    expect(r.code).to.equal(UNSUPPORTED_NODE_EXIT)
    expect(r.stderr.trim().split('\n')).to.have.length(1)
  })
})

describe('first contact: the pinned Node and what points at it', () => {
  it('should find the pinned Node 24 of the checkout', () => {
    const bin = findPinnedNode(ROOT)
    expect(bin).to.be.a('string')
    expect(nodeMajor(spawnSync(bin ?? '', ['-p', 'process.versions.node'], { encoding: 'utf8' }).stdout.trim())).to.be.at.least(MIN_NODE_MAJOR)
    expect(nodeMajor('20.20.2')).to.equal(20)
    expect(nodeMajor('v')).to.equal(0)
  })

  it('should keep the bin entry, the start script, the unit and the install script on the entry that checks the Node', async () => {
    const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string>, scripts: Record<string, string> }
    expect(pkg.bin.mindoodb).to.equal('dist/src/cli/main.js')
    expect(pkg.scripts.start).to.include('dist/src/cli/main.js daemon')
    expect(await readFile(join(ROOT, 'systemd', 'mindoodb@.service'), 'utf8')).to.include('/opt/mindoodb/node_modules/.bin/node /opt/mindoodb/dist/src/cli/main.js daemon')
    expect(await readFile(join(ROOT, 'scripts', 'install-service.sh'), 'utf8')).to.include('readonly ENTRY=dist/src/cli/main.js')
    const main = await readFile(CLI, 'utf8')
    expect(main.startsWith('#!/usr/bin/env node\n')).to.equal(true)
    // nothing but the launcher is imported before the version check
    expect(main.match(/^import .*$/gm)).to.deep.equal(["import { cannotLoad, launch } from './launch.js';"])
    const readme = await readFile(join(ROOT, 'README.md'), 'utf8')
    expect(readme).to.include('npx mindoodb')
    expect(readme).to.include('node dist/src/cli/main.js')
  })
})

describe('first contact: a machine where libsodium does not load', function () {
  this.timeout(90_000)
  let dir: string

  beforeEach(async () => { dir = await tempDir('mindoodb-no-sodium-') })
  afterEach(async () => { await removeDir(dir) })

  it('should print one sentence naming libsodium and the platform, and exit with the unsupported code', async () => {
    // a copy of the package whose sodium-native fails to load as it does on a platform without its binary
    const pkg = join(dir, 'pkg')
    await cp(join(ROOT, 'dist'), join(pkg, 'dist'), { recursive: true })
    await mkdir(join(pkg, 'node_modules'))
    for (const name of await readdir(join(ROOT, 'node_modules'))) {
      if (name !== 'sodium-native' && name !== '.bin') await symlink(join(ROOT, 'node_modules', name), join(pkg, 'node_modules', name))
    }
    const stub = join(pkg, 'node_modules', 'sodium-native')
    await mkdir(stub)
    await writeFile(join(stub, 'package.json'), JSON.stringify({ name: 'sodium-native', version: '0.0.0', main: 'index.js' }))
    await writeFile(join(stub, 'index.js'), "throw new Error('No native build was found for platform=plan9 arch=mips\\nmore detail')\n")
    for (const args of [['--help'], ['daemon']]) {
      const r = await run(process.execPath, [join(pkg, 'dist', 'src', 'cli', 'main.js'), ...args])
      expect(r.code, r.stderr).to.equal(UNSUPPORTED_NODE_EXIT)
      expect(r.stdout).to.equal('')
      const lines = r.stderr.trim().split('\n')
      expect(lines, r.stderr).to.have.length(1)
      expect(lines[0]).to.match(/^mindoodb: libsodium \(the sodium-native package\) does not load on \w+-\w+/)
      expect(lines[0]).to.include('No native build was found for platform=plan9 arch=mips')
      expect(r.stderr).to.not.match(/\n\s+at /)
    }
  })
})
