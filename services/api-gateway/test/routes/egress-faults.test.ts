import { once } from 'node:events'
import { createServer as createHttpServer, request as httpRequest } from 'node:http'
import { createConnection, createServer, type Socket } from 'node:net'
import { type FakeProviderCall, splitIntoTokens } from '@platform/fake-provider'
import { testRedisUrl } from '@platform/local-infra/vitest'
import { quotaReservationsKey } from '@platform/shared-types'
import { describe, expect, it, onTestFinished, vi } from 'vitest'
import { countTextTokens, estimatePromptTokens } from '../../src/lib/usage-meter.js'
import { type ChatPlatform, PROVIDER, startChatPlatform } from '../helpers/chat-platform.js'
import {
  bridgedMember,
  bridgeToLibreChat,
  chatCalls,
  completion,
  egressHeaders,
  type LedgerRow,
  ledgerRows,
  PROMPT,
} from '../helpers/egress.js'
import { quotaWith } from '../helpers/quota.js'
import { connectRedis } from '../helpers/redis-clients.js'
import { sseFrames } from '../helpers/sse.js'
import { holdAfterFirstChunk, sleep, waitFor } from '../helpers/stream-client.js'

const LONG_REPLY = 'One two three four five six seven eight nine ten eleven twelve.'
const COMPLETIONS = `/llm/${PROVIDER}/v1/chat/completions`

/** The gateway's estimate of `PROMPT` as the egress reserves it (no system prompt, no tools). */
const promptEstimate = () => estimatePromptTokens({ messages: PROMPT })

/**
 * A chat completion of {@link PROMPT} straight to the egress, as LibreChat makes it for
 * `libreChatUserId`, with `overrides` in its body.
 */
function completionCall(
  platform: ChatPlatform,
  libreChatUserId: string,
  overrides: Record<string, unknown> = {},
  signal?: AbortSignal,
) {
  return fetch(`${platform.egressUrl}${COMPLETIONS}`, {
    method: 'POST',
    headers: { ...egressHeaders(libreChatUserId), 'content-type': 'application/json' },
    body: JSON.stringify(completion(libreChatUserId, overrides)),
    ...(signal === undefined ? {} : { signal }),
  })
}

function onlyChatCall(platform: ChatPlatform): FakeProviderCall {
  const calls = chatCalls(platform)
  expect(calls).toHaveLength(1)
  const [call] = calls
  if (call === undefined) throw new Error('the provider was never called')
  return call
}

/** The gateway's Redis key prefix in the test stack: the workspace-service's database name. */
const keyPrefixOf = (platform: ChatPlatform) => `${platform.dbName}:`

/** The workspace's in-flight reservations as the egress wrote them: call id → its JSON. */
async function reservationsOf(
  platform: ChatPlatform,
  member: { tenantId: string; workspaceId: string },
) {
  const raw = await connectRedis().hgetall(
    `${keyPrefixOf(platform)}${quotaReservationsKey(member.tenantId, member.workspaceId)}`,
  )
  return Object.values(raw).map(
    (value) => JSON.parse(value) as { userId: string; tokens: number; expiresAt: number },
  )
}

async function expectNoReservation(
  platform: ChatPlatform,
  member: { tenantId: string; workspaceId: string },
) {
  await waitFor('the reservation settled', async () => {
    return (await reservationsOf(platform, member)).length === 0
  })
}

/** The call's one ledger row matches `row`, and its reservation is gone: the call was settled. */
async function expectSettledAs(
  platform: ChatPlatform,
  member: { tenantId: string; workspaceId: string },
  row: Partial<LedgerRow>,
) {
  const [ledgered] = await ledgerRows(platform, member.workspaceId, 1)
  expect(ledgered).toMatchObject(row)
  await expectNoReservation(platform, member)
}

/**
 * Reads the chat-completion chunks of an SSE body, to its end or until `stopAfterContentChunks`
 * more chunks with content arrived; stopping leaves the body open (the client stays connected)
 * for the next `read`. `broke`: the body ended in an error rather than cleanly.
 */
