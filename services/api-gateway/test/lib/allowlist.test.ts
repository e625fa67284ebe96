import { performance } from 'node:perf_hooks'
import { EffectivePolicySchema } from '@platform/shared-types'
import { describe, expect, it } from 'vitest'
import {
  compilePolicy,
  compileWildcard,
  type IngressPolicy,
  invalidRequest,
  isBuiltInEndpoint,
  isJsonObject,
  MAX_MODEL_ID_LENGTH,
  mcpServerNotAllowed,
  mcpToolNotAllowed,
  modelNotAllowed,
  ownField,
  showValue,
} from '../../src/lib/allowlist.js'
import { quotaWith } from '../helpers/quota.js'

/** A policy as the workspace-service serves it, parsed by the real schema. */
function effectivePolicy(overrides: Partial<IngressPolicy> = {}): IngressPolicy {
  return EffectivePolicySchema.parse({
    workspaceId: 'w1',
    workspaceName: 'Research',
    tenantId: 't1',
    timeZone: 'Europe/Berlin',
    version: 3,
    models: { allow: ['oai:gpt-4o-mini', 'claude:claude-*', 'ollama:llama3:*'] },
    mcp: { servers: ['workspace-tools', 'github'], tools: { github: ['search_*'] } },
    params: { maxOutputTokens: 4096, temperature: { max: 1 } },
    systemPrompt: null,
    quota: quotaWith({}),
    ...overrides,
  })
}

describe('compileWildcard', () => {
  it.each([
    ['gpt-4o', 'gpt-4o', true],
    ['gpt-4o', 'gpt-4o-mini', false],
    ['gpt-4o', 'xgpt-4o', false],
    ['gpt-*', 'gpt-', true],
    ['gpt-*', 'gpt-4o', true],
    ['gpt-*', 'xgpt-4o', false],
    ['*-mini', 'gpt-4o-mini', true],
    ['*-mini', 'gpt-4o-mini-2', false],
    ['llama3:*b', 'llama3:70b', true],
    ['*', '', true],
    ['**', 'anything', true],
    ['a*b*c', 'abc', true],
    ['a*b*c', 'aXbYc', true],
    ['a*b*c', 'acb', false],
    ['ab*ba', 'aba', false],
    ['ab*ba', 'abba', true],
    ['a*a*a', 'aa', false],
    ['a*a*a', 'aaa', true],
  ])('%s against %s is %s', (pattern, text, expected) => {
    expect(compileWildcard(pattern)(text)).toBe(expected)
  })

  it.each([
    ['gpt-4o.mini', 'gpt-4oXmini'],
    ['gpt(4)', 'gpt4'],
    ['gpt[4]', 'gpt4'],
    ['gpt+', 'gptt'],
    ['gpt?', 'gpt'],
    ['^gpt$', 'gpt'],
    ['a|b', 'a'],
    ['a\\d', 'a1'],
    ['.*', 'anything'],
  ])('treats the regex characters of %s literally (not matching %s)', (pattern, text) => {
    expect(compileWildcard(pattern)(text)).toBe(false)
    expect(compileWildcard(pattern)(pattern)).toBe(true)
  })

  it('answers a pathological pattern and text in linear time, where a backtracking regex would not', () => {
    // As a regex, ^(.*a){40}.*b$ against 100k "a"s backtracks for longer than anyone waits.
    const pattern = `${'*a'.repeat(40)}*b`
    const text = 'a'.repeat(100_000)
    const matches = compileWildcard(pattern)
    const started = performance.now()
    expect(matches(text)).toBe(false)
    expect(matches(`${text}b`)).toBe(true)
    expect(compileWildcard(`*${'a'.repeat(50)}b*`)(text)).toBe(false)
    expect(performance.now() - started).toBeLessThan(250)
  })
})

