/**
 * Redis keys more than one service reads or writes. A key written by one service and read by
 * another is a contract, so it is spelled once, here.
 */

/**
 * Present while a session is revoked and any access token of it could still be unexpired: the
 * auth-service sets it (expiring with the longest-lived token), every verifier checks it.
 */
export const revokedSessionKey = (sessionId: string) => `auth:revoked-session:${sessionId}`
