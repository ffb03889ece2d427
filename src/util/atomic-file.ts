/**
 * Writing a small file so that readers (and a crash) only ever see the old content or the new one: a temporary
 * file next to it, fsync, rename over the target. Private files are created with mode 0600.
 */
import { open, rename, rm } from 'node:fs/promises'

/** Writes `content` to `path` atomically, creating it with `mode` (default 0600: only the owner reads it). */
export async function writeFileAtomic (path: string, content: string | Uint8Array, mode = 0o600): Promise<void> {
  const tmp = `${path}.${process.pid}.${Date.now()}.tmp`
  const handle = await open(tmp, 'w', mode)
  try {
    await handle.writeFile(content)
    await handle.sync()
  } catch (err) {
    await handle.close()
    await rm(tmp, { force: true })
    throw err
  }
  await handle.close()
  await rename(tmp, path)
}
