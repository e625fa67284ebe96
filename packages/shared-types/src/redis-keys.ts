/**
 * Redis keys more than one service reads or writes. A key written by one service and read by
 * another is a contract, so it is spelled once, here.
 */

/**
 * Present while a session is revoked and any access token of it could still be unexpired: the
 * auth-service sets it (expiring with the longest-lived token), every verifier checks it.
 */
export const revokedSessionKey = (sessionId: string) => `auth:revoked-session:${sessionId}`

/**
 * A hash of a workspace's in-flight token reservations: call id → a `QuotaReservation` as JSON.
 * The gateway writes it around every model call; the workspace-service reads it for the
 * `reserved` figure of `GET /v1/workspaces/:wid/quota`. The tenant id in braces keeps one
 * tenant's keys in one Redis Cluster slot.
 */
export const quotaReservationsKey = (tenantId: string, workspaceId: string) =>
  `gw:quota-reservations:{${tenantId}}:${workspaceId}`

/** The channel that carries `PolicyInvalidation` after every policy change (API.md §7). */
export const POLICY_INVALIDATE_CHANNEL = 'policy.invalidate'
