import createError from '@fastify/error'

// Upstreams
export const UpstreamNotConfigured = createError(
  'GW_UPSTREAM_UNAVAILABLE',
  'The %s is not configured on this gateway',
  503,
)
export const UpstreamUnavailable = createError(
  'GW_UPSTREAM_UNAVAILABLE',
  'The %s is not answering; try again shortly',
  503,
)
export const UpstreamTimeout = createError(
  'GW_UPSTREAM_TIMEOUT',
  'The %s took too long to answer',
  504,
)
