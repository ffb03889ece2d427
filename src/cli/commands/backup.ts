import { resolve } from 'node:path'
import type { Command } from 'commander'
import { restoreBackup, type BackupResult, type RestoreResult } from '../../daemon/backup.js'
import { UsageError, type CliContext } from '../context.js'
import { bytes, time } from '../format.js'

export function formatBackup (r: BackupResult): string {
  return [
    `backup written: ${r.path} (${bytes(r.bytes)}, mode 0600)`,
    `  tenant ${r.tenantId}, peer ${r.peerId}, taken ${time(r.createdAt)}`,
    `  ${r.entries} database entries; files: ${r.files.join(', ')}`,
    `  sha256 ${r.sha256}`
  ].join('\n')
}

export function formatRestore (r: RestoreResult): string {
  return [
    `restored into ${r.dataDir}: tenant ${r.tenantId}, peer ${r.peerId}, backup of ${time(r.createdAt)}`,
    `  ${r.entries} database entries; files: ${r.files.join(', ')}`,
    `  config: ${r.config}`,
    'seq' in r.audit
      ? `  audit trail: restored and continued with backup.restored (seq ${r.audit.seq})`
      : `  audit trail: restored, not continued (${r.audit.error}: ${r.audit.message}); move <dir>/audit away before starting the daemon`,
    `start it with: mindoodb daemon --config ${r.config}`
  ].join('\n')
}

/** `mindoodb backup <file>`: the running daemon writes a backup file (RPC backup.create). */
export function registerBackup (program: Command, ctx: () => CliContext): void {
  program.command('backup')
    .description('write a consistent backup of the running node to a file (the daemon writes it: the path must be writable by the daemon\'s user)')
    .argument('<file>', 'where to write it (relative paths are resolved here, then passed to the daemon as absolute)')
    .addHelpText('after', `
The backup holds the store and database state (one snapshot), the tenant's key file as it is at rest (encrypted
under the passphrase when the node has one), the node identity, the shares, the revocation list, the config and
the audit trail (as it is between two of its records: its chain verifies). It is as secret as the data directory: written with mode 0600, atomically (a crash leaves the previous file).
Restore it with \`mindoodb restore <file> --data-dir <empty dir>\` while no daemon runs there.`)
    .action(async (file: string) => {
      const c = ctx()
      const path = resolve(file)
      c.print(await (await c.client({ timeoutMs: 0 })).call<BackupResult>('backup.create', { path }), formatBackup)
    })
}

/** `mindoodb restore <file> --data-dir <dir>`: local, no daemon. */
export function registerRestore (program: Command, ctx: () => CliContext): void {
  program.command('restore')
    .description('restore a backup into a new or empty data directory (local: needs no daemon, and none may run there)')
    .argument('<file>', 'the backup file')
    .requiredOption('--data-dir <dir>', 'the data directory to create (must not exist or be empty)')
    .addHelpText('after', `
The whole file is verified (format, SHA-256) before anything is written: a corrupt or truncated file gets
BACKUP_CORRUPT and a non-empty directory RESTORE_TARGET_NOT_EMPTY, and nothing is written. The restored node has
the same peer id, tenant, keys, shares and audit trail (a backup.restored record is added to the trail, and the
restored node continues that chain); <dir>/config.json is the backed-up config pointed at <dir>. Started, it
reconciles with its partners and fetches only what it lacks.`)
    .action(async (file: string, opts: { dataDir?: string }) => {
      const c = ctx()
      if (opts.dataDir === undefined || opts.dataDir === '') throw new UsageError('--data-dir is required')
      c.print(await restoreBackup(resolve(file), opts.dataDir), formatRestore)
    })
}