describe('isBuiltInEndpoint', () => {
  it.each([
    'openAI',
    'OpenAI',
    'azureOpenAI',
    'anthropic',
    'google',
    'bedrock',
    'assistants',
    'azureAssistants',
    'agents',
    'custom',
    'gptPlugins',
    'chatGPTBrowser',
  ])('knows %s', (name) => {
    expect(isBuiltInEndpoint(name)).toBe(true)
  })

  it.each(['oai', 'claude', 'ollama', 'openai-compatible'])('does not count %s', (name) => {
    expect(isBuiltInEndpoint(name)).toBe(false)
  })
})

describe('compilePolicy: models', () => {
  const matcher = compilePolicy(effectivePolicy())

  it('exposes the workspace name and the parameter caps', () => {
    expect(matcher.workspaceName).toBe('Research')
    expect(matcher.maxOutputTokens).toBe(4096)
    expect(matcher.maxTemperature).toBe(1)
    const uncapped = compilePolicy(
      effectivePolicy({ params: { maxOutputTokens: null, temperature: null } }),
    )
    expect(uncapped.maxOutputTokens).toBeNull()
    expect(uncapped.maxTemperature).toBeNull()
  })

  it.each([
    ['oai', 'gpt-4o-mini'],
    ['claude', 'claude-'],
    ['claude', 'claude-3-5-sonnet'],
    ['ollama', 'llama3:70b'],
    ['ollama', 'llama3:'],
  ])('allows %s:%s', (provider, model) => {
    expect(matcher.isModelAllowed(provider, model)).toBe(true)
  })

  it.each([
    ['oai', 'gpt-4o', 'not listed'],
    ['oai', 'gpt-4o-mini-2024', 'patterns are anchored'],
    ['oai', 'xgpt-4o-mini', 'patterns are anchored'],
    ['claude', 'gpt-4o-mini', 'a model of another provider'],
    ['oai', 'claude:claude-3', 'another provider named inside the model id'],
    ['oai', 'oai:gpt-4o-mini', 'the provider repeated inside the model id'],
    ['ollama', 'llama3', 'the colon of llama3:* is literal'],
    ['ollama:llama3', '70b', 'a colon in the provider'],
    ['OAI', 'gpt-4o-mini', 'provider names are lowercase'],
    ['Ollama', 'llama3:70b', 'LibreChat would route Ollama to ollama, the gateway refuses it'],
    [' oai', 'gpt-4o-mini', 'whitespace'],
    ['oai ', 'gpt-4o-mini', 'whitespace'],
    ['oai', 'gpt-4o-mini ', 'whitespace'],
    ['oai', ' gpt-4o-mini', 'whitespace'],
    ['oai', 'gpt-4o-mini\n', 'a newline'],
    ['\u043eai', 'gpt-4o-mini', 'a Cyrillic o'],
    ['oai', 'gpt-4\u043e-mini', 'a Cyrillic o'],
    ['oai', 'gpt\u20114o-mini', 'a non-breaking hyphen'],
    ['oai', 'gpt-4o-mini\u200b', 'a zero-width space'],
    ['oai', 'GPT-4O-MINI', 'model ids are compared exactly'],
    ['oai', 'gpt-4o-*', 'a wildcard in the model is a literal character'],
    ['oai', '*', 'a wildcard in the model is a literal character'],
    ['*', 'gpt-4o-mini', 'a wildcard in the provider is a literal character'],
    ['', 'gpt-4o-mini', 'no provider'],
    ['oai', '', 'no model'],
  ])('refuses %j:%j (%s)', (provider, model) => {
    expect(matcher.isModelAllowed(provider, model)).toBe(false)
  })

  it.each([
    [undefined, 'gpt-4o-mini'],
    [null, 'gpt-4o-mini'],
    ['oai', undefined],
    ['oai', null],
    ['oai', 42],
    ['oai', ['gpt-4o-mini']],
    ['oai', { toString: () => 'gpt-4o-mini' }],
    [['oai'], 'gpt-4o-mini'],
  ])('refuses a provider %j with a model %j that are not both strings', (provider, model) => {
    expect(matcher.isModelAllowed(provider, model)).toBe(false)
  })

  it('matches a provider pattern with a wildcard, never a built-in endpoint', () => {
    const anyProvider = compilePolicy(effectivePolicy({ models: { allow: ['*:gpt-4o', 'o*:x'] } }))
    expect(anyProvider.isModelAllowed('oai', 'gpt-4o')).toBe(true)
    expect(anyProvider.isModelAllowed('azure-eu', 'gpt-4o')).toBe(true)
    expect(anyProvider.isModelAllowed('ollama', 'x')).toBe(true)
    expect(anyProvider.isModelAllowed('claude', 'x')).toBe(false)
    for (const builtIn of ['openAI', 'openai', 'azureOpenAI', 'agents', 'custom', 'anthropic']) {
      expect(anyProvider.isModelAllowed(builtIn, 'gpt-4o')).toBe(false)
    }
  })

  it('splits a pattern on its first colon, so a provider wildcard never eats into the model', () => {
    const split = compilePolicy(effectivePolicy({ models: { allow: ['c*:x'] } }))
    expect(split.isModelAllowed('claude', 'x')).toBe(true)
    // Matched as one string, c*:x would accept "claude:evil:x".
    expect(split.isModelAllowed('claude', 'evil:x')).toBe(false)
  })

  it('allows everything of every provider with *:*, and nothing of a built-in', () => {
    const all = compilePolicy(effectivePolicy({ models: { allow: ['*:*'] } }))
    expect(all.isModelAllowed('oai', 'o3')).toBe(true)
    expect(all.isModelAllowed('openAI', 'o3')).toBe(false)
    expect(all.isModelAllowed('bedrock', 'o3')).toBe(false)
  })

  it('limits providers to the configured ones when told them', () => {
    const configured = compilePolicy(effectivePolicy({ models: { allow: ['*:*'] } }), {
      providers: ['oai', 'claude'],
    })
    expect(configured.isModelAllowed('oai', 'gpt-4o')).toBe(true)
    expect(configured.isModelAllowed('ollama', 'llama3')).toBe(false)
    expect(configured.isProviderInPlay('ollama')).toBe(false)
  })

  it('allows no model with an empty allow list', () => {
    const none = compilePolicy(effectivePolicy({ models: { allow: [] } }))
    expect(none.isModelAllowed('oai', 'gpt-4o-mini')).toBe(false)
    expect(none.isProviderInPlay('oai')).toBe(false)
  })

  it('ignores malformed patterns from an unvalidated policy instead of matching broadly', () => {
    const malformed = compilePolicy({
      workspaceName: 'Research',
      models: { allow: ['gpt-4o', ':gpt-4o', 'oai:', 42 as unknown as string, 'oai:gpt-4o'] },
      mcp: { servers: [], tools: {} },
      params: { maxOutputTokens: null, temperature: null },
    })
    expect(malformed.isModelAllowed('oai', 'gpt-4o')).toBe(true)
    expect(malformed.isModelAllowed('oai', '')).toBe(false)
    expect(malformed.isModelAllowed('gpt-4o', 'gpt-4o')).toBe(false)
  })

  it('refuses a model id longer than the limit before matching it', () => {
    const all = compilePolicy(effectivePolicy({ models: { allow: ['oai:*'] } }))
    expect(all.isModelAllowed('oai', 'm'.repeat(MAX_MODEL_ID_LENGTH))).toBe(true)
    expect(all.isModelAllowed('oai', 'm'.repeat(MAX_MODEL_ID_LENGTH + 1))).toBe(false)
  })

  it('stays fast with a pathological pattern and a huge model id', () => {
    const hostile = compilePolicy(
      effectivePolicy({ models: { allow: [`oai:${'*a'.repeat(90)}*b`] } }),
    )
    const started = performance.now()
    expect(hostile.isModelAllowed('oai', 'a'.repeat(MAX_MODEL_ID_LENGTH))).toBe(false)
    expect(hostile.isModelAllowed('oai', 'a'.repeat(5_000_000))).toBe(false)
    expect(performance.now() - started).toBeLessThan(100)
  })

  it('is frozen, so a cached matcher cannot be altered by a caller', () => {
    expect(Object.isFrozen(matcher)).toBe(true)
  })
})

