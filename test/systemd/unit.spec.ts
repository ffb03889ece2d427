/**
 * The systemd template unit and the install script.
 *
 * systemd-analyze (Debian's `systemd` package) checks the unit without a running systemd: every check works on a
 * throw-away root (`--root`) that holds the unit, the system's own units and the programs the unit runs, so nothing
 * on this machine is touched. The install script is run against such a root with `--root`.
 */
import { expect } from 'chai'
import { spawnSync, type SpawnSyncReturns } from 'node:child_process'
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const REPO = fileURLToPath(new URL('../../../', import.meta.url))
const UNIT_NAME = 'mindoodb@.service'
const UNIT_FILE = join(REPO, 'systemd', UNIT_NAME)
const INSTANCE = 'mindoodb@acme.service'
const INSTALL_SCRIPT = join(REPO, 'scripts', 'install-service.sh')
const APP = '/opt/mindoodb'
const NODE = `${APP}/node_modules/.bin/node`
/** `systemd-analyze security` rates this unit 1.3 (systemd 252); anything above 2.0 means hardening was lost. */
const MAX_EXPOSURE = 2.0
/**
 * What the unit is allowed to leave open, each for a reason (systemd/README.md): it is a network daemon
 * (PrivateNetwork, IP allow list, INET/UNIX/NETLINK sockets), runs V8's JIT (MemoryDenyWriteExecute), reports
 * readiness from a child process (NotifyAccess=all), and ProtectClock= itself adds read access to the RTC.
 */
const ACCEPTED_EXPOSURES = [
  'PrivateNetwork=',
  'IPAddressDeny=',
  'RestrictAddressFamilies=~AF_(INET|INET6)',
  'RestrictAddressFamilies=~AF_UNIX',
  'RestrictAddressFamilies=~AF_NETLINK',
  'MemoryDenyWriteExecute=',
  'NotifyAccess=',
  'RootDirectory=/RootImage=',
  'DeviceAllow='
]

function run (cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): SpawnSyncReturns<string> {
  const result = spawnSync(cmd, args, { encoding: 'utf8', env: { ...process.env, SYSTEMD_COLORS: '0', ...env }, maxBuffer: 64 * 1024 * 1024 })
  if (result.error !== undefined) throw result.error
  return result
}

function hasSystemdAnalyze (): boolean {
  const probe = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' })
  return probe.error === undefined && probe.status === 0
}

const SKIP_MESSAGE = 'systemd-analyze is not installed (Debian: apt-get install systemd); skipping the systemd unit checks'

/**
 * Makes `root` good for `systemd-analyze --root`: the system's own units (the unit refers to network-online.target,
 * multi-user.target and, through its defaults, sysinit.target), /bin/kill for ExecReload=, and a stand-in for the
 * pinned Node unless the package is installed there, and `unit` as the installed template unit when given. Links
 * to the real files can't be used: systemd resolves them inside the root.
 */
function prepareAnalyzeRoot (root: string, unit?: string): void {
  const systemUnits = ['/usr/lib/systemd/system', '/lib/systemd/system'].find((dir) => existsSync(join(dir, 'sysinit.target')))
  if (systemUnits === undefined) throw new Error('found no system units (sysinit.target) next to systemd-analyze')
  mkdirSync(join(root, 'usr/lib/systemd'), { recursive: true })
  cpSync(systemUnits, join(root, 'usr/lib/systemd/system'), { recursive: true, dereference: false })
  mkdirSync(join(root, 'usr/bin'), { recursive: true })
  if (!existsSync(join(root, 'bin'))) symlinkSync('usr/bin', join(root, 'bin'))
  stub(join(root, 'usr/bin/kill'))
  if (!existsSync(join(root, NODE))) stub(join(root, NODE))
  if (unit !== undefined) installUnit(root, unit)
}

function installUnit (root: string, unit: string): void {
  mkdirSync(join(root, 'etc/systemd/system'), { recursive: true })
  writeFileSync(join(root, 'etc/systemd/system', UNIT_NAME), readFileSync(unit))
}

function stub (path: string): void {
  mkdirSync(join(path, '..'), { recursive: true })
  writeFileSync(path, '#!/bin/sh\nexit 0\n')
  chmodSync(path, 0o755)
}

/** systemd-analyze verify on the instance mindoodb@acme; returns its exit code and every line it printed. */
function verify (root: string): { status: number | null, lines: string[] } {
  const result = run('systemd-analyze', ['verify', `--root=${root}`, '--man=no', INSTANCE])
  const lines = (result.stdout + result.stderr).split('\n').filter((line) => line.trim() !== '')
  return { status: result.status, lines }
}

/** Lines that are about our unit (systemd names the unit, the instance or the unit file's path). */
function aboutUnit (lines: string[]): string[] {
  return lines.filter((line) => line.includes('mindoodb'))
}

