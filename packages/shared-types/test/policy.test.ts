import { describe, expect, it } from 'vitest'
import type { z } from 'zod'
import { ModelPatternSchema, WorkspacePolicySchema } from '../src/index.js'

/** A policy as a client may send it: loosely typed, so tests can break it field by field. */
interface Policy {
  models: { allow: string[] }
  mcp: { servers: string[]; tools: Record<string, string[]> }
  params: { maxOutputTokens: number | null; temperature: { max: number } | null }
  systemPrompt: string | null
  quota: Record<
    | 'monthlyTokens'
    | 'monthlyCostUsd'
    | 'memberMonthlyTokens'
    | 'rpm'
    | 'memberRpm'
    | 'tpm'
    | 'memberTpm'
    | 'maxConcurrentStreams',
    number | null
  > & { overage: string }
}

/** The policy example of API.md §4, verbatim. */
const apiExample = (): Policy => ({
  models: { allow: ['oai:gpt-4o-mini', 'claude:claude-*', 'ollama:llama3:*'] },
  mcp: { servers: ['workspace-tools', 'github'], tools: { github: ['search_*'] } },
  params: { maxOutputTokens: 4096, temperature: { max: 1.0 } },
  systemPrompt: 'You help the research team.',
  quota: {
    monthlyTokens: 2000000,
    monthlyCostUsd: null,
    memberMonthlyTokens: null,
    rpm: 600,
    memberRpm: 60,
    tpm: 200000,
    memberTpm: null,
    maxConcurrentStreams: 4,
    overage: 'block',
  },
})

/** The dotted paths of every issue in a failed parse (an empty list when it succeeded). */
function issuePaths(schema: z.ZodType, input: unknown): string[] {
  const result = schema.safeParse(input)
  return result.success ? [] : result.error.issues.map((issue) => issue.path.join('.'))
}

function withPolicy(edit: (policy: Policy) => void): Policy {
  const policy = apiExample()
  edit(policy)
  return policy
}

