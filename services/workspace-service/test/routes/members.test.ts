import { createHash } from 'node:crypto'
import type { WorkspaceRole } from '@platform/shared-types'
import type { LightMyRequestResponse } from 'fastify'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  auditEvents,
  ownerTally,
  registerWithEmail,
  workspaceState,
  workspaceWith,
} from '../helpers/members.js'
import {
  errorCode,
  startTestStack,
  type TestStack,
  type TestUser,
  uniqueEmail,
} from '../helpers/stack.js'

const HOUR_MS = 3600 * 1000

let stack: TestStack
beforeAll(async () => {
  stack = await startTestStack()
})
afterAll(() => stack?.close())

const membersUrl = (workspaceId: string) => `/v1/workspaces/${workspaceId}/members`
const memberUrl = (workspaceId: string, userId: string) =>
  `/v1/workspaces/${workspaceId}/members/${userId}`
const invitationsUrl = (workspaceId: string) => `/v1/workspaces/${workspaceId}/invitations`

interface InvitationCreated {
  invitation: { id: string; email: string; role: WorkspaceRole; expiresAt: string }
  token: string
  acceptPath: string
}

async function invite(by: TestUser, workspaceId: string, email: string, role: WorkspaceRole) {
  const response = await stack.call(by.token, 'POST', membersUrl(workspaceId), { email, role })
  expect(response.statusCode).toBe(202)
  return response.json<InvitationCreated>()
}

const accept = (user: TestUser, token: string) =>
  stack.call(user.token, 'POST', `/v1/invitations/${token}/accept`)

function expectError(response: LightMyRequestResponse, statusCode: number, code: string) {
  expect({ statusCode: response.statusCode, body: response.json() }).toMatchObject({
    statusCode,
    body: {
      ...errorCode(statusCode, code),
      error: expect.any(String),
      message: expect.any(String),
    },
  })
}

describe('adding members', () => {
  it('adds an existing user by email with the name and address the auth-service knows', async () => {
    const { tenantId, workspaceId, owner } = await workspaceWith(stack)
    const newcomer = await stack.user('newcomer')
    const response = await stack.call(owner.token, 'POST', membersUrl(workspaceId), {
      email: newcomer.email.toUpperCase(),
      role: 'member',
    })
    expect(response.statusCode).toBe(201)
    expect(response.json()).toEqual({
      userId: newcomer.id,
      email: newcomer.email,
      name: newcomer.name,
      role: 'member',
      addedAt: expect.any(String),
    })
    const { Member, TenantMember } = stack.app.tenancy.models
    expect(await Member.findOne({ workspaceId, userId: newcomer.id }).lean()).toMatchObject({
      tenantId,
      email: newcomer.email,
      name: newcomer.name,
      role: 'member',
      addedBy: owner.id,
    })
    expect(await TenantMember.findOne({ tenantId, userId: newcomer.id }).lean()).toMatchObject({
      role: 'member',
    })
    expect(await auditEvents(stack, workspaceId, 'workspace.member.added')).toEqual([
      expect.objectContaining({
        actor: { type: 'user', id: owner.id },
        target: { type: 'user', id: newcomer.id },
        after: { email: newcomer.email, role: 'member' },
      }),
    ])
    const listed = await stack.call(newcomer.token, 'GET', membersUrl(workspaceId))
    expect(listed.statusCode).toBe(200)
    expect(
      listed
        .json<{ items: Array<{ userId: string; role: string }> }>()
        .items.map(({ userId, role }) => ({ userId, role }))
        .sort((a, b) => a.userId.localeCompare(b.userId)),
    ).toEqual(
      [
        { userId: owner.id, role: 'owner' },
        { userId: newcomer.id, role: 'member' },
      ].sort((a, b) => a.userId.localeCompare(b.userId)),
    )
  })

  it('refuses adding someone who is already a member with 409 WSP_CONFLICT, writing nothing', async () => {
    const { workspaceId, owner, others } = await workspaceWith(stack, 'member')
    const [member] = others
    const before = await workspaceState(stack, workspaceId)
    const response = await stack.call(owner.token, 'POST', membersUrl(workspaceId), {
      email: member.email,
      role: 'admin',
    })
    expectError(response, 409, 'WSP_CONFLICT')
    expect(await workspaceState(stack, workspaceId)).toEqual(before)
  })

  it.each([
    ['no @', 'not-an-email'],
    ['no domain', 'someone@'],
    ['no local part', '@example.com'],
    ['a space', 'some one@example.com'],
    ['a trailing newline', 'someone@example.com\n'],
    ['an empty string', ''],
    ['over 320 characters', `${'a'.repeat(64)}@${'b'.repeat(250)}.example.com`],
  ])(
    'refuses an address with %s with 400 WSP_VALIDATION, writing nothing',
    async (_label, email) => {
      const { workspaceId, owner } = await workspaceWith(stack)
      const before = await workspaceState(stack, workspaceId)
      const response = await stack.call(owner.token, 'POST', membersUrl(workspaceId), {
        email,
        role: 'member',
      })
      expectError(response, 400, 'WSP_VALIDATION')
      expect(await workspaceState(stack, workspaceId)).toEqual(before)
    },
  )

  it('refuses an unknown role or an unknown field with 400, writing nothing', async () => {
    const { workspaceId, owner } = await workspaceWith(stack)
    const before = await workspaceState(stack, workspaceId)
    for (const body of [
      { email: uniqueEmail('x'), role: 'superuser' },
      { email: uniqueEmail('x'), role: 'member', tenantRole: 'owner' },
    ]) {
      const response = await stack.call(owner.token, 'POST', membersUrl(workspaceId), body)
      expectError(response, 400, 'WSP_VALIDATION')
    }
    expect(await workspaceState(stack, workspaceId)).toEqual(before)
  })
})

