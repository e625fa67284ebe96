import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import { parseDocument } from 'yaml'
import { z } from 'zod'
import { isBuiltInEndpoint } from '../../src/lib/allowlist.js'
import {
  type LlmProvider,
  LlmProvidersSchema,
  type McpServer,
  McpServersSchema,
} from '../../src/lib/egress-config.js'
import { LIBRECHAT_CONFIG_VERSION, libreChatYaml } from '../../src/lib/librechat-yaml.js'

const repoRoot = fileURLToPath(new URL('../../../../', import.meta.url))
const gatewayDir = fileURLToPath(new URL('../../', import.meta.url))
const run = promisify(execFile)

/**
 * The parts of LibreChat v0.8.7's config schema (`configSchema`, `endpointSchema` in
 * packages/data-provider/src/config.ts, `StreamableHTTPOptionsSchema` in …/mcp.ts) this file
 * relies on. Strict where LibreChat is not: LibreChat drops unknown keys without a word, so a
 * misspelt setting would go unnoticed there.
 */
const CustomEndpointSchema = z.strictObject({
  name: z.string().refine((name) => !isBuiltInEndpoint(name), 'a built-in endpoint name'),
  apiKey: z.string().min(1),
  baseURL: z.string().min(1),
  models: z.strictObject({
    default: z.array(z.string()).min(1),
    fetch: z.boolean().optional(),
    userIdQuery: z.boolean().optional(),
  }),
  headers: z.record(z.string(), z.string()).optional(),
  titleConvo: z.boolean().optional(),
  titleModel: z.string().optional(),
  dropParams: z.array(z.string()).optional(),
})
const StreamableHttpServerSchema = z.strictObject({
  type: z.enum(['streamable-http', 'http']),
  url: z.url({ protocol: /^https?$/ }),
  headers: z.record(z.string(), z.string()).optional(),
  requiresOAuth: z.boolean().optional(),
})
const LibreChatConfigSchema = z.strictObject({
  version: z.string(),
  endpoints: z.strictObject({ custom: z.array(CustomEndpointSchema) }),
  mcpServers: z.record(z.string(), StreamableHttpServerSchema),
  mcpSettings: z.strictObject({ allowedDomains: z.array(z.string()).min(1) }),
})

const EGRESS_URL = 'http://api-gateway:8081'
/** Exactly what the file must say: LibreChat substitutes it from its own environment. */
// biome-ignore lint/suspicious/noTemplateCurlyInString: LibreChat's own syntax, meant literally
const EGRESS_SECRET = '${EGRESS_SECRET}'

const providers: LlmProvider[] = LlmProvidersSchema.parse([
  {
    name: 'oai',
    baseURL: 'https://api.openai.com/v1',
    apiKey: 'sk-provider-key-oai-7f3a',
    models: ['gpt-4o-mini', 'gpt-4o'],
    headers: { 'OpenAI-Organization': 'org-provider-header-91c2' },
  },
  {
    name: 'claude',
    baseURL: 'https://api.anthropic.com/v1/',
    apiKey: 'sk-ant-provider-key-claude-44de',
    // Ids a YAML reader could take for a boolean, a number, a comment or a mapping.
    models: ['claude-sonnet-4-5', 'true', '1.5', '#not-a-comment', 'llama3.1:8b', '{{x}}'],
  },
])
const mcpServers: McpServer[] = McpServersSchema.parse([
  {
    name: 'github',
    url: 'https://api.githubcopilot.com/mcp/',
    headers: { Authorization: 'Bearer mcp-server-token-5b8e', 'X-Api-Key': 'mcp-server-key-0c17' },
  },
  { name: 'docs_v2', url: 'http://docs.internal:7001/mcp' },
])

function readBack(text: string) {
  const doc = parseDocument(text)
  expect(doc.errors).toEqual([])
  expect(doc.warnings).toEqual([])
  return LibreChatConfigSchema.parse(doc.toJS())
}

