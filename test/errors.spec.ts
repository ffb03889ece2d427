import { expect } from 'chai'
import { readFile } from 'node:fs/promises'
import * as cli from '../src/cli/index.js'
import * as daemonConfig from '../src/daemon/config.js'
import * as rpcClient from '../src/daemon/rpc-client.js'
import * as rpcMethods from '../src/daemon/rpc-methods.js'
import * as syncCommand from '../src/cli/commands/sync.js'
import * as library from '../src/index.js'
import { ERROR_CODES, errorTable, MindooError } from '../src/index.js'

/** Every class a module exports that extends MindooError. */
function errorClasses (...modules: Array<Record<string, unknown>>): Array<typeof MindooError> {
  const found = new Set<typeof MindooError>()
  for (const m of modules) {
    for (const value of Object.values(m)) {
      if (typeof value === 'function' && value.prototype instanceof MindooError) found.add(value as typeof MindooError)
    }
  }
  return [...found]
}

/** The codes in the first column of the README's error table (rows of the "## Errors" section). */
async function documentedCodes (): Promise<Set<string>> {
  const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8')
  const section = readme.slice(readme.indexOf('\n## Errors'), readme.indexOf('\n## ', readme.indexOf('\n## Errors') + 1))
  const codes = new Set<string>()
  for (const line of section.split('\n')) {
    if (!line.startsWith('| `')) continue
    for (const m of line.split('|')[1].matchAll(/`([A-Z_]+)`/g)) codes.add(m[1])
  }
  return codes
}

describe('error codes', () => {
  it('should give every error class a distinct upper-case code', () => {
    const codes = Object.keys(ERROR_CODES)
    expect(codes.length).to.be.greaterThan(30)
    for (const [code, cls] of Object.entries(ERROR_CODES)) {
      expect(code).to.match(/^[A-Z][A-Z_]+$/)
      expect(cls.code).to.equal(code)
      expect(cls.prototype).to.be.instanceOf(MindooError)
    }
  })

  it('should refuse a table in which two classes share a code', () => {
    class First extends MindooError { static override readonly code: string = 'SAME' }
    class Second extends MindooError { static override readonly code: string = 'SAME' }
    expect(() => errorTable([First, Second])).to.throw(TypeError, /SAME/)
    // a subclass that forgets its own code inherits its parent's: the same mistake
    class Child extends library.DocumentNotFoundError {}
    expect(() => errorTable([library.DocumentNotFoundError, Child])).to.throw(TypeError, /DOCUMENT_NOT_FOUND/)
    expect(Object.keys(errorTable([First]))).to.deep.equal(['SAME'])
  })

  it('should list every exported error class of the library, the daemon and the CLI in the table', () => {
    const classes = errorClasses(library, daemonConfig, rpcClient, rpcMethods, cli, syncCommand)
    expect(classes.length).to.be.greaterThan(30)
    const missing = classes.filter((c) => ERROR_CODES[c.code] !== c).map((c) => `${c.name} (${c.code})`)
    expect(missing).to.deep.equal([])
  })

  it('should document every code in the README\'s error table, and no code that does not exist', async () => {
    const documented = await documentedCodes()
    const missing = Object.keys(ERROR_CODES).filter((code) => !documented.has(code))
    expect(missing).to.deep.equal([])
    const unknown = [...documented].filter((code) => ERROR_CODES[code] === undefined)
    expect(unknown).to.deep.equal([])
  })
})
