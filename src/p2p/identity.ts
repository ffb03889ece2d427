import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { chmod, mkdir, open, readFile, rename } from 'node:fs/promises'
import { join } from 'node:path'
import { InvalidKeyFormatError } from '../errors.js'
import { PEER_KEY_FILE } from './constants.js'

/**
 * The node's Ed25519 libp2p identity, created on first start and kept in `<dataDir>/peer-key` (mode 0600).
 */
export async function loadOrCreatePeerKey (dataDir: string): Promise<PrivateKey> {
  const path = join(dataDir, PEER_KEY_FILE)
  try {
    const bytes = await readFile(path)
    await chmod(path, 0o600)
    try {
      return privateKeyFromProtobuf(bytes)
    } catch (err) {
      throw new InvalidKeyFormatError(`${path} does not hold a libp2p private key`, { cause: err })
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  await mkdir(dataDir, { recursive: true, mode: 0o700 })
  const key = await generateKeyPair('Ed25519')
  const tmp = `${path}.${process.pid}.tmp`
  const handle = await open(tmp, 'wx', 0o600)
  try {
    await handle.writeFile(privateKeyToProtobuf(key))
    await handle.sync()
  } finally {
    await handle.close()
  }
  await rename(tmp, path)
  return key
}
