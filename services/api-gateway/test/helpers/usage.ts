import { randomUUID } from 'node:crypto'
import type { UsageRecord } from '@platform/shared-types'
import { bearer, type Platform } from './platform.js'

/** Whom a model call is charged to. */
export interface ChargedTo {
  tenantId: string
  workspaceId: string
  userId: string
}

/**
 * Appends one settled model call of `inputTokens` + `outputTokens` to the workspace-service's
 * usage ledger through `POST /internal/v1/usage`, with the service token the gateway presents:
 * what the egress reports after a call, without running one.
 */
export async function appendModelUsage(
  platform: Platform,
  chargedTo: ChargedTo,
  tokens: { inputTokens: number; outputTokens: number },
): Promise<void> {
  const serviceToken = await platform.auth.identity.tokens.serviceToken('api-gateway')
  const endedAt = new Date()
  const startedAt = new Date(endedAt.getTime() - 1000)
  const record: UsageRecord = {
    callId: randomUUID(),
    kind: 'model',
    ...chargedTo,
    provider: 'oai',
    model: 'fake-small',
    ...tokens,
    costUsd: 0,
    durationMs: 1000,
    startedAt: startedAt.toISOString(),
    endedAt: endedAt.toISOString(),
    status: 'completed',
  }
  const response = await platform.workspace.inject({
    method: 'POST',
    url: '/internal/v1/usage',
    headers: bearer(serviceToken),
    payload: { records: [record] },
  })
  if (response.statusCode !== 200)
    throw new Error(`usage append answered ${response.statusCode}: ${response.body}`)
}