describe('compilePolicy: isProviderInPlay and allowedModelsOf', () => {
  const matcher = compilePolicy(effectivePolicy())

  it('says which providers some pattern names', () => {
    expect(matcher.isProviderInPlay('oai')).toBe(true)
    expect(matcher.isProviderInPlay('claude')).toBe(true)
    expect(matcher.isProviderInPlay('mistral')).toBe(false)
    expect(matcher.isProviderInPlay('openAI')).toBe(false)
    expect(matcher.isProviderInPlay(undefined)).toBe(false)
  })

  it('keeps the allowed models in their order and drops everything else', () => {
    expect(
      matcher.allowedModelsOf('claude', [
        'claude-3-opus',
        'gpt-4o-mini',
        42,
        null,
        { id: 'claude-x' },
        'claude-3-haiku',
        'claude-3-opus',
      ]),
    ).toEqual(['claude-3-opus', 'claude-3-haiku', 'claude-3-opus'])
    expect(matcher.allowedModelsOf('openAI', ['gpt-4o-mini'])).toEqual([])
    expect(matcher.allowedModelsOf(7, ['gpt-4o-mini'])).toEqual([])
  })

  it('filters a huge list', () => {
    const models = Array.from({ length: 200_000 }, (_, index) => `claude-${index}`)
    expect(matcher.allowedModelsOf('claude', models)).toHaveLength(200_000)
    expect(matcher.allowedModelsOf('oai', models)).toEqual([])
  })
})

