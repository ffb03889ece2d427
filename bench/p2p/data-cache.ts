/**
 * A's data directories for the cold scenarios: built once through the library and kept under the system's temp
 * directory, keyed by the scenario and the code's format, so later runs copy them instead of building again.
 */
import { cp, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { now } from './common.js'

export interface CachedData<M> {
  /** A copy of the data for this run (its `a/` directory). */
  dir: string
  meta: M
  fromCache: boolean
  copyMs: number
}

export interface CachedDataSpec {
  /** Names this scenario's caches; older caches with the same prefix are removed when a new one is made. */
  prefix: string
  /** Completes the prefix to the cache's name (e.g. a hash of the code's format). */
  key: string
  /** Where this run's copy goes. */
  dir: string
  useCache: boolean
  /** Where to build when not caching. */
  scratch: string
}

/** The cached data when there is some, else `build(buildDir)` writes `buildDir/a` and returns its meta. */
export async function cachedData<M> (spec: CachedDataSpec, build: (buildDir: string) => Promise<M>): Promise<CachedData<M>> {
  const cacheDir = join(tmpdir(), spec.prefix + spec.key)
  const { dir } = spec
  if (spec.useCache) {
    try {
      const meta = JSON.parse(await readFile(join(cacheDir, 'meta.json'), 'utf8')) as M
      const started = now()
      await cp(join(cacheDir, 'a'), dir, { recursive: true })
      return { dir, meta, fromCache: true, copyMs: Math.round(now() - started) }
    } catch {
      // not cached yet
    }
  }
  const buildDir = spec.useCache ? `${cacheDir}.building-${process.pid}` : spec.scratch
  await rm(buildDir, { recursive: true, force: true })
  const meta = await build(buildDir)
  await writeFile(join(buildDir, 'meta.json'), JSON.stringify(meta))
  if (!spec.useCache) {
    await rename(join(buildDir, 'a'), dir)
    return { dir, meta, fromCache: false, copyMs: 0 }
  }
  // one cache per scenario: those built by older code go
  for (const name of await readdir(tmpdir())) {
    if (name.startsWith(spec.prefix) && join(tmpdir(), name) !== buildDir) await rm(join(tmpdir(), name), { recursive: true, force: true })
  }
  await rename(buildDir, cacheDir)
  const copyStart = now()
  await cp(join(cacheDir, 'a'), dir, { recursive: true })
  return { dir, meta, fromCache: false, copyMs: Math.round(now() - copyStart) }
}
