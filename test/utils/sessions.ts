/**
 * Two ends of a sync session over an in-memory channel pair, as the specs of src/sync run them: served sets of
 * everything a database holds, the responder that reads the initiator's hello first (as the node's inbound gate
 * does), and channels that rewrite or watch the messages passing through.
 */
import type { MindooDB } from '../../src/index.js'
import { WantClaims } from '../../src/sync/claims.js'
import type { MessageChannel, SyncMessage } from '../../src/sync/messages.js'
import { createInitiator, createReconcileSet, createResponder, type ReconcileSet } from '../../src/sync/reconcile/index.js'
import { ServedSet } from '../../src/sync/served-set.js'
import { runSession, type SessionInit, type SessionResult } from '../../src/sync/session.js'
import type { ShareDirection } from '../../src/sync/share.js'

/** A started served set of everything `db` holds; added to `started`, for the test to stop. */
export async function servedSetOf (db: MindooDB, direction: ShareDirection, started: ServedSet[]): Promise<ServedSet> {
  const set = new ServedSet({ db, index: createReconcileSet() }, { policy: { mode: 'all' }, direction, ownAuthor: '' })
  await set.start()
  started.push(set)
  return set
}

/** The responder's end: its hello read first, then the session with the capabilities the hello offered. */
export async function respond (channel: MessageChannel, db: MindooDB, served: ServedSet, init: Omit<SessionInit, 'role' | 'peerCapabilities'>): Promise<SessionResult> {
  const hello = await channel.receive()
  return await runSession({
    channel, db, served, claims: new WantClaims(), reconciler: (set, maxMessageBytes) => createResponder({ set }, { maxMessageBytes })
  }, { ...init, role: 'responder', peerCapabilities: hello?.type === 'hello' ? hello.capabilities : [] })
}

/** The initiator's end (`seen`: what the peer revealed before, for direction `receive`). */
export async function initiate (channel: MessageChannel, db: MindooDB, served: ServedSet, init: Omit<SessionInit, 'role'>, seen?: ReconcileSet): Promise<SessionResult> {
  return await runSession({
    channel, db, served, seen, claims: new WantClaims(), reconciler: (set, maxMessageBytes) => createInitiator({ set }, { maxMessageBytes })
  }, { ...init, role: 'initiator' })
}

/** A channel that passes what is sent through `send` and what is received through `receive` (default: as is). */
export function mapChannel (channel: MessageChannel, map: { send?: (m: SyncMessage) => SyncMessage, receive?: (m: SyncMessage) => SyncMessage }): MessageChannel {
  const { send = (m) => m, receive = (m) => m } = map
  return {
    send: async (m, options) => { await channel.send(send(m), options) },
    receive: async (options) => {
      const m = await channel.receive(options)
      return m === undefined ? undefined : receive(m)
    },
    close: async (options) => { await channel.close(options) },
    abort: (err) => { channel.abort(err) }
  }
}
