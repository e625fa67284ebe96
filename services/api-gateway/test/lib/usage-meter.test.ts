import { countTokens } from 'gpt-tokenizer/encoding/o200k_base'
import { describe, expect, it } from 'vitest'
import {
  countTextTokens,
  createStreamMeter,
  deliveredTextOfCompletion,
  estimatePromptTokens,
  type StreamMeter,
  usageOfCompletion,
} from '../../src/lib/usage-meter.js'

const COMPLETION_ID = 'chatcmpl-3f9a2c4e1b7d6a05'
const CREATED = 1_700_000_000
const MODEL = 'fake-small'

/** One answer chunk as the fake provider streams it: one token per chunk. */
function chunkEvent(
  delta: Record<string, unknown>,
  finishReason: string | null,
  includeUsage: boolean,
): string {
  const chunk = {
    id: COMPLETION_ID,
    object: 'chat.completion.chunk',
    created: CREATED,
    model: MODEL,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
    // Once usage is asked for, OpenAI (and the fake) put `usage: null` on every other chunk.
    ...(includeUsage ? { usage: null } : {}),
  }
  return `data: ${JSON.stringify(chunk)}\n\n`
}

function usageEvent(promptTokens: number, completionTokens: number): string {
  const chunk = {
    id: COMPLETION_ID,
    object: 'chat.completion.chunk',
    created: CREATED,
    model: MODEL,
    choices: [],
    usage: {
      prompt_tokens: promptTokens,
      completion_tokens: completionTokens,
      total_tokens: promptTokens + completionTokens,
    },
  }
  return `data: ${JSON.stringify(chunk)}\n\n`
}

const DONE = 'data: [DONE]\n\n'

/** A streamed text answer: a chunk per token, the finish chunk, the usage chunk when asked. */
function textStream(tokens: readonly string[], usage?: { prompt: number; completion: number }) {
  const includeUsage = usage !== undefined
  const events = tokens.map((token, index) =>
    chunkEvent(
      index === 0 ? { role: 'assistant', content: token } : { content: token },
      null,
      includeUsage,
    ),
  )
  events.push(chunkEvent({}, 'stop', includeUsage))
  if (usage) events.push(usageEvent(usage.prompt, usage.completion))
  events.push(DONE)
  return events
}

const REPLY_TOKENS = ['Hello', ' from', ' the', ' fake', ' provider.']
const REPLY = REPLY_TOKENS.join('')
/** Multi-byte UTF-8 in the answer, so byte splits land inside characters. */
const UNICODE_TOKENS = ['Grüße', ' aus', ' 東京', ' 😀', ' ok']

function feed(meter: StreamMeter, pieces: readonly (string | Buffer)[]): Buffer {
  const out = pieces.map((piece) => meter.push(Buffer.isBuffer(piece) ? piece : Buffer.from(piece)))
  out.push(meter.end())
  return Buffer.concat(out)
}

function stateOf(meter: StreamMeter) {
  return {
    reportedUsage: meter.reportedUsage,
    deliveredText: meter.deliveredText,
    deliveredOutputTokens: meter.deliveredOutputTokens(),
    sawDone: meter.sawDone,
    finishReason: meter.finishReason,
    model: meter.model,
  }
}

/** Feeds `bytes` as two pushes split at every position, and one byte at a time. */
function expectSplitInvariant(bytes: Buffer, forwardUsage: boolean) {
  const whole = createStreamMeter({ forwardUsage })
  const expectedOutput = feed(whole, [bytes])
  const expectedState = stateOf(whole)
  for (let split = 0; split <= bytes.length; split += 1) {
    const meter = createStreamMeter({ forwardUsage })
    const output = feed(meter, [bytes.subarray(0, split), bytes.subarray(split)])
    if (!output.equals(expectedOutput)) throw new Error(`output differs when split at ${split}`)
    expect(stateOf(meter)).toEqual(expectedState)
  }
  const byteByByte = createStreamMeter({ forwardUsage })
  const singleBytes = Array.from({ length: bytes.length }, (_, index) =>
    bytes.subarray(index, index + 1),
  )
  expect(feed(byteByByte, singleBytes).equals(expectedOutput)).toBe(true)
  expect(stateOf(byteByByte)).toEqual(expectedState)
  return { output: expectedOutput, state: expectedState }
}