function tempRoot (prefix: string): string {
  return mkdtempSync(join(tmpdir(), `mindoodb-${prefix}-`))
}

describe('systemd unit mindoodb@.service', function () {
  let root: string

  before(function () {
    if (!hasSystemdAnalyze()) {
      console.log(`      ${SKIP_MESSAGE}`)
      this.skip()
    }
  })

  beforeEach(() => {
    root = tempRoot('unit')
    prepareAnalyzeRoot(root, UNIT_FILE)
  })

  afterEach(() => {
    if (root !== undefined) rmSync(root, { recursive: true, force: true })
  })

  it('should pass systemd-analyze verify as an instance, with no warnings about the unit', () => {
    const { status, lines } = verify(root)
    const others = lines.filter((line) => !line.includes('mindoodb'))
    if (others.length > 0) console.log(`      systemd-analyze verify, about other units:\n${others.join('\n')}`)
    expect(aboutUnit(lines), 'systemd-analyze verify warnings about the unit').to.deep.equal([])
    expect(status, 'systemd-analyze verify exit code').to.equal(0)
  })

  it('should see a verify warning or error when the unit is broken (so the check above can fail)', () => {
    // A misspelled key is only a warning (exit 0): the check must read the output, not just the exit code.
    const broken = join(root, 'broken.service')
    writeFileSync(broken, readFileSync(UNIT_FILE, 'utf8').replace('LockPersonality=yes', 'LockPersonalty=yes'))
    installUnit(root, broken)
    const misspelled = verify(root)
    expect(misspelled.status).to.equal(0)
    expect(aboutUnit(misspelled.lines).join('\n')).to.include("Unknown key 'LockPersonalty'")

    // A program that isn't there is an error.
    installUnit(root, UNIT_FILE)
    rmSync(join(root, NODE))
    const missing = verify(root)
    expect(missing.status).to.not.equal(0)
    expect(aboutUnit(missing.lines).join('\n')).to.include(`${NODE} is not executable`)
  })

  it(`should rate at most ${MAX_EXPOSURE} ("OK") in systemd-analyze security --offline, open only where it must be`, () => {
    const result = run('systemd-analyze', ['security', '--offline=true', `--root=${root}`, `--threshold=${MAX_EXPOSURE * 10}`, INSTANCE])
    const overall = /Overall exposure level for mindoodb@acme\.service: ([0-9.]+) (\S+)/.exec(result.stdout)
    expect(overall, `no overall exposure level in:\n${result.stdout}${result.stderr}`).to.not.equal(null)
    const score = Number(overall?.[1])
    console.log(`      systemd-analyze security: exposure ${score} ${overall?.[2]}`)
    expect(result.status, `exit code with --threshold=${MAX_EXPOSURE * 10}:\n${result.stderr}`).to.equal(0)
    expect(score).to.be.at.most(MAX_EXPOSURE)

    const open = result.stdout.split('\n')
      .filter((line) => line.startsWith('✗'))
      .map((line) => line.slice(1).trim().split(/\s+/)[0])
    expect(open.filter((name) => !ACCEPTED_EXPOSURES.includes(name)), 'settings left open without a reason').to.deep.equal([])
  })
})

describe('systemd unit mindoodb@.service: what the daemon relies on', () => {
  const unit = readFileSync(UNIT_FILE, 'utf8')
  const settings = (key: string): string[] => unit.split('\n')
    .filter((line) => line.startsWith(`${key}=`))
    .map((line) => line.slice(key.length + 1))

  it('should run the package\'s CLI entry with the pinned Node, on the instance\'s config', () => {
    const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { bin: Record<string, string> }
    expect(settings('ExecStart')).to.deep.equal([`${NODE} ${APP}/${pkg.bin.mindoodb} daemon --config /etc/mindoodb/%i.json`])
    expect(readFileSync(INSTALL_SCRIPT, 'utf8')).to.include(`readonly ENTRY=${pkg.bin.mindoodb}\n`)
  })

  it('should take readiness from the daemon\'s systemd-notify child and reload on SIGHUP', () => {
    expect(settings('Type')).to.deep.equal(['notify'])
    expect(settings('NotifyAccess')).to.deep.equal(['all'])
    expect(settings('ExecReload')).to.deep.equal(['/bin/kill -HUP $MAINPID'])
  })

  it('should allow netlink sockets (os.networkInterfaces) and leave V8\'s JIT its writable code', () => {
    expect(settings('RestrictAddressFamilies')).to.deep.equal(['AF_UNIX AF_INET AF_INET6 AF_NETLINK'])
    expect(settings('MemoryDenyWriteExecute')).to.deep.equal([])
  })

  it('should put data, socket and config where the install script and the docs say', () => {
    expect(settings('User')).to.deep.equal(['mindoodb'])
    expect(settings('StateDirectory')).to.deep.equal(['mindoodb/%i'])
    expect(settings('RuntimeDirectory')).to.deep.equal(['mindoodb/%i'])
    expect(settings('RuntimeDirectoryMode')).to.deep.equal(['0750'])
    expect(settings('ConfigurationDirectory')).to.deep.equal(['mindoodb'])
  })
})

