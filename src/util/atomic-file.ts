/**
 * Writing a file so that readers (and a crash) only ever see the old content or the new one: a temporary file
 * next to it, fsync, rename over the target, fsync of the directory. Private files are created with mode 0600.
 */
import { open, rename, rm, type FileHandle } from 'node:fs/promises'
import { dirname } from 'node:path'

/**
 * Writes `path` atomically through `write`, which fills the temporary file (created with `mode`, failing if it
 * exists); on any failure the temporary file is removed and the target is untouched. `open` failures are passed
 * through `onOpenError` so callers can say which parameter was wrong.
 */
export async function writeAtomically<T> (path: string, mode: number, write: (handle: FileHandle) => Promise<T>,
  onOpenError: (err: unknown) => unknown = (err) => err): Promise<T> {
  const tmp = `${path}.${process.pid}.${Date.now()}.tmp`
  let handle: FileHandle
  try {
    handle = await open(tmp, 'wx', mode)
  } catch (err) {
    throw onOpenError(err)
  }
  let result: T
  try {
    result = await write(handle)
    await handle.sync()
  } catch (err) {
    await handle.close()
    await rm(tmp, { force: true })
    throw err
  }
  await handle.close()
  await rename(tmp, path)
  await syncDir(dirname(path))
  return result
}

/** Writes `content` to `path` atomically, creating it with `mode` (default 0600: only the owner reads it). */
export async function writeFileAtomic (path: string, content: string | Uint8Array, mode = 0o600): Promise<void> {
  await writeAtomically(path, mode, async (handle) => { await handle.writeFile(content) })
}

/** Makes a rename in `dir` durable (where the platform lets a directory be opened). */
export async function syncDir (dir: string): Promise<void> {
  let handle: FileHandle | undefined
  try {
    handle = await open(dir, 'r')
    await handle.sync()
  } catch {
    // some filesystems refuse fsync on a directory: the rename is still atomic, only its durability waits
  } finally {
    await handle?.close()
  }
}
