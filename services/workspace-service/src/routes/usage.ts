import {
  errorResponses,
  localDateStart,
  startOfMonth,
  startOfNextDay,
  userOf,
} from '@platform/service-kit'
import { QuotaStatusSchema } from '@platform/shared-types'
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { InvalidRequest } from '../errors.js'
import { mayInWorkspace } from '../lib/permissions.js'
import { effectivePolicy } from '../lib/policy.js'
import { idParam, isoTime } from './schemas.js'

const WorkspaceParams = z.object({ wid: idParam })

const FiguresSchema = z.object({
  inputTokens: z.number(),
  outputTokens: z.number(),
  costUsd: z.number(),
  calls: z.number(),
})

/** A day in the tenant's zone (`2026-11-01`) or an instant with an offset. */
const RangeBoundSchema = z.union([z.iso.date(), z.iso.datetime({ offset: true })])

const MAX_RANGE_MS = 400 * 24 * 3600 * 1000

const isDay = (value: string) => /^\d{4}-\d{2}-\d{2}$/.test(value)

/** Usage from the ledger and where the monthly budget stands (API.md §4). */
export const usageRoutes: FastifyPluginAsyncZod = async (app) => {
  const { access, ledger, quota } = app.tenancy
  app.addHook('onRequest', app.requireUser)

  async function scopeOf(
    userId: string,
    workspaceId: string,
    permission: 'usage.read-own' | 'quota.read',
  ) {
    const { workspace, member } = await access.workspace(userId, workspaceId, permission)
    const tenant = await access.tenantOf(workspace)
    return { workspace, member, tenant }
  }

  app.get(
    '/usage',
    {
      schema: {
        params: WorkspaceParams,
        querystring: z.strictObject({
          from: RangeBoundSchema.optional(),
          to: RangeBoundSchema.optional(),
          groupBy: z.enum(['day', 'model', 'member']).default('day'),
        }),
        response: {
          200: z.object({
            from: isoTime,
            to: isoTime,
            timeZone: z.string(),
            totals: FiguresSchema,
            items: z.array(
              FiguresSchema.extend({ key: z.string(), kind: z.enum(['model', 'mcp']).optional() }),
            ),
          }),
          ...errorResponses(400, 401, 404),
        },
      },
    },
    async (request) => {
      const claims = userOf(request)
      const { workspace, member, tenant } = await scopeOf(
        claims.sub,
        request.params.wid,
        'usage.read-own',
      )
      const zone = tenant.timeZone
      const now = new Date()
      const { from: fromParam, to: toParam } = request.query
      const from =
        fromParam === undefined
          ? startOfMonth(now, zone)
          : isDay(fromParam)
            ? localDateStart(fromParam, zone)
            : new Date(fromParam)
      // A day given as `to` includes that whole day.
      const to =
        toParam === undefined
          ? now
          : isDay(toParam)
            ? nextLocalDay(toParam, zone)
            : new Date(toParam)
      if (!(from < to)) throw new InvalidRequest('from must be before to')
      // The answer repeats its range as ISO times, which have four-digit years.
      if (from.getUTCFullYear() < 0 || to.getUTCFullYear() > 9999)
        throw new InvalidRequest('The range must lie within the years 0000 to 9999')
      if (to.getTime() - from.getTime() > MAX_RANGE_MS)
        throw new InvalidRequest('The range may span at most 400 days')
      const everyone = mayInWorkspace(member.role, 'usage.read-all')
      const result = await ledger.usage({
        workspaceId: workspace._id,
        from,
        to,
        groupBy: request.query.groupBy,
        timeZone: zone,
        // Members without the right to see everyone's usage see their own.
        userId: everyone ? undefined : claims.sub,
      })
      return { from: from.toISOString(), to: to.toISOString(), timeZone: zone, ...result }
    },
  )

  app.get(
    '/quota',
    {
      schema: {
        params: WorkspaceParams,
        response: {
          200: QuotaStatusSchema,
          ...errorResponses(401, 404, 503),
        },
      },
    },
    async (request) => {
      const claims = userOf(request)
      const { workspace, tenant } = await scopeOf(claims.sub, request.params.wid, 'quota.read')
      return quota.forMember(effectivePolicy(workspace, tenant), claims.sub)
    },
  )
}

/** The first instant after the local day `dayKey` (`2026-11-30` → 1 December, 00:00 local). */
function nextLocalDay(dayKey: string, timeZone: string): Date {
  // Calendar arithmetic, not an ISO string round trip, which breaks after 9999-12-31.
  return startOfNextDay(localDateStart(dayKey, timeZone), timeZone)
}
