import { POLICY_INVALIDATE_CHANNEL, type WorkspacePolicy } from '@platform/shared-types'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  EXAMPLE_POLICY,
  examplePolicy,
  type InvalidationListener,
  listenForInvalidations,
  policyState,
} from '../helpers/policy.js'
import { errorCode, startTestStack, type TestStack, type TestUser } from '../helpers/stack.js'

let stack: TestStack
let listener: InvalidationListener
/** The channel name as it would read if the app's Redis key prefix were applied to channels. */
let prefixedChannel: string

beforeAll(async () => {
  stack = await startTestStack()
  prefixedChannel = `${stack.redisKeyPrefix}${POLICY_INVALIDATE_CHANNEL}`
  listener = await listenForInvalidations(stack.config.REDIS_URL, [prefixedChannel])
})
afterAll(async () => {
  await listener?.close()
  await stack?.close()
})

const policyUrl = (workspaceId: string) => `/v1/workspaces/${workspaceId}/policy`

interface VersionItem {
  version: number
  changedBy: string
  changedAt: string
  diff: Array<{ path: string; before: unknown; after: unknown }>
}
interface VersionPage {
  items: VersionItem[]
  nextCursor: string | null
}
interface ErrorBody {
  statusCode: number
  code: string
  message: string
  details?: Array<{ path: string; message: string }>
}

async function putPolicy(
  token: string,
  workspaceId: string,
  policy: unknown,
  headers: Record<string, string> = {},
) {
  return stack.call(token, 'PUT', policyUrl(workspaceId), policy, headers)
}

/** A tenant whose first workspace already holds the example policy, at version 2. */
async function workspaceWithExamplePolicy(label: string) {
  const owner = await stack.user(label)
  const { tenantId, workspaceId } = await stack.tenant(owner)
  const written = await putPolicy(owner.token, workspaceId, EXAMPLE_POLICY)
  expect(written.statusCode).toBe(200)
  return { owner, tenantId, workspaceId }
}

describe('a new workspace policy', () => {
  it('starts as API.md §4 default at ETag "1", with version 1 on record', async () => {
    const owner = await stack.user('owner')
    const { workspaceId } = await stack.tenant(owner)

    const read = await stack.call(owner.token, 'GET', policyUrl(workspaceId))

    expect(read.statusCode).toBe(200)
    expect(read.headers.etag).toBe('"1"')
    expect(read.json()).toEqual({
      models: { allow: [] },
      mcp: { servers: [], tools: {} },
      params: { maxOutputTokens: null, temperature: null },
      systemPrompt: null,
      quota: {
        monthlyTokens: null,
        monthlyCostUsd: null,
        memberMonthlyTokens: null,
        rpm: null,
        memberRpm: null,
        tpm: null,
        memberTpm: null,
        maxConcurrentStreams: null,
        overage: 'block',
      },
    })
    const versions = await stack.app.tenancy.models.PolicyVersion.find({ workspaceId }).lean()
    expect(versions).toHaveLength(1)
    expect(versions[0]).toMatchObject({ version: 1, changedBy: owner.id, policy: read.json() })
  })

  it("takes the tenant's monthly token limit as its own budget", async () => {
    const owner = await stack.user('owner')
    const { tenantId } = await stack.tenant(owner)
    const capped = await stack.call(owner.token, 'PATCH', `/v1/tenants/${tenantId}`, {
      limits: { monthlyTokens: 3_000_000 },
    })
    expect(capped.statusCode).toBe(200)
    const created = await stack.call(owner.token, 'POST', `/v1/tenants/${tenantId}/workspaces`, {
      name: 'Research',
    })
    expect(created.statusCode).toBe(201)
    const workspaceId = created.json<{ id: string }>().id

    const read = await stack.call(owner.token, 'GET', policyUrl(workspaceId))

    expect(read.statusCode).toBe(200)
    expect(read.headers.etag).toBe('"1"')
    expect(read.json<WorkspacePolicy>().quota.monthlyTokens).toBe(3_000_000)
    expect(read.json<WorkspacePolicy>().models.allow).toEqual([])
    expect(read.json<WorkspacePolicy>().mcp.servers).toEqual([])
  })

  it('is readable by members and viewers, and does not exist for a stranger', async () => {
    const owner = await stack.user('owner')
    const member = await stack.user('member')
    const viewer = await stack.user('viewer')
    const stranger = await stack.user('stranger')
    await stack.tenant(stranger, 'Elsewhere')
    const { workspaceId } = await stack.tenant(owner)
    await stack.addMember(owner, workspaceId, member, 'member')
    await stack.addMember(owner, workspaceId, viewer, 'viewer')

    for (const reader of [member, viewer]) {
      const read = await stack.call(reader.token, 'GET', policyUrl(workspaceId))
      expect(read.statusCode).toBe(200)
      expect(read.headers.etag).toBe('"1"')
    }
    const refused = await stack.call(stranger.token, 'GET', policyUrl(workspaceId))
    expect(refused.statusCode).toBe(404)
    expect(refused.json()).toMatchObject(errorCode(404, 'WSP_NOT_FOUND'))
  })
})

