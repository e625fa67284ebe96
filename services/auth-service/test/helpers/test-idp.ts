import { generateKeyPairSync } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import Provider, {
  type Account,
  type AdapterFactory,
  type ClientMetadata,
  type InteractionResults,
} from 'oidc-provider'
// The memory adapter's factory gives each provider a store of its own (the default adapter
// shares one module-wide store and warns). The package has no typings for its internals.
// @ts-expect-error -- oidc-provider/lib/adapters/memory_adapter.js is untyped
import { createMemoryAdapter as untypedMemoryAdapter } from 'oidc-provider/lib/adapters/memory_adapter.js'

const createMemoryAdapter: (clockToleranceSeconds: number) => AdapterFactory = untypedMemoryAdapter

/** A person the test provider can sign in. */
export interface TestAccount {
  /** The OIDC `sub`, and the `login_hint` that picks this account. */
  sub: string
  email: string
  emailVerified: boolean
  name?: string
  /** GitHub-like `/user` fields for the plain OAuth 2.0 client. */
  githubId?: number
  /** What `/user/emails` answers; by default the one email, primary. */
  githubEmails?: { email: string; primary: boolean; verified: boolean }[]
}

export interface TestClient {
  clientId: string
  clientSecret: string
  redirectUris: string[]
  /** Token-endpoint errors come back as HTTP 200 with an `error` body, as GitHub does. */
  githubStyle?: boolean
}

export interface TestIdp {
  /** `http://127.0.0.1:<port>`, no trailing slash. */
  issuer: string
  accounts: Map<string, TestAccount>
  /** While true, every connection is dropped unanswered (the provider is unreachable). */
  outage: boolean
  /** Errors the provider hit while serving; a test expects none. */
  serverErrors: Error[]
  close(): Promise<void>
}

export interface TestIdpOptions {
  clients: TestClient[]
  accounts?: TestAccount[]
  /**
   * Email claims in the ID token (default), or only from userinfo as a spec-strict issuer
   * does with response_type=code.
   */
  emailInIdToken?: boolean
}

/**
 * A real OpenID provider (oidc-provider) on 127.0.0.1 for tests, also playing GitHub: a client
 * asking for `user:email` gets a plain OAuth 2.0 access token, good for GitHub-like `/user` and
 * `/user/emails`. Sign-in is decided by the authorization request's `login_hint`: an account's
 * `sub` signs that account in; `deny` answers `error=access_denied` (the user cancelled).
 */
