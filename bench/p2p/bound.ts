/** The same-run bounds the scenarios are measured against. */
import * as Automerge from '@automerge/automerge'
import { createDecipheriv, createHash, createSecretKey } from 'node:crypto'
import { availableParallelism } from 'node:os'
import { join } from 'node:path'
import { Worker } from 'node:worker_threads'
import { Level } from 'level'
import sodium from 'sodium-native'
import { encodeChange, encodeSignedPart, payloadAad, sha256, type DocData, type StoreChange } from '../../src/index.js'
import { gc } from '../util.js'
import { now, round } from './common.js'

/**
 * The primitive bound of one received change, on the bare primitives in this process, one core:
 * Ed25519 verify (libsodium's, as the project checks) + SHA-256 of the change bytes + a LevelDB batched put
 * (batches of `batch`, as one want's answer) + AES-256-GCM decrypt + Automerge applyChanges (and, separately,
 * Automerge save of the resulting document).
 * With `automerge: false` (changes that are not each a whole document) the Automerge steps are left out: the bound
 * is then verify + hash + put + decrypt, what a receiver pays before any document is materialised.
 */
export async function primitiveBound (changes: StoreChange[], key: Uint8Array, dir: string, batch: number,
  options: { automerge?: boolean } = {}): Promise<Record<string, number>> {
  const n = changes.length
  const signed = changes.map((c) => encodeSignedPart(c, sha256(c.payload)))
  const bytes = changes.map((c) => encodeChange(c))
  const publicKey = Buffer.from(changes[0].author, 'base64url')
  /** Microseconds per change, the best of `repeats` passes (a bound: the least the primitive costs here). */
  const time = async (fn: () => unknown, repeats = 3): Promise<number> => {
    let best = Infinity
    for (let r = 0; r < repeats; r++) {
      gc()
      const started = now()
      await fn()
      best = Math.min(best, (now() - started) * 1000 / n)
    }
    return best
  }
  // a warm-up pass over a few, so the first timed loop does not pay for JIT and lazy initialisation
  for (let i = 0; i < Math.min(200, n); i++) sodium.crypto_sign_verify_detached(changes[i].signature, signed[i], publicKey)

  const verifyUs = await time(() => {
    for (let i = 0; i < n; i++) if (!sodium.crypto_sign_verify_detached(changes[i].signature, signed[i], publicKey)) throw new Error('bad signature')
  })
  const sha256Us = await time(() => {
    for (let i = 0; i < n; i++) createHash('sha256').update(bytes[i]).digest()
  })
  let pass = 0
  const levelUs = await time(async () => {
    // a fresh database per pass: each pass writes new keys, as a receiver does
    const level = new Level<string, Uint8Array>(join(dir, `bound-level-${pass++}`), { valueEncoding: 'view' })
    await level.open()
    for (let i = 0; i < n; i += batch) {
      const ops = []
      for (let j = i; j < Math.min(n, i + batch); j++) ops.push({ type: 'put' as const, key: `c!${changes[j].hash}`, value: bytes[j] })
      await level.batch(ops)
    }
    await level.close()
  })
  const keyObject = createSecretKey(key) // imported once: the cheapest way to call the primitive
  const decryptOne = (c: StoreChange): Buffer => {
    const p = c.payload
    const decipher = createDecipheriv('aes-256-gcm', keyObject, p.subarray(0, 12))
    decipher.setAAD(payloadAad(c))
    decipher.setAuthTag(p.subarray(p.length - 16))
    return Buffer.concat([decipher.update(p.subarray(12, p.length - 16)), decipher.final()])
  }
  const plaintexts: Buffer[] = new Array(n)
  const decryptUs = await time(() => {
    for (let i = 0; i < n; i++) plaintexts[i] = decryptOne(changes[i])
  })
  const receiveUs = verifyUs + sha256Us + levelUs + decryptUs
  const parts = {
    sample: n,
    verifyUs: round(verifyUs, 2),
    sha256Us: round(sha256Us, 2),
    levelBatchedPutUs: round(levelUs, 2),
    aesGcmDecryptUs: round(decryptUs, 2)
  }
  if (options.automerge === false) return { ...parts, boundUs: round(receiveUs, 2), boundPerSec: Math.round(1e6 / receiveUs) }
  // Automerge (wasm) is slow until V8 has tiered its code up: warm it up, then time apply and save of each
  // document, freeing it as the materialiser would once it left its cache
  const applySave = (): { apply: number, save: number } => {
    let apply = 0
    let save = 0
    for (let i = 0; i < n; i++) {
      const t0 = now()
      const doc = Automerge.applyChanges(Automerge.init<DocData>(), [plaintexts[i]])[0]
      const t1 = now()
      Automerge.save(doc)
      save += now() - t1
      apply += t1 - t0
      Automerge.free(doc)
    }
    return { apply: apply * 1000 / n, save: save * 1000 / n }
  }
  applySave()
  let applyUs = Infinity
  let saveUs = Infinity
  for (let r = 0; r < 3; r++) {
    gc()
    const t = applySave()
    applyUs = Math.min(applyUs, t.apply)
    saveUs = Math.min(saveUs, t.save)
  }
  const boundUs = receiveUs + applyUs
  return {
    ...parts,
    automergeApplyUs: round(applyUs, 2),
    automergeSaveUs: round(saveUs, 2),
    boundUs: round(boundUs, 2),
    boundPerSec: Math.round(1e6 / boundUs),
    boundWithSaveUs: round(boundUs + saveUs, 2),
    boundWithSavePerSec: Math.round(1e6 / (boundUs + saveUs))
  }
}


