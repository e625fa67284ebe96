import {
  type Membership,
  MembershipSchema,
  type UserMembershipsResponse,
  UserMembershipsResponseSchema,
} from '@platform/shared-types'
import type { z } from 'zod'

/** The workspace-service could not answer; callers decide whether that blocks them. */
export class WorkspaceServiceUnavailable extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'WorkspaceServiceUnavailable'
  }
}

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

/** Asks the workspace-service about memberships (API.md §7), the only source of roles. */
export function createWorkspaceDirectory(options: WorkspaceDirectoryOptions): WorkspaceDirectory {
  async function get<T extends z.ZodType>(path: string, schema: T): Promise<z.infer<T> | null> {
    if (options.baseUrl === undefined)
      throw new WorkspaceServiceUnavailable('the workspace-service is not configured')
    let response: Response
    try {
      response = await fetch(new URL(path, options.baseUrl), {
        headers: {
          authorization: `Bearer ${await options.serviceToken()}`,
          accept: 'application/json',
        },
        signal: AbortSignal.timeout(options.timeoutMs ?? 5_000),
      })
    } catch (error) {
      throw new WorkspaceServiceUnavailable('the workspace-service did not answer', {
        cause: error,
      })
    }
    if (response.status === 404) {
      await response.body?.cancel()
      return null
    }
    if (!response.ok) {
      await response.body?.cancel()
      throw new WorkspaceServiceUnavailable(`the workspace-service answered ${response.status}`)
    }
    const parsed = schema.safeParse(await response.json().catch(() => undefined))
    if (!parsed.success)
      throw new WorkspaceServiceUnavailable('the workspace-service answered an unexpected body', {
        cause: parsed.error,
      })
    return parsed.data
  }

  return {
    membership: (userId, workspaceId) =>
      get(
        `/internal/v1/memberships?${new URLSearchParams({ userId, workspaceId })}`,
        MembershipSchema,
      ),
    async memberships(userId) {
      if (options.baseUrl === undefined) return { items: [], lastUsedWorkspaceId: null }
      const answer = await get(
        `/internal/v1/users/${encodeURIComponent(userId)}/memberships`,
        UserMembershipsResponseSchema,
      )
      return answer ?? { items: [], lastUsedWorkspaceId: null }
    },
  }
}