describe('writing a policy', () => {
  it('replaces the policy with the example of API.md §4 as version 2', async () => {
    const owner = await stack.user('owner')
    const { tenantId, workspaceId } = await stack.tenant(owner)

    const written = await putPolicy(owner.token, workspaceId, EXAMPLE_POLICY)

    expect(written.statusCode).toBe(200)
    expect(written.headers.etag).toBe('"2"')
    expect(written.json()).toEqual(EXAMPLE_POLICY)
    const read = await stack.call(owner.token, 'GET', policyUrl(workspaceId))
    expect(read.statusCode).toBe(200)
    expect(read.headers.etag).toBe('"2"')
    expect(read.json()).toEqual(EXAMPLE_POLICY)

    const { Workspace, PolicyVersion, Audit } = stack.app.tenancy.models
    const stored = await Workspace.findById(workspaceId).lean()
    expect(stored).toMatchObject({ policy: EXAMPLE_POLICY, policyVersion: 2 })
    const version = await PolicyVersion.findOne({ workspaceId, version: 2 }).lean()
    expect(version).toMatchObject({ policy: EXAMPLE_POLICY, changedBy: owner.id })
    const audit = await Audit.find({ workspaceId, action: 'workspace.policy.updated' }).lean()
    expect(audit).toHaveLength(1)
    expect(audit[0]).toMatchObject({
      tenantId,
      actor: { type: 'user', id: owner.id },
      target: { type: 'policy', id: workspaceId },
      before: { version: 1 },
      after: { version: 2 },
    })
  })

  it('creates no version, audit event or invalidation when the document is unchanged', async () => {
    const { owner, workspaceId } = await workspaceWithExamplePolicy('owner')
    await listener.waitFor(workspaceId, 1)
    const before = await policyState(stack, workspaceId)

    const again = await putPolicy(owner.token, workspaceId, EXAMPLE_POLICY)

    expect(again.statusCode).toBe(200)
    expect(again.headers.etag).toBe('"2"')
    expect(again.json()).toEqual(EXAMPLE_POLICY)
    expect(await policyState(stack, workspaceId)).toEqual(before)
    await listener.settle()
    expect(listener.received(workspaceId)).toEqual([{ workspaceId, version: 2 }])
  })

  it('fills omitted optional sections with their defaults and stores them', async () => {
    const owner = await stack.user('owner')
    const { workspaceId } = await stack.tenant(owner)
    const { params: _params, systemPrompt: _prompt, ...minimal } = examplePolicy()
    const { tools: _tools, ...servers } = minimal.mcp
    const written = await putPolicy(owner.token, workspaceId, {
      ...minimal,
      mcp: { servers: servers.servers },
    })

    expect(written.statusCode).toBe(200)
    const expected = {
      ...minimal,
      mcp: { servers: servers.servers, tools: {} },
      params: { maxOutputTokens: null, temperature: null },
      systemPrompt: null,
    }
    expect(written.json()).toEqual(expected)
    const stored = await stack.app.tenancy.models.Workspace.findById(workspaceId).lean()
    expect(stored?.policy).toEqual(expected)
  })

  it('lets admins and owners write, and refuses members and viewers with 403', async () => {
    const owner = await stack.user('owner')
    const admin = await stack.user('admin')
    const member = await stack.user('member')
    const viewer = await stack.user('viewer')
    const { workspaceId } = await stack.tenant(owner)
    await stack.addMember(owner, workspaceId, admin, 'admin')
    await stack.addMember(owner, workspaceId, member, 'member')
    await stack.addMember(owner, workspaceId, viewer, 'viewer')
    const before = await policyState(stack, workspaceId)

    for (const refusedUser of [member, viewer]) {
      const refused = await putPolicy(refusedUser.token, workspaceId, EXAMPLE_POLICY)
      expect(refused.statusCode).toBe(403)
      expect(refused.json()).toMatchObject(errorCode(403, 'WSP_FORBIDDEN'))
    }
    expect(await policyState(stack, workspaceId)).toEqual(before)

    const byAdmin = await putPolicy(admin.token, workspaceId, EXAMPLE_POLICY)
    expect(byAdmin.statusCode).toBe(200)
    expect(byAdmin.headers.etag).toBe('"2"')
    const changed = examplePolicy()
    changed.quota.rpm = 300
    const byOwner = await putPolicy(owner.token, workspaceId, changed)
    expect(byOwner.statusCode).toBe(200)
    expect(byOwner.headers.etag).toBe('"3"')

    const versions = await stack.app.tenancy.models.PolicyVersion.find({ workspaceId })
      .sort({ version: 1 })
      .lean()
    expect(versions.map((row) => [row.version, row.changedBy])).toEqual([
      [1, owner.id],
      [2, admin.id],
      [3, owner.id],
    ])
  })

  it('answers 404 to a stranger and writes nothing', async () => {
    const owner = await stack.user('owner')
    const stranger = await stack.user('stranger')
    await stack.tenant(stranger, 'Elsewhere')
    const { workspaceId } = await stack.tenant(owner)
    const before = await policyState(stack, workspaceId)

    const refused = await putPolicy(stranger.token, workspaceId, EXAMPLE_POLICY)

    expect(refused.statusCode).toBe(404)
    expect(refused.json()).toMatchObject(errorCode(404, 'WSP_NOT_FOUND'))
    expect(await policyState(stack, workspaceId)).toEqual(before)
  })
})