describe('scripts/install-service.sh --root', function () {
  // npm ci --omit=dev of the package (from npm's cache after the project's own npm ci) takes 10-20 s.
  this.timeout(300_000)
  let root: string
  let first: SpawnSyncReturns<string>

  before(function () {
    root = tempRoot('install')
    first = run('bash', [INSTALL_SCRIPT, '--root', root, '--no-build'])
    if (first.status !== 0) console.log(first.stdout, first.stderr)
  })

  after(() => {
    if (root !== undefined) rmSync(root, { recursive: true, force: true })
  })

  it('should install the package with its production dependencies and the pinned Node 24 in /opt/mindoodb', () => {
    expect(first.status, first.stderr).to.equal(0)
    const app = join(root, APP)
    const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { bin: Record<string, string> }
    for (const file of [pkg.bin.mindoodb, 'package.json', 'package-lock.json', 'config/mindoodb.schema.json', 'systemd/README.md']) {
      expect(existsSync(join(app, file)), file).to.equal(true)
    }
    expect(run(join(root, NODE), ['--version']).stdout).to.match(/^v24\./)
    // no dev dependencies, no sources or tests
    for (const absent of ['node_modules/typescript', 'node_modules/mocha', 'src', 'test', 'dist/test']) {
      expect(existsSync(join(app, absent)), absent).to.equal(false)
    }
    // the CLI loads from the installed tree alone
    const help = run(join(root, NODE), [join(app, pkg.bin.mindoodb), '--help'])
    expect(help.status, help.stderr).to.equal(0)
    expect(help.stdout).to.include('daemon')
  })

  it('should install the CLI wrapper, the config directory and the unit, naming the final paths', () => {
    const wrapper = join(root, 'usr/local/bin/mindoodb')
    expect(statSync(wrapper).mode & 0o777).to.equal(0o755)
    const text = readFileSync(wrapper, 'utf8')
    expect(text).to.match(/^#!\/bin\/sh\n/)
    expect(text).to.include(`exec ${NODE} ${APP}/dist/src/cli/main.js "$@"`)
    expect(text).to.not.include(root)

    expect(statSync(join(root, 'etc/mindoodb')).mode & 0o777).to.equal(0o750)
    expect(readFileSync(join(root, 'etc/systemd/system', UNIT_NAME), 'utf8')).to.equal(readFileSync(UNIT_FILE, 'utf8'))
    expect(first.stdout).to.include('systemctl enable --now mindoodb@acme')
    // a staged install creates no user and runs no systemctl, and leaves no staging directories behind
    expect(first.stdout).to.not.match(/creating system (user|group)/)
    expect(readdirSync(join(root, 'opt'))).to.deep.equal(['mindoodb'])
  })

  it('should be idempotent: a second run keeps the installed dependencies and the layout', () => {
    const nodeBinary = join(root, APP, 'node_modules/node/bin/node')
    const before = statSync(nodeBinary).ino
    writeFileSync(join(root, 'etc/mindoodb/acme.json'), '{}\n')
    const second = run('bash', [INSTALL_SCRIPT, '--root', root, '--no-build'])
    expect(second.status, second.stderr).to.equal(0)
    expect(second.stdout).to.include('dependencies unchanged')
    expect(statSync(nodeBinary).ino, 'node_modules is hard-linked, not reinstalled').to.equal(before)
    expect(readFileSync(join(root, 'etc/mindoodb/acme.json'), 'utf8'), 'configs are kept').to.equal('{}\n')
    expect(statSync(join(root, 'etc/mindoodb')).mode & 0o777).to.equal(0o750)
    expect(existsSync(join(root, 'usr/local/bin/mindoodb'))).to.equal(true)
  })

  it('should reject an unknown option with its usage', () => {
    const result = run('bash', [INSTALL_SCRIPT, '--root', root, '--frobnicate'])
    expect(result.status).to.not.equal(0)
    expect(result.stderr).to.include('unknown option: --frobnicate')
    expect(result.stderr).to.include('Usage:')
  })

  it('should install a unit that systemd-analyze verify accepts with the real pinned Node', function () {
    if (!hasSystemdAnalyze()) {
      console.log(`      ${SKIP_MESSAGE}`)
      this.skip()
    }
    prepareAnalyzeRoot(root) // keeps the unit and the Node that the script installed
    const { status, lines } = verify(root)
    expect(aboutUnit(lines)).to.deep.equal([])
    expect(status).to.equal(0)
  })
})
