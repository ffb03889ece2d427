import { generateKeyPair, privateKeyFromProtobuf, privateKeyToProtobuf } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { chmod, mkdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { ConfigError, InvalidKeyFormatError } from '../errors.js'
import { writeFileAtomic } from '../util/atomic-file.js'
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
    const code = (err as NodeJS.ErrnoException).code
    if (code === undefined && err instanceof InvalidKeyFormatError) throw err
    if (code !== 'ENOENT') throw new ConfigError('/dataDir', `cannot read the node identity ${path}: ${code ?? String(err)}`, { cause: err })
  }
  const key = await generateKeyPair('Ed25519')
  try {
    await mkdir(dataDir, { recursive: true, mode: 0o700 })
    await writeFileAtomic(path, privateKeyToProtobuf(key), 0o600)
  } catch (err) {
    throw new ConfigError('/dataDir', `cannot write the node identity ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, { cause: err })
  }
  return key
}
