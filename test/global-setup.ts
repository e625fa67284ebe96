import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { provideInfrastructure } from '@platform/local-infra'
import type { TestProject } from 'vitest/node'
import '@platform/local-infra/vitest'

/** One real MongoDB and one real Redis for the whole run, handed to every project by `provide`. */
export default async function setup(project: TestProject) {
  const dataDir = await mkdtemp(join(tmpdir(), 'ai-platform-test-'))
  const infrastructure = await provideInfrastructure({ env: process.env, purpose: 'test', dataDir })
  project.provide('mongoUrl', infrastructure.mongoUrl)
  project.provide('redisUrl', infrastructure.redisUrl)
  return async () => {
    await infrastructure.stop()
    await rm(dataDir, { recursive: true, force: true })
  }
}