describe('compilePolicy: MCP servers and tools', () => {
  const matcher = compilePolicy(effectivePolicy())

  it('allows the listed servers only, by exact name', () => {
    expect(matcher.isServerAllowed('github')).toBe(true)
    expect(matcher.isServerAllowed('workspace-tools')).toBe(true)
    expect(matcher.isServerAllowed('GitHub')).toBe(false)
    expect(matcher.isServerAllowed('github ')).toBe(false)
    expect(matcher.isServerAllowed('gitlab')).toBe(false)
    expect(matcher.isServerAllowed('*')).toBe(false)
  })

  it.each(['constructor', '__proto__', 'toString', 'hasOwnProperty'])(
    'does not mistake the object member %s for a server',
    (name) => {
      expect(matcher.isServerAllowed(name)).toBe(false)
      expect(matcher.isToolAllowed(name, 'search')).toBe(false)
    },
  )

  it('allows every tool of a server without a tools entry, and the matching ones of a narrowed server', () => {
    expect(matcher.isToolAllowed('workspace-tools', 'anything_at_all')).toBe(true)
    expect(matcher.isToolAllowed('github', 'search_issues')).toBe(true)
    expect(matcher.isToolAllowed('github', 'search_')).toBe(true)
    expect(matcher.isToolAllowed('github', 'delete_repo')).toBe(false)
    expect(matcher.isToolAllowed('github', 'xsearch_issues')).toBe(false)
  })

  it('refuses tools of servers outside the list, and hostile tool names', () => {
    expect(matcher.isToolAllowed('gitlab', 'search_issues')).toBe(false)
    expect(matcher.isToolAllowed('github', 42)).toBe(false)
    expect(matcher.isToolAllowed('github', '')).toBe(false)
    expect(matcher.isToolAllowed('github', 'search_issues\u0000')).toBe(false)
    expect(matcher.isToolAllowed('github', `search_${'x'.repeat(1000)}`)).toBe(false)
    expect(matcher.isToolAllowed(undefined, 'search_issues')).toBe(false)
  })

  it('allows no tool of a server narrowed to an empty list', () => {
    const narrowed = compilePolicy(
      effectivePolicy({ mcp: { servers: ['github'], tools: { github: [] } } }),
    )
    expect(narrowed.isServerAllowed('github')).toBe(true)
    expect(narrowed.isToolAllowed('github', 'search_issues')).toBe(false)
  })

  it('keeps a "__proto__" key of a policy parsed from JSON as plain data', () => {
    const fromJson = JSON.parse(
      '{"workspaceName":"Research","models":{"allow":[]},"mcp":{"servers":["github"],"tools":{"__proto__":["x"],"github":["search_*"]}},"params":{"maxOutputTokens":null,"temperature":null}}',
    ) as IngressPolicy
    const compiled = compilePolicy(fromJson)
    expect(compiled.isToolAllowed('github', 'search_x')).toBe(true)
    expect(compiled.isToolAllowed('__proto__', 'x')).toBe(false)
    expect(({} as Record<string, unknown>).x).toBeUndefined()
  })
})