describe('policy versions', () => {
  it('lists versions newest first with who, when and which paths changed', async () => {
    const owner = await stack.user('owner')
    const admin = await stack.user('admin')
    const { workspaceId } = await stack.tenant(owner)
    await stack.addMember(owner, workspaceId, admin, 'admin')
    const startedAt = Date.now()
    expect((await putPolicy(owner.token, workspaceId, EXAMPLE_POLICY)).statusCode).toBe(200)
    const tighter = examplePolicy()
    tighter.models.allow = ['oai:gpt-4o-mini']
    tighter.quota.rpm = 120
    expect((await putPolicy(admin.token, workspaceId, tighter)).statusCode).toBe(200)

    const listed = await stack.call(admin.token, 'GET', `${policyUrl(workspaceId)}/versions`)

    expect(listed.statusCode).toBe(200)
    const page = listed.json<VersionPage>()
    expect(page.nextCursor).toBeNull()
    expect(page.items.map((item) => [item.version, item.changedBy])).toEqual([
      [3, admin.id],
      [2, owner.id],
      [1, owner.id],
    ])
    const [third, second] = page.items
    expect(third?.diff).toEqual([
      {
        path: 'models.allow',
        before: EXAMPLE_POLICY.models.allow,
        after: ['oai:gpt-4o-mini'],
      },
      { path: 'quota.rpm', before: 600, after: 120 },
    ])
    expect(second?.diff.map((change) => change.path)).toEqual([
      'mcp.servers',
      'mcp.tools.github',
      'models.allow',
      'params.maxOutputTokens',
      'params.temperature',
      'quota.maxConcurrentStreams',
      'quota.memberRpm',
      'quota.monthlyTokens',
      'quota.rpm',
      'quota.tpm',
      'systemPrompt',
    ])
    expect(Date.parse(third?.changedAt ?? '')).toBeGreaterThanOrEqual(startedAt - 1000)
    expect(Date.parse(third?.changedAt ?? '')).toBeGreaterThanOrEqual(
      Date.parse(second?.changedAt ?? ''),
    )
  })

  it('pages through versions with a cursor, each version exactly once', async () => {
    const owner = await stack.user('owner')
    const { workspaceId } = await stack.tenant(owner)
    for (const rpm of [10, 20, 30, 40]) {
      const policy = examplePolicy()
      policy.quota.rpm = rpm
      expect((await putPolicy(owner.token, workspaceId, policy)).statusCode).toBe(200)
    }

    const seen: number[] = []
    let cursor: string | null = null
    let pages = 0
    do {
      const query: string = cursor === null ? '?limit=2' : `?limit=2&cursor=${cursor}`
      const listed = await stack.call(
        owner.token,
        'GET',
        `${policyUrl(workspaceId)}/versions${query}`,
      )
      expect(listed.statusCode).toBe(200)
      const page = listed.json<VersionPage>()
      expect(page.items.length).toBeLessThanOrEqual(2)
      seen.push(...page.items.map((item) => item.version))
      cursor = page.nextCursor
      pages++
    } while (cursor !== null && pages < 10)

    expect(seen).toEqual([5, 4, 3, 2, 1])
    expect(pages).toBe(3)
  })

  it('refuses a cursor it did not give out', async () => {
    const owner = await stack.user('owner')
    const { workspaceId } = await stack.tenant(owner)

    const listed = await stack.call(
      owner.token,
      'GET',
      `${policyUrl(workspaceId)}/versions?cursor=not-a-cursor`,
    )

    expect(listed.statusCode).toBe(400)
    expect(listed.json()).toMatchObject(errorCode(400, 'WSP_VALIDATION'))
  })

  it('is for admins: a member gets 403', async () => {
    const owner = await stack.user('owner')
    const member = await stack.user('member')
    const { workspaceId } = await stack.tenant(owner)
    await stack.addMember(owner, workspaceId, member, 'member')

    const refused = await stack.call(member.token, 'GET', `${policyUrl(workspaceId)}/versions`)

    expect(refused.statusCode).toBe(403)
    expect(refused.json()).toMatchObject(errorCode(403, 'WSP_FORBIDDEN'))
  })
})

