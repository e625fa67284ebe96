import type { ServiceErrorPrefix } from '@platform/shared-types'
import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { z } from 'zod'

/** A dependency check for /readyz: resolves when the dependency answers, rejects otherwise. */
export type ReadinessCheck = () => Promise<void>

export interface Readiness {
  add(name: string, check: ReadinessCheck): void
}

export interface HealthOptions {
  prefix: ServiceErrorPrefix
  /** How long one check may take before it counts as failed. */
  checkTimeoutMs?: number
}

const CheckResultsSchema = z.record(z.string(), z.enum(['ok', 'failing']))
const ReadySchema = z.object({ status: z.literal('ready'), checks: CheckResultsSchema })
const NotReadySchema = z.object({
  statusCode: z.literal(503),
  code: z.string(),
  error: z.string(),
  message: z.string(),
  checks: CheckResultsSchema,
})

function withTimeout(check: ReadinessCheck, ms: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms)
    check().then(
      () => {
        clearTimeout(timer)
        resolve()
      },
      (error: unknown) => {
        clearTimeout(timer)
        reject(error)
      },
    )
  })
}

/** Decorates `readiness` and serves /healthz (the process is up) and /readyz (its dependencies answer). */
async function health(app: FastifyInstance, options: HealthOptions) {
  const checks = new Map<string, ReadinessCheck>()
  const timeoutMs = options.checkTimeoutMs ?? 2000
  app.decorate('readiness', {
    add(name, check) {
      checks.set(name, check)
    },
  } satisfies Readiness)

  app.get(
    '/healthz',
    { schema: { response: { 200: z.object({ status: z.literal('ok') }) } } },
    async () => ({ status: 'ok' as const }),
  )

  app.get(
    '/readyz',
    { schema: { response: { 200: ReadySchema, 503: NotReadySchema } } },
    async (request, reply) => {
      const names = [...checks.keys()]
      const outcomes = await Promise.allSettled(
        [...checks.values()].map((check) => withTimeout(check, timeoutMs)),
      )
      const results: Record<string, 'ok' | 'failing'> = {}
      const failing: string[] = []
      outcomes.forEach((outcome, index) => {
        const name = names[index] as string
        results[name] = outcome.status === 'fulfilled' ? 'ok' : 'failing'
        if (outcome.status === 'rejected') {
          failing.push(name)
          request.log.warn({ check: name, err: outcome.reason }, 'readiness check failed')
        }
      })
      if (failing.length === 0) return { status: 'ready' as const, checks: results }
      return reply.code(503).send({
        statusCode: 503 as const,
        code: `${options.prefix}_NOT_READY`,
        error: 'Service Unavailable',
        message: `Not ready: ${failing.join(', ')} failing`,
        checks: results,
      })
    },
  )
}

export const healthPlugin = fp(health, { name: 'health', fastify: '5.x' })

declare module 'fastify' {
  interface FastifyInstance {
    readiness: Readiness
  }
}
