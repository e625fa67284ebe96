import { type FakeProvider, startFakeProvider } from '@platform/fake-provider'
import { describe, expect, it, onTestFinished } from 'vitest'
import { LEASE_IDLE_MS } from '../../src/lib/quota-reservations.js'
import { countTextTokens, estimatePromptTokens } from '../../src/lib/usage-meter.js'
import { type ChatPlatform, startChatPlatform } from '../helpers/chat-platform.js'
import { bridgedMember, egressHeaders, ledgerOf } from '../helpers/egress.js'
import { quotaWith } from '../helpers/quota.js'
import { waitFor } from '../helpers/stream-client.js'

const CALLS = 200
const IN_FLIGHT = 16
const MAX_TOKENS = 40
const REPLY = 'alpha beta gamma delta epsilon zeta eta theta'
/** Chunks the holding provider streams before it waits for ever: what a cancelled call got. */
const HELD_AFTER = 2

type Kind = 'stream' | 'whole' | 'cut' | 'fail' | 'cancel'
/** Each behaviour is a provider of its own: fake behaviours apply to every call of a provider. */
const PROVIDER_OF: Record<Kind, string> = {
  stream: 'steady',
  whole: 'steady',
  cut: 'cutter',
  fail: 'failer',
  cancel: 'holder',
}

interface Outcome {
  workspace: number
  kind: Kind
  status: number
  /** What the ledger must hold for the call: the provider's report, or what was delivered. */
  expectedTokens: number
}

/** A small deterministic generator, so a failure can be replayed. */
function seeded(seed: number) {
  let state = seed
  return () => {
    state = (state * 1_103_515_245 + 12_345) % 2 ** 31
    return state / 2 ** 31
  }
}

const deltaTextOf = (sse: string) =>
  sse
    .split('\n')
    .filter((line) => line.startsWith('data: ') && line !== 'data: [DONE]')
    .map((line) => {
      const chunk = JSON.parse(line.slice(6)) as {
        choices?: { delta?: { content?: string } }[]
      }
      return chunk.choices?.[0]?.delta?.content ?? ''
    })
    .join('')

async function startProviders() {
  const steady = await startFakeProvider()
  const cutter = await startFakeProvider()
  const failer = await startFakeProvider()
  const holder = await startFakeProvider()
  const all = { steady, cutter, failer, holder }
  for (const provider of Object.values(all)) onTestFinished(() => provider.close())
  steady.behave({ reply: REPLY })
  cutter.behave({ reply: REPLY, cutAfterChunks: 3 })
  failer.behave({ reply: REPLY, failWith: { status: 500, message: 'the model fell over' } })
  holder.behave({
    reply: REPLY,
    beforeChunk: (index) => (index < HELD_AFTER ? Promise.resolve() : new Promise(() => {})),
  })
  return all
}

const providersEnv = (providers: Record<string, FakeProvider>) =>
  JSON.stringify(
    Object.entries(providers).map(([name, provider]) => ({
      name,
      baseURL: provider.url,
      models: ['fake-small'],
    })),
  )

async function ledgerTotals(platform: ChatPlatform, workspaceId: string) {
  const rows = await ledgerOf(platform, workspaceId)
  return {
    rows: rows.length,
    tokens: rows.reduce((sum, row) => sum + row.inputTokens + row.outputTokens, 0),
  }
}