function chunkReader(response: Response) {
  if (response.body === null) throw new Error('no body')
  const frames = sseFrames(response.body)
  return {
    async read(stopAfterContentChunks = Number.POSITIVE_INFINITY) {
      const chunks: Record<string, unknown>[] = []
      let sawDone = false
      let broke = false
      let contentChunks = 0
      try {
        while (contentChunks < stopAfterContentChunks) {
          const step = await frames.next()
          if (step.done) break
          if (step.value.data === '[DONE]') {
            sawDone = true
            continue
          }
          const chunk = JSON.parse(step.value.data) as Record<string, unknown>
          chunks.push(chunk)
          if (contentOf(chunk) !== '') contentChunks += 1
        }
      } catch {
        broke = true
      }
      return { chunks, sawDone, broke, text: chunks.map(contentOf).join('') }
    },
  }
}

const readChunks = (response: Response, stopAfterContentChunks?: number) =>
  chunkReader(response).read(stopAfterContentChunks)

/** What the egress writes on the wire for a call, read with node:http, which drops nothing. */
function rawEgressCall(platform: ChatPlatform, libreChatUserId: string, body: unknown) {
  return new Promise<{ status: number; text: string; ending: 'end' | 'error' }>(
    (resolve, reject) => {
      const request = httpRequest(`${platform.egressUrl}${COMPLETIONS}`, {
        method: 'POST',
        agent: false,
        headers: { ...egressHeaders(libreChatUserId), 'content-type': 'application/json' },
      })
      onTestFinished(() => {
        request.destroy()
      })
      request.on('error', reject)
      request.on('response', (response) => {
        let text = ''
        let settled = false
        const finish = (ending: 'end' | 'error') => {
          if (settled) return
          settled = true
          resolve({ status: response.statusCode ?? 0, text, ending })
        }
        response.setEncoding('utf8')
        response.on('data', (piece: string) => {
          text += piece
        })
        response.on('end', () => finish('end'))
        response.on('error', () => finish('error'))
        response.on('aborted', () => finish('error'))
        response.on('close', () => finish(response.complete ? 'end' : 'error'))
      })
      request.end(JSON.stringify(body))
    },
  )
}

function contentOf(chunk: Record<string, unknown>): string {
  const choices = chunk.choices as { delta?: { content?: unknown } }[] | undefined
  const content = choices?.[0]?.delta?.content
  return typeof content === 'string' ? content : ''
}

/**
 * A TCP hop between the gateway and one of its dependencies. `cut` breaks every open
 * connection and resets every new one until `restore`: the dependency is down as far as the
 * gateway can tell, and nothing about it is faked.
 */