export async function startTestIdp(options: TestIdpOptions): Promise<TestIdp> {
  const accounts = new Map((options.accounts ?? []).map((account) => [account.sub, account]))
  const githubStyleClients = new Set(
    options.clients
      .filter((client) => client.githubStyle === true)
      .map((client) => client.clientId),
  )
  const serverErrors: Error[] = []

  // The issuer must be known when the provider is built, so the port is taken first.
  const server: Server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  // A key of its own: oidc-provider's built-in development keys come with a warning.
  const jwk = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({
    format: 'jwk',
  })

  const clients: ClientMetadata[] = options.clients.map((client) => ({
    client_id: client.clientId,
    client_secret: client.clientSecret,
    redirect_uris: client.redirectUris,
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_post',
  }))

  const provider = new Provider(issuer, {
    adapter: createMemoryAdapter(0),
    clients,
    // PKCE for confidential clients too (by default only public clients must use it).
    pkce: { required: () => true },
    jwks: { keys: [{ ...jwk, use: 'sig', kid: 'test-key' }] },
    cookies: { keys: ['test-idp-cookie-key'] },
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
    scopes: ['openid', 'email', 'profile', 'user:email'],
    conformIdTokenClaims: options.emailInIdToken === false,
    features: { devInteractions: { enabled: false }, rpInitiatedLogout: { enabled: false } },
    ttl: {
      AccessToken: 600,
      AuthorizationCode: 60,
      IdToken: 600,
      Interaction: 600,
      Session: 600,
      Grant: 600,
    },
    clientBasedCORS: () => false,
    async findAccount(_ctx, sub): Promise<Account | undefined> {
      const account = accounts.get(sub)
      if (account === undefined) return undefined
      return {
        accountId: sub,
        claims: async () => ({
          sub,
          email: account.email,
          email_verified: account.emailVerified,
          ...(account.name === undefined ? {} : { name: account.name }),
        }),
      }
    },
    async renderError(ctx, out) {
      ctx.type = 'json'
      ctx.body = out
    },
  })

  const idp: TestIdp = {
    issuer,
    accounts,
    outage: false,
    serverErrors,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.closeAllConnections()
        server.close((error) => (error ? reject(error) : resolve()))
      }),
  }

  provider.use(async (ctx, next) => {
    if (!idp.outage) return next()
    ctx.respond = false
    ctx.req.socket.destroy()
  })

  // GitHub answers token errors with 200 and an error body; so does a githubStyle client here.
  provider.use(async (ctx, next) => {
    await next()
    const clientId = ctx.oidc?.client?.clientId
    if (ctx.path === '/token' && ctx.status === 400 && githubStyleClients.has(clientId ?? ''))
      ctx.status = 200
  })

  // The "user": GET /interaction/:uid signs in the login_hint's account, consents to what is
  // asked, and sends the browser back to the authorization endpoint.
  provider.use(async (ctx, next) => {
    if (ctx.method !== 'GET' || !/^\/interaction\/[^/]+$/.test(ctx.path)) return next()
    const details = await provider.interactionDetails(ctx.req, ctx.res)
    const { prompt, params, session } = details
    const hint = typeof params.login_hint === 'string' ? params.login_hint : ''
    let result: InteractionResults
    if (hint === 'deny') {
      result = { error: 'access_denied', error_description: 'The user cancelled' }
    } else if (prompt.name === 'login') {
      result = accounts.has(hint)
        ? { login: { accountId: hint } }
        : { error: 'login_required', error_description: `no test account ${hint}` }
    } else if (prompt.name === 'consent' && session?.accountId !== undefined) {
      const grant =
        (details.grantId === undefined ? undefined : await provider.Grant.find(details.grantId)) ??
        new provider.Grant({ accountId: session.accountId, clientId: String(params.client_id) })
      const missing = prompt.details as {
        missingOIDCScope?: string[]
        missingOIDCClaims?: string[]
        missingResourceScopes?: Record<string, string[]>
      }
      if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '))
      if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims)
      for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes ?? {}))
        grant.addResourceScope(indicator, scopes.join(' '))
      result = { consent: { grantId: await grant.save() } }
    } else {
      throw new Error(`the test provider cannot handle the ${prompt.name} prompt`)
    }
    const returnTo = await provider.interactionResult(ctx.req, ctx.res, result, {
      mergeWithLastSubmission: true,
    })
    ctx.status = 303
    ctx.redirect(returnTo)
  })

  // GitHub's REST API, as far as sign-in uses it. Errors look like GitHub's: no
  // WWW-Authenticate, a JSON message.
  provider.use(async (ctx, next) => {
    if (ctx.method !== 'GET' || (ctx.path !== '/user' && ctx.path !== '/user/emails')) return next()
    const token = /^Bearer (.+)$/i.exec(ctx.get('authorization'))?.[1]
    const accessToken = token === undefined ? undefined : await provider.AccessToken.find(token)
    const account =
      accessToken?.accountId === undefined ? undefined : accounts.get(accessToken.accountId)
    if (account === undefined) {
      ctx.status = 401
      ctx.body = { message: 'Bad credentials' }
      return
    }
    ctx.body =
      ctx.path === '/user'
        ? {
            id: account.githubId ?? 1,
            login: account.sub,
            name: account.name ?? null,
            email: null,
          }
        : (
            account.githubEmails ?? [
              { email: account.email, primary: true, verified: account.emailVerified },
            ]
          ).map((entry) => ({ ...entry, visibility: null }))
  })

  provider.on('server_error', (_ctx, error) => serverErrors.push(error))
  server.on('request', provider.callback())
  return idp
}

/** Just enough of a browser's cookie store to carry the provider's session cookies. */
export class CookieJar {
  readonly #cookies = new Map<string, string>()

  store(response: Response) {
    for (const line of response.headers.getSetCookie()) {
      const [pair = '', ...attributes] = line.split(';')
      const separator = pair.indexOf('=')
      const name = pair.slice(0, separator).trim()
      const value = pair.slice(separator + 1).trim()
      const expired = attributes.some((attribute) => {
        const [key = '', setting = ''] = attribute.trim().split('=')
        return (
          (key.toLowerCase() === 'expires' && Date.parse(setting) <= Date.now()) ||
          (key.toLowerCase() === 'max-age' && Number(setting) <= 0)
        )
      })
      if (expired || value === '') this.#cookies.delete(name)
      else this.#cookies.set(name, value)
    }
  }

  header(): string {
    return [...this.#cookies].map(([name, value]) => `${name}=${value}`).join('; ')
  }
}

/**
 * Plays the browser at the provider: follows redirects from the authorization URL (carrying
 * cookies) until the provider sends it to `redirectUri`, and returns that URL with its
 * `code`/`state` or `error`. A fresh jar means a fresh provider session, so `login_hint` counts.
 */
export async function driveAuthorization(
  authorizationUrl: URL,
  redirectUri: string,
  jar = new CookieJar(),
): Promise<URL> {
  let url = authorizationUrl.href
  for (let hop = 0; hop < 10; hop++) {
    if (url.startsWith(`${redirectUri}?`)) return new URL(url)
    const response = await fetch(url, { redirect: 'manual', headers: { cookie: jar.header() } })
    jar.store(response)
    const location = response.headers.get('location')
    if (response.status < 300 || response.status >= 400 || location === null)
      throw new Error(`sign-in stuck at ${url}: ${response.status} ${await response.text()}`)
    await response.body?.cancel()
    url = new URL(location, url).href
  }
  throw new Error('the provider redirected too often')
}
