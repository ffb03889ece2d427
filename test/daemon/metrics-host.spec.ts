/**
 * The metrics endpoint of a real daemon against DNS rebinding: a web page whose name resolves to 127.0.0.1 makes the
 * browser send `Host: evil.example:<port>`; such a request gets 421 and an empty body. The loopback names with the
 * right port are served, and so is a request with the RPC bearer token whatever its Host; a wrong token gets 403.
 */
import { expect } from 'chai'
import { writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { metricsAccess } from '../../src/daemon/metrics.js'
import { getMetrics } from '../utils/http.js'
import { killAll, startDaemon, testConfig, writeJson, type DaemonProcess } from '../utils/daemon-proc.js'
import { removeDir, tempDir } from '../utils/tmp.js'

const TOKEN = 'metrics-test-token-0123456789abcdef'

describe('daemon: /metrics and the Host header', function () {
  this.timeout(60_000)
  let dir: string
  let d: DaemonProcess
  let port: number

  before(async () => {
    dir = await tempDir('mindoodb-metrics-host-')
    const tokenFile = join(dir, 'token')
    await writeFile(tokenFile, TOKEN + '\n', { mode: 0o600 })
    d = await startDaemon(await writeJson(join(dir, 'a.json'), testConfig(dir, 'alpha', { metrics: { port: 0 }, rpc: { http: { port: 0, tokenFile } } })))
    port = d.ready.metricsPort as number
  })

  after(async () => {
    await d?.dispose()
    await killAll()
    await removeDir(dir)
  })

  it('should give a rebinding page (Host: evil.example) nothing', async () => {
    for (const host of [`evil.example:${port}`, 'evil.example', `127.0.0.1.evil.example:${port}`, `localhost:${port + 1}`, '127.0.0.1', '']) {
      const res = await getMetrics(port, host === '' ? {} : { host })
      // without a Host header at all Node's HTTP server answers 400 before the handler: nothing served either
      expect(res.status, host).to.equal(host === '' ? 400 : 421)
      expect(res.body, host).to.equal('')
    }
  })

  it('should serve the loopback names with the right port, and any Host with the RPC token', async () => {
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `LOCALHOST:${port}`, `[::1]:${port}`]) {
      const res = await getMetrics(port, { host })
      expect(res.status, host).to.equal(200)
      expect(res.body, host).to.include('mindoodb_process_')
    }
    const withToken = await getMetrics(port, { host: `evil.example:${port}`, authorization: `Bearer ${TOKEN}` })
    expect(withToken.status).to.equal(200)
    expect(withToken.body).to.include('mindoodb_')
    const wrong = await getMetrics(port, { host: `127.0.0.1:${port}`, authorization: 'Bearer not-the-token' })
    expect(wrong.status).to.equal(403)
    expect(wrong.body).to.equal('')
  })

  it('should refuse any token when none is configured', () => {
    expect(metricsAccess({ headers: { host: 'localhost:9', authorization: 'Bearer ' } }, 9)).to.equal('bad-token')
    expect(metricsAccess({ headers: { host: 'localhost:9' } }, 9)).to.equal('ok')
    expect(metricsAccess({ headers: { host: 'localhost' } }, 80)).to.equal('ok')
  })
})