describe('invitations', () => {
  it('invites an unknown address, storing only a hash of the token', async () => {
    const { workspaceId, owner } = await workspaceWith(stack)
    const email = uniqueEmail('invitee')
    const before = Date.now()
    const created = await invite(owner, workspaceId, email.toUpperCase(), 'admin')
    expect(created).toEqual({
      invitation: { id: expect.any(String), email, role: 'admin', expiresAt: expect.any(String) },
      token: expect.stringMatching(/^[A-Za-z0-9_-]{43}$/),
      acceptPath: `/v1/invitations/${created.token}/accept`,
    })
    const expiresIn = Date.parse(created.invitation.expiresAt) - before
    expect(expiresIn).toBeGreaterThan(7 * 24 * HOUR_MS - 60_000)
    expect(expiresIn).toBeLessThanOrEqual(7 * 24 * HOUR_MS + 60_000)

    const stored = await stack.app.tenancy.models.Invitation.findById(created.invitation.id).lean()
    expect(stored).toMatchObject({
      workspaceId,
      email,
      role: 'admin',
      status: 'pending',
      invitedBy: owner.id,
      acceptedBy: null,
      tokenHash: createHash('sha256').update(created.token).digest('hex'),
    })
    expect(JSON.stringify(stored)).not.toContain(created.token)
    expect(await stack.app.tenancy.models.Member.countDocuments({ workspaceId })).toBe(1)
    expect(await auditEvents(stack, workspaceId, 'workspace.invitation.created')).toEqual([
      expect.objectContaining({ after: expect.objectContaining({ email, role: 'admin' }) }),
    ])
  })

  it('lets the invitee, once registered with that address, accept and join with the role', async () => {
    const { tenantId, workspaceId, owner } = await workspaceWith(stack)
    const email = uniqueEmail('invitee')
    const created = await invite(owner, workspaceId, email, 'admin')
    const invitee = await registerWithEmail(stack, email, 'Ingrid Invitee')

    const response = await accept(invitee, created.token)
    expect(response.statusCode).toBe(200)
    expect(response.json()).toEqual({
      workspace: { id: workspaceId, tenantId, name: 'General' },
      member: {
        userId: invitee.id,
        email,
        name: 'Ingrid Invitee',
        role: 'admin',
        addedAt: expect.any(String),
      },
    })
    const { Member, Invitation, TenantMember } = stack.app.tenancy.models
    expect(await Member.findOne({ workspaceId, userId: invitee.id }).lean()).toMatchObject({
      role: 'admin',
      email,
      name: 'Ingrid Invitee',
      addedBy: owner.id,
    })
    expect(await TenantMember.findOne({ tenantId, userId: invitee.id }).lean()).toMatchObject({
      role: 'member',
    })
    expect(await Invitation.findById(created.invitation.id).lean()).toMatchObject({
      status: 'accepted',
      acceptedBy: invitee.id,
    })
    expect(await auditEvents(stack, workspaceId, 'workspace.invitation.accepted')).toEqual([
      expect.objectContaining({
        actor: { type: 'user', id: invitee.id },
        after: { userId: invitee.id, email, role: 'admin' },
      }),
    ])
    // The new admin acts with its role at once.
    const listed = await stack.call(invitee.token, 'GET', invitationsUrl(workspaceId))
    expect(listed.statusCode).toBe(200)
  })

  it('refuses the token to anyone but the invited address with 404 WSP_INVITATION_INVALID, writing nothing', async () => {
    const { workspaceId, owner } = await workspaceWith(stack)
    const created = await invite(owner, workspaceId, uniqueEmail('invitee'), 'member')
    const interloper = await stack.user('interloper')
    const before = await workspaceState(stack, workspaceId)
    const response = await accept(interloper, created.token)
    expectError(response, 404, 'WSP_INVITATION_INVALID')
    expect(await workspaceState(stack, workspaceId)).toEqual(before)
    expect(before.invitations[0]?.status).toBe('pending')
  })

  it('refuses a token that was already used with 404, to the invitee and to anyone else', async () => {
    const { workspaceId, owner } = await workspaceWith(stack)
    const email = uniqueEmail('invitee')
    const created = await invite(owner, workspaceId, email, 'member')
    const invitee = await registerWithEmail(stack, email)
    expect((await accept(invitee, created.token)).statusCode).toBe(200)
    const before = await workspaceState(stack, workspaceId)
    expectError(await accept(invitee, created.token), 404, 'WSP_INVITATION_INVALID')
    expectError(
      await accept(await stack.user('late'), created.token),
      404,
      'WSP_INVITATION_INVALID',
    )
    expect(await workspaceState(stack, workspaceId)).toEqual(before)
  })

  it('refuses an unknown token with 404', async () => {
    const user = await stack.user('guesser')
    expectError(await accept(user, 'a'.repeat(43)), 404, 'WSP_INVITATION_INVALID')
  })

  it('refuses an expired invitation with 404, shows it as expired, and lets a new one be sent', async () => {
    const { workspaceId, owner } = await workspaceWith(stack)
    const email = uniqueEmail('invitee')
    const created = await invite(owner, workspaceId, email, 'member')
    await stack.app.tenancy.models.Invitation.updateOne(
      { _id: created.invitation.id },
      { $set: { expiresAt: new Date(Date.now() - 1000) } },
    )
    const invitee = await registerWithEmail(stack, email)
    const before = await workspaceState(stack, workspaceId)
    expectError(await accept(invitee, created.token), 404, 'WSP_INVITATION_INVALID')
    expect(await workspaceState(stack, workspaceId)).toEqual(before)

    const listed = await stack.call(owner.token, 'GET', invitationsUrl(workspaceId))
    expect(listed.json()).toMatchObject({
      items: [{ id: created.invitation.id, status: 'expired' }],
    })

    // The address now has an account, so asking again adds it directly; the stale one is moot.
    const again = await stack.call(owner.token, 'POST', membersUrl(workspaceId), {
      email,
      role: 'member',
    })
    expect(again.statusCode).toBe(201)
  })

  it('replaces an expired invitation for an address still without an account', async () => {
    const { workspaceId, owner } = await workspaceWith(stack)
    const email = uniqueEmail('invitee')
    const first = await invite(owner, workspaceId, email, 'member')
    await stack.app.tenancy.models.Invitation.updateOne(
      { _id: first.invitation.id },
      { $set: { expiresAt: new Date(Date.now() - 1000) } },
    )
    const second = await invite(owner, workspaceId, email, 'viewer')
    const rows = await stack.app.tenancy.models.Invitation.find({ workspaceId }).lean()
    expect(
      rows.map(({ _id, status }) => ({ _id, status })).sort((a, b) => a._id.localeCompare(b._id)),
    ).toEqual(
      [
        { _id: first.invitation.id, status: 'revoked' },
        { _id: second.invitation.id, status: 'pending' },
      ].sort((a, b) => a._id.localeCompare(b._id)),
    )
  })

  it('refuses a second open invitation for the same address with 409 WSP_CONFLICT, writing nothing', async () => {
    const { workspaceId, owner } = await workspaceWith(stack)
    const email = uniqueEmail('invitee')
    await invite(owner, workspaceId, email, 'member')
    const before = await workspaceState(stack, workspaceId)
    const response = await stack.call(owner.token, 'POST', membersUrl(workspaceId), {
      email: email.toUpperCase(),
      role: 'admin',
    })
    expectError(response, 409, 'WSP_CONFLICT')
    expect(await workspaceState(stack, workspaceId)).toEqual(before)
  })

  it('keeps one open invitation when the same address is invited twice at once', async () => {
    const { workspaceId, owner } = await workspaceWith(stack)
    const email = uniqueEmail('invitee')
    const body = { email, role: 'member' }
    const answers = await Promise.all([
      stack.call(owner.token, 'POST', membersUrl(workspaceId), body),
      stack.call(owner.token, 'POST', membersUrl(workspaceId), body),
    ])
    expect(answers.map((answer) => answer.statusCode).sort()).toEqual([202, 409])
    const loser = answers.find((answer) => answer.statusCode === 409)
    expect(loser?.json()).toMatchObject(errorCode(409, 'WSP_CONFLICT'))
    expect(await stack.app.tenancy.models.Invitation.countDocuments({ workspaceId, email })).toBe(1)
  })

  it('lets an admin revoke an invitation, which then cannot be accepted', async () => {
    const { workspaceId, owner, others } = await workspaceWith(stack, 'admin')
    const [admin] = others
    const email = uniqueEmail('invitee')
    const created = await invite(owner, workspaceId, email, 'member')
    const url = `${invitationsUrl(workspaceId)}/${created.invitation.id}`
    const revoked = await stack.call(admin.token, 'DELETE', url)
    expect(revoked.statusCode).toBe(204)
    expect(revoked.body).toBe('')
    expect(
      (await stack.app.tenancy.models.Invitation.findById(created.invitation.id).lean())?.status,
    ).toBe('revoked')
    expect(await auditEvents(stack, workspaceId, 'workspace.invitation.revoked')).toEqual([
      expect.objectContaining({
        actor: { type: 'user', id: admin.id },
        target: { type: 'invitation', id: created.invitation.id },
      }),
    ])

    const invitee = await registerWithEmail(stack, email)
    const before = await workspaceState(stack, workspaceId)
    expectError(await accept(invitee, created.token), 404, 'WSP_INVITATION_INVALID')
    expectError(await stack.call(admin.token, 'DELETE', url), 404, 'WSP_NOT_FOUND')
    expect(await workspaceState(stack, workspaceId)).toEqual(before)
  })

  it('refuses a member revoking an invitation, and an admin revoking an owner invitation, with 403', async () => {
    const { workspaceId, owner, others } = await workspaceWith(stack, 'admin', 'member')
    const [admin, member] = others
    const forMember = await invite(owner, workspaceId, uniqueEmail('a'), 'member')
    const forOwner = await invite(owner, workspaceId, uniqueEmail('b'), 'owner')
    const before = await workspaceState(stack, workspaceId)
    expectError(
      await stack.call(
        member.token,
        'DELETE',
        `${invitationsUrl(workspaceId)}/${forMember.invitation.id}`,
      ),
      403,
      'WSP_FORBIDDEN',
    )
    expectError(
      await stack.call(
        admin.token,
        'DELETE',
        `${invitationsUrl(workspaceId)}/${forOwner.invitation.id}`,
      ),
      403,
      'WSP_FORBIDDEN',
    )
    expect(await workspaceState(stack, workspaceId)).toEqual(before)
  })

  it('lists invitations with their status to admins, never the token or its hash', async () => {
    const { workspaceId, owner, others } = await workspaceWith(stack, 'admin')
    const [admin] = others
    const open = await invite(owner, workspaceId, uniqueEmail('open'), 'viewer')
    const closed = await invite(owner, workspaceId, uniqueEmail('closed'), 'member')
    await stack.call(
      owner.token,
      'DELETE',
      `${invitationsUrl(workspaceId)}/${closed.invitation.id}`,
    )

    const response = await stack.call(admin.token, 'GET', invitationsUrl(workspaceId))
    expect(response.statusCode).toBe(200)
    const body = response.json<{ items: Array<{ id: string }>; nextCursor: string | null }>()
    expect(body.nextCursor).toBeNull()
    expect([...body.items].sort((a, b) => a.id.localeCompare(b.id))).toEqual(
      [
        {
          id: open.invitation.id,
          email: open.invitation.email,
          role: 'viewer',
          status: 'pending',
          invitedBy: owner.id,
          createdAt: expect.any(String),
          expiresAt: open.invitation.expiresAt,
        },
        {
          id: closed.invitation.id,
          email: closed.invitation.email,
          role: 'member',
          status: 'revoked',
          invitedBy: owner.id,
          createdAt: expect.any(String),
          expiresAt: closed.invitation.expiresAt,
        },
      ].sort((a, b) => a.id.localeCompare(b.id)),
    )
    expect(response.body).not.toContain(open.token)
    expect(response.body).not.toContain('tokenHash')

    const firstPage = await stack.call(admin.token, 'GET', `${invitationsUrl(workspaceId)}?limit=1`)
    const first = firstPage.json<{ items: unknown[]; nextCursor: string | null }>()
    expect(first.items).toHaveLength(1)
    const secondPage = await stack.call(
      admin.token,
      'GET',
      `${invitationsUrl(workspaceId)}?limit=1&cursor=${first.nextCursor}`,
    )
    expect(secondPage.json()).toMatchObject({ items: [expect.any(Object)], nextCursor: null })
  })

  it.each(['member', 'viewer'] as const)(
    'refuses the invitation list to a %s with 403',
    async (role) => {
      const { workspaceId, owner, others } = await workspaceWith(stack, role)
      const [user] = others
      await invite(owner, workspaceId, uniqueEmail('secret'), 'member')
      expectError(
        await stack.call(user.token, 'GET', invitationsUrl(workspaceId)),
        403,
        'WSP_FORBIDDEN',
      )
    },
  )
})

