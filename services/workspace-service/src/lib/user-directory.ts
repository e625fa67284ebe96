import {
  createInternalClient,
  InternalRequestRefusedError,
  InternalServiceUnavailableError,
} from '@platform/service-kit'
import { type InternalUser, InternalUserSchema } from '@platform/shared-types'
import { DependencyUnavailable, InvalidRequest } from '../errors.js'

export interface UserDirectoryOptions {
  authServiceUrl: string
  serviceToken: () => Promise<string>
}

/** Looks users up in the auth-service (API.md §7), which alone knows accounts. */
export function createUserDirectory(options: UserDirectoryOptions) {
  const client = createInternalClient({
    baseUrl: options.authServiceUrl,
    serviceName: 'auth-service',
    serviceToken: options.serviceToken,
  })

  async function ask(path: string): Promise<InternalUser | null> {
    try {
      return await client.get(path, InternalUserSchema)
    } catch (error) {
      if (error instanceof InternalRequestRefusedError)
        throw new InvalidRequest('The account directory refused this address as not valid')
      if (error instanceof InternalServiceUnavailableError)
        throw new DependencyUnavailable('The account directory', { cause: error })
      throw error
    }
  }

  return {
    /** The signed-in user's account; its absence means the directory is out of step with us. */
    async account(userId: string) {
      const user = await ask(`/internal/v1/users/${encodeURIComponent(userId)}`)
      if (user === null) throw new DependencyUnavailable('The account directory')
      return { userId: user.id, email: user.email, name: user.name }
    },
    byEmail: (email: string) =>
      ask(`/internal/v1/users/by-email?${new URLSearchParams({ email })}`),
    byId: (userId: string) => ask(`/internal/v1/users/${encodeURIComponent(userId)}`),
  }
}

export type UserDirectory = ReturnType<typeof createUserDirectory>
