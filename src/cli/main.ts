#!/usr/bin/env node
// The `mindoodb` executable. Nothing but the launcher is loaded before the Node version is checked: on an older
// Node the command runs again with the pinned Node 24 (see launch.ts), so it works as printed anywhere.
import { cannotLoad, launch } from './launch.js'
import type * as Cli from './index.js'

if (launch(import.meta.url)) {
  let cli: typeof Cli | undefined
  try {
    cli = await import('./index.js')
  } catch (err) {
    // a part that does not load on this machine (libsodium's binary): one sentence, not a stack
    cannotLoad(err)
  }
  await cli?.main()
}
