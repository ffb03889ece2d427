import { expect } from 'chai'
import { readFile } from 'node:fs/promises'
import { ERROR_CODES, MindooError } from '../src/index.js'

describe('error codes', () => {
  it('should give every error class a distinct upper-case code', () => {
    const codes = Object.keys(ERROR_CODES)
    expect(codes.length).to.be.greaterThan(20)
    for (const [code, cls] of Object.entries(ERROR_CODES)) {
      expect(code).to.match(/^[A-Z][A-Z_]+$/)
      expect(cls.code).to.equal(code)
      expect(cls.prototype).to.be.instanceOf(MindooError)
    }
  })

  it('should document every code in the README', async () => {
    const readme = await readFile(new URL('../../README.md', import.meta.url), 'utf8')
    const missing = Object.keys(ERROR_CODES).filter((code) => !readme.includes('`' + code + '`'))
    expect(missing).to.deep.equal([])
  })
})