describe("the tenant's allowed email domains", () => {
  async function restrictedWorkspace() {
    const crew = await workspaceWith(stack)
    const response = await stack.call(crew.owner.token, 'PATCH', `/v1/tenants/${crew.tenantId}`, {
      allowedEmailDomains: ['corp.example'],
    })
    expect(response.statusCode).toBe(200)
    return crew
  }

  it('refuses adding an existing user from another domain with 403, writing nothing', async () => {
    const { workspaceId, owner } = await restrictedWorkspace()
    const outsider = await stack.user('outsider')
    const before = await workspaceState(stack, workspaceId)
    const response = await stack.call(owner.token, 'POST', membersUrl(workspaceId), {
      email: outsider.email,
      role: 'member',
    })
    expectError(response, 403, 'WSP_EMAIL_DOMAIN_NOT_ALLOWED')
    expect(await workspaceState(stack, workspaceId)).toEqual(before)
  })

  it.each([
    ['another domain', 'someone@elsewhere.example'],
    ['a subdomain of the allowed one', 'someone@sub.corp.example'],
    ['a look-alike suffix', 'someone@evilcorp.example'],
  ])('refuses inviting an address at %s with 403, writing nothing', async (_label, email) => {
    const { workspaceId, owner } = await restrictedWorkspace()
    const before = await workspaceState(stack, workspaceId)
    const response = await stack.call(owner.token, 'POST', membersUrl(workspaceId), {
      email,
      role: 'member',
    })
    expectError(response, 403, 'WSP_EMAIL_DOMAIN_NOT_ALLOWED')
    expect(await workspaceState(stack, workspaceId)).toEqual(before)
  })

  it('lets addresses at the allowed domain be invited and added, whatever their case', async () => {
    const { workspaceId, owner } = await restrictedWorkspace()
    const invited = await invite(owner, workspaceId, 'Someone.New@CORP.example', 'member')
    expect(invited.invitation.email).toBe('someone.new@corp.example')
    const colleague = await registerWithEmail(stack, `colleague-${Date.now()}@corp.example`)
    const added = await stack.call(owner.token, 'POST', membersUrl(workspaceId), {
      email: colleague.email,
      role: 'viewer',
    })
    expect(added.statusCode).toBe(201)
    expect(
      await stack.app.tenancy.models.Member.countDocuments({ workspaceId, userId: colleague.id }),
    ).toBe(1)
  })
})