describe('countTextTokens', () => {
  it('counts o200k_base tokens as the tokenizer does', () => {
    expect(countTextTokens('')).toBe(0)
    expect(countTextTokens('hello world')).toBe(2)
    expect(countTextTokens(REPLY)).toBe(6)
    expect(countTextTokens('The quick brown fox jumps over the lazy dog.')).toBe(10)
    expect(countTextTokens('こんにちは世界')).toBe(2)
    expect(countTextTokens('{"city":"Paris"}')).toBe(5)
    for (const text of ['hello world', REPLY, 'こんにちは世界', '{"city":"Paris"}']) {
      expect(countTextTokens(text)).toBe(countTokens(text))
    }
  })

  it('counts text spelling a special token as plain text instead of throwing', () => {
    expect(() => countTokens('<|endoftext|>')).toThrow()
    expect(countTextTokens('<|endoftext|>')).toBe(7)
  })

  it('counts long ordinary text exactly', () => {
    const prose = 'The quick brown fox jumps over the lazy dog. '.repeat(2000)
    const json = JSON.stringify(
      Array.from({ length: 500 }, (_, id) => ({ id, name: `item-${id}`, tags: ['x', 'y'] })),
    )
    const mixed = `${prose}\n\n\t${json}\r\n${UNICODE_TOKENS.join('').repeat(300)}`
    for (const text of [prose, json, mixed]) expect(countTextTokens(text)).toBe(countTokens(text))
  })

  it('counts degenerate text in linear time, close to the tokenizer', () => {
    // 65 letters: one piece past the whole-piece limit, still counted as the tokenizer does.
    expect(countTextTokens('a'.repeat(65))).toBe(countTokens('a'.repeat(65)))
    const startedAt = performance.now()
    // Whole, these pieces would take the tokenizer minutes (quadratic merging).
    expect(countTextTokens('a'.repeat(1_000_000))).toBe(125_000)
    expect(countTextTokens(`x ${'A'.repeat(500_000)} y`)).toBeGreaterThan(50_000)
    expect(countTextTokens('!?'.repeat(200_000))).toBeGreaterThan(100_000)
    expect(performance.now() - startedAt).toBeLessThan(10_000)
  })
})

