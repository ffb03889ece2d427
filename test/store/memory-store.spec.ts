import { MemoryStore } from '../../src/store/memory-store.js'
import { runStoreTests } from './store-suite.js'

runStoreTests('MemoryStore', async () => {
  const store = new MemoryStore()
  return { store, teardown: async () => { await store.close() } }
})