describe('role changes and who may make them', () => {
  it('lets an admin change a member to viewer and remove a viewer, auditing both', async () => {
    const { workspaceId, others } = await workspaceWith(stack, 'admin', 'member', 'viewer')
    const [admin, member, viewer] = others
    const changed = await stack.call(admin.token, 'PATCH', memberUrl(workspaceId, member.id), {
      role: 'viewer',
    })
    expect(changed.statusCode).toBe(200)
    expect(changed.json()).toMatchObject({ userId: member.id, role: 'viewer' })
    const removed = await stack.call(admin.token, 'DELETE', memberUrl(workspaceId, viewer.id))
    expect(removed.statusCode).toBe(204)

    const state = await workspaceState(stack, workspaceId)
    expect(state.members.find((row) => row.userId === member.id)?.role).toBe('viewer')
    expect(state.members.some((row) => row.userId === viewer.id)).toBe(false)
    expect(await auditEvents(stack, workspaceId, 'workspace.member.role_changed')).toEqual([
      expect.objectContaining({
        actor: { type: 'user', id: admin.id },
        target: { type: 'user', id: member.id },
        before: { role: 'member' },
        after: { role: 'viewer' },
      }),
    ])
    expect(await auditEvents(stack, workspaceId, 'workspace.member.removed')).toEqual([
      expect.objectContaining({
        actor: { type: 'user', id: admin.id },
        target: { type: 'user', id: viewer.id },
        before: { email: viewer.email, role: 'viewer' },
      }),
    ])
  })

  it('lets an owner make another member an owner, counting both', async () => {
    const { workspaceId, owner, others } = await workspaceWith(stack, 'admin')
    const [admin] = others
    const response = await stack.call(owner.token, 'PATCH', memberUrl(workspaceId, admin.id), {
      role: 'owner',
    })
    expect(response.statusCode).toBe(200)
    expect(await ownerTally(stack, workspaceId)).toEqual({ ownerRows: 2, ownerCount: 2 })
  })

  /** Runs a refused request and proves it wrote nothing. */
  async function expectRefused(
    workspaceId: string,
    request: () => Promise<LightMyRequestResponse>,
    statusCode: number,
    code: string,
  ) {
    const before = await workspaceState(stack, workspaceId)
    expectError(await request(), statusCode, code)
    expect(await workspaceState(stack, workspaceId)).toEqual(before)
  }

  it('refuses an admin making itself owner with 403', async () => {
    const { workspaceId, others } = await workspaceWith(stack, 'admin')
    const [admin] = others
    await expectRefused(
      workspaceId,
      () => stack.call(admin.token, 'PATCH', memberUrl(workspaceId, admin.id), { role: 'owner' }),
      403,
      'WSP_FORBIDDEN',
    )
  })

  it('refuses an admin granting owner to a member with 403', async () => {
    const { workspaceId, others } = await workspaceWith(stack, 'admin', 'member')
    const [admin, member] = others
    await expectRefused(
      workspaceId,
      () => stack.call(admin.token, 'PATCH', memberUrl(workspaceId, member.id), { role: 'owner' }),
      403,
      'WSP_FORBIDDEN',
    )
  })

  it('refuses an admin adding a new user as owner with 403', async () => {
    const { workspaceId, others } = await workspaceWith(stack, 'admin')
    const [admin] = others
    const newcomer = await stack.user('newcomer')
    await expectRefused(
      workspaceId,
      () =>
        stack.call(admin.token, 'POST', membersUrl(workspaceId), {
          email: newcomer.email,
          role: 'owner',
        }),
      403,
      'WSP_FORBIDDEN',
    )
  })

  it('refuses an admin inviting an owner with 403', async () => {
    const { workspaceId, others } = await workspaceWith(stack, 'admin')
    const [admin] = others
    await expectRefused(
      workspaceId,
      () =>
        stack.call(admin.token, 'POST', membersUrl(workspaceId), {
          email: uniqueEmail('future-owner'),
          role: 'owner',
        }),
      403,
      'WSP_FORBIDDEN',
    )
  })

  it('refuses an admin demoting an owner with 403', async () => {
    const { workspaceId, owner, others } = await workspaceWith(stack, 'admin')
    const [admin] = others
    await expectRefused(
      workspaceId,
      () => stack.call(admin.token, 'PATCH', memberUrl(workspaceId, owner.id), { role: 'member' }),
      403,
      'WSP_FORBIDDEN',
    )
  })

  it('refuses an admin removing an owner with 403', async () => {
    const { workspaceId, owner, others } = await workspaceWith(stack, 'admin')
    const [admin] = others
    await expectRefused(
      workspaceId,
      () => stack.call(admin.token, 'DELETE', memberUrl(workspaceId, owner.id)),
      403,
      'WSP_FORBIDDEN',
    )
  })

  it('refuses a member changing another member’s role with 403', async () => {
    const { workspaceId, others } = await workspaceWith(stack, 'member', 'viewer')
    const [member, viewer] = others
    await expectRefused(
      workspaceId,
      () =>
        stack.call(member.token, 'PATCH', memberUrl(workspaceId, viewer.id), { role: 'member' }),
      403,
      'WSP_FORBIDDEN',
    )
  })

  it('refuses a member promoting itself with 403', async () => {
    const { workspaceId, others } = await workspaceWith(stack, 'member')
    const [member] = others
    await expectRefused(
      workspaceId,
      () => stack.call(member.token, 'PATCH', memberUrl(workspaceId, member.id), { role: 'admin' }),
      403,
      'WSP_FORBIDDEN',
    )
  })

  it('refuses a viewer promoting itself with 403', async () => {
    const { workspaceId, others } = await workspaceWith(stack, 'viewer')
    const [viewer] = others
    await expectRefused(
      workspaceId,
      () =>
        stack.call(viewer.token, 'PATCH', memberUrl(workspaceId, viewer.id), { role: 'member' }),
      403,
      'WSP_FORBIDDEN',
    )
  })

  it('refuses a viewer adding members with 403', async () => {
    const { workspaceId, others } = await workspaceWith(stack, 'viewer')
    const [viewer] = others
    const friend = await stack.user('friend')
    await expectRefused(
      workspaceId,
      () =>
        stack.call(viewer.token, 'POST', membersUrl(workspaceId), {
          email: friend.email,
          role: 'viewer',
        }),
      403,
      'WSP_FORBIDDEN',
    )
  })

  it('refuses a member inviting anyone with 403', async () => {
    const { workspaceId, others } = await workspaceWith(stack, 'member')
    const [member] = others
    await expectRefused(
      workspaceId,
      () =>
        stack.call(member.token, 'POST', membersUrl(workspaceId), {
          email: uniqueEmail('friend'),
          role: 'viewer',
        }),
      403,
      'WSP_FORBIDDEN',
    )
  })

  it('refuses a member removing another member with 403', async () => {
    const { workspaceId, others } = await workspaceWith(stack, 'member', 'member')
    const [member, other] = others
    await expectRefused(
      workspaceId,
      () => stack.call(member.token, 'DELETE', memberUrl(workspaceId, other.id)),
      403,
      'WSP_FORBIDDEN',
    )
  })

  it('answers 404 to an outsider changing or removing members, writing nothing', async () => {
    const { workspaceId, others } = await workspaceWith(stack, 'member')
    const [member] = others
    const outsider = await stack.user('outsider')
    await expectRefused(
      workspaceId,
      () =>
        stack.call(outsider.token, 'PATCH', memberUrl(workspaceId, member.id), { role: 'admin' }),
      404,
      'WSP_NOT_FOUND',
    )
    await expectRefused(
      workspaceId,
      () => stack.call(outsider.token, 'DELETE', memberUrl(workspaceId, member.id)),
      404,
      'WSP_NOT_FOUND',
    )
  })

  it('answers 404 for a user who is not a member of the workspace', async () => {
    const { workspaceId, owner } = await workspaceWith(stack)
    const stranger = await stack.user('stranger')
    await expectRefused(
      workspaceId,
      () =>
        stack.call(owner.token, 'PATCH', memberUrl(workspaceId, stranger.id), { role: 'admin' }),
      404,
      'WSP_NOT_FOUND',
    )
  })

  it.each(['admin', 'member', 'viewer'] as const)(
    'lets a %s leave by removing itself, auditing it as leaving',
    async (role) => {
      const { workspaceId, others } = await workspaceWith(stack, role)
      const [leaver] = others
      const response = await stack.call(leaver.token, 'DELETE', memberUrl(workspaceId, leaver.id))
      expect(response.statusCode).toBe(204)
      const state = await workspaceState(stack, workspaceId)
      expect(state.members.some((row) => row.userId === leaver.id)).toBe(false)
      expect(state.workspace?.ownerCount).toBe(1)
      expect(await auditEvents(stack, workspaceId, 'workspace.member.left')).toEqual([
        expect.objectContaining({
          actor: { type: 'user', id: leaver.id },
          target: { type: 'user', id: leaver.id },
          before: { email: leaver.email, role },
        }),
      ])
      const gone = await stack.call(leaver.token, 'GET', `/v1/workspaces/${workspaceId}`)
      expectError(gone, 404, 'WSP_NOT_FOUND')
    },
  )
})

