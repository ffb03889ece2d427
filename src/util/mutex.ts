/** A promise-chain mutex: `run` calls are executed one at a time, in call order. */
export class Mutex {
  #tail: Promise<unknown> = Promise.resolve()

  async run<T> (fn: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(fn)
    this.#tail = result.catch(() => undefined)
    return await result
  }
}
