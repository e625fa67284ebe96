const READ_METHODS = new Set(['GET', 'HEAD'])
const WRITING_ROLES = new Set(['owner', 'admin', 'member'])

/**
 * Whether a workspace role may send `method` to LibreChat's `/api/*`: owners, admins and members
 * any method, viewers only `GET` and `HEAD` (they read chats but post no message and change
 * nothing). Anything else, an unknown role or a lowercase method included, is refused.
 */
export function mayUseLibreChatMethod(role: unknown, method: unknown): boolean {
  if (typeof role !== 'string' || typeof method !== 'string') return false
  if (WRITING_ROLES.has(role)) return true
  return role === 'viewer' && READ_METHODS.has(method)
}
