import { describe, expect, it } from 'vitest'
import { countTextTokens } from '../../src/lib/usage-meter.js'
import {
  type ChatPlatform,
  EGRESS_SECRET,
  PROVIDER,
  PROVIDER_API_KEY,
  startChatPlatform,
} from '../helpers/chat-platform.js'
import { bridgedMember, chatCalls, completion, ledgerOf, ledgerRows } from '../helpers/egress.js'
import { quotaWith } from '../helpers/quota.js'
import {
  deltaText,
  fetchStream,
  frameReader,
  startChat,
  waitFor,
} from '../helpers/stream-client.js'

const REPLY = 'The egress counted every one of these tokens.'

/** Chats through the gateway to LibreChat's final frame; the double's model calls go through the egress. */
async function chatToTheEnd(platform: ChatPlatform, token: string, model = 'fake-small') {
  const started = await startChat(platform.gatewayUrl, token, { model })
  const response = await fetchStream(platform.gatewayUrl, token, started.streamId)
  expect(response.status).toBe(200)
  const frames = await frameReader(response).rest(10_000)
  return { started, frames }
}

/** A call straight to the egress, as LibreChat makes it. */
function egressCall(
  platform: ChatPlatform,
  path: string,
  init: { body?: unknown; headers?: Record<string, string>; method?: string } = {},
) {
  return fetch(`${platform.egressUrl}${path}`, {
    method: init.method ?? (init.body === undefined ? 'GET' : 'POST'),
    headers: {
      authorization: `Bearer ${EGRESS_SECRET}`,
      'content-type': 'application/json',
      ...init.headers,
    },
    ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
  })
}

describe('model egress: the whole loop', () => {
  it('forwards LibreChat’s calls with the deployment’s key, asks for usage, and ledgers them to the token', async () => {
    const platform = await startChatPlatform({ egress: true })
    platform.provider.behave({ reply: REPLY })
    const member = await platform.member()
    const { frames } = await chatToTheEnd(platform, member.token)
    expect(frames.at(-1)?.data?.final).toBe(true)
    // Every token the provider streamed reached the browser through both hops.
    expect(frames.map(deltaText).join('')).toBe(REPLY)

    // The chat and LibreChat's separate title call both went through the egress.
    await waitFor('the title call', () => chatCalls(platform).length === 2, 10_000)
    const calls = chatCalls(platform)
    for (const call of calls) {
      expect(call.headers.authorization).toBe(`Bearer ${PROVIDER_API_KEY}`)
      expect(call.headers['x-librechat-user-id']).toBeUndefined()
    }
    const streamed = calls.find((call) => call.stream)
    expect(streamed?.includeUsage).toBe(true)

    await waitFor(
      'both calls ended',
      () => calls.every((call) => call.outcome !== 'in-progress'),
      10_000,
    )
    const rows = await ledgerRows(platform, member.workspaceId, 2)
    const reported = calls.map((call) => call.promptTokens + call.completionTokens).sort()
    const ledgered = rows.map((row) => row.inputTokens + row.outputTokens).sort()
    expect(ledgered).toEqual(reported)
    for (const row of rows) {
      expect(row).toMatchObject({ provider: PROVIDER, model: 'fake-small', status: 'completed' })
      // fake-small costs $1 per million input tokens and $2 per million output tokens.
      expect(row.costUsd).toBeCloseTo((row.inputTokens * 1 + row.outputTokens * 2) / 1_000_000, 9)
    }
  })

  it('counts the delivered tokens itself when the provider reports no usage', async () => {
    const platform = await startChatPlatform({ egress: true })
    platform.provider.behave({ reply: REPLY, usage: 'never' })
    const member = await bridgedMember(platform)
    const answer = await egressCall(platform, `/llm/${PROVIDER}/v1/chat/completions`, {
      headers: { 'x-librechat-user-id': member.libreChatUserId },
      body: completion(member.libreChatUserId, { stream: true }),
    })
    expect(answer.status).toBe(200)
    const text = await answer.text()
    expect(text).toContain('[DONE]')
    const [row] = await ledgerOf(platform, member.workspaceId)
    expect(row?.outputTokens).toBe(countTextTokens(REPLY))
    expect(row?.inputTokens).toBeGreaterThan(0)
    expect(row?.status).toBe('completed')
  })
})

