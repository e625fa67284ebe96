import { describe, expect, it } from 'vitest'
import * as audit from '../src/audit.js'
import * as auth from '../src/auth.js'
import * as errors from '../src/errors.js'
import * as index from '../src/index.js'
import * as policy from '../src/policy.js'
import * as redisKeys from '../src/redis-keys.js'
import * as tokens from '../src/tokens.js'
import * as usage from '../src/usage.js'

const modules = { audit, auth, errors, policy, redisKeys, tokens, usage }

const schemaNames = (module: object) =>
  Object.keys(module)
    .filter((name) => name.endsWith('Schema'))
    .sort()

describe('the package entry point', () => {
  it('exports every *Schema the src modules define, and no other', () => {
    const defined = Object.values(modules).flatMap(schemaNames).sort()
    expect(defined.length).toBeGreaterThan(0)
    expect(schemaNames(index)).toEqual(defined)
  })

  it('exports every value the src modules define, as the same object', () => {
    const defined = Object.values(modules).flatMap((module) => Object.entries(module))
    expect(Object.keys(index).sort()).toEqual(defined.map(([name]) => name).sort())
    const exported: Record<string, unknown> = index
    for (const [name, value] of defined) expect(exported[name], name).toBe(value)
  })

  it('defines no name in two modules', () => {
    const names = Object.values(modules).flatMap((module) => Object.keys(module))
    expect(new Set(names).size).toBe(names.length)
  })
})