describe('refusals', () => {
  const matcher = compilePolicy(effectivePolicy())

  it('name the model and the workspace', () => {
    expect(modelNotAllowed(matcher, 'oai', 'gpt-4o')).toEqual({
      ok: false,
      code: 'GW_MODEL_NOT_ALLOWED',
      subject: 'oai:gpt-4o',
      message: 'Model oai:gpt-4o is not allowed in workspace Research',
    })
  })

  it('name the MCP server or tool and the workspace', () => {
    expect(mcpServerNotAllowed(matcher, 'gitlab')).toEqual({
      ok: false,
      code: 'GW_MCP_NOT_ALLOWED',
      subject: 'MCP server gitlab',
      message: 'MCP server gitlab is not allowed in workspace Research',
    })
    expect(mcpToolNotAllowed(matcher, 'github', 'delete_repo')).toEqual({
      ok: false,
      code: 'GW_MCP_NOT_ALLOWED',
      subject: 'MCP tool delete_repo of server github',
      message: 'MCP tool delete_repo of server github is not allowed in workspace Research',
    })
    expect(invalidRequest('model must be a string')).toEqual({
      ok: false,
      code: 'GW_VALIDATION',
      message: 'model must be a string',
    })
  })

  it('show hostile values short and printable', () => {
    const refusal = modelNotAllowed(matcher, 'oai', `gpt\u0000\n${'x'.repeat(500)}`)
    expect(refusal.message).toBe(
      `Model oai:gpt??${'x'.repeat(95)}… is not allowed in workspace Research`,
    )
    expect(modelNotAllowed(matcher, undefined, 42).message).toBe(
      'Model (none):42 is not allowed in workspace Research',
    )
  })

  it.each([
    [undefined, '(none)'],
    [null, 'null'],
    [true, 'true'],
    [1.5, '1.5'],
    [['a'], '(array)'],
    [{ a: 1 }, '(object)'],
    ['\u202egpt', '?gpt'],
  ])('showValue(%j) is %s', (value, shown) => {
    expect(showValue(value)).toBe(shown)
  })
})

describe('ownField and isJsonObject', () => {
  it('read own properties only', () => {
    const inherited = Object.create({ model: 'gpt-4o' }) as Record<string, unknown>
    expect(ownField(inherited, 'model')).toBeUndefined()
    expect(ownField({ model: 'gpt-4o' }, 'model')).toBe('gpt-4o')
    expect(ownField(JSON.parse('{"__proto__":{"model":"x"}}'), 'model')).toBeUndefined()
    expect(ownField({}, 'constructor')).toBeUndefined()
    expect(ownField('text', 'length')).toBeUndefined()
    expect(ownField(null, 'model')).toBeUndefined()
  })

  it('tell JSON objects from arrays, null and scalars', () => {
    expect(isJsonObject({})).toBe(true)
    expect(isJsonObject([])).toBe(false)
    expect(isJsonObject(null)).toBe(false)
    expect(isJsonObject('x')).toBe(false)
  })
})