describe('WorkspacePolicySchema', () => {
  it('accepts the API.md §4 example unchanged', () => {
    const result = WorkspacePolicySchema.safeParse(apiExample())
    expect(result.success).toBe(true)
    expect(result.data).toEqual(apiExample())
  })

  it('fills params, systemPrompt and mcp.tools with their defaults when they are left out', () => {
    const { params: _params, systemPrompt: _systemPrompt, ...rest } = apiExample()
    const policy = { ...rest, mcp: { servers: [] } }
    expect(WorkspacePolicySchema.parse(policy)).toEqual({
      ...rest,
      mcp: { servers: [], tools: {} },
      params: { maxOutputTokens: null, temperature: null },
      systemPrompt: null,
    })
  })

  it('accepts an empty allow list (no model) and null limits everywhere', () => {
    const policy = withPolicy((p) => {
      p.models.allow = []
      p.quota.monthlyTokens = null
      p.quota.rpm = null
    })
    expect(issuePaths(WorkspacePolicySchema, policy)).toEqual([])
  })

  describe('model patterns', () => {
    it.each([
      'oai:gpt-4o-mini',
      'claude:claude-*',
      'ollama:llama3:*',
      'ollama:llama3:8b-instruct:q4',
      '*:*',
      'azure-openai:gpt-4o',
    ])('accepts %s', (pattern) => {
      expect(ModelPatternSchema.safeParse(pattern).success).toBe(true)
      expect(
        issuePaths(
          WorkspacePolicySchema,
          withPolicy((p) => p.models.allow.push(pattern)),
        ),
      ).toEqual([])
    })

    it.each([
      ['no colon', 'gpt-4o-mini'],
      ['an empty provider', ':gpt-4o'],
      ['an empty model', 'oai:'],
      ['a space in the model', 'oai:gpt 4o'],
      ['a leading space', ' oai:gpt-4o'],
      ['a trailing newline', 'oai:gpt-4o\n'],
      ['a tab in the model', 'oai:gpt\t4o'],
      ['an uppercase provider', 'OAI:gpt-4o'],
      ['a mixed-case provider', 'Claude:claude-3'],
      ['an underscore in the provider', 'my_provider:model'],
      ['the empty string', ''],
      ['a pattern over 200 characters', `oai:${'m'.repeat(197)}`],
    ])('rejects %s (%j) at models.allow.<index>', (_label, pattern) => {
      expect(ModelPatternSchema.safeParse(pattern).success).toBe(false)
      const policy = withPolicy((p) => {
        p.models.allow = ['oai:gpt-4o-mini', pattern]
      })
      expect(issuePaths(WorkspacePolicySchema, policy)).toEqual(['models.allow.1'])
    })

    it('names the expected form in its message', () => {
      const result = ModelPatternSchema.safeParse('gpt-4o')
      expect(result.error?.issues[0]?.message).toMatch(/<provider>:<model>/)
    })
  })

  describe('quota', () => {
    it.each([
      'monthlyTokens',
      'memberMonthlyTokens',
      'rpm',
      'memberRpm',
      'tpm',
      'memberTpm',
      'maxConcurrentStreams',
    ] as const)('rejects a negative and a fractional %s', (field) => {
      for (const value of [-1, 1.5]) {
        const policy = withPolicy((p) => {
          p.quota[field] = value
        })
        expect(issuePaths(WorkspacePolicySchema, policy)).toEqual([`quota.${field}`])
      }
    })

    it('accepts zero and a fractional cost budget but not a negative one', () => {
      const fine = withPolicy((p) => {
        p.quota.rpm = 0
        p.quota.monthlyCostUsd = 12.5
      })
      expect(issuePaths(WorkspacePolicySchema, fine)).toEqual([])
      const negative = withPolicy((p) => {
        p.quota.monthlyCostUsd = -0.01
      })
      expect(issuePaths(WorkspacePolicySchema, negative)).toEqual(['quota.monthlyCostUsd'])
    })

    it('rejects a limit given as a string', () => {
      const policy = withPolicy((p) => {
        p.quota.rpm = '600' as unknown as number
      })
      expect(issuePaths(WorkspacePolicySchema, policy)).toEqual(['quota.rpm'])
    })

    it.each(['allow', 'block'])('accepts overage %s', (overage) => {
      const policy = withPolicy((p) => {
        p.quota.overage = overage
      })
      expect(issuePaths(WorkspacePolicySchema, policy)).toEqual([])
    })

    it.each(['Block', 'warn', '', null])('rejects overage %j', (overage) => {
      const policy = withPolicy((p) => {
        p.quota.overage = overage as string
      })
      expect(issuePaths(WorkspacePolicySchema, policy)).toEqual(['quota.overage'])
    })

    it('rejects a quota missing a limit (null must be written out)', () => {
      const policy = withPolicy((p) => {
        delete (p.quota as Partial<Policy['quota']>).tpm
      })
      expect(issuePaths(WorkspacePolicySchema, policy)).toEqual(['quota.tpm'])
    })
  })

  describe('strictness', () => {
    it.each([
      ['the top level', (p: Policy) => ({ ...p, owner: 'me' }), ''],
      ['models', (p: Policy) => ({ ...p, models: { ...p.models, deny: ['oai:*'] } }), 'models'],
      ['mcp', (p: Policy) => ({ ...p, mcp: { ...p.mcp, prompts: [] } }), 'mcp'],
      ['params', (p: Policy) => ({ ...p, params: { ...p.params, topP: 0.9 } }), 'params'],
      [
        'params.temperature',
        (p: Policy) => ({ ...p, params: { ...p.params, temperature: { max: 1, min: 0 } } }),
        'params.temperature',
      ],
      ['quota', (p: Policy) => ({ ...p, quota: { ...p.quota, burst: 10 } }), 'quota'],
    ])('rejects an unknown field in %s', (_label, edit, path) => {
      const result = WorkspacePolicySchema.safeParse(edit(apiExample()))
      expect(result.success).toBe(false)
      expect(result.error?.issues).toEqual([
        expect.objectContaining({
          code: 'unrecognized_keys',
          path: path === '' ? [] : path.split('.'),
        }),
      ])
    })
  })

  describe('mcp', () => {
    it('rejects mcp.tools narrowing a server mcp.servers does not allow, at mcp.tools.<server>', () => {
      const policy = withPolicy((p) => {
        p.mcp.tools = { github: ['search_*'], jira: ['create_issue'] }
      })
      const result = WorkspacePolicySchema.safeParse(policy)
      expect(result.success).toBe(false)
      expect(result.error?.issues).toEqual([
        expect.objectContaining({
          code: 'custom',
          path: ['mcp', 'tools', 'jira'],
          message: expect.stringContaining('jira'),
        }),
      ])
    })

    it('names every server that is narrowed without being allowed', () => {
      const policy = withPolicy((p) => {
        p.mcp.servers = []
        p.mcp.tools = { github: ['*'], jira: ['*'] }
      })
      expect(issuePaths(WorkspacePolicySchema, policy).sort()).toEqual([
        'mcp.tools.github',
        'mcp.tools.jira',
      ])
    })

    it('accepts a listed server with no tools entry (it allows all its tools)', () => {
      const policy = withPolicy((p) => {
        p.mcp.tools = {}
      })
      expect(issuePaths(WorkspacePolicySchema, policy)).toEqual([])
    })

    it.each(['GitHub', 'git hub', '-github', ''])('rejects the server name %j', (name) => {
      const policy = withPolicy((p) => {
        p.mcp.servers = [name]
        p.mcp.tools = {}
      })
      expect(issuePaths(WorkspacePolicySchema, policy)).toEqual(['mcp.servers.0'])
    })

    it.each(['search issues', '', 'tool/name'])('rejects the tool pattern %j', (tool) => {
      const policy = withPolicy((p) => {
        p.mcp.tools = { github: [tool] }
      })
      // The empty pattern breaks both its length and its form; both issues sit at the same path.
      expect(new Set(issuePaths(WorkspacePolicySchema, policy))).toEqual(
        new Set(['mcp.tools.github.0']),
      )
    })
  })

  describe('params', () => {
    it.each([0, 2, 1.25])('accepts temperature max %d', (max) => {
      const policy = withPolicy((p) => {
        p.params.temperature = { max }
      })
      expect(issuePaths(WorkspacePolicySchema, policy)).toEqual([])
    })

    it.each([2.01, 3, -0.1])('rejects temperature max %d', (max) => {
      const policy = withPolicy((p) => {
        p.params.temperature = { max }
      })
      expect(issuePaths(WorkspacePolicySchema, policy)).toEqual(['params.temperature.max'])
    })

    it.each([0, -5, 10.5])('rejects maxOutputTokens %d', (maxOutputTokens) => {
      const policy = withPolicy((p) => {
        p.params.maxOutputTokens = maxOutputTokens
      })
      expect(issuePaths(WorkspacePolicySchema, policy)).toEqual(['params.maxOutputTokens'])
    })
  })
})