describe('If-Match on a policy write', () => {
  let owner: TestUser
  let workspaceId: string
  beforeAll(async () => {
    ;({ owner, workspaceId } = await workspaceWithExamplePolicy('owner'))
  })

  it('writes when it names the current ETag', async () => {
    const changed = examplePolicy()
    changed.quota.tpm = 100_000

    const written = await putPolicy(owner.token, workspaceId, changed, { 'if-match': '"2"' })

    expect(written.statusCode).toBe(200)
    expect(written.headers.etag).toBe('"3"')
    const stored = await stack.app.tenancy.models.Workspace.findById(workspaceId).lean()
    expect(stored).toMatchObject({ policyVersion: 3, policy: changed })
  })

  it('refuses a stale ETag with 412 and writes nothing', async () => {
    const before = await policyState(stack, workspaceId)
    const changed = examplePolicy()
    changed.quota.tpm = 1

    const refused = await putPolicy(owner.token, workspaceId, changed, { 'if-match': '"1"' })

    expect(refused.statusCode).toBe(412)
    expect(refused.json()).toMatchObject(errorCode(412, 'WSP_PRECONDITION_FAILED'))
    expect(await policyState(stack, workspaceId)).toEqual(before)
  })

  it.each([
    ['a bare number', '3'],
    ['a wildcard', '*'],
    ['text', '"three"'],
    ['two tags', '"3", "4"'],
  ])('refuses %s as If-Match with 412 and writes nothing', async (_label, ifMatch) => {
    const before = await policyState(stack, workspaceId)
    const changed = examplePolicy()
    changed.quota.tpm = 7

    const refused = await putPolicy(owner.token, workspaceId, changed, { 'if-match': ifMatch })

    expect(refused.statusCode).toBe(412)
    expect(refused.json()).toMatchObject(errorCode(412, 'WSP_PRECONDITION_FAILED'))
    expect(await policyState(stack, workspaceId)).toEqual(before)
  })
})

