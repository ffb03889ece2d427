/**
 * Mesh: `mesh.orgs` organisations on a ring with chords (2-3 neighbours each), dht off, one process;
 * `mesh.changes` changes at random nodes in bursts; time to converge, bytes (change bytes from the shares'
 * totals, every sync-protocol frame by type, and TCP bytes) over the payload bytes.
 */
import * as Automerge from '@automerge/automerge'
import { join } from 'node:path'
import { createTenantFactory, encodeChange } from '../../src/index.js'
import type { ShareStatus } from '../../src/p2p/index.js'
import { prng } from '../util.js'
import {
  BENCH_KDF, cpuMs, FrameTally, KEY_PASSWORD, now, round, sleep, text, waitFor, type BenchP2POptions, type SocketTally
} from './common.js'
import { closeOrg, openOrg, partnerOf, shareFor, type Org } from './server.js'

/** Issue 8's floors for the mesh of 8 (a figure must be at most this). */
export const MESH_FLOORS = { frameBytesOverMinimum: 1.1, roundsPerChange: 0.2 } as const

export async function benchMesh (opts: Required<Omit<NonNullable<BenchP2POptions['mesh']>, 'liveDebounceMs'>> & { liveDebounceMs?: number }, runDir: string, sockets: SocketTally, frames: FrameTally): Promise<object> {
  const { orgs: count, changes, burst, docsPerOrg, contentChars, partners: partnerMode, liveDebounceMs } = opts
  const next = prng(0xbee5)
  // a ring, plus chords between opposite nodes from every other even node: 2-3 neighbours each
  const edges = new Set<string>()
  const link = (i: number, j: number): void => { if (i !== j) edges.add(i < j ? `${i}-${j}` : `${j}-${i}`) }
  for (let i = 0; i < count; i++) link(i, (i + 1) % count)
  for (let i = 0; i < count / 2; i += 2) link(i, i + count / 2)
  const neighbours = Array.from({ length: count }, (_, i) => [...edges].map((e) => e.split('-').map(Number)).filter((e) => e.includes(i)).map((e) => e[0] === i ? e[1] : e[0]))

  const keyFactory = await createTenantFactory({ dataDir: join(runDir, 'mesh-key'), keyWrapping: BENCH_KDF })
  const keyBlob = await keyFactory.createSymmetricEncryptedPrivateKey(KEY_PASSWORD)
  await keyFactory.close()
  const orgs: Org[] = []
  try {
    for (let i = 0; i < count; i++) {
      orgs.push(await openOrg(`org-${i}`, join(runDir, `mesh-${i}`), true, { backoffBaseMs: 60_000, liveDebounceMs }, keyBlob))
    }
    // every org trusts every other org's authors (changes travel over several hops), but connects to its
    // neighbours only: the others are partners without addresses (dht is off, so they are never dialled)
    for (let i = 0; i < count; i++) {
      const partners = orgs.map((o, j) => {
        if (j === i || (partnerMode === 'neighbours' && !neighbours[i].includes(j))) return undefined
        const p = partnerOf(o)
        return neighbours[i].includes(j) ? p : { ...p, addresses: undefined }
      }).filter((p) => p !== undefined)
      await orgs[i].node.addShare(shareFor(partners))
    }
    // set-up, not timed: documents to change
    const docs: string[][] = []
    for (const org of orgs) {
      const mine: string[] = []
      for (let k = 0; k < docsPerOrg; k++) mine.push((await org.db.createDocument()).getId())
      docs.push(mine)
    }
    const allDocs = docs.flat()
    const setupTotal = count * docsPerOrg
    const converged = (total: number): boolean => orgs.every((o) => o.db.getStore().getLastSeq() === total)
    if (partnerMode === 'neighbours') {
      // changes more than one hop away are refused (their authors are not partners): it never converges
      await waitFor(() => converged(setupTotal), 'the mesh set-up to converge', 5_000).catch(() => {})
      const rejected: Record<string, number> = {}
      for (const o of orgs) for (const [code, k] of Object.entries(o.node.status('shared')[0].totals.rejected)) rejected[code] = (rejected[code] ?? 0) + k
      return { partners: partnerMode, setupChanges: setupTotal, converged: converged(setupTotal), storeSizes: orgs.map((o) => o.db.getStore().getLastSeq()), rejected }
    }
    await waitFor(() => converged(setupTotal), 'the mesh set-up to converge', 120_000)
    await sleep(200)

    const totalsBefore = orgs.map((o) => ({ ...o.node.status('shared')[0].totals }))
    const framesBefore = frames.snapshot()
    const tcpBefore = sockets.written
    const cpu0 = process.cpuUsage()
    const t0 = now()
    let made = 0
    let bursts = 0
    const madeBy = new Array<number>(count).fill(0)
    while (made < changes) {
      const size = Math.min(changes - made, Math.max(1, Math.round(burst * (0.5 + (next() % 1000) / 1000))))
      // a burst: an application at one random node writes `size` changes at once (they queue on the
      // database and commit back to back) while the mesh is still spreading the previous bursts
      const i = next() % count
      const targets: string[] = []
      for (let k = 0; k < size; k++) {
        const docId = allDocs[next() % allDocs.length]
        // a node may not have every document yet while bursts spread: then it changes one of its own
        targets.push(await orgs[i].db.getDocument(docId).then(() => docId, () => docs[i][next() % docs[i].length]))
      }
      await Promise.all(targets.map(async (docId) => {
        await orgs[i].db.changeDoc(docId, (d) => { d.getData()[`f${next() % 4}`] = new Automerge.ImmutableString(text(contentChars)) })
      }))
      madeBy[i] += size
      made += size
      bursts++
      await sleep(20)
    }
    const lastChangeAt = now()
    const expected = setupTotal + changes
    await waitFor(() => converged(expected), 'the mesh to converge', 300_000, 5)
    const convergedAt = now()
    const cpu = cpuMs(cpu0)
    await sleep(300) // closing frames of the last rounds
    const frameCounts = FrameTally.diff(frames.snapshot(), framesBefore)
    const tcpBytes = sockets.written - tcpBefore

    // every store holds the same hashes
    const reference = new Set(await orgs[0].db.getStore().getAllChangeHashes())
    for (const org of orgs.slice(1)) {
      const hashes = await org.db.getStore().getAllChangeHashes()
      if (hashes.length !== reference.size || !hashes.every((h) => reference.has(h))) throw new Error(`${org.name} differs from org-0`)
    }
    // payload: the canonical bytes of the changes made in the timed phase
    const all = await orgs[0].db.getStore().getAllChangeHashes()
    const store0 = orgs[0].db.getStore()
    let payloadBytes = 0
    let changeCount = 0
    for (let i = 0; i < all.length; i += 1000) {
      for (const c of await store0.getChanges(all.slice(i, i + 1000))) {
        if (c.deps.length === 0) continue // the set-up's createDocument changes
        payloadBytes += encodeChange(c).length
        changeCount++
      }
    }
    const totalsAfter = orgs.map((o) => o.node.status('shared')[0].totals)
    const sum = (f: (t: ShareStatus['totals']) => number): number => totalsAfter.reduce((s, t, i) => s + f(t) - f(totalsBefore[i]), 0)
    const changesSent = sum((t) => t.changesSent)
    const bytesSent = sum((t) => t.bytesSent)
    const rejected: Record<string, number> = {}
    for (const t of totalsAfter) for (const [code, k] of Object.entries(t.rejected)) rejected[code] = (rejected[code] ?? 0) + k
    const minimum = (count - 1) * payloadBytes
    const rounds = sum((t) => t.rounds)
    return {
      orgs: count,
      liveDebounceMs: liveDebounceMs ?? 'default (5)',
      topology: { edges: [...edges], neighbours: neighbours.map((n) => n.length) },
      changes,
      changeBytesAvg: Math.round(payloadBytes / Math.max(1, changeCount)),
      bursts,
      burstAvg: burst,
      madeBy,
      makeMs: Math.round(lastChangeAt - t0),
      convergeAfterLastChangeMs: Math.round(convergedAt - lastChangeAt),
      convergeTotalMs: Math.round(convergedAt - t0),
      cpuMs: Math.round(cpu),
      payloadBytes,
      changesSent,
      changesSentPerChange: round(changesSent / changes, 2),
      rounds,
      roundsFailed: sum((t) => t.roundsFailed),
      roundsPerChange: round(rounds / changes, 2),
      changeBytesSent: bytesSent,
      changeBytesOverPayload: round(bytesSent / payloadBytes, 2),
      syncFrames: frameCounts,
      syncFrameBytesOverPayload: round(frameCounts.total.bytes / payloadBytes, 2),
      reconcileFrameBytes: frameCounts.reconcile?.bytes ?? 0,
      tcpBytes,
      tcpBytesOverPayload: round(tcpBytes / payloadBytes, 2),
      minimumBytes: minimum,
      note: `each change must reach ${count - 1} other nodes, so ${count - 1}x payload is the floor for any protocol; ` +
        'changeBytesSent = sum of the shares\' totals.bytesSent (change bytes only); syncFrames = every sync-protocol frame ' +
        'encoded (protobuf + length prefix), by type; tcpBytes = all libp2p TCP bytes (Noise, Yamux, identify...) in the timed phase',
      overMinimum: { changeBytes: round(bytesSent / minimum, 3), syncFrameBytes: round(frameCounts.total.bytes / minimum, 3), tcpBytes: round(tcpBytes / minimum, 3) },
      rejected,
      converged: true,
      floors: [
        {
          rule: `all sync frame bytes <= ${MESH_FLOORS.frameBytesOverMinimum} x the payload's minimum (${count - 1} x payload)`,
          value: round(frameCounts.total.bytes / minimum, 3),
          floor: MESH_FLOORS.frameBytesOverMinimum,
          pass: frameCounts.total.bytes / minimum <= MESH_FLOORS.frameBytesOverMinimum
        },
        {
          rule: `rounds per change (every node's rounds, summed, over the changes made) <= ${MESH_FLOORS.roundsPerChange}`,
          value: round(rounds / changes, 3),
          floor: MESH_FLOORS.roundsPerChange,
          pass: rounds / changes <= MESH_FLOORS.roundsPerChange
        }
      ]
    }
  } finally {
    for (const org of orgs) await closeOrg(org).catch(() => {})
  }
}
