import { describe, expect, it } from 'vitest'
import {
  AuthErrorCodeSchema,
  ErrorCodeSchema,
  ErrorResponseSchema,
  FRAMEWORK_ERROR_SUFFIXES,
  GatewayErrorCodeSchema,
  LimitErrorResponseSchema,
  RuntimeErrorCodeSchema,
  ServiceErrorPrefixSchema,
  WorkspaceErrorCodeSchema,
} from '../src/index.js'

/** The error example of API.md §1. */
const apiError = () => ({
  statusCode: 403,
  code: 'GW_MODEL_NOT_ALLOWED',
  error: 'Forbidden',
  message: 'Model oai:gpt-4o is not allowed in workspace Research',
})

/** The validation error of API.md §1, with its details. */
const apiValidationError = () => ({
  statusCode: 400,
  code: 'WSP_VALIDATION',
  error: 'Bad Request',
  message: 'The request is not valid',
  details: [{ path: 'quota.monthlyTokens', message: 'must be a non-negative integer' }],
})

/** A 429 with the limit fields of API.md §1. */
const apiLimitError = () => ({
  statusCode: 429,
  code: 'GW_QUOTA_EXCEEDED',
  error: 'Too Many Requests',
  message: 'The workspace has used its monthly tokens',
  limitName: 'monthlyTokens',
  scope: 'workspace',
  limit: 2000000,
  used: 2000113,
  resetAt: '2026-12-01T00:00:00+01:00',
})

/** Every code API.md §1 lists in its catalogue; `*_X` stands for each service prefix. */
const CATALOGUE = [
  '*_VALIDATION',
  '*_NOT_FOUND',
  'AUTH_INVALID_CREDENTIALS',
  'AUTH_EMAIL_TAKEN',
  'AUTH_MFA_REQUIRED',
  'AUTH_REFRESH_REUSED',
  'AUTH_SESSION_REVOKED',
  'AUTH_RATE_LIMITED',
  'AUTH_NOT_A_MEMBER',
  'WSP_FORBIDDEN',
  'WSP_LAST_OWNER',
  'WSP_CONFLICT',
  'GW_UNAUTHENTICATED',
  'GW_TOKEN_REVOKED',
  'GW_FORBIDDEN',
  'GW_NO_WORKSPACE',
  'GW_MODEL_NOT_ALLOWED',
  'GW_MCP_NOT_ALLOWED',
  'GW_RATE_LIMITED',
  'GW_QUOTA_EXCEEDED',
  'GW_ROUTE_DISABLED',
  'GW_LIBRECHAT_NOT_CONFIGURED',
  'GW_UPSTREAM_UNAVAILABLE',
  'GW_DEPENDENCY_UNAVAILABLE',
].flatMap((code) =>
  code.startsWith('*_')
    ? ServiceErrorPrefixSchema.options.map((prefix) => `${prefix}${code.slice(1)}`)
    : [code],
)

describe('ErrorResponseSchema', () => {
  it('accepts the API.md §1 example', () => {
    expect(ErrorResponseSchema.parse(apiError())).toEqual(apiError())
  })

  it('accepts a validation error with dotted details', () => {
    expect(ErrorResponseSchema.parse(apiValidationError())).toEqual(apiValidationError())
  })

  it.each([
    'MODEL_NOT_ALLOWED',
    'NOT_FOUND',
    'gw_NOT_FOUND',
    'LC_NOT_FOUND',
    'GW_',
    'GW_not_found',
  ])('rejects the code %j, which has no service prefix or is not upper case', (code) => {
    const result = ErrorResponseSchema.safeParse({ ...apiError(), code })
    expect(result.success).toBe(false)
    expect(result.error?.issues.map((issue) => issue.path.join('.'))).toEqual(['code'])
  })

  it.each([200, 399, 600, 403.5])('rejects the status code %d', (statusCode) => {
    const result = ErrorResponseSchema.safeParse({ ...apiError(), statusCode })
    expect(result.success).toBe(false)
    expect(result.error?.issues.map((issue) => issue.path.join('.'))).toEqual(['statusCode'])
  })

  it('rejects a detail without a message', () => {
    const body = { ...apiValidationError(), details: [{ path: 'quota.rpm' }] }
    const result = ErrorResponseSchema.safeParse(body)
    expect(result.success).toBe(false)
    expect(result.error?.issues.map((issue) => issue.path.join('.'))).toEqual(['details.0.message'])
  })

  it('rejects a body without its message', () => {
    const { message: _message, ...body } = apiError()
    expect(ErrorResponseSchema.safeParse(body).success).toBe(false)
  })

  it('keeps response bodies open: an extra field is allowed (and stripped)', () => {
    expect(ErrorResponseSchema.parse({ ...apiError(), requestId: 'r-1' })).toEqual(apiError())
  })
})

