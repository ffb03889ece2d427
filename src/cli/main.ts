#!/usr/bin/env node
// The `mindoodb` executable.
import { main } from './index.js'

await main()
