import { type FakeProvider, startFakeProvider } from '@platform/fake-provider'
import {
  type LibreChatDouble,
  type LibreChatDoubleOptions,
  startLibreChatDouble,
} from '@platform/librechat-double'
import { testMongoUrl, uniqueTestName } from '@platform/local-infra/vitest'
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
}

export async function startChatPlatform(options: ChatPlatformOptions = {}): Promise<ChatPlatform> {
  const provider = await startFakeProvider({ apiKey: PROVIDER_API_KEY })
  onTestFinished(() => provider.close())
  const libreChatDbName = uniqueTestName('librechat')
  const libreChat = await startLibreChatDouble({
    mongoUrl: testMongoUrl(),
    dbName: libreChatDbName,
    jwtSecret: LIBRECHAT_JWT_SECRET,
    version: options.version ?? '0.8.7',
    endpoints: [
      {
        name: PROVIDER,
        baseURL: provider.url,
        apiKey: PROVIDER_API_KEY,
        models: ['fake-small', 'fake-large'],
        headers: { 'X-LibreChat-User-Id': '{{LIBRECHAT_USER_ID}}' },
      },
    ],
    ...options.libreChat,
  })
  onTestFinished(() => libreChat.close())
  const platform = await startPlatform({
    gatewayEnv: {
      LIBRECHAT_URL: options.interpose ? await options.interpose(libreChat.url) : libreChat.url,
      LIBRECHAT_MONGO_URL: withDatabase(testMongoUrl(), libreChatDbName),
      LIBRECHAT_JWT_SECRET,
      ...options.gatewayEnv,
    },
  })

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

  return { ...platform, provider, libreChat, libreChatDbName, member }
}