describe('an invalid policy document', () => {
  let owner: TestUser
  let workspaceId: string
  beforeAll(async () => {
    ;({ owner, workspaceId } = await workspaceWithExamplePolicy('owner'))
  })

  /** PUTs `policy`, expects 400 naming `path`, and checks that nothing was written. */
  async function expectRefused(policy: unknown, path: string) {
    const before = await policyState(stack, workspaceId)
    const published = listener.received(workspaceId).length

    const refused = await putPolicy(owner.token, workspaceId, policy)

    expect(refused.statusCode).toBe(400)
    const body = refused.json<ErrorBody>()
    expect(body).toMatchObject(errorCode(400, 'WSP_VALIDATION'))
    expect(body.details?.map((detail) => detail.path)).toContain(path)
    expect(await policyState(stack, workspaceId)).toEqual(before)
    await listener.settle()
    expect(listener.received(workspaceId)).toHaveLength(published)
    return body
  }

  const withModels = (allow: string[]) => ({ ...examplePolicy(), models: { allow } })

  it('refuses a model pattern without a provider', async () => {
    await expectRefused(withModels(['gpt-4o']), 'models.allow.0')
  })

  it('refuses a model pattern with an uppercase provider', async () => {
    await expectRefused(withModels(['OAI:x']), 'models.allow.0')
  })

  it('refuses a model pattern with leading whitespace', async () => {
    await expectRefused(withModels([' oai:x']), 'models.allow.0')
  })

  it('refuses an empty model pattern', async () => {
    await expectRefused(withModels(['']), 'models.allow.0')
  })

  it('names the position of the one bad pattern among good ones', async () => {
    await expectRefused(withModels(['oai:gpt-4o-mini', 'oai:']), 'models.allow.1')
  })

  it('refuses a negative rate limit', async () => {
    const policy = examplePolicy()
    policy.quota.rpm = -1
    await expectRefused(policy, 'quota.rpm')
  })

  it('refuses a negative cost budget', async () => {
    const policy = examplePolicy()
    policy.quota.monthlyCostUsd = -0.01
    await expectRefused(policy, 'quota.monthlyCostUsd')
  })

  it('refuses a fractional monthly token budget', async () => {
    const policy = examplePolicy()
    policy.quota.monthlyTokens = 1.5
    await expectRefused(policy, 'quota.monthlyTokens')
  })

  it('refuses a monthly token budget given as a string', async () => {
    const policy = { ...examplePolicy(), quota: { ...EXAMPLE_POLICY.quota, monthlyTokens: '5' } }
    await expectRefused(policy, 'quota.monthlyTokens')
  })

  it('refuses a maximum temperature above 2', async () => {
    const policy = examplePolicy()
    policy.params.temperature = { max: 3 }
    await expectRefused(policy, 'params.temperature.max')
  })

  it('refuses an unknown top-level field', async () => {
    const body = await expectRefused({ ...examplePolicy(), budget: 5 }, '(body)')
    expect(body.details?.[0]?.message).toContain('budget')
  })

  it('refuses an unknown field inside quota', async () => {
    const policy = { ...examplePolicy(), quota: { ...EXAMPLE_POLICY.quota, rpd: 100 } }
    const body = await expectRefused(policy, 'quota')
    expect(body.details?.[0]?.message).toContain('rpd')
  })

  it('refuses an unknown field inside models', async () => {
    const policy = { ...examplePolicy(), models: { allow: [], deny: ['oai:*'] } }
    const body = await expectRefused(policy, 'models')
    expect(body.details?.[0]?.message).toContain('deny')
  })

  it('refuses tool narrowing for a server mcp.servers does not allow', async () => {
    const policy = examplePolicy()
    policy.mcp.tools = { ...policy.mcp.tools, slack: ['post_*'] }
    await expectRefused(policy, 'mcp.tools.slack')
  })

  it("refuses an overage that is neither 'block' nor 'allow'", async () => {
    const policy = { ...examplePolicy(), quota: { ...EXAMPLE_POLICY.quota, overage: 'maybe' } }
    await expectRefused(policy, 'quota.overage')
  })

  it('refuses a policy without quota', async () => {
    const { quota: _quota, ...withoutQuota } = examplePolicy()
    await expectRefused(withoutQuota, 'quota')
  })

  it('refuses a quota missing one of its limits', async () => {
    const { rpm: _rpm, ...quota } = EXAMPLE_POLICY.quota
    await expectRefused({ ...examplePolicy(), quota }, 'quota.rpm')
  })

  it('refuses a system prompt over 20,000 characters', async () => {
    await expectRefused({ ...examplePolicy(), systemPrompt: 'x'.repeat(20_001) }, 'systemPrompt')
  })

  it('refuses a body that is not an object', async () => {
    await expectRefused([EXAMPLE_POLICY], '(body)')
  })

  it('refuses a 300 KB system prompt at the body limit and writes nothing', async () => {
    const before = await policyState(stack, workspaceId)

    const refused = await putPolicy(owner.token, workspaceId, {
      ...examplePolicy(),
      systemPrompt: 'x'.repeat(300 * 1024),
    })

    expect(refused.statusCode).toBe(413)
    expect(refused.json()).toMatchObject(errorCode(413, 'WSP_PAYLOAD_TOO_LARGE'))
    expect(await policyState(stack, workspaceId)).toEqual(before)
  })
})