describe('LimitErrorResponseSchema', () => {
  it('accepts a 429 with the API.md §1 limit fields', () => {
    expect(LimitErrorResponseSchema.parse(apiLimitError())).toEqual(apiLimitError())
  })

  it.each(['ip', 'account', 'member'])('accepts the scope %s', (scope) => {
    expect(LimitErrorResponseSchema.safeParse({ ...apiLimitError(), scope }).success).toBe(true)
  })

  it.each([
    ['a status other than 429', { statusCode: 403 }, 'statusCode'],
    ['an unknown limit name', { limitName: 'dailyTokens' }, 'limitName'],
    ['an unknown scope', { scope: 'tenant' }, 'scope'],
    ['a reset time without an offset', { resetAt: '2026-12-01 00:00:00' }, 'resetAt'],
    ['a reset time that is not a date', { resetAt: 'next month' }, 'resetAt'],
    ['a code without a service prefix', { code: 'QUOTA_EXCEEDED' }, 'code'],
    ['a limit given as a string', { limit: '2000000' }, 'limit'],
  ])('rejects %s', (_label, change, path) => {
    const result = LimitErrorResponseSchema.safeParse({ ...apiLimitError(), ...change })
    expect(result.success).toBe(false)
    expect(result.error?.issues.map((issue) => issue.path.join('.'))).toEqual([path])
  })

  it('accepts a UTC reset time', () => {
    const body = { ...apiLimitError(), resetAt: '2026-12-01T00:00:00Z' }
    expect(LimitErrorResponseSchema.safeParse(body).success).toBe(true)
  })

  it.each(['limitName', 'scope', 'limit', 'used', 'resetAt'] as const)(
    'rejects a 429 without %s',
    (field) => {
      const body: Partial<ReturnType<typeof apiLimitError>> = apiLimitError()
      delete body[field]
      const result = LimitErrorResponseSchema.safeParse(body)
      expect(result.success).toBe(false)
      expect(result.error?.issues.map((issue) => issue.path.join('.'))).toEqual([field])
    },
  )
})

describe('ErrorCodeSchema', () => {
  it.each(CATALOGUE)('has the catalogue code %s', (code) => {
    expect(ErrorCodeSchema.safeParse(code).success).toBe(true)
    expect(ErrorResponseSchema.safeParse({ ...apiError(), code }).success).toBe(true)
  })

  it('gives every service every framework code', () => {
    for (const prefix of ServiceErrorPrefixSchema.options) {
      for (const suffix of FRAMEWORK_ERROR_SUFFIXES) {
        expect(ErrorCodeSchema.safeParse(`${prefix}_${suffix}`).success).toBe(true)
      }
    }
  })

  it('keeps each service to its own prefix', () => {
    const perService = [
      ['AUTH', AuthErrorCodeSchema],
      ['WSP', WorkspaceErrorCodeSchema],
      ['GW', GatewayErrorCodeSchema],
      ['RT', RuntimeErrorCodeSchema],
    ] as const
    for (const [prefix, schema] of perService) {
      for (const code of schema.options) expect(code.startsWith(`${prefix}_`)).toBe(true)
    }
  })

  it('every code it knows also fits the error body', () => {
    const all = [
      ...AuthErrorCodeSchema.options,
      ...WorkspaceErrorCodeSchema.options,
      ...GatewayErrorCodeSchema.options,
      ...RuntimeErrorCodeSchema.options,
    ]
    for (const code of all) {
      expect(ErrorResponseSchema.safeParse({ ...apiError(), code }).success).toBe(true)
    }
  })

  it.each(['GW_EMAIL_TAKEN', 'AUTH_MODEL_NOT_ALLOWED', 'NOT_FOUND', 'GW_SOMETHING'])(
    'rejects %s, which no service defines',
    (code) => {
      expect(ErrorCodeSchema.safeParse(code).success).toBe(false)
    },
  )
})
