import { existsSync, readdirSync } from 'node:fs'
import { join } from 'node:path'
import { defineConfig } from 'vitest/config'

/** Every workspace package with a test folder is one project; all share one MongoDB and one Redis. */
const projectDirs = ['packages', 'services', 'tools'].flatMap((group) =>
  readdirSync(group, { withFileTypes: true })
    .filter((entry) => entry.isDirectory() && existsSync(join(group, entry.name, 'test')))
    .map((entry) => join(group, entry.name)),
)

export default defineConfig({
  test: {
    globalSetup: ['./test/global-setup.ts'],
    reporters: ['default', './test/summary-reporter.ts'],
    testTimeout: 30_000,
    hookTimeout: 120_000,
    projects: projectDirs.map((dir) => ({
      extends: true,
      test: {
        name: dir.split('/')[1],
        root: dir,
        include: ['test/**/*.test.ts'],
      },
    })),
  },
})
