import { randomUUID } from 'node:crypto'
import type { UsageRecord } from '@platform/shared-types'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { Agent, errors as undiciErrors } from 'undici'
import { z } from 'zod'
import {
  DependencyUnavailable,
  ModelNotAllowed,
  NotFound,
  quotaExceeded,
  rateLimited,
  UpstreamTimeout,
  UpstreamUnavailable,
  Validation,
} from '../errors.js'
import { matcherFor, showValue } from '../lib/allowlist.js'
import {
  type EgressCaller,
  type EgressCallerLookup,
  LIBRECHAT_USER_HEADER,
  libreChatUserIdOf,
  resolveEgressCaller,
  UNRESOLVED_USER_PLACEHOLDER,
} from '../lib/egress-caller.js'
import type { LlmProvider } from '../lib/egress-config.js'
import {
  type ChatCompletionRequest,
  ChatCompletionRequestSchema,
  type ForwardedCall,
  forwardedCall,
} from '../lib/egress-request.js'
import { parseJson } from '../lib/json.js'
import { type ProviderAnswer, requestProvider } from '../lib/provider-call.js'
import {
  isRefusal,
  type QuotaRefusal,
  type QuotaReservations,
  type Reservation,
} from '../lib/quota-reservations.js'
import type { UsageJournal } from '../lib/usage-journal.js'
import {
  countTextTokens,
  createStreamMeter,
  deliveredTextOfCompletion,
  estimatePromptTokens,
  usageOfCompletion,
} from '../lib/usage-meter.js'

/** A non-streaming answer larger than this is not a chat completion. */
const COMPLETION_MAX_BYTES = 16 * 1024 * 1024

const ProviderParamsSchema = z.object({ provider: z.string().min(1).max(64) })

/** OpenAI's model list, as LibreChat's custom endpoints fetch it. */
const ModelListSchema = z.object({
  object: z.literal('list'),
  data: z.array(
    z.object({
      id: z.string(),
      object: z.literal('model'),
      created: z.number(),
      owned_by: z.string(),
    }),
  ),
})

/** How a model call ended, and what it used: what settlement and the ledger record. */
export interface SettledModelCall {
  caller: EgressCaller
  provider: LlmProvider
  model: string
  inputTokens: number
  outputTokens: number
  /** Whether the counts are the provider's own or the gateway's tokenizer count. */
  usageReported: boolean
  status: 'completed' | 'cancelled' | 'failed'
  startedAt: Date
  endedAt: Date
}

export interface EgressModelRoutesOptions {
  providers: readonly LlmProvider[]
  upstreamTimeoutMs: number
  /** What a call with no output cap at all is reserved for. */
  defaultOutputTokens: number
  callers: EgressCallerLookup
  quota: QuotaReservations
  journal: UsageJournal
}

/** Whole micro-dollars a call costs at the provider's price for the model (0 when unpriced). */
function costMicrosOf(
  provider: LlmProvider,
  model: string,
  tokens: { inputTokens: number; outputTokens: number },
) {
  const price = provider.prices[model]
  if (price === undefined) return 0
  return Math.ceil(
    tokens.inputTokens * price.inputPerMTok + tokens.outputTokens * price.outputPerMTok,
  )
}

/** The ledger's record of a settled model call. */
function usageRecordOf(callId: string, call: SettledModelCall): UsageRecord {
  return {
    callId,
    kind: 'model',
    tenantId: call.caller.tenantId,
    workspaceId: call.caller.workspaceId,
    userId: call.caller.userId,
    provider: call.provider.name,
    model: call.model,
    inputTokens: call.inputTokens,
    outputTokens: call.outputTokens,
    costUsd: costMicrosOf(call.provider, call.model, call) / 1_000_000,
    durationMs: Math.max(0, call.endedAt.getTime() - call.startedAt.getTime()),
    startedAt: call.startedAt.toISOString(),
    endedAt: call.endedAt.toISOString(),
    status: call.status,
  }
}

