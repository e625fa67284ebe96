import { describe, expect, it } from 'vitest'
import {
  INTERNAL_AUDIENCE,
  PLATFORM_AUDIENCE,
  PlatformTokenClaimsSchema,
  ServiceTokenClaimsSchema,
} from '../src/index.js'

const now = 1_780_000_000

/** A token scoped to no workspace (ARCHITECTURE §3). */
const unscoped = () => ({
  iss: 'https://platform.example/auth',
  aud: PLATFORM_AUDIENCE,
  sub: 'user-1',
  sid: 'session-1',
  jti: 'jti-1',
  iat: now,
  exp: now + 900,
})

const scoped = () => ({ ...unscoped(), tid: 'tenant-1', wid: 'workspace-1', role: 'admin' })

const serviceClaims = () => ({
  iss: 'https://platform.example/auth',
  aud: INTERNAL_AUDIENCE,
  sub: 'api-gateway',
  jti: 'jti-2',
  iat: now,
  exp: now + 60,
})

describe('PlatformTokenClaimsSchema', () => {
  it('accepts a token scoped to no workspace', () => {
    expect(PlatformTokenClaimsSchema.parse(unscoped())).toEqual(unscoped())
  })

  it('accepts a token scoped to a workspace with tid, wid and role', () => {
    expect(PlatformTokenClaimsSchema.parse(scoped())).toEqual(scoped())
  })

  it.each(['owner', 'admin', 'member', 'viewer'])('accepts the role %s', (role) => {
    expect(PlatformTokenClaimsSchema.safeParse({ ...scoped(), role }).success).toBe(true)
  })

  it.each([
    ['wid alone', { wid: 'workspace-1' }],
    ['tid alone', { tid: 'tenant-1' }],
    ['role alone', { role: 'member' }],
    ['wid and tid without role', { wid: 'workspace-1', tid: 'tenant-1' }],
    ['wid and role without tid', { wid: 'workspace-1', role: 'member' }],
  ])('rejects a partially scoped token (%s) at wid', (_label, scope) => {
    const result = PlatformTokenClaimsSchema.safeParse({ ...unscoped(), ...scope })
    expect(result.success).toBe(false)
    expect(result.error?.issues).toEqual([
      expect.objectContaining({
        path: ['wid'],
        message: 'tid, wid and role come together or not at all',
      }),
    ])
  })

  it('rejects a role that is not a workspace role', () => {
    const result = PlatformTokenClaimsSchema.safeParse({ ...scoped(), role: 'superuser' })
    expect(result.success).toBe(false)
    expect(result.error?.issues.map((issue) => issue.path.join('.'))).toEqual(['role'])
  })

  it.each([INTERNAL_AUDIENCE, 'Platform', '', ['platform']])('rejects aud %j', (aud) => {
    const result = PlatformTokenClaimsSchema.safeParse({ ...unscoped(), aud })
    expect(result.success).toBe(false)
    expect(result.error?.issues.map((issue) => issue.path.join('.'))).toEqual(['aud'])
  })

  it.each([
    ['exp equal to iat', now],
    ['exp before iat', now - 1],
  ])('rejects %s at exp', (_label, exp) => {
    const result = PlatformTokenClaimsSchema.safeParse({ ...unscoped(), exp })
    expect(result.success).toBe(false)
    expect(result.error?.issues).toEqual([
      expect.objectContaining({ path: ['exp'], message: 'exp must be after iat' }),
    ])
  })

  it.each(['iss', 'sub', 'sid', 'jti', 'iat', 'exp'] as const)(
    'rejects a token without %s',
    (claim) => {
      const claims: Partial<ReturnType<typeof unscoped>> = unscoped()
      delete claims[claim]
      const result = PlatformTokenClaimsSchema.safeParse(claims)
      expect(result.success).toBe(false)
      expect(result.error?.issues.map((issue) => issue.path.join('.'))).toContain(claim)
    },
  )

  it('rejects empty identifiers and fractional times', () => {
    expect(PlatformTokenClaimsSchema.safeParse({ ...unscoped(), sub: '' }).success).toBe(false)
    expect(PlatformTokenClaimsSchema.safeParse({ ...scoped(), wid: '' }).success).toBe(false)
    expect(PlatformTokenClaimsSchema.safeParse({ ...unscoped(), iat: now + 0.5 }).success).toBe(
      false,
    )
  })
})

describe('ServiceTokenClaimsSchema', () => {
  it.each(['auth-service', 'workspace-service', 'api-gateway', 'code-runtime'])(
    'accepts a token for %s',
    (sub) => {
      expect(ServiceTokenClaimsSchema.parse({ ...serviceClaims(), sub })).toEqual({
        ...serviceClaims(),
        sub,
      })
    },
  )

  it.each(['librechat', 'API-GATEWAY', ''])('rejects the unknown service %j', (sub) => {
    const result = ServiceTokenClaimsSchema.safeParse({ ...serviceClaims(), sub })
    expect(result.success).toBe(false)
    expect(result.error?.issues.map((issue) => issue.path.join('.'))).toEqual(['sub'])
  })

  it('rejects a platform audience', () => {
    const result = ServiceTokenClaimsSchema.safeParse({
      ...serviceClaims(),
      aud: PLATFORM_AUDIENCE,
    })
    expect(result.success).toBe(false)
    expect(result.error?.issues.map((issue) => issue.path.join('.'))).toEqual(['aud'])
  })

  it('rejects exp not after iat', () => {
    const result = ServiceTokenClaimsSchema.safeParse({ ...serviceClaims(), exp: now })
    expect(result.success).toBe(false)
    expect(result.error?.issues).toEqual([
      expect.objectContaining({ path: ['exp'], message: 'exp must be after iat' }),
    ])
  })
})
