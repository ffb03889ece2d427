#!/usr/bin/env node
// The `mindoodb` executable. Nothing but the launcher is loaded before the Node version is checked: on an older
// Node the command runs again with the pinned Node 24 (see launch.ts), so it works as printed anywhere.
import { launch } from './launch.js'

if (launch(import.meta.url)) {
  const { main } = await import('./index.js')
  await main()
}