describe('model egress: who may call, and what', () => {
  it('refuses a wrong or missing egress secret before anything else, in OpenAI’s shape', async () => {
    const platform = await startChatPlatform({ egress: true })
    const member = await bridgedMember(platform)
    for (const authorization of [
      undefined,
      'Bearer wrong',
      `Bearer ${EGRESS_SECRET}x`,
      EGRESS_SECRET,
    ]) {
      const answer = await fetch(`${platform.egressUrl}/llm/${PROVIDER}/v1/chat/completions`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-librechat-user-id': member.libreChatUserId,
          ...(authorization === undefined ? {} : { authorization }),
        },
        body: JSON.stringify(completion(member.libreChatUserId)),
      })
      expect(answer.status).toBe(401)
      const body = await answer.json()
      expect(body).toMatchObject({
        statusCode: 401,
        code: 'GW_UNAUTHENTICATED',
        error: { type: 'authentication_error', code: 'GW_UNAUTHENTICATED' },
      })
    }
    expect(chatCalls(platform)).toHaveLength(0)
  })

  it('refuses unknown users, disagreeing ids, other models and tricks, and never calls the provider', async () => {
    const platform = await startChatPlatform({
      egress: true,
      memberPolicy: { models: { allow: [`${PROVIDER}:fake-small`] } },
    })
    const member = await bridgedMember(platform)
    const user = member.libreChatUserId
    const cases: [string, Record<string, string>, unknown, number, string][] = [
      ['no user header', {}, completion(user), 400, 'GW_VALIDATION'],
      [
        'a user header that is no id',
        { 'x-librechat-user-id': 'admin' },
        completion(user),
        400,
        'GW_VALIDATION',
      ],
      [
        'the unresolved placeholder',
        { 'x-librechat-user-id': '{{LIBRECHAT_USER_ID}}' },
        completion(user),
        400,
        'GW_VALIDATION',
      ],
      [
        'a user the bridge never made',
        { 'x-librechat-user-id': 'a'.repeat(24) },
        completion('a'.repeat(24)),
        403,
        'GW_FORBIDDEN',
      ],
      [
        'a body user that disagrees',
        { 'x-librechat-user-id': user },
        completion('b'.repeat(24)),
        400,
        'GW_VALIDATION',
      ],
      [
        'a model outside the allowlist',
        { 'x-librechat-user-id': user },
        completion(user, { model: 'fake-large' }),
        403,
        'GW_MODEL_NOT_ALLOWED',
      ],
      [
        'a wildcard model',
        { 'x-librechat-user-id': user },
        completion(user, { model: 'fake-*' }),
        403,
        'GW_MODEL_NOT_ALLOWED',
      ],
      [
        'a provider-prefixed model',
        { 'x-librechat-user-id': user },
        completion(user, { model: `${PROVIDER}:fake-small` }),
        403,
        'GW_MODEL_NOT_ALLOWED',
      ],
      [
        'a negative max_tokens',
        { 'x-librechat-user-id': user },
        completion(user, { max_tokens: -1 }),
        400,
        'GW_VALIDATION',
      ],
      [
        'several choices',
        { 'x-librechat-user-id': user },
        completion(user, { n: 3 }),
        400,
        'GW_VALIDATION',
      ],
      [
        'no messages',
        { 'x-librechat-user-id': user },
        completion(user, { messages: [] }),
        400,
        'GW_VALIDATION',
      ],
    ]
    for (const [label, headers, body, status, code] of cases) {
      const answer = await egressCall(platform, `/llm/${PROVIDER}/v1/chat/completions`, {
        headers,
        body,
      })
      const answered = (await answer.json()) as {
        code: string
        error: { code: string; message: string }
      }
      expect({ label, status: answer.status, code: answered.code }).toEqual({ label, status, code })
      expect(answered.error.code).toBe(code)
      expect(typeof answered.error.message).toBe('string')
    }
    const unknownProvider = await egressCall(platform, '/llm/openai/v1/chat/completions', {
      headers: { 'x-librechat-user-id': user },
      body: completion(user),
    })
    expect(unknownProvider.status).toBe(404)
    expect(chatCalls(platform)).toHaveLength(0)
    expect(await ledgerOf(platform, member.workspaceId)).toHaveLength(0)
  })

  it('the public port does not serve the egress', async () => {
    const platform = await startChatPlatform({ egress: true })
    const answer = await fetch(`${platform.gatewayUrl}/llm/${PROVIDER}/v1/models`, {
      headers: { authorization: `Bearer ${EGRESS_SECRET}` },
    })
    expect(answer.status).toBe(404)
  })

  it('lists every configured model to LibreChat’s startup fetch and the workspace’s to a member', async () => {
    const platform = await startChatPlatform({
      egress: true,
      memberPolicy: { models: { allow: [`${PROVIDER}:fake-small`] } },
    })
    const member = await bridgedMember(platform)
    const list = async (user: string) => {
      const answer = await egressCall(platform, `/llm/${PROVIDER}/v1/models`, {
        headers: { 'x-librechat-user-id': user },
      })
      expect(answer.status).toBe(200)
      const body = (await answer.json()) as { data: { id: string }[] }
      return body.data.map((model) => model.id)
    }
    expect(await list('{{LIBRECHAT_USER_ID}}')).toEqual(['fake-small', 'fake-large'])
    expect(await list(member.libreChatUserId)).toEqual(['fake-small'])
  })
})