describe('libreChatYaml', () => {
  const text = libreChatYaml({ egressUrl: EGRESS_URL, providers, mcpServers })

  it('writes a config LibreChat v0.8.7 accepts, at its config version', () => {
    expect(readBack(text).version).toBe(LIBRECHAT_CONFIG_VERSION)
  })

  it('writes one custom endpoint per provider, all pointing at the egress', () => {
    const { endpoints } = readBack(text)
    expect(endpoints.custom).toEqual([
      {
        name: 'oai',
        apiKey: EGRESS_SECRET,
        baseURL: 'http://api-gateway:8081/llm/oai/v1',
        models: { default: ['gpt-4o-mini', 'gpt-4o'], fetch: false },
        headers: { 'X-LibreChat-User-Id': '{{LIBRECHAT_USER_ID}}' },
        titleConvo: true,
        titleModel: 'current_model',
      },
      {
        name: 'claude',
        apiKey: EGRESS_SECRET,
        baseURL: 'http://api-gateway:8081/llm/claude/v1',
        models: {
          default: ['claude-sonnet-4-5', 'true', '1.5', '#not-a-comment', 'llama3.1:8b', '{{x}}'],
          fetch: false,
        },
        headers: { 'X-LibreChat-User-Id': '{{LIBRECHAT_USER_ID}}' },
        titleConvo: true,
        titleModel: 'current_model',
      },
    ])
  })

  it('writes one MCP server per gateway server, at the egress, with the secret and the user id', () => {
    const config = readBack(text)
    expect(config.mcpServers).toEqual({
      github: {
        type: 'streamable-http',
        url: 'http://api-gateway:8081/mcp/github',
        headers: {
          Authorization: `Bearer ${EGRESS_SECRET}`,
          'X-LibreChat-User-Id': '{{LIBRECHAT_USER_ID}}',
        },
        requiresOAuth: false,
      },
      docs_v2: {
        type: 'streamable-http',
        url: 'http://api-gateway:8081/mcp/docs_v2',
        headers: {
          Authorization: `Bearer ${EGRESS_SECRET}`,
          'X-LibreChat-User-Id': '{{LIBRECHAT_USER_ID}}',
        },
        requiresOAuth: false,
      },
    })
  })

  it('allows MCP connections to the egress and nowhere else', () => {
    const config = readBack(text)
    expect(config.mcpSettings.allowedDomains).toEqual([EGRESS_URL])
    for (const server of Object.values(config.mcpServers))
      expect(config.mcpSettings.allowedDomains).toContain(new URL(server.url).origin)
  })

  it('never writes a provider key, a provider or MCP header, or an upstream address', () => {
    const secrets = [
      ...providers.flatMap((provider) => [
        provider.apiKey,
        provider.baseURL,
        ...Object.values(provider.headers),
      ]),
      ...mcpServers.flatMap((server) => [server.url, ...Object.values(server.headers)]),
    ]
    for (const secret of secrets) expect(text).not.toContain(secret)
    expect(text).not.toContain('OpenAI-Organization')
    expect(text).not.toContain('X-Api-Key')
  })

  it('says above every setting of the first endpoint and server why it is set so', () => {
    const lines = text.split('\n')
    const commentAbove = (setting: RegExp) => {
      const index = lines.findIndex((line) => setting.test(line))
      expect(index, `${setting} is written`).toBeGreaterThan(0)
      return lines[index - 1]?.trim().startsWith('#') === true
    }
    const settings = [
      /^version:/,
      /^endpoints:/,
      /^ {2}custom:/,
      /^ {4}- name: "oai"/,
      /^ {6}apiKey:/,
      /^ {6}baseURL:/,
      /^ {8}default:/,
      /^ {8}fetch:/,
      /^ {6}headers:/,
      /^ {6}titleConvo:/,
      /^ {6}titleModel:/,
      /^mcpServers:/,
      /^ {4}type:/,
      /^ {4}url:/,
      /^ {6}Authorization:/,
      /^ {6}X-LibreChat-User-Id:/,
      /^ {4}requiresOAuth:/,
      /^ {2}allowedDomains:/,
    ]
    expect(settings.filter((setting) => !commentAbove(setting))).toEqual([])
    expect(text).toMatch(/^# .*generated by the api-gateway/)
    expect(text).toContain('# Set up like oai above.\n    - name: "claude"')
  })

  it('joins an egress URL with trailing slashes or a path without doubling a slash', () => {
    const config = readBack(
      libreChatYaml({ egressUrl: 'http://gateway.internal:8081/egress//', providers, mcpServers }),
    )
    expect(config.endpoints.custom.map((endpoint) => endpoint.baseURL)).toEqual([
      'http://gateway.internal:8081/egress/llm/oai/v1',
      'http://gateway.internal:8081/egress/llm/claude/v1',
    ])
    expect(config.mcpServers.github?.url).toBe('http://gateway.internal:8081/egress/mcp/github')
    expect(config.mcpSettings.allowedDomains).toEqual(['http://gateway.internal:8081'])

    const plain = libreChatYaml({ egressUrl: `${EGRESS_URL}/`, providers, mcpServers })
    expect(plain).toBe(text)
    expect(plain).not.toMatch(/[^:]\/\//)
  })

  it('writes a valid config with no providers and no MCP servers', () => {
    const config = readBack(libreChatYaml({ egressUrl: EGRESS_URL, providers: [], mcpServers: [] }))
    expect(config.endpoints.custom).toEqual([])
    expect(config.mcpServers).toEqual({})
    expect(config.mcpSettings.allowedDomains).toEqual([EGRESS_URL])
  })
})

describe('the configuration the generator is given', () => {
  const provider = { baseURL: 'https://api.openai.com/v1', models: ['gpt-4o'] }

  it.each(['openAI', 'agents', 'custom', 'Anthropic', 'azureOpenAI'])(
    'refuses a provider named after LibreChat’s built-in endpoint %s',
    (name) => {
      expect(LlmProvidersSchema.safeParse([{ ...provider, name }]).success).toBe(false)
    },
  )

  it('refuses a provider or an MCP server listed twice', () => {
    const twice = LlmProvidersSchema.safeParse([
      { ...provider, name: 'oai' },
      { ...provider, name: 'oai' },
    ])
    expect(twice.success).toBe(false)
    expect(twice.error?.issues.map((issue) => issue.message)).toContain(
      'provider oai is listed twice',
    )
    const server = { url: 'https://mcp.example.com/mcp' }
    expect(
      McpServersSchema.safeParse([
        { ...server, name: 'docs' },
        { ...server, name: 'docs' },
      ]).success,
    ).toBe(false)
  })
})

describe('the librechat-yaml command', () => {
  const command = (env: Record<string, string>) =>
    run(process.execPath, ['--import', 'tsx', 'src/librechat-yaml-cli.ts'], {
      cwd: gatewayDir,
      env: { ...process.env, EGRESS_URL: '', LLM_PROVIDERS: '', MCP_SERVERS: '', ...env },
    })

  it('produces the committed librechat/librechat.yaml from the committed example files', async () => {
    const { stdout, stderr } = await command({
      LLM_PROVIDERS: `${repoRoot}librechat/providers.example.json`,
      MCP_SERVERS: `${repoRoot}librechat/mcp-servers.example.json`,
    })
    expect(stderr).toBe('')
    expect(stdout).toBe(readFileSync(`${repoRoot}librechat/librechat.yaml`, 'utf8'))
    const committed = readBack(stdout)
    expect(committed.endpoints.custom.map((endpoint) => endpoint.name)).toEqual(['oai', 'claude'])
    expect(Object.keys(committed.mcpServers)).toEqual(['github'])
  })

  it('names the bad settings on stderr and exits 1, writing no YAML', async () => {
    const failure = await command({
      EGRESS_URL: 'ftp://gateway',
      LLM_PROVIDERS: JSON.stringify([
        { name: 'openAI', baseURL: 'https://x/v1', apiKey: 'sk-leak-check', models: ['m'] },
      ]),
    }).then(
      () => undefined,
      (error: { code: number; stdout: string; stderr: string }) => error,
    )
    expect(failure?.code).toBe(1)
    expect(failure?.stdout).toBe('')
    expect(failure?.stderr).toContain('EGRESS_URL (must be an http(s) URL)')
    expect(failure?.stderr).toContain('LLM_PROVIDERS.0.name')
    expect(failure?.stderr).not.toContain('sk-leak-check')
  })
})