describe('estimatePromptTokens', () => {
  const user = (content: unknown) => ({ role: 'user', content })

  it('counts each message with OpenAI overhead and the reply priming', () => {
    // 3 per message + "user" (1) + "hello world" (2), then 3 to prime the reply.
    expect(estimatePromptTokens({ messages: [user('hello world')] })).toBe(9)
    const two = estimatePromptTokens({
      messages: [{ role: 'system', content: 'Be brief.' }, user('hello world')],
    })
    expect(two).toBe(9 + 3 + countTextTokens('system') + countTextTokens('Be brief.'))
  })

  it('grows with every message', () => {
    let previous = 0
    const messages: unknown[] = []
    for (let index = 0; index < 6; index += 1) {
      messages.push(user(`message number ${index}`))
      const estimate = estimatePromptTokens({ model: MODEL, messages })
      expect(estimate).toBeGreaterThan(previous)
      previous = estimate
    }
  })

  it('counts names, text parts and a fixed estimate per image', () => {
    const base = estimatePromptTokens({ messages: [user('hello world')] })
    expect(estimatePromptTokens({ messages: [{ ...user('hello world'), name: 'ada' }] })).toBe(
      base + countTextTokens('ada') + 1,
    )
    expect(
      estimatePromptTokens({ messages: [user([{ type: 'text', text: 'hello world' }])] }),
    ).toBe(base)
    const image = (detail?: string) => ({
      type: 'image_url',
      image_url: { url: `data:image/png;base64,${'iVBORw0KGgo'.repeat(1000)}`, detail },
    })
    const withImage = (detail?: string) =>
      estimatePromptTokens({
        messages: [user([{ type: 'text', text: 'hello world' }, image(detail)])],
      })
    expect(withImage()).toBe(base + 765)
    expect(withImage('high')).toBe(base + 765)
    expect(withImage('low')).toBe(base + 85)
  })

  it('counts tool definitions by their JSON', () => {
    const body = { model: MODEL, messages: [user("What's the weather in Paris?")] }
    const tool = {
      type: 'function',
      function: {
        name: 'get_weather',
        description: 'Current weather for a city',
        parameters: {
          type: 'object',
          properties: { city: { type: 'string' }, unit: { enum: ['celsius', 'fahrenheit'] } },
          required: ['city'],
        },
      },
    }
    const withTool = estimatePromptTokens({ ...body, tools: [tool] })
    expect(withTool).toBe(estimatePromptTokens(body) + countTextTokens(JSON.stringify(tool)))
    expect(estimatePromptTokens({ ...body, tools: [tool, tool] })).toBeGreaterThan(withTool)
    const legacy = { name: 'get_weather', parameters: tool.function.parameters }
    expect(estimatePromptTokens({ ...body, functions: [legacy] })).toBe(
      estimatePromptTokens(body) + countTextTokens(JSON.stringify(legacy)),
    )
  })

  it('counts tool calls and tool results in the history', () => {
    const question = user("What's the weather in Paris?")
    const assistant = {
      role: 'assistant',
      content: null,
      tool_calls: [
        {
          id: 'call_5e1f0c2a9b3d',
          type: 'function',
          function: { name: 'get_weather', arguments: '{"city":"Paris"}' },
        },
      ],
    }
    const before = estimatePromptTokens({ messages: [question] })
    const withCall = estimatePromptTokens({ messages: [question, assistant] })
    expect(withCall).toBe(
      before + 3 + countTextTokens('assistant') + countTextTokens('get_weather') + 5,
    )
    const result = { role: 'tool', tool_call_id: 'call_5e1f0c2a9b3d', content: '18°C, cloudy' }
    expect(estimatePromptTokens({ messages: [question, assistant, result] })).toBe(
      withCall +
        3 +
        countTextTokens('tool') +
        countTextTokens('call_5e1f0c2a9b3d') +
        countTextTokens('18°C, cloudy'),
    )
  })

  it('reads what it can of odd input and never throws', () => {
    for (const body of [
      undefined,
      null,
      'text',
      42,
      [],
      {},
      { messages: 'nope' },
      { messages: [] },
    ]) {
      expect(estimatePromptTokens(body)).toBe(0)
    }
    const cyclic: Record<string, unknown> = { name: 'loop' }
    cyclic.self = cyclic
    const odd = {
      messages: [
        null,
        7,
        { role: 5, content: { text: 'not an array' } },
        { role: 'user', content: [null, 3, { type: 'input_audio' }, { type: 'text', text: 9 }] },
        { role: 'assistant', tool_calls: [null, { function: { name: 1, arguments: { a: 1 } } }] },
      ],
      tools: [cyclic, 10n, undefined, 'x'],
      functions: 'none',
    }
    expect(() => estimatePromptTokens(odd)).not.toThrow()
    expect(estimatePromptTokens(odd)).toBeGreaterThanOrEqual(5 * 3 + 3)
  })

  it('stays fast on a huge prompt', () => {
    const startedAt = performance.now()
    const estimate = estimatePromptTokens({
      messages: [
        user(`Decode this: ${'A'.repeat(2_000_000)}`),
        user('The quick brown fox. '.repeat(50_000)),
        ...Array.from({ length: 5000 }, (_, index) => user(`short message ${index}`)),
      ],
    })
    expect(estimate).toBeGreaterThan(250_000)
    expect(performance.now() - startedAt).toBeLessThan(10_000)
  })
})