describe('model egress: the workspace’s caps, prompt and budget', () => {
  it('writes the output cap, the temperature cap and the system prompt into what the provider gets', async () => {
    const platform = await startChatPlatform({
      egress: true,
      memberPolicy: {
        models: { allow: [`${PROVIDER}:*`] },
        params: { maxOutputTokens: 5, temperature: { max: 0.5 } },
        systemPrompt: 'Answer as the Research workspace.',
      },
    })
    const member = await bridgedMember(platform)
    const answer = await egressCall(platform, `/llm/${PROVIDER}/v1/chat/completions`, {
      headers: { 'x-librechat-user-id': member.libreChatUserId },
      body: completion(member.libreChatUserId, { max_tokens: 500, temperature: 1.5 }),
    })
    expect(answer.status).toBe(200)
    const [call] = chatCalls(platform)
    expect(call?.body).toMatchObject({
      max_tokens: 5,
      temperature: 0.5,
      messages: [
        { role: 'system', content: 'Answer as the Research workspace.' },
        { role: 'user', content: 'Say something short' },
      ],
    })
  })

  it('refuses a call its budget cannot cover with insufficient_quota and no retry, before the provider', async () => {
    const platform = await startChatPlatform({
      egress: true,
      memberPolicy: {
        models: { allow: [`${PROVIDER}:*`] },
        quota: quotaWith({ monthlyTokens: 10 }),
      },
    })
    const member = await bridgedMember(platform)
    const answer = await egressCall(platform, `/llm/${PROVIDER}/v1/chat/completions`, {
      headers: { 'x-librechat-user-id': member.libreChatUserId },
      body: completion(member.libreChatUserId, { max_tokens: 100 }),
    })
    expect(answer.status).toBe(429)
    expect(answer.headers.get('x-should-retry')).toBe('false')
    expect(Number(answer.headers.get('retry-after'))).toBeGreaterThan(0)
    expect(await answer.json()).toMatchObject({
      code: 'GW_QUOTA_EXCEEDED',
      error: { type: 'insufficient_quota', code: 'insufficient_quota' },
      limitName: 'monthlyTokens',
      scope: 'workspace',
      limit: 10,
    })
    expect(chatCalls(platform)).toHaveLength(0)
  })
})
