import { createInternalClient } from '@platform/service-kit'
import {
  type Membership,
  MembershipSchema,
  type UserMembershipsResponse,
  UserMembershipsResponseSchema,
} from '@platform/shared-types'

export interface WorkspaceDirectoryOptions {
  /** Unset until the workspace-service is deployed: nobody is a member of anything then. */
  baseUrl: string | undefined
  /** A service token for `auth-service`, which signs its own. */
  serviceToken: () => Promise<string>
  timeoutMs?: number
}

export interface WorkspaceDirectory {
  /** The user's membership of one workspace, or null when there is none. */
  membership(userId: string, workspaceId: string): Promise<Membership | null>
  memberships(userId: string): Promise<UserMembershipsResponse>
}

/**
 * Asks the workspace-service about memberships (API.md §7), the only source of roles. Failures
 * are `InternalServiceUnavailableError`.
 */
export function createWorkspaceDirectory(options: WorkspaceDirectoryOptions): WorkspaceDirectory {
  const client = createInternalClient({
    baseUrl: options.baseUrl,
    serviceName: 'workspace-service',
    serviceToken: options.serviceToken,
    ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }),
  })
  return {
    membership: (userId, workspaceId) =>
      client.get(
        `/internal/v1/memberships?${new URLSearchParams({ userId, workspaceId })}`,
        MembershipSchema,
      ),
    async memberships(userId) {
      if (options.baseUrl === undefined) return { items: [], lastUsedWorkspaceId: null }
      const answer = await client.get(
        `/internal/v1/users/${encodeURIComponent(userId)}/memberships`,
        UserMembershipsResponseSchema,
      )
      return answer ?? { items: [], lastUsedWorkspaceId: null }
    },
  }
}
