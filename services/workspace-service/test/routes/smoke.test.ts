import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestStack, type TestStack } from '../helpers/stack.js'

let stack: TestStack
beforeAll(async () => {
  stack = await startTestStack()
})
afterAll(() => stack?.close())

describe('a tenant from end to end', () => {
  it('creates a tenant, signs in scoped to its workspace through the auth-service, reads it', async () => {
    const owner = await stack.user('owner')
    const { tenantId, workspaceId } = await stack.tenant(owner)
    const token = await stack.scopedToken(owner, workspaceId)
    const read = await stack.call(token, 'GET', `/v1/workspaces/${workspaceId}`)
    expect(read.statusCode).toBe(200)
    expect(read.json()).toMatchObject({ id: workspaceId, tenantId, role: 'owner', name: 'General' })
  })
})
