import type { ErrorBody } from '@platform/service-kit'

/** OpenAI's error `type` for a status, as its API and SDKs use them. */
function openAiErrorType(statusCode: number, code: string): string {
  if (code === 'GW_QUOTA_EXCEEDED') return 'insufficient_quota'
  if (statusCode === 401) return 'authentication_error'
  if (statusCode === 403) return 'permission_error'
  if (statusCode === 404) return 'not_found_error'
  if (statusCode === 429) return 'rate_limit_error'
  if (statusCode >= 500) return 'server_error'
  return 'invalid_request_error'
}

/**
 * An egress error as LibreChat's OpenAI client reads it (API.md §6): OpenAI's `error` object,
 * whose message LibreChat shows, beside the platform's own `statusCode`, `code` and limit fields.
 * A spent budget carries `insufficient_quota`, the code OpenAI clients treat as final.
 */
export function openAiErrorBody(body: ErrorBody) {
  const { error: _statusText, message, ...platform } = body
  return {
    error: {
      message,
      type: openAiErrorType(body.statusCode, body.code),
      param: null,
      code: body.code === 'GW_QUOTA_EXCEEDED' ? 'insufficient_quota' : body.code,
    },
    ...platform,
  }
}
