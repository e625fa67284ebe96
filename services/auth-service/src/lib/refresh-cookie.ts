import { REFRESH_COOKIE_NAME } from '@platform/shared-types'
import type { FastifyReply } from 'fastify'

/**
 * The refresh cookie's attributes (API.md §3), shared by every route that sets or clears it so
 * a clear always matches the set: the whole site, never readable by scripts, sent on top-level
 * navigations (the OAuth callback's redirect) but not on cross-site subrequests.
 */
export const refreshCookieOptions = (secure: boolean) => ({
  path: '/',
  httpOnly: true,
  sameSite: 'lax' as const,
  secure,
})

/** Hands the browser a session's refresh token; the cookie ends when the session would. */
export const writeRefreshCookie = (
  reply: FastifyReply,
  refreshToken: string,
  expiresAt: Date,
  secure: boolean,
) =>
  reply.setCookie(REFRESH_COOKIE_NAME, refreshToken, {
    ...refreshCookieOptions(secure),
    expires: expiresAt,
  })
