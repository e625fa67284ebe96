import createError from '@fastify/error'
import { ErrorResponseSchema } from '@platform/shared-types'
import { describe, expect, it } from 'vitest'
import { z } from 'zod'
import type { ServiceApp } from '../src/index.js'
import { testApp } from './helpers.js'

const WorkspaceConflict = createError('GW_CONFLICT', 'Workspace %s already exists', 409)
const UpstreamUnavailable = createError(
  'GW_UPSTREAM_UNAVAILABLE',
  'The workspace-service is not answering; try again shortly',
  503,
)
const ForeignFault = createError('WSP_INTERNAL', 'mongo said: E11000 at 10.0.0.7', 500)
const ForeignForbidden = createError('WSP_FORBIDDEN', 'Only admins may do that', 403)

const SECRET_FAULT = 'connect ECONNREFUSED mongodb://admin:hunter2@10.0.0.7:27017/auth'

const PolicyBody = z.strictObject({
  name: z.string().min(1),
  quota: z.strictObject({
    monthlyTokens: z.number().int().nonnegative(),
    rpm: z.number().int().nonnegative(),
  }),
})

/** Sends a body to the validated route as a client would, with the given content type. */
function postPolicy(app: ServiceApp, payload: string, contentType = 'application/json') {
  return app.inject({
    method: 'POST',
    url: '/workspaces/w-1/policy',
    headers: { 'content-type': contentType },
    payload,
  })
}

/** An app with one route for each way a request can fail. */
async function appWithRoutes(options: { bodyLimit?: number } = {}): Promise<ServiceApp> {
  const app = await testApp(options)
  app.post(
    '/workspaces/:wid/policy',
    {
      schema: {
        params: z.object({ wid: z.string().regex(/^w-\d+$/) }),
        querystring: z.object({ limit: z.coerce.number().int().max(100).default(20) }),
        body: PolicyBody,
      },
    },
    async (request) => ({ wid: request.params.wid, name: request.body.name }),
  )
  app.get('/fault', async () => {
    throw new Error(SECRET_FAULT)
  })
  app.get('/conflict', async () => {
    throw new WorkspaceConflict('Research')
  })
  app.get('/conflict-with-details', async () => {
    throw Object.assign(new WorkspaceConflict('Research'), {
      details: [{ path: 'name', message: 'is taken' }],
    })
  })
  app.get('/upstream', async () => {
    throw new UpstreamUnavailable()
  })
  app.get('/foreign-fault', async () => {
    throw new ForeignFault()
  })
  app.get('/foreign-forbidden', async () => {
    throw new ForeignForbidden()
  })
  app.get('/odd-status', async () => {
    throw Object.assign(new Error('redirected somewhere private'), { statusCode: 302 })
  })
  app.get(
    '/users/:id',
    {
      schema: {
        response: { 200: z.object({ id: z.string(), email: z.email() }) },
      },
    },
    async (request) => {
      const { id } = request.params as { id: string }
      if (id === 'broken')
        return { id: 42, email: 'not an email' } as unknown as { id: string; email: string }
      return { id, email: 'ada@example.com', passwordHash: '$argon2id$v=19$secret-hash' }
    },
  )
  return app
}

const validPolicy = () => ({ name: 'Research', quota: { monthlyTokens: 1000, rpm: 60 } })

/** Checks the body against the one error shape of API.md §1 and returns it. */
function errorBody(payload: string) {
  const body = JSON.parse(payload)
  expect(ErrorResponseSchema.strict().parse(body)).toEqual(body)
  return body as z.infer<typeof ErrorResponseSchema>
}

