/**
 * Hand-crafted, validly signed changes for adversary tests: what a malicious partner can make with its own
 * signing key and the keys it holds, bypassing every check its own node would apply. And a raw-peer helper that
 * pushes such changes into a node over the real sync protocol.
 */
import * as Automerge from '@automerge/automerge'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { expect } from 'chai'
import { encrypt, Signer, unwrapKey } from '../../src/crypto/index.js'
import {
  encodeChange, newDocId, payloadAad, signChange, type ChangeHash, type ChangeHeader, type ChangeKind, type DocId,
  type StoreChange
} from '../../src/store/change.js'
import type { RawPeer } from './raw-peer.js'

/** The signing key of a test organisation's tenant, read from its key file (tests keep keys unencrypted). */
export async function tenantSigner (org: { dataDir: string, name: string }): Promise<Signer> {
  const file = JSON.parse(await readFile(join(org.dataDir, 'tenants', org.name, 'tenant.json'), 'utf8')) as
    { secrets: { protection: string, data: { signingPrivateKey: string } } }
  expect(file.secrets.protection).to.equal('none')
  return new Signer(Buffer.from(file.secrets.data.signingPrivateKey, 'base64'))
}

/** The newest version of a wrapped named key (what a holder of the blob and its password has). */
export async function keyBytes (blob: string, password: string): Promise<Uint8Array> {
  const material = await unwrapKey(blob, password)
  return material.subarray(material.length - 32)
}

/** An Automerge change setting `fields` on a document (as a later change: its own actor, no deps on the doc). */
export function automergeChange (fields: Record<string, unknown>): Uint8Array {
  const am = Automerge.change(Automerge.init<Record<string, unknown>>(), (d) => { Object.assign(d, fields) })
  return Automerge.getLastLocalChange(am) as Uint8Array
}

export interface ForgeOptions {
  kind?: ChangeKind
  /** Default: a new document created by the signer under `keyId`. */
  docId?: DocId
  keyId: string
  deps?: ChangeHash[]
  time?: number
  /** Encrypts `plaintext` under this key, with the header as associated data (unless `payload` is given). */
  key?: Uint8Array
  /** Default: an empty Automerge change (what createDocument writes). */
  plaintext?: Uint8Array
  /** The payload bytes as they are (e.g. lifted from another change). */
  payload?: Uint8Array
  /** Encrypt with these header fields as associated data instead of the change's own. */
  aadOf?: Pick<ChangeHeader, 'kind' | 'docId' | 'keyId' | 'author'>
}

let clock = Date.now()

/** A change signed by `signer` with whatever header the attacker chooses. */
export function forgeChange (signer: Signer, o: ForgeOptions): StoreChange {
  const header: ChangeHeader = {
    kind: o.kind ?? 'change',
    docId: o.docId ?? newDocId(signer.publicKey, o.keyId),
    keyId: o.keyId,
    deps: [...(o.deps ?? [])].sort(),
    author: signer.publicKey,
    time: o.time ?? clock++
  }
  let payload = o.payload
  if (payload === undefined) {
    if (o.key === undefined) throw new TypeError('forgeChange needs a key or a payload')
    const plaintext = o.plaintext ?? Automerge.getLastLocalChange(Automerge.emptyChange(Automerge.init())) as Uint8Array
    payload = encrypt(o.key, plaintext, payloadAad(o.aadOf ?? header))
  }
  return signChange(header, payload, (signed) => signer.sign(signed))
}

/**
 * Offers `changes` to the node at the other end of `raw` as a partner would (hello, reconciliation claiming
 * them), answers every want with the changes asked for, and ends the session. Returns the hashes asked for.
 */
export async function pushChanges (raw: RawPeer, topic: Uint8Array, changes: StoreChange[]): Promise<ChangeHash[]> {
  await raw.hello(topic)
  expect(await raw.frame()).to.include({ type: 'welcome' })
  await raw.reconcile(changes.map((c) => ({ timestamp: c.time, id: c.hash })))
  await raw.send({ type: 'want', hashes: [], done: true })
  const asked: ChangeHash[] = []
  let peerDone = false
  while (!peerDone) {
    const msg = await raw.frame()
    if (msg.type !== 'want') expect.fail(`unexpected ${msg.type} frame`)
    if (msg.hashes.length > 0) {
      const hashes = msg.hashes.map((h) => Buffer.from(h).toString('hex'))
      asked.push(...hashes)
      // in the order the changes were given, not the order asked: the sender chooses its frame's order
      const wanted = new Set(hashes)
      const answer = changes.filter((c) => wanted.has(c.hash)).map((c) => encodeChange(c))
      await raw.send({ type: 'changes', changes: answer, last: true })
    }
    if (msg.done) peerDone = true
  }
  await raw.closeWrite()
  await raw.drain()
  return asked
}
