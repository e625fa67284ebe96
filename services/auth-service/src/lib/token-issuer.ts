import { randomUUID } from 'node:crypto'
import {
  INTERNAL_AUDIENCE,
  PLATFORM_AUDIENCE,
  type ServiceName,
  TOKEN_SIGNING_ALGORITHM,
  type WorkspaceRole,
} from '@platform/shared-types'
import { SignJWT } from 'jose'
import type { SigningKeyStore } from './signing-keys.js'

/** The workspace a token speaks for; absent for a user in no workspace yet. */
export interface TokenScope {
  tenantId: string
  workspaceId: string
  role: WorkspaceRole
}

export interface TokenIssuerOptions {
  issuer: string
  keys: SigningKeyStore
  accessTokenSeconds: number
  serviceTokenSeconds: number
}

export interface TokenIssuer {
  readonly accessTokenSeconds: number
  readonly serviceTokenSeconds: number
  accessToken(userId: string, sessionId: string, scope: TokenScope | null): Promise<string>
  serviceToken(service: ServiceName): Promise<string>
}

/** Signs the platform's access tokens and service tokens (ARCHITECTURE §3, API.md §7). */
export function createTokenIssuer(options: TokenIssuerOptions): TokenIssuer {
  async function sign(
    claims: Record<string, string>,
    subject: string,
    audience: string,
    seconds: number,
  ) {
    const key = await options.keys.current()
    return new SignJWT(claims)
      .setProtectedHeader({ alg: TOKEN_SIGNING_ALGORITHM, kid: key.kid, typ: 'JWT' })
      .setIssuer(options.issuer)
      .setAudience(audience)
      .setSubject(subject)
      .setJti(randomUUID())
      .setIssuedAt()
      .setExpirationTime(`${seconds}s`)
      .sign(key.privateKey)
  }
  return {
    accessTokenSeconds: options.accessTokenSeconds,
    serviceTokenSeconds: options.serviceTokenSeconds,
    accessToken(userId, sessionId, scope) {
      const claims: Record<string, string> = { sid: sessionId }
      if (scope !== null) {
        claims.tid = scope.tenantId
        claims.wid = scope.workspaceId
        claims.role = scope.role
      }
      return sign(claims, userId, PLATFORM_AUDIENCE, options.accessTokenSeconds)
    },
    serviceToken: (service) => sign({}, service, INTERNAL_AUDIENCE, options.serviceTokenSeconds),
  }
}