describe('the last owner', () => {
  async function expectLastOwner(
    workspaceId: string,
    request: () => Promise<LightMyRequestResponse>,
  ) {
    const before = await workspaceState(stack, workspaceId)
    expectError(await request(), 409, 'WSP_LAST_OWNER')
    expect(await workspaceState(stack, workspaceId)).toEqual(before)
    expect(await ownerTally(stack, workspaceId)).toEqual({ ownerRows: 1, ownerCount: 1 })
  }

  it('cannot demote itself: 409 WSP_LAST_OWNER, nothing written', async () => {
    const { workspaceId, owner } = await workspaceWith(stack, 'admin')
    await expectLastOwner(workspaceId, () =>
      stack.call(owner.token, 'PATCH', memberUrl(workspaceId, owner.id), { role: 'admin' }),
    )
  })

  it('cannot leave: 409 WSP_LAST_OWNER, nothing written', async () => {
    const { workspaceId, owner } = await workspaceWith(stack, 'admin')
    await expectLastOwner(workspaceId, () =>
      stack.call(owner.token, 'DELETE', memberUrl(workspaceId, owner.id)),
    )
  })

  it('cannot be demoted or removed by a second owner who has since stepped down', async () => {
    const { workspaceId, owner, others } = await workspaceWith(stack, 'owner')
    const [second] = others
    const stepDown = await stack.call(second.token, 'PATCH', memberUrl(workspaceId, second.id), {
      role: 'admin',
    })
    expect(stepDown.statusCode).toBe(200)
    await expectLastOwner(workspaceId, () =>
      stack.call(owner.token, 'DELETE', memberUrl(workspaceId, owner.id)),
    )
    const before = await workspaceState(stack, workspaceId)
    expectError(
      await stack.call(second.token, 'DELETE', memberUrl(workspaceId, owner.id)),
      403,
      'WSP_FORBIDDEN',
    )
    expect(await workspaceState(stack, workspaceId)).toEqual(before)
  })

  it('lets one of two owners leave, and then refuses the other', async () => {
    const { workspaceId, owner, others } = await workspaceWith(stack, 'owner')
    const [second] = others
    expect(await ownerTally(stack, workspaceId)).toEqual({ ownerRows: 2, ownerCount: 2 })
    const left = await stack.call(second.token, 'DELETE', memberUrl(workspaceId, second.id))
    expect(left.statusCode).toBe(204)
    expect(await ownerTally(stack, workspaceId)).toEqual({ ownerRows: 1, ownerCount: 1 })
    expect(await auditEvents(stack, workspaceId, 'workspace.member.left')).toHaveLength(1)
    await expectLastOwner(workspaceId, () =>
      stack.call(owner.token, 'DELETE', memberUrl(workspaceId, owner.id)),
    )
  })

  it('lets an owner remove another owner, keeping the count right', async () => {
    const { workspaceId, owner, others } = await workspaceWith(stack, 'owner')
    const [second] = others
    const removed = await stack.call(owner.token, 'DELETE', memberUrl(workspaceId, second.id))
    expect(removed.statusCode).toBe(204)
    expect(await ownerTally(stack, workspaceId)).toEqual({ ownerRows: 1, ownerCount: 1 })
  })
})