describe('policy invalidation on Redis', () => {
  it('publishes {workspaceId, version} on the bare channel after every write', async () => {
    const owner = await stack.user('owner')
    const { workspaceId } = await stack.tenant(owner)
    expect((await putPolicy(owner.token, workspaceId, EXAMPLE_POLICY)).statusCode).toBe(200)
    const changed = examplePolicy()
    changed.quota.rpm = 1
    expect((await putPolicy(owner.token, workspaceId, changed)).statusCode).toBe(200)

    expect(await listener.waitFor(workspaceId, 2)).toEqual([
      { workspaceId, version: 2 },
      { workspaceId, version: 3 },
    ])
  })

  it("is not affected by the app's Redis key prefix, which ioredis applies to keys only", async () => {
    // The app's client prefixes keys (test isolation); gateways subscribe to the bare name.
    expect(stack.app.redis.options.keyPrefix).toBe(stack.redisKeyPrefix)
    const owner = await stack.user('owner')
    const { workspaceId } = await stack.tenant(owner)

    expect((await putPolicy(owner.token, workspaceId, EXAMPLE_POLICY)).statusCode).toBe(200)

    await listener.waitFor(workspaceId, 1)
    await listener.settle(prefixedChannel)
    expect(listener.received(workspaceId, prefixedChannel)).toEqual([])
  })

  it('publishes nothing for a refused write', async () => {
    const owner = await stack.user('owner')
    const member = await stack.user('member')
    const { workspaceId } = await stack.tenant(owner)
    await stack.addMember(owner, workspaceId, member, 'member')

    expect((await putPolicy(member.token, workspaceId, EXAMPLE_POLICY)).statusCode).toBe(403)
    expect(
      (await putPolicy(owner.token, workspaceId, EXAMPLE_POLICY, { 'if-match': '"9"' })).statusCode,
    ).toBe(412)

    await listener.settle()
    expect(listener.received(workspaceId)).toEqual([])
  })

  it("publishes for every live workspace of a tenant when the tenant's token limit changes", async () => {
    const owner = await stack.user('owner')
    const { tenantId, workspaceId: first } = await stack.tenant(owner)
    const createWorkspace = async (name: string) => {
      const created = await stack.call(owner.token, 'POST', `/v1/tenants/${tenantId}/workspaces`, {
        name,
      })
      expect(created.statusCode).toBe(201)
      return created.json<{ id: string }>().id
    }
    const second = await createWorkspace('Second')
    const deleted = await createWorkspace('Gone')
    expect((await putPolicy(owner.token, second, EXAMPLE_POLICY)).statusCode).toBe(200)
    expect((await stack.call(owner.token, 'DELETE', `/v1/workspaces/${deleted}`)).statusCode).toBe(
      200,
    )
    await listener.waitFor(second, 1)
    await listener.waitFor(deleted, 1)

    const patched = await stack.call(owner.token, 'PATCH', `/v1/tenants/${tenantId}`, {
      limits: { monthlyTokens: 1_000_000 },
    })

    expect(patched.statusCode).toBe(200)
    expect(await listener.waitFor(first, 1)).toEqual([{ workspaceId: first, version: 1 }])
    expect(await listener.waitFor(second, 2)).toEqual([
      { workspaceId: second, version: 2 },
      { workspaceId: second, version: 2 },
    ])
    await listener.settle()
    expect(listener.received(deleted)).toHaveLength(1)
  })

  it('publishes nothing when a tenant setting outside the effective policy changes', async () => {
    const owner = await stack.user('owner')
    const { tenantId, workspaceId } = await stack.tenant(owner)

    const renamed = await stack.call(owner.token, 'PATCH', `/v1/tenants/${tenantId}`, {
      name: 'Renamed',
    })

    expect(renamed.statusCode).toBe(200)
    await listener.settle()
    expect(listener.received(workspaceId)).toEqual([])
  })

  it("publishes for the tenant's workspaces when its time zone changes", async () => {
    const owner = await stack.user('owner')
    const { tenantId, workspaceId } = await stack.tenant(owner)

    const moved = await stack.call(owner.token, 'PATCH', `/v1/tenants/${tenantId}`, {
      timeZone: 'Asia/Tokyo',
    })

    expect(moved.statusCode).toBe(200)
    expect(await listener.waitFor(workspaceId, 1)).toEqual([{ workspaceId, version: 1 }])
  })

  it('publishes when a workspace is restored', async () => {
    const owner = await stack.user('owner')
    const { workspaceId } = await stack.tenant(owner)
    expect(
      (await stack.call(owner.token, 'DELETE', `/v1/workspaces/${workspaceId}`)).statusCode,
    ).toBe(200)
    await listener.waitFor(workspaceId, 1)

    const restored = await stack.call(owner.token, 'POST', `/v1/workspaces/${workspaceId}/restore`)

    expect(restored.statusCode).toBe(200)
    expect(await listener.waitFor(workspaceId, 2)).toEqual([
      { workspaceId, version: 1 },
      { workspaceId, version: 1 },
    ])
  })

  it('publishes when a workspace is deleted', async () => {
    const owner = await stack.user('owner')
    const { workspaceId } = await stack.tenant(owner)
    expect((await putPolicy(owner.token, workspaceId, EXAMPLE_POLICY)).statusCode).toBe(200)
    await listener.waitFor(workspaceId, 1)

    const deleted = await stack.call(owner.token, 'DELETE', `/v1/workspaces/${workspaceId}`)

    expect(deleted.statusCode).toBe(200)
    expect(await listener.waitFor(workspaceId, 2)).toEqual([
      { workspaceId, version: 2 },
      { workspaceId, version: 2 },
    ])
  })
})
