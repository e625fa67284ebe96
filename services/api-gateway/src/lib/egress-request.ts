import { z } from 'zod'

/**
 * The fields of an OpenAI chat-completions request the egress reads or rewrites; everything else
 * goes to the provider as LibreChat sent it. Bounds that would let one call spend without limit
 * (several choices, a negative or absurd output cap) are refused here.
 */
export const ChatCompletionRequestSchema = z.looseObject({
  model: z.string().min(1).max(256),
  messages: z.array(z.unknown()).min(1).max(10_000),
  stream: z.boolean().nullish(),
  stream_options: z.looseObject({ include_usage: z.boolean().optional() }).nullish(),
  max_tokens: z.number().int().min(1).max(10_000_000).nullish(),
  max_completion_tokens: z.number().int().min(1).max(10_000_000).nullish(),
  temperature: z.number().min(0).max(2).nullish(),
  // One choice: a call's output is what its reservation covered, and LibreChat asks for one.
  n: z.literal(1).nullish(),
  user: z.string().max(256).optional(),
})
export type ChatCompletionRequest = z.infer<typeof ChatCompletionRequestSchema>

/** The parts of a workspace policy that shape a forwarded call. */
export interface CallPolicy {
  maxOutputTokens: number | null
  maxTemperature: number | null
  systemPrompt: string | null
}

export interface ForwardedCall {
  /** The body the provider receives. */
  body: Record<string, unknown>
  /** The output cap the call runs under, `null` when neither the caller nor policy set one. */
  maxOutputTokens: number | null
  stream: boolean
  /** Whether LibreChat asked for the usage chunk itself (it never does, librechat-api.md §10). */
  callerWantsUsage: boolean
}

/**
 * The call as the provider gets it: the caps written in (`max_tokens`, or `max_completion_tokens`
 * when the caller used that newer name; temperature lowered to the cap), the workspace's system
 * prompt first, and, on a stream, `stream_options.include_usage` so the provider reports usage.
 */
export function forwardedCall(request: ChatCompletionRequest, policy: CallPolicy): ForwardedCall {
  const { max_tokens: maxTokens, max_completion_tokens: maxCompletionTokens, ...rest } = request
  const body: Record<string, unknown> = { ...rest }
  const requested = maxCompletionTokens ?? maxTokens ?? null
  const cap = policy.maxOutputTokens
  const maxOutputTokens = cap === null ? requested : Math.min(requested ?? cap, cap)
  if (maxOutputTokens !== null) {
    if (maxCompletionTokens !== undefined && maxCompletionTokens !== null)
      body.max_completion_tokens = maxOutputTokens
    else body.max_tokens = maxOutputTokens
  }
  if (
    policy.maxTemperature !== null &&
    typeof request.temperature === 'number' &&
    request.temperature > policy.maxTemperature
  )
    body.temperature = policy.maxTemperature
  if (policy.systemPrompt !== null)
    body.messages = [{ role: 'system', content: policy.systemPrompt }, ...request.messages]
  const stream = request.stream === true
  const callerWantsUsage = request.stream_options?.include_usage === true
  if (stream) body.stream_options = { ...request.stream_options, include_usage: true }
  return { body, maxOutputTokens, stream, callerWantsUsage }
}
