import { createHash, timingSafeEqual } from 'node:crypto'
import type { EffectivePolicy, Membership } from '@platform/shared-types'
import { DependencyUnavailable, Forbidden, Unauthenticated, Validation } from '../errors.js'
import type { LibreChatIdentity } from './librechat-bridge.js'

/** The header LibreChat resolves from `{{LIBRECHAT_USER_ID}}` in `librechat.yaml` (API.md §6). */
export const LIBRECHAT_USER_HEADER = 'x-librechat-user-id'
/** What LibreChat sends when it has no user to resolve the placeholder for (its startup fetch). */
export const UNRESOLVED_USER_PLACEHOLDER = '{{LIBRECHAT_USER_ID}}'

const OBJECT_ID = /^[0-9a-f]{24}$/

const digest = (value: string) => createHash('sha256').update(value).digest()

/**
 * Checks `Authorization: Bearer <EGRESS_SECRET>` in constant time: both sides are hashed first,
 * so neither the comparison nor its length check says how much of a guess was right.
 */
export function createEgressSecretCheck(secret: string) {
  const expected = digest(`Bearer ${secret}`)
  return (authorization: string | undefined) => {
    if (authorization === undefined || !timingSafeEqual(digest(authorization), expected))
      throw new Unauthenticated('The egress secret is missing or wrong')
  }
}

/** Who a model or MCP call is for: the platform member behind the LibreChat user. */
export interface EgressCaller {
  libreChatUserId: string
  tenantId: string
  workspaceId: string
  userId: string
  membership: Membership
  policy: EffectivePolicy
}

export interface EgressCallerLookup {
  memberOf(libreChatUserId: string): Promise<LibreChatIdentity | null>
  membership(userId: string, workspaceId: string): Promise<Membership | null>
  policy(workspaceId: string): Promise<EffectivePolicy | null>
}

/** The LibreChat user id a call names in its header, checked for shape only. */
export function libreChatUserIdOf(header: string | string[] | undefined): string {
  if (typeof header !== 'string' || !OBJECT_ID.test(header))
    throw new Validation(`The ${LIBRECHAT_USER_HEADER} header must be a LibreChat user id`)
  return header
}

/**
 * Resolves the caller of an egress call from the LibreChat user id, which is authoritative
 * (API.md §6): a user the bridge never made, a member removed since, a viewer, or a deleted
 * workspace may not spend the workspace's models.
 */
export async function resolveEgressCaller(
  libreChatUserId: string,
  lookup: EgressCallerLookup,
): Promise<EgressCaller> {
  try {
    return await resolve(libreChatUserId, lookup)
  } catch (error) {
    // A refusal stands; anything else is the mapping or the workspace-service failing to answer.
    if (error instanceof Error && 'statusCode' in error) throw error
    throw new DependencyUnavailable('workspace service', { cause: error })
  }
}

async function resolve(libreChatUserId: string, lookup: EgressCallerLookup): Promise<EgressCaller> {
  const identity = await lookup.memberOf(libreChatUserId)
  if (identity === null) throw new Forbidden('This LibreChat user is not a platform member')
  const [membership, policy] = await Promise.all([
    lookup.membership(identity.userId, identity.workspaceId),
    lookup.policy(identity.workspaceId),
  ])
  if (membership === null || policy === null)
    throw new Forbidden('This LibreChat user is no longer a member of its workspace')
  if (membership.role === 'viewer')
    throw new Forbidden('Viewers can read this workspace but not use its models or tools')
  return {
    libreChatUserId,
    tenantId: identity.tenantId,
    workspaceId: identity.workspaceId,
    userId: identity.userId,
    membership,
    policy,
  }
}
