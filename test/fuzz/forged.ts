/**
 * The `forged` fuzz target: what a trusted partner can make with its own signing key and the keys it holds,
 * fed to a real database (LevelDB in a temp directory) the way the sync session stores received changes:
 * `appendMany`, then `syncStoreChanges` for what was stored, then reading the touched documents.
 *
 * Each case is one validly signed change (or one signed by a stranger, or a mutated encoding of one) with a header
 * and payload chosen from what an attacker would try: its own new documents, the victim's document (whose id
 * any relay sees), ids of other creators, keys it holds and keys it does not, tombstones, deps on real and
 * invented changes, payloads that are real Automerge changes, garbage, or encrypted for another header.
 *
 * Only typed errors may come out: appendMany reports each refusal as a ChangeRejectedError with a documented
 * code (it throws nothing), materialising and reading throw only MindooErrors with documented codes, and the
 * victim's own document stays readable with its content whatever was stored.
 */
import { strict as assert } from 'node:assert'
import { randomBytes } from 'node:crypto'
import fc from 'fast-check'
import { encrypt, generateSigningKeyPair, Signer } from '../../src/crypto/index.js'
import { ChangeRejectedError, ERROR_CODES, HashMismatchError, MalformedChangeError, MindooError } from '../../src/errors.js'
import type { MindooDB } from '../../src/index.js'
import {
  decodeChange, encodeChange, newDocId, payloadAad, type ChangeHash, type ChangeHeader, type DocId, type StoreChange
} from '../../src/store/change.js'
import { automergeChange, forgeChange, keyBytes, tenantSigner } from '../utils/forge.js'
import { testFactory } from '../utils/tmp.js'
import { isOneOf, mutate, mutationsArb, refused, type CaseOutcome, type FuzzTarget, type Mutation } from './harness.js'

interface ForgedFixture {
  db: MindooDB
  attacker: Signer
  stranger: Signer
  /** Raw bytes of `k` (both hold it) and `k2` (only the attacker holds it). */
  keys: Record<'k' | 'k2', Uint8Array>
  victimDoc: DocId
  victimHeads: ChangeHash[]
  partnerDoc: DocId
  partnerHeads: ChangeHash[]
  victimKeyId: string
  victimAuthor: string
  cleanup: () => Promise<void>
}

let fixture: Promise<ForgedFixture> | undefined

async function makeFixture (): Promise<ForgedFixture> {
  const { factory, dataDir, cleanup } = await testFactory()
  const victim = await factory.createTenant({ tenantId: 'org-victim', tenantEncryptionKeyPassword: 'victim-pw' })
  const partner = await factory.createTenant({ tenantId: 'org-partner', tenantEncryptionKeyPassword: 'partner-pw' })
  const k = await factory.createSymmetricEncryptedPrivateKey('k-pw')
  const k2 = await factory.createSymmetricEncryptedPrivateKey('k2-pw')
  await victim.importNamedKey('k', k, 'k-pw')
  await partner.importNamedKey('k', k, 'k-pw')
  await partner.importNamedKey('k2', k2, 'k2-pw')
  const db = await victim.openDB('fuzz')
  await db.trustPartner(partner.getPublicInfo())
  const doc = await db.createDocument({ keyId: 'k' })
  await db.changeDoc(doc, (d) => { d.getData().owner = 'victim' })
  const partnerDb = await partner.openDB('fuzz')
  const pdoc = await partnerDb.createDocument({ keyId: 'k' })
  await partnerDb.changeDoc(pdoc, (d) => { d.getData().owner = 'partner' })
  const pchanges = await partnerDb.getStore().getChanges(await partnerDb.getStore().getAllChangeHashesForDoc(pdoc.getId()))
  await db.getStore().appendMany(pchanges)
  await db.syncStoreChanges(pchanges.map((c) => c.hash))
  return {
    db,
    attacker: await tenantSigner({ dataDir, name: 'org-partner' }),
    stranger: new Signer(generateSigningKeyPair().privateKeyDer),
    keys: { k: await keyBytes(k, 'k-pw'), k2: await keyBytes(k2, 'k2-pw') },
    victimDoc: doc.getId(),
    victimHeads: [...(await db.getDocument(doc.getId())).getHeads()],
    partnerDoc: pdoc.getId(),
    partnerHeads: [...(await db.getDocument(pdoc.getId())).getHeads()],
    victimKeyId: `tenant:${victim.getPublicInfo().tenantId}`,
    victimAuthor: victim.getPublicInfo().signingPublicKey,
    cleanup
  }
}