async function startTcpProxy(target: () => Promise<{ host: string; port: number }>) {
  const sockets = new Set<Socket>()
  let open = true
  const track = (socket: Socket) => {
    sockets.add(socket)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => socket.destroy())
  }
  const server = createServer((inbound) => {
    track(inbound)
    if (!open) {
      inbound.destroy()
      return
    }
    inbound.pause()
    void target().then(({ host, port }) => {
      const outbound = createConnection({ host, port })
      track(outbound)
      outbound.on('close', () => inbound.destroy())
      inbound.on('close', () => outbound.destroy())
      inbound.pipe(outbound).pipe(inbound)
      inbound.resume()
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error('proxy not on TCP')
  onTestFinished(async () => {
    for (const socket of sockets) socket.destroy()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })
  return {
    port: address.port,
    cut() {
      open = false
      for (const socket of sockets) socket.destroy()
    },
    restore() {
      open = true
    },
  }
}

/**
 * A chat platform whose gateway reaches Redis through a TCP hop the test can cut; the rest of the
 * stack uses Redis directly. Redis is back before the gateway closes, so its client quits cleanly.
 */
async function platformBehindRedisHop(
  options: { memberPolicy?: object; gatewayEnv?: NodeJS.ProcessEnv } = {},
) {
  const redisUrl = new URL(testRedisUrl())
  const hop = await startTcpProxy(async () => ({
    host: redisUrl.hostname,
    port: Number(redisUrl.port || 6379),
  }))
  const proxiedUrl = new URL(redisUrl)
  proxiedUrl.hostname = '127.0.0.1'
  proxiedUrl.port = String(hop.port)
  const platform = await startChatPlatform({
    egress: true,
    ...options,
    gatewayEnv: { ...options.gatewayEnv, REDIS_URL: proxiedUrl.toString() },
  })
  const redisBack = async () => {
    hop.restore()
    await waitFor('the gateway’s Redis back', () => platform.gateway.redis.status === 'ready')
  }
  onTestFinished(redisBack)
  return { platform, hop, redisBack }
}

describe('model egress faults: the provider fails', () => {
  it('passes a provider 500 on in a shape LibreChat reads, ledgers it failed at 0 tokens, and frees the reservation', async () => {
    const platform = await startChatPlatform({ egress: true })
    platform.provider.behave({
      failWith: { status: 500, message: 'The provider fell over', type: 'server_error' },
    })
    const member = await bridgedMember(platform)
    const answer = await completionCall(platform, member.libreChatUserId, {
      stream: true,
      max_tokens: 50,
    })
    expect(answer.status).toBe(500)
    expect(answer.headers.get('content-type')).toContain('application/json')
    expect(await answer.json()).toMatchObject({
      error: { message: 'The provider fell over', type: 'server_error' },
    })
    expect(onlyChatCall(platform).outcome).toBe('failed')

    await expectSettledAs(platform, member, { status: 'failed', inputTokens: 0, outputTokens: 0 })
  })

  it('counts what was delivered when the provider cuts the stream: failed, tokenizer count out, estimate in', async () => {
    const platform = await startChatPlatform({ egress: true })
    // Chunks apart in time: each reaches the gateway before the connection drops.
    platform.provider.behave({ reply: LONG_REPLY, chunkDelayMs: 30, cutAfterChunks: 3 })
    const member = await bridgedMember(platform)
    const answer = await completionCall(platform, member.libreChatUserId, {
      stream: true,
      max_tokens: 50,
    })
    expect(answer.status).toBe(200)
    const read = await readChunks(answer)
    // The stream ends for the client, broken off as the provider's was, without [DONE].
    expect(read.sawDone).toBe(false)
    expect(read.broke).toBe(true)
    expect(read.text).toBe(splitIntoTokens(LONG_REPLY).slice(0, 3).join(''))
    const call = onlyChatCall(platform)
    expect(call.outcome).toBe('cut')

    await expectSettledAs(platform, member, {
      status: 'failed',
      outputTokens: countTextTokens(read.text),
      inputTokens: estimatePromptTokens(call.body),
    })
  })

  it('relays and counts the chunks that reach it in the same read as the provider’s cut', async () => {
    // A provider that sends three events and closes its connection once they are on the wire,
    // mid-answer: the gateway reads the events and the end of the connection together. (The fake
    // provider's cut destroys its socket before its writes leave, so nothing would arrive.)
    const events = ['One', ' two', ' three']
    const cutting = createHttpServer((request, response) => {
      request.resume()
      request.on('end', () => {
        response.writeHead(200, { 'content-type': 'text/event-stream' })
        for (const content of events)
          response.write(
            `data: ${JSON.stringify({ object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content } }] })}\n\n`,
          )
        response.socket?.end()
      })
    })
    cutting.listen(0, '127.0.0.1')
    await once(cutting, 'listening')
    onTestFinished(() => new Promise<void>((resolve) => cutting.close(() => resolve())))
    const address = cutting.address()
    if (address === null || typeof address === 'string') throw new Error('no port')
    const platform = await startChatPlatform({
      egress: true,
      gatewayEnv: {
        LLM_PROVIDERS: JSON.stringify([
          {
            name: 'oai',
            baseURL: `http://127.0.0.1:${address.port}/v1`,
            models: ['fake-small'],
          },
        ]),
      },
    })
    const member = await bridgedMember(platform)
    const wire = await rawEgressCall(
      platform,
      member.libreChatUserId,
      completion(member.libreChatUserId, { stream: true, max_tokens: 50 }),
    )
    const [row] = await ledgerRows(platform, member.workspaceId, 1)
    const delivered = events.join('')
    expect({
      relayed: (await readChunks(new Response(wire.text))).text,
      ledgered: row?.outputTokens,
      status: row?.status,
    }).toEqual({ relayed: delivered, ledgered: countTextTokens(delivered), status: 'failed' })
  })
})

describe('model egress faults: LibreChat goes away', () => {
  it('ends the provider call when LibreChat disconnects mid-stream and ledgers it cancelled at the delivered count', async () => {
    const platform = await startChatPlatform({ egress: true })
    holdAfterFirstChunk(platform.provider, LONG_REPLY)
    const member = await bridgedMember(platform)
    const leaving = new AbortController()
    const answer = await completionCall(
      platform,
      member.libreChatUserId,
      { stream: true, max_tokens: 50 },
      leaving.signal,
    )
    expect(answer.status).toBe(200)
    const read = await readChunks(answer, 1)
    expect(read.text).toBe(splitIntoTokens(LONG_REPLY)[0])
    // In flight, the call holds its reservation.
    expect(await reservationsOf(platform, member)).toHaveLength(1)
    leaving.abort()

    const call = onlyChatCall(platform)
    await waitFor('the provider call ended', () => call.outcome !== 'in-progress')
    expect(call.outcome).toBe('client-closed')
    expect(call.chunksSent).toBe(1)

    await expectSettledAs(platform, member, {
      status: 'cancelled',
      outputTokens: countTextTokens(read.text),
      inputTokens: estimatePromptTokens(call.body),
    })
  })

  it('ends a stalled provider call when LibreChat gives up on it, cancelled and settled', async () => {
    const platform = await startChatPlatform({ egress: true })
    platform.provider.behave({ reply: LONG_REPLY, stallAfterChunks: 2 })
    const member = await bridgedMember(platform)
    const leaving = new AbortController()
    const answer = await completionCall(
      platform,
      member.libreChatUserId,
      { stream: true, max_tokens: 50 },
      leaving.signal,
    )
    expect(answer.status).toBe(200)
    const read = await readChunks(answer, 2)
    expect(read.text).toBe(splitIntoTokens(LONG_REPLY).slice(0, 2).join(''))
    const call = onlyChatCall(platform)
    await waitFor('the provider stalled', () => call.outcome === 'stalled')
    leaving.abort()

    // The fake keeps `stalled`; the connection's end is the gateway letting go of it.
    await waitFor('the stalled provider connection closed', () => call.endedAt !== undefined)
    await expectSettledAs(platform, member, {
      status: 'cancelled',
      outputTokens: countTextTokens(read.text),
      inputTokens: estimatePromptTokens(call.body),
    })
  })

  it('charges the prompt the provider already took when LibreChat leaves before the first byte', async () => {
    const platform = await startChatPlatform({ egress: true })
    platform.provider.behave({ reply: LONG_REPLY, firstByteDelayMs: 2_000 })
    const member = await bridgedMember(platform)
    const leaving = new AbortController()
    const answer = completionCall(
      platform,
      member.libreChatUserId,
      { max_tokens: 50 },
      leaving.signal,
    )
    await waitFor('the provider has the call', () => chatCalls(platform).length === 1)
    leaving.abort()
    await expect(answer).rejects.toThrow()

    const call = onlyChatCall(platform)
    await waitFor('the provider call ended', () => call.outcome !== 'in-progress')
    expect(call.outcome).toBe('client-closed')
    await expectNoReservation(platform, member)
    const [row] = await ledgerRows(platform, member.workspaceId, 1)
    expect(row?.status).toBe('cancelled')
    // The provider read the whole prompt; a call left at this point must not cost nothing.
    expect(row?.inputTokens).toBe(estimatePromptTokens(call.body))
  })
})

describe('model egress faults: usage on the stream', () => {
  it('never shows LibreChat the usage chunk it did not ask for, yet ledgers the provider’s usage', async () => {
    const platform = await startChatPlatform({ egress: true })
    platform.provider.behave({ reply: LONG_REPLY })
    const member = await bridgedMember(platform)
    const answer = await completionCall(platform, member.libreChatUserId, { stream: true })
    expect(answer.status).toBe(200)
    const read = await readChunks(answer)
    expect(read.sawDone).toBe(true)
    expect(read.text).toBe(LONG_REPLY)
    // The egress asked the provider for usage; the provider sent it; the client sees none.
    const call = onlyChatCall(platform)
    expect(call.includeUsage).toBe(true)
    for (const chunk of read.chunks) {
      expect(chunk.usage ?? null).toBeNull()
      expect(chunk.choices).not.toEqual([])
    }
    const [row] = await ledgerRows(platform, member.workspaceId, 1)
    expect(row).toMatchObject({
      status: 'completed',
      inputTokens: call.promptTokens,
      outputTokens: call.completionTokens,
    })
  })

  it('passes the usage chunk on when LibreChat asked for it', async () => {
    const platform = await startChatPlatform({ egress: true })
    platform.provider.behave({ reply: LONG_REPLY })
    const member = await bridgedMember(platform)
    const answer = await completionCall(platform, member.libreChatUserId, {
      stream: true,
      stream_options: { include_usage: true },
    })
    expect(answer.status).toBe(200)
    const read = await readChunks(answer)
    expect(read.sawDone).toBe(true)
    const call = onlyChatCall(platform)
    const usageChunks = read.chunks.filter(
      (chunk) => chunk.usage !== null && chunk.usage !== undefined,
    )
    expect(usageChunks).toHaveLength(1)
    expect(usageChunks[0]).toMatchObject({
      choices: [],
      usage: { prompt_tokens: call.promptTokens, completion_tokens: call.completionTokens },
    })
    expect(read.chunks.at(-1)).toBe(usageChunks[0])
  })
})

describe('model egress faults: dependencies down', () => {
  it('journals usage while the workspace-service is down and ledgers it exactly once when it is back', async () => {
    let workspaceAddress: (address: { host: string; port: number }) => void = () => undefined
    const workspaceKnown = new Promise<{ host: string; port: number }>((resolve) => {
      workspaceAddress = resolve
    })
    const hop = await startTcpProxy(() => workspaceKnown)
    const platform = await startChatPlatform({
      egress: true,
      gatewayEnv: {
        WORKSPACE_SERVICE_URL: `http://127.0.0.1:${hop.port}`,
        // The call made while the service is down resolves its caller from the caches.
        MEMBERSHIP_CACHE_MS: '600000',
      },
    })
    const address = platform.workspace.server.address()
    if (address === null || typeof address === 'string') throw new Error('workspace not on TCP')
    workspaceAddress({ host: '127.0.0.1', port: address.port })
    platform.provider.behave({ reply: LONG_REPLY })
    const member = await bridgedMember(platform)
    const call = () => completionCall(platform, member.libreChatUserId)

    // One call while everything is up: the caches hold the caller, the ledger has its row.
    const warm = await call()
    expect(warm.status).toBe(200)
    await warm.body?.cancel()
    await ledgerRows(platform, member.workspaceId, 1)

    hop.cut()
    const whileDown = await call()
    expect(whileDown.status).toBe(200)
    await whileDown.body?.cancel()
    await expectNoReservation(platform, member)

    const journal = `${keyPrefixOf(platform)}gw:usage-journal`
    const redis = connectRedis()
    let callId = ''
    await waitFor('the record in the journal', async () => {
      const entries = await redis.xrange(journal, '-', '+')
      const records = entries.map(
        ([, fields]) => JSON.parse(fields[1] ?? '{}') as { callId: string; workspaceId: string },
      )
      const record = records.find((entry) => entry.workspaceId === member.workspaceId)
      callId = record?.callId ?? ''
      return record !== undefined
    })
    // Delivery keeps failing meanwhile: the record stays, and the ledger has only the first call.
    await sleep(300)
    expect(await redis.xlen(journal)).toBe(1)
    const ledger = platform.workspace.mongo.collection<LedgerRow>('usage_ledger')
    expect(await ledger.countDocuments({ _id: callId })).toBe(0)

    hop.restore()
    const usageJournal = platform.gateway.egress?.usageJournal
    if (usageJournal === undefined) throw new Error('the egress has no journal')
    await usageJournal.flush()
    expect(await ledger.countDocuments({ _id: callId })).toBe(1)
    expect(await redis.xlen(journal)).toBe(0)
    await usageJournal.flush()
    await usageJournal.flush()
    expect(await ledger.countDocuments({ _id: callId })).toBe(1)
    expect(await ledger.countDocuments({ workspaceId: member.workspaceId })).toBe(2)
  })

  it('answers 503 GW_DEPENDENCY_UNAVAILABLE in OpenAI’s shape when Redis is unreachable, and never calls the provider', async () => {
    const { platform, hop } = await platformBehindRedisHop()
    const member = await bridgedMember(platform)

    hop.cut()
    const answer = await completionCall(platform, member.libreChatUserId, { stream: true })
    expect(answer.status).toBe(503)
    expect(await answer.json()).toMatchObject({
      statusCode: 503,
      code: 'GW_DEPENDENCY_UNAVAILABLE',
      error: { type: 'server_error', code: 'GW_DEPENDENCY_UNAVAILABLE' },
    })
    expect(chatCalls(platform)).toHaveLength(0)
  })

  it('losing Redis is reported through the service log, never printed to stderr', async () => {
    const { platform, hop } = await platformBehindRedisHop()
    const member = await bridgedMember(platform)
    const printed = vi.spyOn(console, 'error')
    onTestFinished(() => printed.mockRestore())

    hop.cut()
    const answer = await completionCall(platform, member.libreChatUserId)
    expect(answer.status).toBe(503)
    // Long enough for every gateway client to meet the refused reconnects a few times.
    await sleep(2_000)
    const unhandled = printed.mock.calls.filter((args) =>
      String(args[0]).includes('[ioredis] Unhandled error event'),
    )
    expect(unhandled).toEqual([])
  })

  it('keeps the usage of a call that ends while Redis is away and ledgers it once Redis is back', async () => {
    const { platform, hop, redisBack } = await platformBehindRedisHop()
    const hold = holdAfterFirstChunk(platform.provider, LONG_REPLY)
    const member = await bridgedMember(platform)
    const answer = await completionCall(platform, member.libreChatUserId, { stream: true })
    expect(answer.status).toBe(200)
    const reader = chunkReader(answer)
    const first = await reader.read(1)

    // Redis goes away mid-call: neither the settlement nor the journal can reach it.
    hop.cut()
    hold.open()
    const rest = await reader.read()
    expect(rest.sawDone).toBe(true)
    expect(first.text + rest.text).toBe(LONG_REPLY)
    await sleep(200)

    await redisBack()
    const call = onlyChatCall(platform)
    const [row] = await ledgerRows(platform, member.workspaceId, 1)
    expect(row).toMatchObject({
      status: 'completed',
      inputTokens: call.promptTokens,
      outputTokens: call.completionTokens,
    })
  })

  it('comes through Redis going away and back under load: refused calls never reach the provider, every other call is ledgered once', async () => {
    const { platform, hop, redisBack } = await platformBehindRedisHop({
      memberPolicy: {
        models: { allow: ['oai:*'] },
        quota: quotaWith({ monthlyTokens: 1_000_000, tpm: 1_000_000 }),
      },
      gatewayEnv: { EGRESS_RESERVATION_TTL_MS: '1500' },
    })
    platform.provider.behave({ reply: LONG_REPLY, chunkDelayMs: 5 })
    const member = await bridgedMember(platform)
    const statuses: number[] = []
    let started = 0
    const worker = async () => {
      while (started < 40) {
        started += 1
        if (started === 12) hop.cut()
        if (started === 24) await redisBack()
        const answer = await completionCall(platform, member.libreChatUserId, { stream: true })
        statuses.push(answer.status)
        await answer.text().catch(() => '')
      }
    }
    await Promise.all(Array.from({ length: 6 }, worker))
    await redisBack()

    const admitted = statuses.filter((status) => status === 200).length
    expect(statuses.every((status) => status === 200 || status === 503)).toBe(true)
    expect(statuses.filter((status) => status === 503).length).toBeGreaterThan(0)
    // A refused call never reached the provider; an admitted one did, and was ledgered once.
    await waitFor('every provider call ended', () =>
      chatCalls(platform).every((call) => call.outcome !== 'in-progress'),
    )
    expect(chatCalls(platform)).toHaveLength(admitted)
    const rows = await ledgerRows(platform, member.workspaceId, admitted)
    const reported = chatCalls(platform).reduce(
      (sum, call) => sum + call.promptTokens + call.completionTokens,
      0,
    )
    expect(rows.reduce((sum, row) => sum + row.inputTokens + row.outputTokens, 0)).toBe(reported)

    // Settlements lost while Redis was away expire; the next call's reservation sweeps them.
    await sleep(1_600)
    const after = await completionCall(platform, member.libreChatUserId)
    expect(after.status).toBe(200)
    await after.text()
    await waitFor(
      'no reservation left',
      async () => (await reservationsOf(platform, member)).length === 0,
    )
  })

  it('still delivers usage after Redis lost the journal stream (a restart without persistence)', async () => {
    const platform = await startChatPlatform({ egress: true })
    const member = await bridgedMember(platform)
    const call = () => completionCall(platform, member.libreChatUserId)
    const before = await call()
    expect(before.status).toBe(200)
    await before.body?.cancel()
    await ledgerRows(platform, member.workspaceId, 1)

    // What an empty Redis after a restart looks like to the journal: no stream, no group.
    await connectRedis().del(`${keyPrefixOf(platform)}gw:usage-journal`)
    const after = await call()
    expect(after.status).toBe(200)
    await after.body?.cancel()
    await ledgerRows(platform, member.workspaceId, 2)
  })

  it('answers 504 in OpenAI’s shape when the provider never answers, ledgers it failed and frees the reservation', async () => {
    const platform = await startChatPlatform({
      egress: true,
      gatewayEnv: { EGRESS_PROVIDER_TIMEOUT_MS: '500' },
    })
    platform.provider.behave({ stallAfterChunks: 0 })
    const member = await bridgedMember(platform)
    const answer = await completionCall(platform, member.libreChatUserId, { max_tokens: 50 })
    expect(answer.status).toBe(504)
    expect(await answer.json()).toMatchObject({
      code: 'GW_UPSTREAM_TIMEOUT',
      error: { type: 'server_error', code: 'GW_UPSTREAM_TIMEOUT' },
    })
    await expectSettledAs(platform, member, { status: 'failed', inputTokens: 0, outputTokens: 0 })
  })

  it('answers 503 when the provider is unreachable, ledgers it failed and frees the reservation', async () => {
    const platform = await startChatPlatform({ egress: true })
    const member = await bridgedMember(platform)
    await platform.provider.close()
    const answer = await completionCall(platform, member.libreChatUserId, {
      stream: true,
      max_tokens: 50,
    })
    expect(answer.status).toBe(503)
    expect(await answer.json()).toMatchObject({
      code: 'GW_UPSTREAM_UNAVAILABLE',
      error: { type: 'server_error', code: 'GW_UPSTREAM_UNAVAILABLE' },
    })
    await expectSettledAs(platform, member, { status: 'failed', inputTokens: 0, outputTokens: 0 })
  })
})

describe('model egress faults: limits', () => {
  it('refuses a call over tpm with GW_RATE_LIMITED, after giving back the unused part of the first call’s reservation', async () => {
    const tpm = 200
    const platform = await startChatPlatform({
      egress: true,
      memberPolicy: { models: { allow: [`${PROVIDER}:*`] }, quota: quotaWith({ tpm }) },
    })
    platform.provider.behave({ reply: 'Short.' })
    const member = await bridgedMember(platform)
    const user = member.libreChatUserId
    const prompt = promptEstimate()
    // Three calls in one minute bucket: start early in a minute.
    if (Date.now() % 60_000 > 45_000) await sleep(60_000 - (Date.now() % 60_000) + 100)

    const first = await completionCall(platform, user, { max_tokens: 100 })
    expect(first.status).toBe(200)
    await first.body?.cancel()
    const firstCall = onlyChatCall(platform)
    const used = firstCall.promptTokens + firstCall.completionTokens
    expect(prompt + 100).toBeGreaterThan(used)
    await expectNoReservation(platform, member)

    // One token more than the minute has left once the first call settled to its real usage.
    const second = await completionCall(platform, user, { max_tokens: tpm - used - prompt + 1 })
    expect(second.status).toBe(429)
    expect(await second.json()).toMatchObject({
      code: 'GW_RATE_LIMITED',
      error: { type: 'rate_limit_error', code: 'GW_RATE_LIMITED' },
      limitName: 'tpm',
      scope: 'workspace',
      limit: tpm,
      used,
    })
    expect(chatCalls(platform)).toHaveLength(1)

    // Exactly what is left fits; it would not, had the first call kept its whole reservation.
    const third = await completionCall(platform, user, { max_tokens: tpm - used - prompt })
    expect(third.status).toBe(200)
    await third.body?.cancel()
    expect(chatCalls(platform)).toHaveLength(2)
  }, 90_000)

  it('refuses a member whose own monthly budget is spent while another member of the workspace gets through', async () => {
    const limit = 120
    const platform = await startChatPlatform({
      egress: true,
      memberPolicy: {
        models: { allow: [`${PROVIDER}:*`] },
        quota: quotaWith({ memberMonthlyTokens: limit }),
      },
    })
    platform.provider.behave({ reply: 'Short.' })
    const spender = await bridgedMember(platform, 'spender')
    const other = await platform.user('other')
    await platform.addMember(spender.user, spender.workspaceId, other, 'member')
    const otherToken = await platform.scopedToken(other, spender.workspaceId)
    const otherUser = await bridgeToLibreChat(platform, {
      user: other,
      workspaceId: spender.workspaceId,
      token: otherToken,
    })
    const prompt = promptEstimate()

    const first = await completionCall(platform, spender.libreChatUserId, { max_tokens: 50 })
    expect(first.status).toBe(200)
    await first.body?.cancel()
    const firstCall = onlyChatCall(platform)
    const spent = firstCall.promptTokens + firstCall.completionTokens
    await expectNoReservation(platform, spender)

    // Fits a member's whole budget, not what the spender has left.
    const maxTokens = limit - prompt - spent + 1
    const refused = await completionCall(platform, spender.libreChatUserId, {
      max_tokens: maxTokens,
    })
    expect(refused.status).toBe(429)
    expect(refused.headers.get('x-should-retry')).toBe('false')
    expect(await refused.json()).toMatchObject({
      code: 'GW_QUOTA_EXCEEDED',
      error: { type: 'insufficient_quota', code: 'insufficient_quota' },
      limitName: 'memberMonthlyTokens',
      scope: 'member',
      limit,
      used: spent,
    })

    const admitted = await completionCall(platform, otherUser, { max_tokens: maxTokens })
    expect(admitted.status).toBe(200)
    await admitted.body?.cancel()
    expect(chatCalls(platform)).toHaveLength(2)
  })

  it('admits exactly the calls the budget covers when they race, however many arrive at once', async () => {
    const reserve = promptEstimate() + 100
    const platform = await startChatPlatform({
      egress: true,
      memberPolicy: {
        models: { allow: [`${PROVIDER}:*`] },
        // Room for two reservations, not three.
        quota: quotaWith({ monthlyTokens: reserve * 2 + Math.floor(reserve / 2) }),
      },
    })
    const hold = holdAfterFirstChunk(platform.provider, LONG_REPLY)
    const member = await bridgedMember(platform)
    const answers = await Promise.all(
      Array.from({ length: 6 }, () =>
        completionCall(platform, member.libreChatUserId, { stream: true, max_tokens: 100 }),
      ),
    )
    const statuses = answers.map((answer) => answer.status).sort()
    expect(statuses).toEqual([200, 200, 429, 429, 429, 429])
    expect(chatCalls(platform)).toHaveLength(2)
    expect(await reservationsOf(platform, member)).toHaveLength(2)
    hold.open()
    await Promise.all(answers.map((answer) => answer.text()))
    await expectNoReservation(platform, member)
  })

  it('caps a huge max_tokens at the policy’s and reserves the cap, not the ask', async () => {
    const cap = 40
    const platform = await startChatPlatform({
      egress: true,
      memberPolicy: {
        models: { allow: [`${PROVIDER}:*`] },
        params: { maxOutputTokens: cap, temperature: null },
      },
    })
    const hold = holdAfterFirstChunk(platform.provider, LONG_REPLY)
    const member = await bridgedMember(platform)
    const answer = await completionCall(platform, member.libreChatUserId, {
      stream: true,
      max_tokens: 9_000_000,
    })
    expect(answer.status).toBe(200)
    const call = onlyChatCall(platform)
    expect(call.body).toMatchObject({ max_tokens: cap })
    const [reservation, ...others] = await reservationsOf(platform, member)
    expect(others).toHaveLength(0)
    expect(reservation).toMatchObject({
      userId: member.user.id,
      tokens: estimatePromptTokens(call.body) + cap,
    })
    hold.open()
    const read = await readChunks(answer)
    expect(read.sawDone).toBe(true)
    await expectNoReservation(platform, member)
  })

  it('lets an abandoned reservation stop counting once it expires, while a live one still counts', async () => {
    const limit = 1_000
    const platform = await startChatPlatform({
      egress: true,
      memberPolicy: {
        models: { allow: [`${PROVIDER}:*`] },
        quota: quotaWith({ monthlyTokens: limit }),
      },
    })
    const member = await bridgedMember(platform)
    const key = `${keyPrefixOf(platform)}${quotaReservationsKey(member.tenantId, member.workspaceId)}`
    const redis = connectRedis()
    const left = (expiresAt: number) =>
      JSON.stringify({ userId: member.user.id, tokens: limit, costMicros: 0, expiresAt })

    // A replica that crashed mid-call left the whole budget reserved, and the reservation is live.
    await redis.hset(key, 'crashed-call', left(Date.now() + 60_000))
    const blocked = await completionCall(platform, member.libreChatUserId, { max_tokens: 10 })
    expect(blocked.status).toBe(429)
    expect(await blocked.json()).toMatchObject({ limitName: 'monthlyTokens', used: limit })

    // Once it has expired it is dropped, not counted.
    await redis.hset(key, 'crashed-call', left(Date.now() - 1))
    const admitted = await completionCall(platform, member.libreChatUserId, { max_tokens: 10 })
    expect(admitted.status).toBe(200)
    await admitted.body?.cancel()
    expect(await redis.hexists(key, 'crashed-call')).toBe(0)
    await expectNoReservation(platform, member)
  })
})
