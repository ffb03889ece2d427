import { StreamMessageEvent } from '@libp2p/interface'

/**
 * Just enough of a libp2p Stream for `byteStream` (what streamChannel reads through): bytes arrive as `message`
 * events, the end of the peer's writes as `remoteCloseWrite`.
 */
export class InMemoryStream extends EventTarget {
  remoteWriteStatus: 'writable' | 'closed' = 'writable'
  readonly readBufferLength = 0
  aborted: Error | undefined
  readonly log = Object.assign((): void => {}, { error: (): void => {}, trace: (): void => {} })

  closeRead (): void {}
  send (): boolean { return true }
  push (): void {}
  async close (): Promise<void> {}
  abort (err: Error): void { this.aborted = err }
  /** Recorded only: this stream keeps delivering, like a peer that ignores flow control (the worst case). */
  paused = false
  pause (): void { this.paused = true }
  resume (): void { this.paused = false }

  deliver (chunk: Uint8Array): void {
    this.dispatchEvent(new StreamMessageEvent(chunk))
  }

  end (): void {
    this.remoteWriteStatus = 'closed'
    this.dispatchEvent(new Event('remoteCloseWrite'))
  }
}
