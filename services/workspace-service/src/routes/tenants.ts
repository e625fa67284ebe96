import { errorResponses, userOf } from '@platform/service-kit'
import { TenantRoleSchema, TimeZoneSchema } from '@platform/shared-types'
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { actorOf } from '../lib/audit-log.js'
import { decodeCursor, PageQuerySchema, pageOf } from '../lib/cursor.js'
import { tenantView } from '../lib/tenants.js'
import {
  AuditItemSchema,
  DisplayNameSchema,
  idParam,
  pageSchema,
  TenantViewSchema,
} from './schemas.js'

const DomainSchema = z
  .string()
  .trim()
  .toLowerCase()
  .max(253)
  .regex(/^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/, 'must be a domain')

const TenantSettingsSchema = z
  .strictObject({
    name: DisplayNameSchema.optional(),
    timeZone: TimeZoneSchema.optional(),
    branding: z
      .strictObject({
        displayName: DisplayNameSchema.nullable().optional(),
        logoUrl: z
          .url({ protocol: /^https$/ })
          .max(2048)
          .nullable()
          .optional(),
        accentColor: z
          .string()
          .regex(/^#[0-9a-fA-F]{6}$/, 'must be a colour like #1a73e8')
          .nullable()
          .optional(),
      })
      .optional(),
    limits: z.strictObject({ monthlyTokens: z.number().int().nonnegative().nullable() }).optional(),
    allowedEmailDomains: z.array(DomainSchema).max(100).optional(),
    auditRetentionDays: z.number().int().min(1).max(3650).nullable().optional(),
  })
  .refine((settings) => Object.keys(settings).length > 0, 'name at least one setting to change')

const TenantMemberSchema = z.object({
  userId: z.string(),
  role: TenantRoleSchema,
  addedAt: z.iso.datetime({ offset: true }),
})

/** Tenants: creation, settings, tenant roles, the tenant's own audit log (API.md §4). */
export const tenantRoutes: FastifyPluginAsyncZod = async (app) => {
  const { tenants, access, users, workspaces, models, audit } = app.tenancy
  app.addHook('onRequest', app.requireUser)

  app.post(
    '/',
    {
      schema: {
        body: z.strictObject({
          name: DisplayNameSchema,
          timeZone: TimeZoneSchema.default('UTC'),
          workspaceName: DisplayNameSchema.default('General'),
        }),
        response: {
          201: z.object({
            tenant: z.object({ id: z.string(), name: z.string(), timeZone: z.string() }),
            workspace: z.object({ id: z.string(), name: z.string() }),
          }),
          ...errorResponses(400, 401, 503),
        },
      },
    },
    async (request, reply) => {
      const owner = await users.account(userOf(request).sub)
      const { tenant, workspace } = await tenants.create(request.body, owner, actorOf(request))
      return reply.code(201).send({
        tenant: { id: tenant._id, name: tenant.name, timeZone: tenant.timeZone },
        workspace: { id: workspace._id, name: workspace.name },
      })
    },
  )

  app.get(
    '/',
    {
      schema: {
        response: { 200: z.object({ items: z.array(TenantViewSchema) }), ...errorResponses(401) },
      },
    },
    async (request) => {
      return { items: await tenants.listMine(userOf(request).sub) }
    },
  )

  app.get(
    '/:tid',
    {
      schema: {
        params: z.object({ tid: idParam }),
        response: { 200: TenantViewSchema, ...errorResponses(401, 404) },
      },
    },
    async (request) => {
      const { tenant, membership } = await access.tenant(
        userOf(request).sub,
        request.params.tid,
        'tenant.read',
      )
      return tenantView(tenant, membership.role)
    },
  )

  app.patch(
    '/:tid',
    {
      schema: {
        params: z.object({ tid: idParam }),
        body: TenantSettingsSchema,
        response: { 200: TenantViewSchema, ...errorResponses(400, 401, 403, 404) },
      },
    },
    async (request) => {
      const { tenant, membership } = await access.tenant(
        userOf(request).sub,
        request.params.tid,
        'tenant.update',
      )
      const updated = await tenants.update(tenant, request.body, actorOf(request))
      return tenantView(updated, membership.role)
    },
  )

  app.get(
    '/:tid/members',
    {
      schema: {
        params: z.object({ tid: idParam }),
        querystring: PageQuerySchema,
        response: { 200: pageSchema(TenantMemberSchema), ...errorResponses(400, 401, 403, 404) },
      },
    },
    async (request) => {
      const { tenant } = await access.tenant(
        userOf(request).sub,
        request.params.tid,
        'tenant.members.read',
      )
      const after = decodeCursor(request.query.cursor)
      const filter: Record<string, unknown> = { tenantId: tenant._id }
      if (after !== null) filter.userId = { $gt: String(after[1]) }
      const rows = await models.TenantMember.find(filter)
        .sort({ tenantId: 1, userId: 1 })
        .limit(request.query.limit + 1)
        .lean()
      const page = pageOf(rows, request.query.limit, (row) => [0, row.userId])
      return {
        items: page.items.map((row) => ({
          userId: row.userId,
          role: row.role,
          addedAt: row.addedAt.toISOString(),
        })),
        nextCursor: page.nextCursor,
      }
    },
  )

  app.patch(
    '/:tid/members/:userId',
    {
      schema: {
        params: z.object({ tid: idParam, userId: idParam }),
        body: z.strictObject({ role: TenantRoleSchema }),
        response: { 200: TenantMemberSchema, ...errorResponses(400, 401, 403, 404, 409) },
      },
    },
    async (request) => {
      const { tenant } = await access.tenant(
        userOf(request).sub,
        request.params.tid,
        'tenant.members.manage',
      )
      const changed = await tenants.changeRole(
        tenant,
        request.params.userId,
        request.body.role,
        actorOf(request),
      )
      return { userId: changed.userId, role: changed.role, addedAt: changed.addedAt.toISOString() }
    },
  )

  app.get(
    '/:tid/audit',
    {
      schema: {
        params: z.object({ tid: idParam }),
        querystring: PageQuerySchema,
        response: { 200: pageSchema(AuditItemSchema), ...errorResponses(400, 401, 403, 404) },
      },
    },
    async (request) => {
      await access.tenant(userOf(request).sub, request.params.tid, 'tenant.audit.read')
      const page = await audit.list(
        { tenantId: request.params.tid },
        request.query.limit,
        request.query.cursor,
      )
      return {
        items: page.items.map((item) => ({ ...item, at: item.at.toISOString() })),
        nextCursor: page.nextCursor,
      }
    },
  )

  app.post(
    '/:tid/workspaces',
    {
      schema: {
        params: z.object({ tid: idParam }),
        body: z.strictObject({ name: DisplayNameSchema }),
        response: {
          201: z.object({ id: z.string(), tenantId: z.string(), name: z.string() }),
          ...errorResponses(400, 401, 403, 404, 503),
        },
      },
    },
    async (request, reply) => {
      const { tenant } = await access.tenant(
        userOf(request).sub,
        request.params.tid,
        'workspaces.create',
      )
      const owner = await users.account(userOf(request).sub)
      const workspace = await workspaces.create(tenant, request.body.name, owner, actorOf(request))
      return reply
        .code(201)
        .send({ id: workspace._id, tenantId: workspace.tenantId, name: workspace.name })
    },
  )
}
