import { type FakeProvider, startFakeProvider } from '@platform/fake-provider'
import {
  type LibreChatDouble,
  type LibreChatDoubleOptions,
  startLibreChatDouble,
} from '@platform/librechat-double'
import { findFreePort } from '@platform/local-infra'
import { testMongoUrl, uniqueTestName } from '@platform/local-infra/vitest'
import { SignJWT } from 'jose'
import { onTestFinished } from 'vitest'
import { LIBRECHAT_JWT_SECRET, type Platform, startPlatform, type TestUser } from './platform.js'

export const PROVIDER = 'oai'
export const PROVIDER_API_KEY = 'sk-fake-provider-key'

/** A MongoDB URL naming `dbName`, as `LIBRECHAT_MONGO_URL` does in a deployment. */
function withDatabase(url: string, dbName: string) {
  const parsed = new URL(url)
  parsed.pathname = `/${dbName}`
  return parsed.toString()
}

export interface ChatPlatform extends Platform {
  provider: FakeProvider
  /** The egress's base URL, when started with `egress`. */
  egressUrl: string | undefined
  libreChat: LibreChatDouble
  libreChatDbName: string
  /** A user owning a tenant whose first workspace allows every model of the fake provider. */
  member(
    label?: string,
  ): Promise<{ user: TestUser; tenantId: string; workspaceId: string; token: string }>
}

/**
 * The whole chat path of a deployment: the platform's services, the gateway in front, the
 * LibreChat contract double behind it (its own database, which the gateway's bridge provisions
 * into) and a fake OpenAI-compatible provider the double calls as LibreChat would.
 */
export interface ChatPlatformOptions {
  gatewayEnv?: NodeJS.ProcessEnv
  version?: '0.8.7' | '0.8.1'
  /** What LibreChat has configured beyond the provider's endpoint. */
  libreChat?: Pick<LibreChatDoubleOptions, 'mcpServers' | 'modelSpecs'>
  /** A hop between the gateway and LibreChat (e.g. one that records bodies): its URL. */
  interpose?: (libreChatUrl: string) => Promise<string>
  /** The policy `member()` gives its workspace; default: every model of the provider. */
  memberPolicy?: object
  /**
   * The whole loop (API.md §6): the double's endpoint points at the gateway's egress, as
   * `librechat.yaml` points LibreChat, and the egress forwards to the fake provider.
   */
  egress?: boolean
  /**
   * MCP servers behind the egress (needs `egress`): the gateway's `MCP_SERVERS` names their real
   * URLs, and LibreChat reaches each one only through the egress's `/mcp/<name>`, as the
   * generated `librechat.yaml` has it.
   */
  egressMcpServers?: { name: string; url: string }[]
}

export const EGRESS_SECRET = 'egress-secret-for-tests-0123456789abcdef'
/** The fake provider's models as the egress's `LLM_PROVIDERS` prices them. */
export const PRICES = {
  'fake-small': { inputPerMTok: 1, outputPerMTok: 2 },
  'fake-large': { inputPerMTok: 10, outputPerMTok: 30 },
}