interface ForgedInput {
  signer: 'attacker' | 'stranger'
  kind: 'change' | 'delete'
  keyId: 'k' | 'k2' | 'victim' | 'unknown'
  docId: 'own' | 'victim' | 'partner' | 'otherCreator' | 'otherKey' | 'random'
  deps: 'none' | 'victim' | 'partner' | 'random' | 'mixed'
  payload: 'empty' | 'fields' | 'garbage' | 'truncated' | 'wrongAad' | 'raw' | 'k2'
  fields: Record<string, string | number | boolean | null>
  random: Uint8Array
  time: number
  mutations: Mutation[]
}

const forgedInputArb: fc.Arbitrary<ForgedInput> = fc.record({
  signer: fc.oneof({ weight: 9, arbitrary: fc.constant('attacker' as const) }, { weight: 1, arbitrary: fc.constant('stranger' as const) }),
  kind: fc.oneof({ weight: 4, arbitrary: fc.constant('change' as const) }, { weight: 1, arbitrary: fc.constant('delete' as const) }),
  keyId: fc.constantFrom('k' as const, 'k' as const, 'k2' as const, 'victim' as const, 'unknown' as const),
  docId: fc.constantFrom('own' as const, 'victim' as const, 'victim' as const, 'partner' as const, 'otherCreator' as const, 'otherKey' as const, 'random' as const),
  deps: fc.constantFrom('none' as const, 'victim' as const, 'partner' as const, 'random' as const, 'mixed' as const),
  payload: fc.constantFrom('empty' as const, 'fields' as const, 'fields' as const, 'garbage' as const, 'truncated' as const, 'wrongAad' as const, 'raw' as const, 'k2' as const),
  fields: fc.dictionary(fc.constantFrom('owner', 'type', 'visibility', 'n', 'x'), fc.oneof(fc.string({ maxLength: 8 }), fc.integer(), fc.boolean(), fc.constant(null)), { maxKeys: 3 }),
  random: fc.uint8Array({ maxLength: 200 }),
  time: fc.oneof(fc.constant(-1), fc.nat(), fc.constant(Number.MAX_SAFE_INTEGER)),
  mutations: fc.oneof({ weight: 4, arbitrary: fc.constant<Mutation[]>([]) }, { weight: 1, arbitrary: mutationsArb })
})

