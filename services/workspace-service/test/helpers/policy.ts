import { randomUUID } from 'node:crypto'
import {
  POLICY_INVALIDATE_CHANNEL,
  type PolicyInvalidation,
  PolicyInvalidationSchema,
  type WorkspacePolicy,
} from '@platform/shared-types'
import { Redis } from 'ioredis'
import type { TestStack } from './stack.js'

/** The policy of API.md §4, verbatim: what an admin would PUT. */
export const EXAMPLE_POLICY: WorkspacePolicy = {
  models: { allow: ['oai:gpt-4o-mini', 'claude:claude-*', 'ollama:llama3:*'] },
  mcp: { servers: ['workspace-tools', 'github'], tools: { github: ['search_*'] } },
  params: { maxOutputTokens: 4096, temperature: { max: 1.0 } },
  systemPrompt: 'You help the research team.',
  quota: {
    monthlyTokens: 2000000,
    monthlyCostUsd: null,
    memberMonthlyTokens: null,
    rpm: 600,
    memberRpm: 60,
    tpm: 200000,
    memberTpm: null,
    maxConcurrentStreams: 4,
    overage: 'block',
  },
}

/** A deep copy of the example, for a test to change without touching the others' copy. */
export const examplePolicy = (): WorkspacePolicy => structuredClone(EXAMPLE_POLICY)

/** Polls `check` until it answers something other than undefined. */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await check()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

/** Everything a policy write touches, to compare before and after a refused write. */
export interface PolicyState {
  policy: unknown
  policyVersion: number | undefined
  versions: number[]
  auditIds: string[]
}

export async function policyState(stack: TestStack, workspaceId: string): Promise<PolicyState> {
  const { Workspace, PolicyVersion, Audit } = stack.app.tenancy.models
  const [workspace, versions, audit] = await Promise.all([
    Workspace.findById(workspaceId).lean(),
    PolicyVersion.find({ workspaceId }, { version: 1 }).sort({ version: 1 }).lean(),
    Audit.find({ workspaceId }, { _id: 1 }).sort({ _id: 1 }).lean(),
  ])
  return {
    policy: workspace?.policy,
    policyVersion: workspace?.policyVersion,
    versions: versions.map((row) => row.version),
    auditIds: audit.map((row) => row._id),
  }
}

interface ReceivedInvalidation {
  channel: string
  message: PolicyInvalidation
}

/**
 * A subscriber on the `policy.invalidate` channel (and any others named), on its own connection
 * as a gateway's would be. Other test files publish on the same channel, so readers filter by
 * workspace id.
 */
export interface InvalidationListener {
  /** What arrived for `workspaceId` on `channel`, oldest first. */
  received(workspaceId: string, channel?: string): PolicyInvalidation[]
  /** Waits for the `count`-th message for `workspaceId` on `channel`. */
  waitFor(workspaceId: string, count?: number, channel?: string): Promise<PolicyInvalidation[]>
  /**
   * Publishes a marker and waits for it. Redis delivers a channel's messages in order, so once
   * the marker is in, everything published on that channel before it has arrived too: a test can
   * then assert that something was not published.
   */
  settle(channel?: string): Promise<void>
  close(): Promise<void>
}

export async function listenForInvalidations(
  redisUrl: string,
  extraChannels: string[] = [],
): Promise<InvalidationListener> {
  // A client in subscriber mode may not publish, so markers go out on a second connection.
  const subscriber = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 })
  const publisher = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 })
  await Promise.all([subscriber.connect(), publisher.connect()])
  const arrived: ReceivedInvalidation[] = []
  subscriber.on('message', (channel: string, raw: string) => {
    const parsed = PolicyInvalidationSchema.safeParse(JSON.parse(raw))
    if (parsed.success) arrived.push({ channel, message: parsed.data })
  })
  await subscriber.subscribe(POLICY_INVALIDATE_CHANNEL, ...extraChannels)

  const received = (workspaceId: string, channel = POLICY_INVALIDATE_CHANNEL) =>
    arrived
      .filter((entry) => entry.channel === channel && entry.message.workspaceId === workspaceId)
      .map((entry) => entry.message)

  return {
    received,
    waitFor: (workspaceId, count = 1, channel = POLICY_INVALIDATE_CHANNEL) =>
      eventually(`${count} invalidation(s) of ${workspaceId} on ${channel}`, () => {
        const messages = received(workspaceId, channel)
        return messages.length >= count ? messages : undefined
      }),
    async settle(channel = POLICY_INVALIDATE_CHANNEL) {
      const marker = `marker-${randomUUID()}`
      const message: PolicyInvalidation = { workspaceId: marker, version: 0 }
      await publisher.publish(channel, JSON.stringify(message))
      await eventually(`the marker on ${channel}`, () =>
        received(marker, channel).length > 0 ? true : undefined,
      )
    },
    async close() {
      await Promise.all([subscriber.quit(), publisher.quit()])
    },
  }
}