function completionsEndpoint(provider: LlmProvider) {
  const base = new URL(provider.baseURL)
  return { origin: base.origin, path: `${base.pathname.replace(/\/+$/, '')}/chat/completions` }
}

function providerFailure(error: unknown): Error {
  if (
    error instanceof undiciErrors.HeadersTimeoutError ||
    error instanceof undiciErrors.ConnectTimeoutError
  )
    return new UpstreamTimeout('model provider')
  return new UpstreamUnavailable('model provider')
}

/**
 * The model egress (API.md §6): LibreChat's OpenAI-compatible calls, one custom endpoint per
 * provider, each checked for the workspace of the LibreChat user it is made for, capped, given
 * the workspace's system prompt, forwarded to the real provider with the deployment's key, and
 * counted: the provider's reported usage when it sends one (asked for on every stream), the
 * gateway's own tokenizer count of what was delivered when it does not or the call is cut.
 */
export async function egressModelRoutes(app: FastifyInstance, options: EgressModelRoutesOptions) {
  const providers = new Map(options.providers.map((provider) => [provider.name, provider]))
  /** Where each provider's chat completions are, worked out once from its `baseURL`. */
  const completionsOf = new Map(
    options.providers.map((provider) => [provider.name, completionsEndpoint(provider)]),
  )
  const dispatcher = new Agent({
    headersTimeout: options.upstreamTimeoutMs,
    // A generation may pause between tokens (tools, reasoning); LibreChat's own abort ends it.
    bodyTimeout: 0,
    connectTimeout: 10_000,
  })
  app.addHook('onClose', async () => {
    await dispatcher.close()
  })

  const providerOf = (name: string) => {
    const provider = providers.get(name)
    if (provider === undefined) throw new NotFound(`No model provider is called ${showValue(name)}`)
    return provider
  }

  app.get(
    '/llm/:provider/v1/models',
    { schema: { params: ProviderParamsSchema, response: { 200: ModelListSchema } } },
    async (request) => {
      const provider = providerOf((request.params as { provider: string }).provider)
      const header = request.headers[LIBRECHAT_USER_HEADER]
      let models: readonly string[] = provider.models
      // LibreChat's fetch at startup has no user to resolve the placeholder for: it gets every
      // model the deployment configures; a member's fetch gets what its workspace allows.
      if (header !== UNRESOLVED_USER_PLACEHOLDER) {
        const caller = await resolveEgressCaller(libreChatUserIdOf(header), options.callers)
        models = matcherFor(caller.policy).allowedModelsOf(provider.name, provider.models)
      }
      return {
        object: 'list' as const,
        data: models.map((id) => ({
          id,
          object: 'model' as const,
          created: 0,
          owned_by: provider.name,
        })),
      }
    },
  )

  app.post(
    '/llm/:provider/v1/chat/completions',
    { schema: { params: ProviderParamsSchema, body: ChatCompletionRequestSchema } },
    async (request, reply) => {
      const provider = providerOf((request.params as { provider: string }).provider)
      const chat = request.body as ChatCompletionRequest
      const libreChatUserId = libreChatUserIdOf(request.headers[LIBRECHAT_USER_HEADER])
      if (chat.user !== undefined && chat.user !== libreChatUserId)
        throw new Validation(`The body's user does not match the ${LIBRECHAT_USER_HEADER} header`)
      const caller = await resolveEgressCaller(libreChatUserId, options.callers)
      const matcher = matcherFor(caller.policy)
      // The configured list first: a pattern such as `oai:*` must not reach a model this
      // deployment does not offer (or a provider-prefixed name smuggled into it).
      if (
        !provider.models.includes(chat.model) ||
        !matcher.isModelAllowed(provider.name, chat.model)
      )
        throw new ModelNotAllowed(
          `${provider.name}:${showValue(chat.model)}`,
          caller.policy.workspaceName,
        )
      const call = forwardedCall(chat, {
        maxOutputTokens: matcher.maxOutputTokens,
        maxTemperature: matcher.maxTemperature,
        systemPrompt: caller.policy.systemPrompt,
      })
      const promptTokens = estimatePromptTokens(call.body)
      const estimate = {
        inputTokens: promptTokens,
        outputTokens: call.maxOutputTokens ?? options.defaultOutputTokens,
      }
      const callId = randomUUID()
      let admitted: Reservation | QuotaRefusal
      try {
        admitted = await options.quota.reserve({
          callId,
          policy: caller.policy,
          userId: caller.userId,
          tokens: estimate.inputTokens + estimate.outputTokens,
          costMicros: costMicrosOf(provider, chat.model, estimate),
        })
      } catch (error) {
        throw new DependencyUnavailable('quota store', { cause: error })
      }
      if (isRefusal(admitted)) {
        const isRate = admitted.limitName === 'tpm' || admitted.limitName === 'memberTpm'
        // LibreChat's OpenAI client would retry a 429 unless told not to: a spent budget is final.
        if (!isRate) reply.header('x-should-retry', 'false')
        throw isRate
          ? rateLimited(admitted, `${admitted.limitName} of ${admitted.limit} tokens`)
          : quotaExceeded(admitted, `The ${admitted.scope}'s ${admitted.limitName} budget is spent`)
      }
      const reservation = admitted
      return forward({
        request,
        reply,
        provider,
        caller,
        model: chat.model,
        call,
        promptTokens,
        settleWith: (settledCall) => {
          const costMicros = costMicrosOf(provider, chat.model, settledCall)
          options.quota
            .settle(reservation, {
              tokens: settledCall.inputTokens + settledCall.outputTokens,
              costMicros,
            })
            .catch((error: unknown) => {
              // The reservation expires instead; the ledger still gets the call.
              request.log.warn({ err: error, callId }, 'quota reservation not settled')
            })
          void options.journal.append(usageRecordOf(callId, settledCall))
        },
      })
    },
  )

  interface Forwarding {
    request: FastifyRequest
    reply: FastifyReply
    provider: LlmProvider
    caller: EgressCaller
    model: string
    call: ForwardedCall
    promptTokens: number
    settleWith: (call: SettledModelCall) => void
  }

  async function forward(forwarding: Forwarding) {
    const { request, reply, provider, caller, model, call, promptTokens } = forwarding
    const startedAt = new Date()
    let settled = false
    const settle = (
      counts: { inputTokens: number; outputTokens: number; usageReported: boolean },
      status: SettledModelCall['status'],
    ) => {
      if (settled) return
      settled = true
      forwarding.settleWith({
        caller,
        provider,
        model,
        ...counts,
        status,
        startedAt,
        endedAt: new Date(),
      })
    }
    const nothingUsed = { inputTokens: 0, outputTokens: 0, usageReported: false }

    const cancelled = new AbortController()
    const clientGone = () => cancelled.abort(new Error('LibreChat closed the connection'))
    request.raw.socket.once('close', clientGone)
    const done = (
      counts: { inputTokens: number; outputTokens: number; usageReported: boolean },
      status: SettledModelCall['status'],
    ) => {
      request.raw.socket.off('close', clientGone)
      settle(counts, status)
    }
    // Once the prompt is on its way, a call LibreChat gives up on still cost its input.
    const whenCut = () =>
      cancelled.signal.aborted
        ? ({ counts: { ...nothingUsed, inputTokens: promptTokens }, status: 'cancelled' } as const)
        : ({ counts: nothingUsed, status: 'failed' } as const)
    const headers: Record<string, string> = {
      ...provider.headers,
      'content-type': 'application/json',
      accept: call.stream ? 'text/event-stream' : 'application/json',
    }
    if (provider.apiKey !== '') headers.authorization = `Bearer ${provider.apiKey}`

    let answer: ProviderAnswer
    try {
      answer = await requestProvider(dispatcher, {
        ...(completionsOf.get(provider.name) ?? completionsEndpoint(provider)),
        headers,
        body: JSON.stringify(call.body),
        signal: cancelled.signal,
      })
    } catch (error) {
      const cut = whenCut()
      done(cut.counts, cut.status)
      request.log.warn({ err: error, provider: provider.name }, 'model provider call failed')
      throw providerFailure(error)
    }

    const ok = answer.statusCode >= 200 && answer.statusCode < 300
    const isEventStream = String(answer.headers['content-type'] ?? '').startsWith(
      'text/event-stream',
    )
    if (ok && call.stream && isEventStream)
      return relayStream(forwarding, answer, cancelled.signal, done)

    // A whole answer: a completion, or the provider's refusal, passed on for LibreChat to show.
    let text: string
    try {
      text = await readWhole(answer, COMPLETION_MAX_BYTES)
    } catch (error) {
      const cut = whenCut()
      // An answer too large to be a completion is not read to its end either.
      cancelled.abort(error)
      done(cut.counts, cut.status)
      throw providerFailure(error)
    }
    const completion = ok ? parseJson(text) : undefined
    const reported = usageOfCompletion(completion)
    // Answered first: settling (Redis, the journal) is no part of the caller's wait.
    await reply
      .code(answer.statusCode)
      .header('content-type', answer.headers['content-type'] ?? 'application/json')
      .send(text)
    if (!ok) done(nothingUsed, 'failed')
    else if (reported !== null) done({ ...reported, usageReported: true }, 'completed')
    else
      done(
        {
          inputTokens: promptTokens,
          outputTokens: countTextTokens(deliveredTextOfCompletion(completion)),
          usageReported: false,
        },
        'completed',
      )
    return reply
  }

  /**
   * A provider's stream to LibreChat, event by event as the provider sends them (the usage
   * event LibreChat did not ask for left out), paused while LibreChat reads slowly, settled
   * however it ends: to the provider's usage, or to what was delivered when it reported none,
   * was cut (`failed`) or LibreChat left (`cancelled`).
   */
  function relayStream(
    forwarding: Forwarding,
    answer: ProviderAnswer,
    cancelled: AbortSignal,
    done: (
      counts: { inputTokens: number; outputTokens: number; usageReported: boolean },
      status: SettledModelCall['status'],
    ) => void,
  ) {
    const { reply, call, promptTokens } = forwarding
    const meter = createStreamMeter({ forwardUsage: call.callerWantsUsage })
    const client = reply.raw
    reply.hijack()
    client.writeHead(answer.statusCode, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      'x-accel-buffering': 'no',
    })
    client.flushHeaders()
    client.on('drain', () => answer.resume())
    const countsSoFar = () => {
      const reported = meter.reportedUsage
      return reported !== null
        ? { ...reported, usageReported: true }
        : {
            inputTokens: promptTokens,
            outputTokens: meter.deliveredOutputTokens(),
            usageReported: false,
          }
    }
    return new Promise<FastifyReply>((resolve) => {
      answer.consume({
        data(chunk) {
          const out = meter.push(chunk)
          if (out.length > 0 && !client.write(out)) answer.pause()
        },
        end() {
          const rest = meter.end()
          if (rest.length > 0) client.write(rest)
          client.end()
          // A stream that ended without `[DONE]` was cut short by the provider.
          done(countsSoFar(), meter.sawDone ? 'completed' : 'failed')
          resolve(reply)
        },
        error() {
          const rest = meter.end()
          if (rest.length > 0 && !client.destroyed) client.write(rest)
          done(countsSoFar(), cancelled.aborted ? 'cancelled' : 'failed')
          // LibreChat must see the stream break, not end: it was not complete.
          if (!client.destroyed) client.destroy()
          resolve(reply)
        },
      })
    })
  }
}

/** A whole answer's text; a larger one than `maxBytes` is refused, not buffered. */
function readWhole(answer: ProviderAnswer, maxBytes: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let size = 0
    let failed = false
    answer.consume({
      data(chunk) {
        if (failed) return
        size += chunk.length
        if (size > maxBytes) {
          failed = true
          reject(new Error(`the provider's answer is larger than ${maxBytes} bytes`))
          return
        }
        chunks.push(chunk)
      },
      end() {
        if (!failed) resolve(Buffer.concat(chunks).toString('utf8'))
      },
      error(error) {
        if (!failed) reject(error)
      },
    })
  })
}
