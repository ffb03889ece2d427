/** The same-run bounds the scenarios are measured against. */
import * as Automerge from '@automerge/automerge'
import { createDecipheriv, createHash, createPublicKey, createSecretKey, verify as edVerify } from 'node:crypto'
import { join } from 'node:path'
import { Level } from 'level'
import { encodeChange, encodeSignedPart, payloadAad, sha256, type DocData, type StoreChange } from '../../src/index.js'
import { gc } from '../util.js'
import { DER_PREFIX, now, round } from './common.js'

/**
 * The primitive bound of one received change, on the bare primitives in this process, one core:
 * Ed25519 verify + SHA-256 of the change bytes + a LevelDB batched put (batches of `batch`, as one want's answer)
 * + AES-256-GCM decrypt + Automerge applyChanges (and, separately, Automerge save of the resulting document).
 */
export async function primitiveBound (changes: StoreChange[], key: Uint8Array, dir: string, batch: number): Promise<Record<string, number>> {
  const n = changes.length
  const signed = changes.map((c) => encodeSignedPart(c, sha256(c.payload)))
  const bytes = changes.map((c) => encodeChange(c))
  const publicKey = createPublicKey({ key: Buffer.concat([DER_PREFIX, Buffer.from(changes[0].author, 'base64url')]), format: 'der', type: 'spki' })
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
  for (let i = 0; i < Math.min(200, n); i++) edVerify(null, signed[i], publicKey, changes[i].signature)

  const verifyUs = await time(() => {
    for (let i = 0; i < n; i++) if (!edVerify(null, signed[i], publicKey, changes[i].signature)) throw new Error('bad signature')
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
  const boundUs = verifyUs + sha256Us + levelUs + decryptUs + applyUs
  return {
    sample: n,
    verifyUs: round(verifyUs, 2),
    sha256Us: round(sha256Us, 2),
    levelBatchedPutUs: round(levelUs, 2),
    aesGcmDecryptUs: round(decryptUs, 2),
    automergeApplyUs: round(applyUs, 2),
    automergeSaveUs: round(saveUs, 2),
    boundUs: round(boundUs, 2),
    boundPerSec: Math.round(1e6 / boundUs),
    boundWithSaveUs: round(boundUs + saveUs, 2),
    boundWithSavePerSec: Math.round(1e6 / (boundUs + saveUs))
  }
}

