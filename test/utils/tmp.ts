import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createTenantFactory, type MindooTenant, type TenantFactory, type TenantFactoryOptions } from '../../src/index.js'

/** scrypt at its lowest accepted cost, so tests that wrap many keys stay quick. Production uses the default. */
export const TEST_KDF = { N: 2 ** 14, r: 8, p: 1 }

export async function tempDir (prefix = 'mindoodb-test-'): Promise<string> {
  return await mkdtemp(join(tmpdir(), prefix))
}

export async function removeDir (dir: string | undefined): Promise<void> {
  if (dir !== undefined) await rm(dir, { recursive: true, force: true })
}

/** A tenant factory over a fresh temp directory; `cleanup` closes it and removes the directory. */
export async function testFactory (options: Partial<TenantFactoryOptions> = {}): Promise<{ factory: TenantFactory, dataDir: string, cleanup: () => Promise<void> }> {
  const dataDir = options.dataDir ?? await tempDir()
  const factory = await createTenantFactory({ keyWrapping: TEST_KDF, ...options, dataDir })
  return {
    factory,
    dataDir,
    cleanup: async () => {
      await factory.close()
      await removeDir(dataDir)
    }
  }
}

/** Two tenants of `factory`, org-a and org-b, both holding the same named key `k`. */
export async function twoTenantsSharingKey (factory: TenantFactory): Promise<[MindooTenant, MindooTenant]> {
  const a = await factory.createTenant({ tenantId: 'org-a', tenantEncryptionKeyPassword: 'pw-a' })
  const b = await factory.createTenant({ tenantId: 'org-b', tenantEncryptionKeyPassword: 'pw-b' })
  const blob = await factory.createSymmetricEncryptedPrivateKey('k-pw')
  await a.importNamedKey('k', blob, 'k-pw')
  await b.importNamedKey('k', blob, 'k-pw')
  return [a, b]
}