function forge (input: ForgedInput, f: ForgedFixture): StoreChange {
  const signer = input.signer === 'attacker' ? f.attacker : f.stranger
  const keyId = { k: 'k', k2: 'k2', victim: f.victimKeyId, unknown: 'nobody-has-this-key' }[input.keyId]
  const docId: DocId = {
    own: () => newDocId(signer.publicKey, keyId),
    victim: () => f.victimDoc,
    partner: () => f.partnerDoc,
    otherCreator: () => newDocId(f.victimAuthor, keyId),
    otherKey: () => newDocId(signer.publicKey, keyId === 'k' ? 'k2' : 'k'),
    random: () => randomBytes(20).toString('hex')
  }[input.docId]()
  const randomHash = Buffer.from(input.random.subarray(0, 32).length === 32 ? input.random.subarray(0, 32) : randomBytes(32)).toString('hex')
  const deps = {
    none: [],
    victim: f.victimHeads,
    partner: f.partnerHeads,
    random: [randomHash],
    mixed: [...new Set([...f.victimHeads, randomHash])]
  }[input.deps]
  const header: ChangeHeader = { kind: input.kind, docId, keyId, deps: [...deps].sort(), author: signer.publicKey, time: input.time < 0 ? Date.now() : input.time }
  const key = input.payload === 'k2' || input.keyId === 'k2' ? f.keys.k2 : f.keys.k
  // an Automerge change setting the fields (a change with no operations is no change: set one then)
  const real = automergeChange(Object.keys(input.fields).length > 0 ? input.fields : { x: 1 })
  const plaintext = {
    empty: new Uint8Array(0),
    fields: real,
    garbage: input.random,
    truncated: real.subarray(0, Math.max(0, real.length - 1 - (input.random.length % real.length))),
    wrongAad: real,
    raw: real,
    k2: real
  }[input.payload]
  let payload: Uint8Array
  if (input.payload === 'raw') payload = input.random
  else if (input.payload === 'wrongAad') payload = encrypt(key, plaintext, payloadAad({ ...header, docId: f.victimDoc }))
  else payload = encrypt(key, plaintext, payloadAad(header))
  return forgeChange(signer, { ...header, deps: [...header.deps], payload })
}

/** Codes a refused change may carry (stable, documented in src/errors.ts). */
const REFUSAL_CODES = new Set(['MALFORMED_CHANGE', 'HASH_MISMATCH', 'INVALID_SIGNATURE', 'UNTRUSTED_AUTHOR', 'KEY_MISMATCH', 'NOT_CREATOR'])

function checkTyped (err: unknown, where: string): void {
  if (!(err instanceof MindooError) || ERROR_CODES[err.code] === undefined) {
    throw new Error(`${where} threw an undocumented error: ${String(err)}`, { cause: err })
  }
}

let forgedLengths = new WeakMap<ForgedInput, number>()

async function runForged (input: ForgedInput): Promise<CaseOutcome> {
  const f = await (fixture ??= makeFixture())
  const bytes = mutate(encodeChange(forge(input, f)), input.mutations)
  forgedLengths.set(input, bytes.length)
  let change: StoreChange
  try {
    change = decodeChange(bytes)
  } catch (err) {
    if (isOneOf(err, [MalformedChangeError, HashMismatchError])) return { ...refused(err), label: `decode:${(err as MindooError).code}` }
    throw err
  }
  const result = await f.db.getStore().appendMany([change]) // throws nothing: refusals are in the result
  for (const r of result.rejected) {
    assert.ok(r.error instanceof ChangeRejectedError, `refusal is not a ChangeRejectedError: ${String(r.error)}`)
    assert.ok(REFUSAL_CODES.has(r.error.code), `refusal with code ${r.error.code}`)
  }
  if (result.added.length > 0) {
    assert.equal(input.signer, 'attacker', 'a stranger\'s change was stored')
    try {
      await f.db.syncStoreChanges(result.added)
    } catch (err) {
      checkTyped(err, 'syncStoreChanges')
    }
    try {
      await f.db.getDocument(change.docId)
    } catch (err) {
      checkTyped(err, 'getDocument of the forged change\'s document')
    }
  }
  // whatever was stored, the victim's document stays readable
  const victim = await f.db.getDocument(f.victimDoc)
  assert.equal(typeof victim.getData(), 'object')
  const label = result.added.length > 0 ? 'stored' : result.duplicates.length > 0 ? 'duplicate' : result.rejected[0]?.error.code
  return { rejected: result.added.length === 0, allocated: 0, label }
}

export const forgedTarget: FuzzTarget<ForgedInput> = {
  name: 'forged',
  arbitrary: forgedInputArb,
  inputBytes: (input) => forgedLengths.get(input) ?? 0,
  run: runForged,
  cleanup: async () => {
    const f = fixture
    fixture = undefined
    forgedLengths = new WeakMap()
    if (f !== undefined) await (await f).cleanup()
  }
}
