import { type ServiceName, ServiceTokenResponseSchema } from '@platform/shared-types'
import type { z } from 'zod'

/** Another service could not answer; callers decide whether that blocks them. */
export class InternalServiceUnavailableError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'InternalServiceUnavailableError'
  }
}

/** Another service refused the request itself (a 4xx other than 404): the input was wrong. */
export class InternalRequestRefusedError extends Error {
  readonly statusCode: number

  constructor(statusCode: number, message: string) {
    super(message)
    this.name = 'InternalRequestRefusedError'
    this.statusCode = statusCode
  }
}

export interface ServiceTokenSourceOptions {
  authServiceUrl: string
  service: ServiceName
  /** This service's `SERVICE_SECRET_<NAME>`. */
  secret: string
  timeoutMs?: number
}

/** Seconds before expiry at which a cached service token is replaced. */
const RENEW_BEFORE_SECONDS = 30

/**
 * This service's token for calling others (API.md §7), fetched from the auth-service and reused
 * until shortly before it expires. Concurrent callers share one fetch.
 */
export function createServiceTokenSource(options: ServiceTokenSourceOptions) {
  let cached: { token: string; renewAt: number } | null = null
  let pending: Promise<string> | null = null

  async function fetchToken(): Promise<string> {
    let response: Response
    try {
      response = await fetch(new URL('/internal/v1/service-token', options.authServiceUrl), {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify({ service: options.service, secret: options.secret }),
        signal: AbortSignal.timeout(options.timeoutMs ?? 5_000),
      })
    } catch (error) {
      throw new InternalServiceUnavailableError('the auth-service did not answer', { cause: error })
    }
    if (!response.ok) {
      await response.body?.cancel()
      throw new InternalServiceUnavailableError(
        `the auth-service refused a service token (${response.status})`,
      )
    }
    const parsed = ServiceTokenResponseSchema.safeParse(await response.json().catch(() => null))
    if (!parsed.success)
      throw new InternalServiceUnavailableError('the auth-service answered an unexpected body')
    const lifetime = Math.max(parsed.data.expiresIn - RENEW_BEFORE_SECONDS, 1)
    cached = { token: parsed.data.token, renewAt: Date.now() + lifetime * 1000 }
    return parsed.data.token
  }

  return async function serviceToken(): Promise<string> {
    if (cached !== null && Date.now() < cached.renewAt) return cached.token
    pending ??= fetchToken().finally(() => {
      pending = null
    })
    return pending
  }
}

export interface InternalClientOptions {
  /** The other service's base URL; unset while it is not deployed. */
  baseUrl: string | undefined
  /** Names the other service in errors. */
  serviceName: ServiceName
  serviceToken: () => Promise<string>
  timeoutMs?: number
}

export interface InternalClient {
  /**
   * GETs `path` and parses the answer with `schema`; a 404 is `null`, another refusal of the
   * input an `InternalRequestRefusedError`. A refused service token (401/403) is this
   * deployment's fault, so it counts as the service being unavailable.
   */
  get<T extends z.ZodType>(path: string, schema: T): Promise<z.infer<T> | null>
  /** POSTs `body` as JSON to `path`; answers and failures as `get`'s. */
  post<T extends z.ZodType>(path: string, body: unknown, schema: T): Promise<z.infer<T> | null>
}

/** Calls another service's `/internal/v1/*` routes with this service's token. */
export function createInternalClient(options: InternalClientOptions): InternalClient {
  const name = options.serviceName
  async function call<T extends z.ZodType>(
    method: 'GET' | 'POST',
    path: string,
    body: unknown,
    schema: T,
  ): Promise<z.infer<T> | null> {
    if (options.baseUrl === undefined)
      throw new InternalServiceUnavailableError(`the ${name} is not configured`)
    let response: Response
    try {
      const headers: Record<string, string> = {
        authorization: `Bearer ${await options.serviceToken()}`,
        accept: 'application/json',
      }
      if (body !== undefined) headers['content-type'] = 'application/json'
      response = await fetch(new URL(path, options.baseUrl), {
        method,
        headers,
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(options.timeoutMs ?? 5_000),
      })
    } catch (error) {
      if (error instanceof InternalServiceUnavailableError) throw error
      throw new InternalServiceUnavailableError(`the ${name} did not answer`, { cause: error })
    }
    if (response.status === 404) {
      await response.body?.cancel()
      return null
    }
    if (
      response.status >= 400 &&
      response.status < 500 &&
      response.status !== 401 &&
      response.status !== 403
    ) {
      await response.body?.cancel()
      throw new InternalRequestRefusedError(response.status, `the ${name} refused the request`)
    }
    if (!response.ok) {
      await response.body?.cancel()
      throw new InternalServiceUnavailableError(`the ${name} answered ${response.status}`)
    }
    const parsed = schema.safeParse(await response.json().catch(() => undefined))
    if (!parsed.success)
      throw new InternalServiceUnavailableError(`the ${name} answered an unexpected body`, {
        cause: parsed.error,
      })
    return parsed.data
  }
  return {
    get: (path, schema) => call('GET', path, undefined, schema),
    post: (path, body, schema) => call('POST', path, body, schema),
  }
}