describe('non-streamed completions', () => {
  const completion = (message: Record<string, unknown>, usage?: unknown) => ({
    id: COMPLETION_ID,
    object: 'chat.completion',
    created: CREATED,
    model: MODEL,
    choices: [{ index: 0, message, logprobs: null, finish_reason: 'stop' }],
    ...(usage === undefined ? {} : { usage }),
  })
  const answer = { role: 'assistant', content: REPLY, refusal: null }

  it("reads the provider's usage", () => {
    expect(
      usageOfCompletion(
        completion(answer, { prompt_tokens: 12, completion_tokens: 5, total_tokens: 17 }),
      ),
    ).toEqual({ inputTokens: 12, outputTokens: 5 })
    expect(
      usageOfCompletion(completion(answer, { prompt_tokens: 0, completion_tokens: 0 })),
    ).toEqual({ inputTokens: 0, outputTokens: 0 })
  })

  it('answers null without usable usage', () => {
    for (const usage of [
      undefined,
      null,
      {},
      { prompt_tokens: 12 },
      { prompt_tokens: -1, completion_tokens: 5 },
      { prompt_tokens: 12, completion_tokens: 2.5 },
      { prompt_tokens: '12', completion_tokens: 5 },
    ]) {
      expect(usageOfCompletion(completion(answer, usage))).toBeNull()
    }
    for (const body of [undefined, null, 'text', []]) expect(usageOfCompletion(body)).toBeNull()
  })

  it('gives the delivered text: content, tool calls, reasoning', () => {
    expect(deliveredTextOfCompletion(completion(answer))).toBe(REPLY)
    const toolAnswer = {
      role: 'assistant',
      content: null,
      refusal: null,
      tool_calls: [
        {
          id: 'call_5e1f0c2a9b3d',
          type: 'function',
          function: { name: 'get_weather', arguments: '{"city":"Paris"}' },
        },
      ],
    }
    expect(deliveredTextOfCompletion(completion(toolAnswer))).toBe('get_weather{"city":"Paris"}')
    const reasoned = { ...answer, reasoning_content: 'The user greets me. ' }
    expect(deliveredTextOfCompletion(completion(reasoned))).toBe(`The user greets me. ${REPLY}`)
    for (const body of [undefined, null, {}, { choices: [null, { message: 3 }] }]) {
      expect(deliveredTextOfCompletion(body)).toBe('')
    }
  })
})

