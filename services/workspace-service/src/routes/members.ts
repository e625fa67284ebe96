import { errorResponses, userOf } from '@platform/service-kit'
import { WorkspaceRoleSchema } from '@platform/shared-types'
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { actorOf } from '../lib/audit-log.js'
import { decodeCursor, PageQuerySchema, pageOf } from '../lib/cursor.js'
import { invitationView } from '../lib/invitations.js'
import { memberView } from '../lib/members.js'
import { idParam, isoTime, MemberViewSchema, pageSchema } from './schemas.js'

const WorkspaceParams = z.object({ wid: idParam })

const InvitationSchema = z.object({
  id: z.string(),
  email: z.string(),
  role: WorkspaceRoleSchema,
  expiresAt: isoTime,
})

const InvitationDetailSchema = InvitationSchema.extend({
  status: z.enum(['pending', 'accepted', 'revoked', 'expired']),
  invitedBy: z.string(),
  createdAt: isoTime,
})

const shownMember = (member: Parameters<typeof memberView>[0]) => {
  const view = memberView(member)
  return { ...view, addedAt: view.addedAt.toISOString() }
}

/** A workspace's members and invitations (API.md §4). */
export const memberRoutes: FastifyPluginAsyncZod = async (app) => {
  const { access, members, invitations, users } = app.tenancy
  app.addHook('onRequest', app.requireUser)

  app.get(
    '/members',
    {
      schema: {
        params: WorkspaceParams,
        querystring: PageQuerySchema,
        response: { 200: pageSchema(MemberViewSchema), ...errorResponses(400, 401, 404) },
      },
    },
    async (request) => {
      const { workspace } = await access.workspace(
        userOf(request).sub,
        request.params.wid,
        'members.read',
      )
      const after = decodeCursor(request.query.cursor)
      const rows = await members.list(
        workspace._id,
        after === null ? null : String(after[1]),
        request.query.limit,
      )
      const page = pageOf(rows, request.query.limit, (row) => [0, row.userId])
      return { items: page.items.map(shownMember), nextCursor: page.nextCursor }
    },
  )

  app.post(
    '/members',
    {
      schema: {
        params: WorkspaceParams,
        body: z.strictObject({ email: z.email().max(320), role: WorkspaceRoleSchema }),
        response: {
          201: MemberViewSchema,
          202: z.object({
            invitation: InvitationSchema,
            /** The secret the invitee accepts with; shown once, to pass on with the link. */
            token: z.string(),
            acceptPath: z.string(),
          }),
          ...errorResponses(400, 401, 403, 404, 409, 503),
        },
      },
    },
    async (request, reply) => {
      const { workspace } = await access.workspace(
        userOf(request).sub,
        request.params.wid,
        'members.manage',
      )
      const tenant = await access.tenantOf(workspace)
      const { email, role } = request.body
      const user = await users.byEmail(email)
      if (user !== null) {
        const member = await members.add(tenant, workspace, user, role, actorOf(request))
        return reply.code(201).send(shownMember(member))
      }
      const { invitation, token } = await invitations.create(
        tenant,
        workspace,
        email,
        role,
        actorOf(request),
      )
      return reply.code(202).send({
        invitation: {
          id: invitation._id,
          email: invitation.email,
          role: invitation.role,
          expiresAt: invitation.expiresAt.toISOString(),
        },
        token,
        acceptPath: `/v1/invitations/${token}/accept`,
      })
    },
  )

  app.patch(
    '/members/:userId',
    {
      schema: {
        params: WorkspaceParams.extend({ userId: idParam }),
        body: z.strictObject({ role: WorkspaceRoleSchema }),
        response: { 200: MemberViewSchema, ...errorResponses(400, 401, 403, 404, 409) },
      },
    },
    async (request) => {
      const { workspace } = await access.workspace(
        userOf(request).sub,
        request.params.wid,
        'members.read',
      )
      const changed = await members.changeRole(
        workspace,
        request.params.userId,
        request.body.role,
        actorOf(request),
      )
      return shownMember(changed)
    },
  )

  app.delete(
    '/members/:userId',
    {
      schema: {
        params: WorkspaceParams.extend({ userId: idParam }),
        response: { 204: z.null(), ...errorResponses(401, 403, 404, 409) },
      },
    },
    async (request, reply) => {
      const { workspace } = await access.workspace(
        userOf(request).sub,
        request.params.wid,
        'members.read',
      )
      await members.remove(workspace, request.params.userId, actorOf(request))
      return reply.code(204).send(null)
    },
  )

  app.get(
    '/invitations',
    {
      schema: {
        params: WorkspaceParams,
        querystring: PageQuerySchema,
        response: {
          200: pageSchema(InvitationDetailSchema),
          ...errorResponses(400, 401, 403, 404),
        },
      },
    },
    async (request) => {
      const { workspace } = await access.workspace(
        userOf(request).sub,
        request.params.wid,
        'members.manage',
      )
      const after = decodeCursor(request.query.cursor)
      const rows = await invitations.list(
        workspace._id,
        after === null ? null : String(after[1]),
        request.query.limit,
      )
      const page = pageOf(rows, request.query.limit, (row) => [0, row._id])
      return {
        items: page.items.map((row) => {
          const view = invitationView(row)
          return {
            ...view,
            createdAt: view.createdAt.toISOString(),
            expiresAt: view.expiresAt.toISOString(),
          }
        }),
        nextCursor: page.nextCursor,
      }
    },
  )

  app.delete(
    '/invitations/:invitationId',
    {
      schema: {
        params: WorkspaceParams.extend({ invitationId: idParam }),
        response: { 204: z.null(), ...errorResponses(401, 403, 404) },
      },
    },
    async (request, reply) => {
      const { workspace } = await access.workspace(
        userOf(request).sub,
        request.params.wid,
        'members.manage',
      )
      await invitations.revoke(workspace, request.params.invitationId, actorOf(request))
      return reply.code(204).send(null)
    },
  )
}

/** `POST /v1/invitations/:token/accept`: the invitee, signed in, joins (API.md §4). */
export const invitationRoutes: FastifyPluginAsyncZod = async (app) => {
  const { invitations, users } = app.tenancy
  app.addHook('onRequest', app.requireUser)

  app.post(
    '/:token/accept',
    {
      schema: {
        params: z.object({ token: z.string().min(1).max(128) }),
        response: {
          200: z.object({
            workspace: z.object({ id: z.string(), tenantId: z.string(), name: z.string() }),
            member: MemberViewSchema,
          }),
          ...errorResponses(401, 404, 409, 503),
        },
      },
    },
    async (request) => {
      const user = await users.byId(userOf(request).sub)
      if (user === null) throw new Error('a verified token names an unknown account')
      const { workspace, member } = await invitations.accept(
        request.params.token,
        user,
        actorOf(request),
      )
      return {
        workspace: { id: workspace._id, tenantId: workspace.tenantId, name: workspace.name },
        member: shownMember(member),
      }
    },
  )
}
