/**
 * MindooDB mesh: an end-to-end encrypted, local-first document database whose organisations (tenants)
 * collaborate across tenant boundaries by syncing signed, encrypted changes.
 */
export * from './core/index.js'
export * from './store/index.js'
export * from './errors.js'
export type { Logger } from './util/logger.js'
export type { ShareConfig, ShareDirection, ShareFilter, ShareParticipant, SharePartner, ShareUpdate, WritePolicy } from './sync/share.js'
export { validateShare, validateWritePolicy } from './sync/share.js'
export type { MangoSelector } from './sync/filter.js'