describe('createStreamMeter', () => {
  it('relays a stream unchanged and reads its usage when the caller asked for it', () => {
    const events = textStream(REPLY_TOKENS, { prompt: 12, completion: 5 })
    const meter = createStreamMeter({ forwardUsage: true })
    const outputs = events.map((event) => meter.push(Buffer.from(event)).toString())
    expect(outputs).toEqual(events)
    expect(meter.end().length).toBe(0)
    expect(stateOf(meter)).toEqual({
      reportedUsage: { inputTokens: 12, outputTokens: 5 },
      deliveredText: REPLY,
      deliveredOutputTokens: 6,
      sawDone: true,
      finishReason: 'stop',
      model: MODEL,
    })
  })

  it('drops the usage chunk the caller did not ask for, and still reads it', () => {
    const usage = usageEvent(12, 5)
    const events = textStream(REPLY_TOKENS, { prompt: 12, completion: 5 })
    const meter = createStreamMeter({ forwardUsage: false })
    const output = feed(meter, events).toString()
    expect(output).toBe(events.filter((event) => event !== usage).join(''))
    expect(meter.reportedUsage).toEqual({ inputTokens: 12, outputTokens: 5 })
    expect(meter.sawDone).toBe(true)
  })

  it('removes usage from a chunk that also has choices only when the caller did not ask', () => {
    const finalChunk = {
      id: COMPLETION_ID,
      object: 'chat.completion.chunk',
      created: CREATED,
      model: MODEL,
      choices: [{ index: 0, delta: {}, logprobs: null, finish_reason: 'stop' }],
      usage: { prompt_tokens: 12, completion_tokens: 5, total_tokens: 17 },
    }
    const { usage: _usage, ...withoutUsage } = finalChunk
    const events = [
      chunkEvent({ content: 'Hi' }, null, false),
      `data: ${JSON.stringify(finalChunk)}\n\n`,
      DONE,
    ]

    const kept = createStreamMeter({ forwardUsage: true })
    expect(feed(kept, events).toString()).toBe(events.join(''))

    const hidden = createStreamMeter({ forwardUsage: false })
    const output = feed(hidden, events).toString()
    expect(output).toBe([events[0], `data: ${JSON.stringify(withoutUsage)}\n\n`, DONE].join(''))
    expect(hidden.reportedUsage).toEqual({ inputTokens: 12, outputTokens: 5 })
    expect(hidden.finishReason).toBe('stop')

    // Other lines of the event, and CRLF line ends, survive the rewrite.
    const framed = `: final\r\nid: 7\r\ndata: ${JSON.stringify(finalChunk)}\r\n\r\n`
    expect(feed(createStreamMeter({ forwardUsage: false }), [framed]).toString()).toBe(
      `: final\r\nid: 7\r\ndata: ${JSON.stringify(withoutUsage)}\r\n\r\n`,
    )
  })

  it('leaves the null usage of ordinary chunks alone', () => {
    const events = textStream(REPLY_TOKENS, { prompt: 12, completion: 5 }).filter(
      (event) => event !== usageEvent(12, 5),
    )
    expect(events[0]).toContain('"usage":null')
    expect(feed(createStreamMeter({ forwardUsage: false }), events).toString()).toBe(
      events.join(''),
    )
  })

  it('gives identical bytes and state at every split point', () => {
    const unicode = textStream(UNICODE_TOKENS, { prompt: 12, completion: 5 }).join('')
    for (const forwardUsage of [true, false]) {
      const { state } = expectSplitInvariant(Buffer.from(unicode), forwardUsage)
      expect(state.deliveredText).toBe(UNICODE_TOKENS.join(''))
      expect(state.reportedUsage).toEqual({ inputTokens: 12, outputTokens: 5 })
    }
    const crlfWithComments = `: OPENROUTER PROCESSING\r\n\r\n${textStream(REPLY_TOKENS, {
      prompt: 3,
      completion: 6,
    })
      .join('')
      .replaceAll('\n', '\r\n')}`
    const { output, state } = expectSplitInvariant(Buffer.from(crlfWithComments), false)
    expect(output.toString()).toBe(
      crlfWithComments.replace(usageEvent(3, 6).replaceAll('\n', '\r\n'), ''),
    )
    expect(state.reportedUsage).toEqual({ inputTokens: 3, outputTokens: 6 })
    expect(state.sawDone).toBe(true)
  })

  it('counts the delivered text with the tokenizer when the provider sends no usage', () => {
    const events = textStream(UNICODE_TOKENS)
    const meter = createStreamMeter({ forwardUsage: false })
    expect(feed(meter, events).toString()).toBe(events.join(''))
    expect(meter.reportedUsage).toBeNull()
    expect(meter.deliveredText).toBe(UNICODE_TOKENS.join(''))
    expect(meter.deliveredOutputTokens()).toBe(countTokens(UNICODE_TOKENS.join('')))
    expect(meter.sawDone).toBe(true)
  })

  it('keeps what a cut stream delivered and passes its partial event on at the end', () => {
    const events = textStream(REPLY_TOKENS)
    const partial = events[3]?.slice(0, 40) ?? ''
    const meter = createStreamMeter({ forwardUsage: false })
    const relayed = events.slice(0, 3).map((event) => meter.push(Buffer.from(event)).toString())
    expect(relayed).toEqual(events.slice(0, 3))
    expect(meter.push(Buffer.from(partial)).length).toBe(0)
    expect(meter.end().toString()).toBe(partial)
    expect(stateOf(meter)).toEqual({
      reportedUsage: null,
      deliveredText: 'Hello from the',
      deliveredOutputTokens: 3,
      sawDone: false,
      finishReason: null,
      model: MODEL,
    })
  })

  it('recounts delivered tokens after more text arrives', () => {
    const meter = createStreamMeter({ forwardUsage: false })
    meter.push(Buffer.from(chunkEvent({ content: 'hello' }, null, false)))
    expect(meter.deliveredOutputTokens()).toBe(1)
    meter.push(Buffer.from(chunkEvent({ content: ' world' }, null, false)))
    expect(meter.deliveredOutputTokens()).toBe(2)
  })

  it('reads tool-call and reasoning deltas', () => {
    const events = [
      chunkEvent({ role: 'assistant', content: '', reasoning_content: 'Need' }, null, false),
      chunkEvent({ reasoning_content: ' the weather.' }, null, false),
      chunkEvent(
        {
          content: null,
          tool_calls: [
            {
              index: 0,
              id: 'call_5e1f0c2a9b3d',
              type: 'function',
              function: { name: 'get_weather', arguments: '' },
            },
          ],
        },
        null,
        false,
      ),
      ...['{"', 'city', '":"', 'Paris', '"}'].map((piece) =>
        chunkEvent({ tool_calls: [{ index: 0, function: { arguments: piece } }] }, null, false),
      ),
      chunkEvent({}, 'tool_calls', false),
      DONE,
    ]
    const meter = createStreamMeter({ forwardUsage: false })
    expect(feed(meter, events).toString()).toBe(events.join(''))
    expect(meter.deliveredText).toBe('Need the weather.get_weather{"city":"Paris"}')
    expect(meter.finishReason).toBe('tool_calls')
  })

  it('passes comments, other fields and garbage on untouched and keeps reading', () => {
    const events = [
      ': keep-alive\n\n',
      'event: ping\ndata: {"type":"ping"}\n\n',
      'data: {not json\n\n',
      'data: 42\n\n',
      'data: null\n\n',
      'retry: 1000\n\n',
      '\n',
      `: comment inside an event\n${chunkEvent({ content: 'hello' }, null, false)}`,
      // No space after `data:`, and the JSON split over two data lines.
      `data:${JSON.stringify({ model: MODEL, choices: [{ index: 0, delta: { content: ' world' } }] }).replace(',"choices"', '\ndata:,"choices"')}\n\n`,
      usageEvent(4, 2),
      DONE,
    ]
    const meter = createStreamMeter({ forwardUsage: false })
    const output = feed(meter, events).toString()
    expect(output).toBe(events.filter((event) => event !== usageEvent(4, 2)).join(''))
    expect(meter.deliveredText).toBe('hello world')
    expect(meter.reportedUsage).toEqual({ inputTokens: 4, outputTokens: 2 })
    expect(meter.sawDone).toBe(true)
  })

  it('passes an oversize event on raw once past 1 MiB, without reading it', () => {
    const huge = `data: ${JSON.stringify({
      model: 'huge-model',
      choices: [{ index: 0, delta: { content: 'x'.repeat(1_200_000) } }],
    })}\n\n`
    const after = chunkEvent({ content: 'hello' }, null, false)
    const bytes = Buffer.from(huge + after + DONE)
    const piece = 64 * 1024
    const meter = createStreamMeter({ forwardUsage: false })
    let relayed = 0
    let pushed = 0
    for (let start = 0; start < bytes.length; start += piece) {
      const chunk = bytes.subarray(start, start + piece)
      pushed += chunk.length
      relayed += meter.push(chunk).length
      // Held back at most one event's worth: the limit plus the chunk that crossed it.
      expect(pushed - relayed).toBeLessThanOrEqual(1024 * 1024 + piece)
      if (start > 1024 * 1024 + piece && start + piece < huge.length) expect(relayed).toBe(pushed)
    }
    relayed += meter.end().length
    expect(relayed).toBe(bytes.length)
    expect(meter.deliveredText).toBe('hello')
    expect(meter.model).toBe(MODEL)
    expect(meter.sawDone).toBe(true)

    const whole = createStreamMeter({ forwardUsage: false })
    expect(feed(whole, [bytes]).equals(bytes)).toBe(true)
    expect(stateOf(whole)).toEqual(stateOf(meter))
  })

  it('passes on an endless event without separators as it comes', () => {
    const meter = createStreamMeter({ forwardUsage: false })
    let relayed = meter.push(Buffer.from('data: '))
    const filler = Buffer.alloc(256 * 1024, 'a')
    for (let index = 0; index < 40; index += 1) relayed = meter.push(filler)
    expect(relayed.length).toBe(filler.length)
    expect(meter.end().length).toBe(0)
    expect(meter.deliveredText).toBe('')
  })
})