/**
 * The Automerge bound on every core: each document's changes (decrypted, in dependency order, concatenated) loaded
 * with one `Automerge.load` and turned into JSON, in `threads` worker threads at once (default: one per core), each
 * over its own slice of the documents. Reported: documents/s of each thread, and of all threads together (all
 * documents over the time from `go` until the last thread is done). Each thread warms up on `warmup` documents
 * first, untimed.
 */
export async function automergeBound (docs: Uint8Array[], options: { threads?: number, warmup?: number } = {}): Promise<{
  threads: number, docs: number, perThreadDocsPerSec: number[], perThreadMeanDocsPerSec: number, allCoresDocsPerSec: number, allCoresMs: number
}> {
  const threads = Math.max(1, Math.min(options.threads ?? availableParallelism(), docs.length))
  const warmup = options.warmup ?? 300
  const slices: Uint8Array[][] = Array.from({ length: threads }, () => [])
  docs.forEach((d, i) => slices[i % threads].push(d))
  const workers = slices.map((slice) => new Worker(new URL('./automerge-worker.js', import.meta.url), { workerData: { docs: slice, warmup } }))
  interface Done { type: 'done', docs: number, ms: number, chars: number, endedAt: number }
  const message = async <T>(w: Worker, type: string): Promise<T> => await new Promise<T>((resolve, reject) => {
    const onMessage = (m: { type: string }): void => {
      if (m.type !== type) return
      w.off('message', onMessage)
      w.off('error', reject)
      resolve(m as T)
    }
    w.on('message', onMessage)
    w.once('error', reject)
  })
  try {
    await Promise.all(workers.map(async (w) => await message(w, 'ready')))
    const done = workers.map(async (w) => await message<Done>(w, 'done'))
    const go = performance.timeOrigin + performance.now()
    for (const w of workers) w.postMessage('go')
    const results = await Promise.all(done)
    const allMs = Math.max(...results.map((r) => r.endedAt)) - go
    const perThread = results.map((r) => Math.round(r.docs / (r.ms / 1000)))
    return {
      threads,
      docs: docs.length,
      perThreadDocsPerSec: perThread,
      perThreadMeanDocsPerSec: Math.round(perThread.reduce((s, x) => s + x, 0) / threads),
      allCoresDocsPerSec: Math.round(docs.length / (allMs / 1000)),
      allCoresMs: Math.round(allMs)
    }
  } finally {
    await Promise.all(workers.map(async (w) => await w.terminate()))
  }
}