export async function startChatPlatform(options: ChatPlatformOptions = {}): Promise<ChatPlatform> {
  const egressMcpServers = options.egressMcpServers ?? []
  if (egressMcpServers.length > 0 && options.egress !== true)
    throw new Error('egressMcpServers are reached through the egress: start it with egress')
  const provider = await startFakeProvider({ apiKey: PROVIDER_API_KEY })
  onTestFinished(() => provider.close())
  const libreChatDbName = uniqueTestName('librechat')
  const models = ['fake-small', 'fake-large']
  // The egress port is chosen before LibreChat starts: its config names the egress.
  const egressPort = options.egress === true ? await findFreePort() : undefined
  const egressUrl = egressPort === undefined ? undefined : `http://127.0.0.1:${egressPort}`
  const mcpServersThroughEgress = egressMcpServers.map((server) => ({
    name: server.name,
    url: `${egressUrl}/mcp/${server.name}`,
    headers: {
      Authorization: `Bearer ${EGRESS_SECRET}`,
      'X-LibreChat-User-Id': '{{LIBRECHAT_USER_ID}}',
    },
  }))
  const libreChat = await startLibreChatDouble({
    mongoUrl: testMongoUrl(),
    dbName: libreChatDbName,
    jwtSecret: LIBRECHAT_JWT_SECRET,
    version: options.version ?? '0.8.7',
    endpoints: [
      {
        name: PROVIDER,
        baseURL: egressUrl === undefined ? provider.url : `${egressUrl}/llm/${PROVIDER}/v1`,
        apiKey: egressUrl === undefined ? PROVIDER_API_KEY : EGRESS_SECRET,
        models,
        headers: { 'X-LibreChat-User-Id': '{{LIBRECHAT_USER_ID}}' },
        // As librechat/librechat.yaml has it: a new conversation's title is a model call too.
        ...(egressUrl === undefined ? {} : { titleConvo: true }),
      },
    ],
    ...options.libreChat,
    mcpServers: [...mcpServersThroughEgress, ...(options.libreChat?.mcpServers ?? [])],
  })
  onTestFinished(() => libreChat.close())
  const platform = await startPlatform({
    gatewayEnv: {
      LIBRECHAT_URL: options.interpose ? await options.interpose(libreChat.url) : libreChat.url,
      LIBRECHAT_MONGO_URL: withDatabase(testMongoUrl(), libreChatDbName),
      LIBRECHAT_JWT_SECRET,
      ...(egressUrl === undefined
        ? {}
        : {
            EGRESS_SECRET,
            LLM_PROVIDERS: JSON.stringify([
              {
                name: PROVIDER,
                baseURL: provider.url,
                apiKey: PROVIDER_API_KEY,
                models,
                prices: PRICES,
              },
            ]),
            ...(egressMcpServers.length === 0
              ? {}
              : { MCP_SERVERS: JSON.stringify(egressMcpServers) }),
          }),
      ...options.gatewayEnv,
    },
  })
  const { egress } = platform.gateway
  if (egressPort !== undefined) {
    if (egress === undefined) throw new Error('the gateway built no egress')
    await egress.listen({ host: '127.0.0.1', port: egressPort })
  }

  async function member(label = 'member') {
    const user = await platform.user(label)
    const { tenantId, workspaceId } = await platform.tenant(user, `${label} tenant`)
    await platform.setPolicy(
      user,
      workspaceId,
      options.memberPolicy ?? { models: { allow: [`${PROVIDER}:*`] } },
    )
    const token = await platform.scopedToken(user, workspaceId)
    return { user, tenantId, workspaceId, token }
  }

  return { ...platform, provider, egressUrl, libreChat, libreChatDbName, member }
}

/** What LibreChat's `uaParser` lets through to its chat and agent routes. */
export const BROWSER_USER_AGENT =
  'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36'

/** The LibreChat user the gateway's bridge made for a member of a workspace. */
export async function libreChatUserIdOf(
  platform: Platform,
  member: { user: TestUser; workspaceId: string },
): Promise<string> {
  const mapping = await platform.gateway.mongo
    .collection<{ libreChatUserId: string }>('librechat_identities')
    .findOne({ workspaceId: member.workspaceId, userId: member.user.id })
  if (mapping === null) throw new Error('the member was never bridged')
  return mapping.libreChatUserId
}

/**
 * Headers of a request straight to LibreChat as one of its users, bypassing the gateway: what
 * anyone holding a LibreChat token (HS256 `{id}` signed with its JWT secret) could send.
 */
export async function libreChatUserHeaders(libreChatUserId: string) {
  const token = await new SignJWT({ id: libreChatUserId })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setIssuedAt()
    .setExpirationTime('15m')
    .sign(new TextEncoder().encode(LIBRECHAT_JWT_SECRET))
  return { authorization: `Bearer ${token}`, 'user-agent': BROWSER_USER_AGENT }
}