describe('the error handler', () => {
  describe('an unknown route', () => {
    it('answers a known route normally', async () => {
      const app = await appWithRoutes()
      const response = await app.inject({
        method: 'POST',
        url: '/workspaces/w-1/policy?limit=5',
        payload: validPolicy(),
      })
      expect(response.statusCode).toBe(200)
      expect(response.json()).toEqual({ wid: 'w-1', name: 'Research' })
    })

    it('answers 404 GW_NOT_FOUND naming the method and path, without the query string', async () => {
      const app = await appWithRoutes()
      const response = await app.inject({
        method: 'DELETE',
        url: '/nowhere/at/all?token=secret-query-token',
      })
      expect(response.statusCode).toBe(404)
      expect(response.headers['content-type']).toMatch(/^application\/json/)
      expect(errorBody(response.payload)).toEqual({
        statusCode: 404,
        code: 'GW_NOT_FOUND',
        error: 'Not Found',
        message: 'Route DELETE /nowhere/at/all not found',
      })
      expect(response.payload).not.toContain('secret-query-token')
    })

    it('answers 404 for a known path with another method', async () => {
      const app = await appWithRoutes()
      const response = await app.inject({ method: 'GET', url: '/workspaces/w-1/policy' })
      expect(response.statusCode).toBe(404)
      expect(errorBody(response.payload)).toMatchObject({
        code: 'GW_NOT_FOUND',
        message: 'Route GET /workspaces/w-1/policy not found',
      })
    })
  })

  describe('a malformed body', () => {
    it('answers 400 GW_VALIDATION for JSON that does not parse', async () => {
      const app = await appWithRoutes()
      const response = await postPolicy(app, '{"name": "Research", "quota": {')
      expect(response.statusCode).toBe(400)
      expect(errorBody(response.payload)).toMatchObject({
        statusCode: 400,
        code: 'GW_VALIDATION',
        error: 'Bad Request',
      })
    })

    it('answers 400 GW_VALIDATION for an empty JSON body', async () => {
      const app = await appWithRoutes()
      const response = await postPolicy(app, '')
      expect(response.statusCode).toBe(400)
      expect(errorBody(response.payload)).toMatchObject({ statusCode: 400, code: 'GW_VALIDATION' })
    })
  })

  describe('zod validation', () => {
    it('answers 400 GW_VALIDATION with dotted body paths in details', async () => {
      const app = await appWithRoutes()
      const response = await app.inject({
        method: 'POST',
        url: '/workspaces/w-1/policy',
        payload: { name: 'Research', quota: { monthlyTokens: -5, rpm: 60 } },
      })
      expect(response.statusCode).toBe(400)
      const body = errorBody(response.payload)
      expect(body).toEqual({
        statusCode: 400,
        code: 'GW_VALIDATION',
        error: 'Bad Request',
        message: 'The request is not valid',
        details: [{ path: 'quota.monthlyTokens', message: expect.any(String) }],
      })
    })

    it('names every bad field, and an unknown one, in details', async () => {
      const app = await appWithRoutes()
      const response = await app.inject({
        method: 'POST',
        url: '/workspaces/w-1/policy',
        payload: { name: '', quota: { monthlyTokens: 1.5, rpm: 'many' }, owner: 'me' },
      })
      expect(response.statusCode).toBe(400)
      const body = errorBody(response.payload)
      expect(body.code).toBe('GW_VALIDATION')
      expect(body.details?.map((detail) => detail.path).sort()).toEqual([
        '(body)',
        'name',
        'quota.monthlyTokens',
        'quota.rpm',
      ])
    })

    it('prefixes querystring paths with querystring', async () => {
      const app = await appWithRoutes()
      const response = await app.inject({
        method: 'POST',
        url: '/workspaces/w-1/policy?limit=1000',
        payload: validPolicy(),
      })
      expect(response.statusCode).toBe(400)
      expect(errorBody(response.payload)).toEqual({
        statusCode: 400,
        code: 'GW_VALIDATION',
        error: 'Bad Request',
        message: 'The request is not valid',
        details: [{ path: 'querystring.limit', message: expect.any(String) }],
      })
    })

    it('prefixes route parameter paths with params', async () => {
      const app = await appWithRoutes()
      const response = await app.inject({
        method: 'POST',
        url: '/workspaces/nope/policy',
        payload: validPolicy(),
      })
      expect(response.statusCode).toBe(400)
      expect(errorBody(response.payload)).toMatchObject({
        code: 'GW_VALIDATION',
        details: [{ path: 'params.wid', message: expect.any(String) }],
      })
    })
  })

  describe('faults', () => {
    it('answers 500 GW_INTERNAL for a plain Error, without its message or stack', async () => {
      const app = await appWithRoutes()
      const response = await app.inject({ method: 'GET', url: '/fault' })
      expect(response.statusCode).toBe(500)
      expect(errorBody(response.payload)).toEqual({
        statusCode: 500,
        code: 'GW_INTERNAL',
        error: 'Internal Server Error',
        message: 'Internal Server Error',
      })
      for (const leak of ['hunter2', 'ECONNREFUSED', 'mongodb://', 'stack', 'at ', '.ts:']) {
        expect(response.payload).not.toContain(leak)
      }
    })

    it("answers 500 GW_INTERNAL for another service's 5xx code, without its message", async () => {
      const app = await appWithRoutes()
      const response = await app.inject({ method: 'GET', url: '/foreign-fault' })
      expect(response.statusCode).toBe(500)
      expect(errorBody(response.payload)).toEqual({
        statusCode: 500,
        code: 'GW_INTERNAL',
        error: 'Internal Server Error',
        message: 'Internal Server Error',
      })
      expect(response.payload).not.toContain('E11000')
    })

    it('answers 500 GW_INTERNAL for an error whose statusCode is not an error status', async () => {
      const app = await appWithRoutes()
      const response = await app.inject({ method: 'GET', url: '/odd-status' })
      expect(response.statusCode).toBe(500)
      expect(errorBody(response.payload)).toMatchObject({
        code: 'GW_INTERNAL',
        message: 'Internal Server Error',
      })
      expect(response.payload).not.toContain('private')
    })
  })

  describe("the service's own errors", () => {
    it('answers an own 409 with its code and message', async () => {
      const app = await appWithRoutes()
      const response = await app.inject({ method: 'GET', url: '/conflict' })
      expect(response.statusCode).toBe(409)
      expect(errorBody(response.payload)).toEqual({
        statusCode: 409,
        code: 'GW_CONFLICT',
        error: 'Conflict',
        message: 'Workspace Research already exists',
      })
    })

    it('keeps the details an own 4xx carries', async () => {
      const app = await appWithRoutes()
      const response = await app.inject({ method: 'GET', url: '/conflict-with-details' })
      expect(response.statusCode).toBe(409)
      expect(errorBody(response.payload)).toEqual({
        statusCode: 409,
        code: 'GW_CONFLICT',
        error: 'Conflict',
        message: 'Workspace Research already exists',
        details: [{ path: 'name', message: 'is taken' }],
      })
    })

    it('answers an own 503 with its code and client-facing message', async () => {
      const app = await appWithRoutes()
      const response = await app.inject({ method: 'GET', url: '/upstream' })
      expect(response.statusCode).toBe(503)
      expect(errorBody(response.payload)).toEqual({
        statusCode: 503,
        code: 'GW_UPSTREAM_UNAVAILABLE',
        error: 'Service Unavailable',
        message: 'The workspace-service is not answering; try again shortly',
      })
    })

    it("gives another service's 4xx code this service's prefix", async () => {
      const app = await appWithRoutes()
      const response = await app.inject({ method: 'GET', url: '/foreign-forbidden' })
      expect(response.statusCode).toBe(403)
      expect(errorBody(response.payload)).toEqual({
        statusCode: 403,
        code: 'GW_REQUEST_ERROR',
        error: 'Forbidden',
        message: 'Only admins may do that',
      })
    })
  })

  describe('framework errors', () => {
    it('answers 415 GW_UNSUPPORTED_MEDIA_TYPE for a content type no parser takes', async () => {
      const app = await appWithRoutes()
      const response = await postPolicy(app, '<policy/>', 'application/xml')
      expect(response.statusCode).toBe(415)
      expect(errorBody(response.payload)).toMatchObject({
        statusCode: 415,
        code: 'GW_UNSUPPORTED_MEDIA_TYPE',
        error: 'Unsupported Media Type',
      })
    })

    it('accepts a body at the limit and answers 413 GW_PAYLOAD_TOO_LARGE over it', async () => {
      const app = await appWithRoutes({ bodyLimit: 256 })
      const fits = JSON.stringify(validPolicy())
      const small = await postPolicy(app, fits)
      expect(small.statusCode).toBe(200)

      const response = await postPolicy(
        app,
        JSON.stringify({ ...validPolicy(), name: 'x'.repeat(300) }),
      )
      expect(response.statusCode).toBe(413)
      expect(errorBody(response.payload)).toMatchObject({
        statusCode: 413,
        code: 'GW_PAYLOAD_TOO_LARGE',
        error: 'Payload Too Large',
      })
    })
  })

  describe('response schemas', () => {
    it('strips a field the response schema does not list', async () => {
      const app = await appWithRoutes()
      const response = await app.inject({ method: 'GET', url: '/users/u-1' })
      expect(response.statusCode).toBe(200)
      expect(response.json()).toEqual({ id: 'u-1', email: 'ada@example.com' })
      expect(response.payload).not.toContain('passwordHash')
      expect(response.payload).not.toContain('argon2')
    })

    it('answers 500 GW_INTERNAL for a reply that violates its response schema', async () => {
      const app = await appWithRoutes()
      const response = await app.inject({ method: 'GET', url: '/users/broken' })
      expect(response.statusCode).toBe(500)
      expect(errorBody(response.payload)).toEqual({
        statusCode: 500,
        code: 'GW_INTERNAL',
        error: 'Internal Server Error',
        message: 'Internal Server Error',
      })
      expect(response.payload).not.toContain('not an email')
    })
  })
})