describe('owners acting on each other at the same moment', () => {
  const ROUNDS = 10
  const SUCCESS = [200, 204]

  /** MongoDB's count of aborted transactions since it started. */
  async function abortedTransactions() {
    const db = stack.app.mongo.db
    if (db === undefined) throw new Error('no database handle')
    const status = await db.admin().command({ serverStatus: 1 })
    const aborted: unknown = status.transactions?.totalAborted
    if (typeof aborted !== 'number')
      throw new Error('serverStatus has no transactions.totalAborted')
    return aborted
  }

  /**
   * Fires both requests together on a fresh workspace with two owners, ROUNDS times: exactly
   * one wins, the other is refused in one of the `refusals` ways, at least one owner is left
   * and the stored count agrees with the owner rows.
   */
  async function race(
    requests: (
      a: TestUser,
      b: TestUser,
      workspaceId: string,
    ) => [Promise<LightMyRequestResponse>, Promise<LightMyRequestResponse>],
    refusals: string[],
  ) {
    for (let round = 0; round < ROUNDS; round += 1) {
      const { workspaceId, owner: a, others } = await workspaceWith(stack, 'owner')
      const [b] = others
      const answers = await Promise.all(requests(a, b, workspaceId))
      const won = answers.filter((answer) => SUCCESS.includes(answer.statusCode))
      expect(won, `round ${round}`).toHaveLength(1)
      const lost = answers.find((answer) => !SUCCESS.includes(answer.statusCode))
      expect(refusals, `round ${round}`).toContain(
        `${lost?.statusCode} ${lost?.json<{ code: string }>().code}`,
      )
      const tally = await ownerTally(stack, workspaceId)
      expect(tally.ownerRows, `round ${round}`).toBe(1)
      expect(tally.ownerCount, `round ${round}`).toBe(tally.ownerRows)
    }
  }

  it('lets exactly one of two owners removing each other succeed, every round', async () => {
    await race(
      (a, b, workspaceId) => [
        stack.call(a.token, 'DELETE', memberUrl(workspaceId, b.id)),
        stack.call(b.token, 'DELETE', memberUrl(workspaceId, a.id)),
      ],
      ['409 WSP_LAST_OWNER', '404 WSP_NOT_FOUND'],
    )
  })

  it('lets exactly one of two owners demoting themselves succeed, every round', async () => {
    const abortedBefore = await abortedTransactions()
    await race(
      (a, b, workspaceId) => [
        stack.call(a.token, 'PATCH', memberUrl(workspaceId, a.id), { role: 'admin' }),
        stack.call(b.token, 'PATCH', memberUrl(workspaceId, b.id), { role: 'admin' }),
      ],
      ['409 WSP_LAST_OWNER'],
    )
    // Each round's refusal aborts one transaction. More aborts than rounds means the two
    // transactions really overlapped in MongoDB (a write conflict, then a retry that saw the
    // other's commit), so the rounds above tested the race and not two requests in a row.
    expect((await abortedTransactions()) - abortedBefore).toBeGreaterThan(ROUNDS)
  })

  it('lets exactly one of two owners leaving together go, every round', async () => {
    await race(
      (a, b, workspaceId) => [
        stack.call(a.token, 'DELETE', memberUrl(workspaceId, a.id)),
        stack.call(b.token, 'DELETE', memberUrl(workspaceId, b.id)),
      ],
      ['409 WSP_LAST_OWNER'],
    )
  })

  it('keeps one owner when one owner demotes the other while that one removes the first', async () => {
    await race(
      (a, b, workspaceId) => [
        stack.call(a.token, 'PATCH', memberUrl(workspaceId, b.id), { role: 'member' }),
        stack.call(b.token, 'DELETE', memberUrl(workspaceId, a.id)),
      ],
      // Demoted first, B may no longer remove an owner; removed first, A is no longer there.
      ['403 WSP_FORBIDDEN', '404 WSP_NOT_FOUND', '409 WSP_LAST_OWNER'],
    )
  })
})