describe('model egress under concurrency', () => {
  it(`${CALLS} calls across 3 workspaces with cancellations and failures: the ledger is exact and budgets hold`, async () => {
    const providers = await startProviders()
    const platform = await startChatPlatform({
      egress: true,
      gatewayEnv: { LLM_PROVIDERS: providersEnv(providers) },
      memberPolicy: {
        models: { allow: ['steady:*', 'cutter:*', 'failer:*', 'holder:*'] },
      },
    })
    const WORKSPACE_BUDGET = 1_500
    const MEMBER_BUDGET = 900
    const open = await bridgedMember(platform, 'open')
    const budgeted = await bridgedMember(platform, 'budgeted', {
      quota: quotaWith({ monthlyTokens: WORKSPACE_BUDGET }),
    })
    const memberBudgeted = await bridgedMember(platform, 'member-budgeted', {
      quota: quotaWith({ memberMonthlyTokens: MEMBER_BUDGET }),
    })
    const members = [open, budgeted, memberBudgeted]
    const libreChatUsers = members.map((member) => member.libreChatUserId)

    const random = seeded(20_261_121)
    const kinds: Kind[] = [
      'stream',
      'stream',
      'stream',
      'whole',
      'whole',
      'cut',
      'fail',
      'cancel',
      'cancel',
    ]
    const plan = Array.from({ length: CALLS }, (_, index) => ({
      workspace: index % 3,
      user: libreChatUsers[index % 3] ?? '',
      kind: kinds[Math.floor(random() * kinds.length)] ?? 'stream',
      question: `Question ${index}: ${'please '.repeat(Math.floor(random() * 20))}answer`,
    }))

    async function run(call: (typeof plan)[number]): Promise<Outcome> {
      const { user } = call
      const body = {
        model: 'fake-small',
        messages: [{ role: 'user', content: call.question }],
        max_tokens: MAX_TOKENS,
        stream: call.kind !== 'whole',
        user,
      }
      const aborter = new AbortController()
      const response = await fetch(
        `${platform.egressUrl}/llm/${PROVIDER_OF[call.kind]}/v1/chat/completions`,
        {
          method: 'POST',
          headers: { ...egressHeaders(user), 'content-type': 'application/json' },
          body: JSON.stringify(body),
          signal: aborter.signal,
        },
      )
      const outcome = { workspace: call.workspace, kind: call.kind, status: response.status }
      if (response.status !== 200) {
        await response.text()
        return { ...outcome, expectedTokens: 0 }
      }
      // What the gateway estimates for a call without usage: the forwarded body's prompt.
      const promptEstimate = estimatePromptTokens({
        ...body,
        stream_options: { include_usage: true },
      })
      if (call.kind === 'whole') {
        const completion = (await response.json()) as {
          usage: { prompt_tokens: number; completion_tokens: number }
        }
        return {
          ...outcome,
          expectedTokens: completion.usage.prompt_tokens + completion.usage.completion_tokens,
        }
      }
      if (response.body === null) throw new Error('a streamed answer without a body')
      const reader = response.body.getReader()
      let text = ''
      const decoder = new TextDecoder()
      try {
        for (;;) {
          const { done, value } = await reader.read()
          if (done) break
          text += decoder.decode(value, { stream: true })
          if (call.kind === 'cancel' && (text.match(/"content":/g) ?? []).length >= HELD_AFTER) {
            aborter.abort()
            break
          }
        }
      } catch {
        // A cut stream ends in an error after the chunks it delivered.
      }
      const delivered = countTextTokens(deltaTextOf(text.slice(0, text.lastIndexOf('\n\n') + 2)))
      if (call.kind === 'stream') {
        // The provider reported usage (the egress asked for it); LibreChat did not ask, so the
        // usage chunk was not passed on: the ledger must match the provider's own count.
        expect(text).not.toContain('"usage":{')
        return { ...outcome, expectedTokens: -1 }
      }
      return { ...outcome, expectedTokens: promptEstimate + delivered }
    }

    const outcomes: Outcome[] = []
    let next = 0
    await Promise.all(
      Array.from({ length: IN_FLIGHT }, async () => {
        for (let call = plan[next++]; call !== undefined; call = plan[next++])
          outcomes.push(await run(call))
      }),
    )

    // Streams the egress asked usage for: their expected tokens are what the provider reported.
    const steadyStreams = providers.steady.calls.filter((call) => call.stream)
    await waitFor(
      'every provider call ended',
      () =>
        Object.values(providers).every((provider) =>
          provider.calls.every((call) => call.outcome !== 'in-progress'),
        ),
      15_000,
    )
    expect(steadyStreams.every((call) => call.includeUsage)).toBe(true)

    for (const [workspace, member] of members.entries()) {
      // Every call not refused reached a provider and was settled, failed ones included.
      const admitted = outcomes.filter(
        (outcome) => outcome.workspace === workspace && outcome.status !== 429,
      )
      const reportedStreams = steadyStreams
        .filter((call) => (call.body as { user?: string }).user === libreChatUsers[workspace])
        .reduce((sum, call) => sum + call.promptTokens + call.completionTokens, 0)
      const expected =
        reportedStreams +
        admitted
          .filter((outcome) => outcome.expectedTokens > 0)
          .reduce((sum, outcome) => sum + outcome.expectedTokens, 0)
      let totals = { rows: 0, tokens: 0 }
      await waitFor(
        `workspace ${workspace}'s calls in the ledger`,
        async () => {
          totals = await ledgerTotals(platform, member.workspaceId)
          return totals.rows === admitted.length
        },
        15_000,
      )
      expect({ workspace, tokens: totals.tokens }).toEqual({ workspace, tokens: expected })
    }

    // The budgeted workspaces ran out, and never went past their budgets.
    for (const [workspace, limit] of [
      [1, WORKSPACE_BUDGET],
      [2, MEMBER_BUDGET],
    ] as const) {
      const refused = outcomes.filter((o) => o.workspace === workspace && o.status === 429)
      expect(refused.length).toBeGreaterThan(0)
      const { tokens } = await ledgerTotals(
        platform,
        (workspace === 1 ? budgeted : memberBudgeted).workspaceId,
      )
      expect(tokens).toBeLessThanOrEqual(limit)
    }
    expect(outcomes.filter((o) => o.workspace === 0 && o.status === 429)).toHaveLength(0)

    // Every reservation was settled, and every member's lease given back once its calls
    // stopped: no reservation hash is left.
    const { redis } = platform.gateway
    const reservationHashes = async () => {
      const found: string[] = []
      let cursor = '0'
      do {
        const [nextCursor, keys] = await redis.scan(
          cursor,
          'MATCH',
          `${redis.options.keyPrefix ?? ''}gw:quota-reservations:*`,
          'COUNT',
          1_000,
        )
        found.push(...keys)
        cursor = nextCursor
      } while (cursor !== '0')
      return found
    }
    let leftover: string[] = []
    await waitFor(
      'leases given back',
      async () => {
        leftover = await reservationHashes()
        return leftover.length === 0
      },
      3 * LEASE_IDLE_MS + 2_000,
    ).catch(() => undefined)
    expect(leftover).toEqual([])
  })
})
