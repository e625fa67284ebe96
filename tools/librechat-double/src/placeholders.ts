import type { UserDoc } from './store.js'

export interface PlaceholderContext {
  user: UserDoc
  /** The chat request body's ids; without them `{{LIBRECHAT_BODY_…}}` stays literal. */
  body?: { conversationId?: string; parentMessageId?: string; messageId?: string }
}

const USER_FIELDS: Record<string, (user: UserDoc) => unknown> = {
  ID: (user) => user._id.toHexString(),
  NAME: (user) => user.name,
  USERNAME: (user) => user.username,
  EMAIL: (user) => user.email,
  PROVIDER: (user) => user.provider,
  ROLE: (user) => user.role,
  EMAILVERIFIED: (user) => user.emailVerified,
}

const BODY_FIELDS = {
  CONVERSATIONID: 'conversationId',
  PARENTMESSAGEID: 'parentMessageId',
  MESSAGEID: 'messageId',
} as const

/**
 * LibreChat's `{{LIBRECHAT_USER_<FIELD>}}` and `{{LIBRECHAT_BODY_<FIELD>}}` header templates.
 * Values that are not plain ASCII are sent as `b64:<base64>`, as LibreChat does, because HTTP
 * header values cannot carry them.
 */
export function resolveHeaders(
  headers: Record<string, string> | undefined,
  context: PlaceholderContext,
): Record<string, string> {
  const resolved: Record<string, string> = {}
  for (const [name, template] of Object.entries(headers ?? {})) {
    resolved[name] = template.replace(
      /\{\{LIBRECHAT_(USER|BODY)_([A-Z]+)\}\}/g,
      (whole, scope: string, field: string) => {
        const value =
          scope === 'USER'
            ? USER_FIELDS[field]?.(context.user)
            : context.body?.[BODY_FIELDS[field as keyof typeof BODY_FIELDS]]
        if (value === undefined || value === null) return whole
        const text = String(value)
        return /^[\x20-\x7e]*$/.test(text) ? text : `b64:${Buffer.from(text).toString('base64')}`
      },
    )
  }
  return resolved
}
