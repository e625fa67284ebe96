import type { FastifyBaseLogger } from 'fastify'
import * as oidc from 'openid-client'
import { z } from 'zod'
import type { AuthConfig } from '../config.js'
import { DependencyUnavailable, OAuthFailed } from '../errors.js'

/** What a provider says about the person signing in, the same shape for every provider. */
export interface OAuthProfile {
  provider: string
  /** The provider's stable id for the person: OIDC `sub`, or GitHub's numeric user id. */
  subject: string
  email: string | null
  /** True only when the provider says it checked that the person owns `email`. */
  emailVerified: boolean
  name: string | null
}

/** Where GitHub is. Only tests change it (`BuildOptions.oauthEndpointOverrides`). */
export interface GitHubEndpoints {
  /** What the server sends back as `iss`, if anything; openid-client checks it when present. */
  issuer: string
  authorizationEndpoint: string
  tokenEndpoint: string
  apiBaseUrl: string
}

/** Test-only replacements for providers' fixed endpoints; no environment variable reaches them. */
export interface OAuthEndpointOverrides {
  github?: GitHubEndpoints
}

/** The secrets that tie a provider's answer to the sign-in attempt that asked for it. */
export interface FlowSecrets {
  state: string
  codeVerifier: string
  /** OIDC only: binds the ID token to this attempt. Plain OAuth 2.0 has no ID token. */
  nonce: string | null
}

export interface OAuthProvider {
  readonly name: string
  /** How messages name it ("Google"). */
  readonly displayName: string
  /** The redirect URI registered with the provider (on the gateway's public URL). */
  readonly redirectUri: string
  /** Fresh secrets for a new attempt. */
  newFlow(): FlowSecrets
  /** Where to send the browser. */
  authorizationUrl(flow: FlowSecrets): Promise<URL>
  /**
   * Trades the code in the callback's query string for tokens (checking state, PKCE and, for
   * OIDC, the nonce) and reads the person's profile. Throws coded errors: AUTH_OAUTH_FAILED for
   * an answer that does not hold up, AUTH_DEPENDENCY_UNAVAILABLE when the provider cannot be
   * reached or answers nonsense.
   */
  complete(callbackQuery: string, flow: FlowSecrets): Promise<OAuthProfile>
}

export interface OAuthProvidersOptions {
  config: Pick<
    AuthConfig,
    | 'GOOGLE_CLIENT_ID'
    | 'GOOGLE_CLIENT_SECRET'
    | 'GITHUB_CLIENT_ID'
    | 'GITHUB_CLIENT_SECRET'
    | 'OIDC_PROVIDERS'
  >
  /** The gateway's public URL without a trailing slash; redirect URIs live under it. */
  publicUrl: string
  /** Lets providers use `http://` (tests against a local server only). */
  allowInsecureRequests: boolean
  endpointOverrides?: OAuthEndpointOverrides | undefined
  log: FastifyBaseLogger
  /** Per HTTP request to a provider. */
  timeoutSeconds?: number
}

const GOOGLE_ISSUER = 'https://accounts.google.com'
const GITHUB: GitHubEndpoints = {
  issuer: 'https://github.com/login/oauth',
  authorizationEndpoint: 'https://github.com/login/oauth/authorize',
  tokenEndpoint: 'https://github.com/login/oauth/access_token',
  apiBaseUrl: 'https://api.github.com',
}
const GITHUB_API_HEADERS = {
  accept: 'application/vnd.github+json',
  'x-github-api-version': '2022-11-28',
}

/**
 * Token-endpoint errors that mean "this code (or its PKCE verifier) is no good": the code came
 * from the callback, so they are the caller's failure, never ours. GitHub says
 * `bad_verification_code` where everyone else says `invalid_grant`.
 */
const REJECTED_GRANT_ERRORS = new Set(['invalid_grant', 'invalid_request', 'bad_verification_code'])

/** openid-client codes for a provider that did not answer, or not in a way OAuth understands. */
const UNREACHABLE_CODES = new Set([
  'OAUTH_TIMEOUT',
  'OAUTH_RESPONSE_IS_NOT_JSON',
  'OAUTH_RESPONSE_IS_NOT_CONFORM',
  'OAUTH_HTTP_REQUEST_FORBIDDEN',
])

/** undici's "fetch failed" (refused, reset, DNS); openid-client's own TypeErrors carry a code. */
const isNetworkFailure = (error: unknown) =>
  error instanceof TypeError && (error as { code?: unknown }).code === undefined

/**
 * Builds the providers this deployment has configured: Google and GitHub when their client
 * credentials are set, and every `OIDC_PROVIDERS` entry. A provider whose endpoints are not
 * https is left out (and logged) unless insecure requests are allowed, so it answers like an
 * unconfigured one instead of failing at every sign-in.
 */
export function createOAuthProviders(options: OAuthProvidersOptions): Map<string, OAuthProvider> {
  const { config, log } = options
  const timeout = options.timeoutSeconds ?? 10
  const providers = new Map<string, OAuthProvider>()
  const redirectUriOf = (name: string) => `${options.publicUrl}/auth/v1/oauth/${name}/callback`

  function add(name: string, urls: string[], build: () => OAuthProvider) {
    const insecure = urls.filter((url) => new URL(url).protocol !== 'https:')
    if (insecure.length > 0 && !options.allowInsecureRequests) {
      log.error({ provider: name, urls: insecure }, 'OAuth provider is not https; it is disabled')
      return
    }
    providers.set(name, build())
  }

  /** Applies the settings every provider's Configuration shares. */
  function prepare(configuration: oidc.Configuration) {
    configuration.timeout = timeout
    if (options.allowInsecureRequests) oidc.allowInsecureRequests(configuration)
    return configuration
  }

  if (config.GOOGLE_CLIENT_ID !== undefined && config.GOOGLE_CLIENT_SECRET !== undefined) {
    const spec = {
      name: 'google',
      displayName: 'Google',
      issuer: GOOGLE_ISSUER,
      clientId: config.GOOGLE_CLIENT_ID,
      clientSecret: config.GOOGLE_CLIENT_SECRET,
      scopes: ['openid', 'email', 'profile'],
    }
    add(spec.name, [spec.issuer], () => oidcProvider(spec))
  }
  if (config.GITHUB_CLIENT_ID !== undefined && config.GITHUB_CLIENT_SECRET !== undefined) {
    const endpoints = options.endpointOverrides?.github ?? GITHUB
    const { GITHUB_CLIENT_ID: clientId, GITHUB_CLIENT_SECRET: clientSecret } = config
    add(
      'github',
      [endpoints.authorizationEndpoint, endpoints.tokenEndpoint, endpoints.apiBaseUrl],
      () => gitHubProvider(endpoints, clientId, clientSecret),
    )
  }
  for (const entry of config.OIDC_PROVIDERS)
    add(entry.name, [entry.issuer], () =>
      oidcProvider({ ...entry, displayName: entry.displayName ?? entry.name }),
    )
  return providers

  function unavailable(displayName: string, error: unknown, what: string) {
    log.warn({ err: error, provider: displayName }, what)
    return new DependencyUnavailable(displayName, { cause: error })
  }

  /** Turns what the code exchange threw into the caller's failure or the provider's. */
  function exchangeFailure(displayName: string, error: unknown): Error {
    if (error instanceof oidc.AuthorizationResponseError)
      return new OAuthFailed(`${displayName} refused the sign-in (${error.error})`, {
        cause: error,
      })
    if (error instanceof oidc.ResponseBodyError) {
      if (error.status >= 500) return unavailable(displayName, error, 'OAuth token request failed')
      if (REJECTED_GRANT_ERRORS.has(error.error))
        return new OAuthFailed(
          'The sign-in code is not valid, has expired or was already used; start again',
          { cause: error },
        )
      // invalid_client and friends: our registration with the provider is wrong, a fault for
      // operators to see (the error handler logs it and answers 500 without details).
      return error
    }
    // A 401 challenge from the token endpoint refuses our client credentials: the same fault.
    if (error instanceof oidc.WWWAuthenticateChallengeError) return error
    if (error instanceof oidc.ClientError) {
      if (error.code !== undefined && UNREACHABLE_CODES.has(error.code))
        return unavailable(displayName, error, 'OAuth token request failed')
      // A response, iss, nonce or ID token check failed. These guard against forged or mixed-up
      // callbacks, so the answer is "this sign-in did not verify", not an outage.
      log.info({ err: error, provider: displayName }, 'OAuth response failed verification')
      return new OAuthFailed(`The answer from ${displayName} could not be verified; start again`, {
        cause: error,
      })
    }
    if (isNetworkFailure(error))
      return unavailable(displayName, error, 'OAuth provider did not answer')
    return error instanceof Error ? error : new Error(String(error))
  }

  async function exchange(
    configuration: oidc.Configuration,
    redirectUri: string,
    displayName: string,
    callbackQuery: string,
    flow: FlowSecrets,
  ) {
    // The URL the provider redirected to, rebuilt from configuration rather than from the Host
    // header, so it always equals the redirect_uri the provider saw in the authorization request.
    const currentUrl = new URL(redirectUri)
    currentUrl.search = callbackQuery
    try {
      return await oidc.authorizationCodeGrant(configuration, currentUrl, {
        pkceCodeVerifier: flow.codeVerifier,
        expectedState: flow.state,
        ...(flow.nonce === null ? {} : { expectedNonce: flow.nonce }),
      })
    } catch (error) {
      throw exchangeFailure(displayName, error)
    }
  }

  /**
   * The Configuration of an OIDC issuer, discovered on first use and kept. A failed discovery
   * is not kept, so the next sign-in tries again; callers at the same time share one attempt.
   */
  function lazyDiscovery(load: () => Promise<oidc.Configuration>) {
    let pending: Promise<oidc.Configuration> | null = null
    return () => {
      pending ??= load().catch((error: unknown) => {
        pending = null
        throw error
      })
      return pending
    }
  }

  function oidcProvider(spec: {
    name: string
    displayName: string
    issuer: string
    clientId: string
    clientSecret: string
    scopes: string[]
  }): OAuthProvider {
    const redirectUri = redirectUriOf(spec.name)
    const discover = lazyDiscovery(async () => {
      const discovered = await oidc.discovery(
        new URL(spec.issuer),
        spec.clientId,
        spec.clientSecret,
        undefined,
        {
          execute: options.allowInsecureRequests ? [oidc.allowInsecureRequests] : [],
          timeout,
        },
      )
      const metadata = discovered.serverMetadata()
      // An issuer that lists no methods supports only client_secret_basic (OIDC Discovery §3),
      // while openid-client defaults to client_secret_post.
      const auth = metadata.token_endpoint_auth_methods_supported?.includes('client_secret_post')
        ? oidc.ClientSecretPost(spec.clientSecret)
        : oidc.ClientSecretBasic(spec.clientSecret)
      return prepare(new oidc.Configuration(metadata, spec.clientId, spec.clientSecret, auth))
    })
    const configuration = async () => {
      try {
        return await discover()
      } catch (error) {
        throw unavailable(spec.displayName, error, 'OIDC discovery failed')
      }
    }

    async function userInfo(
      current: oidc.Configuration,
      accessToken: string,
      subject: string,
    ): Promise<Record<string, unknown>> {
      try {
        return await oidc.fetchUserInfo(current, accessToken, subject)
      } catch (error) {
        throw unavailable(spec.displayName, error, 'OIDC userinfo request failed')
      }
    }

    const nonceOf = (flow: FlowSecrets) => {
      if (flow.nonce === null) throw new Error(`an OIDC flow of ${spec.name} has no nonce`)
      return flow.nonce
    }

    return {
      name: spec.name,
      displayName: spec.displayName,
      redirectUri,
      newFlow: () => ({
        state: oidc.randomState(),
        codeVerifier: oidc.randomPKCECodeVerifier(),
        nonce: oidc.randomNonce(),
      }),
      async authorizationUrl(flow) {
        return oidc.buildAuthorizationUrl(await configuration(), {
          redirect_uri: redirectUri,
          scope: spec.scopes.join(' '),
          state: flow.state,
          nonce: nonceOf(flow),
          code_challenge: await oidc.calculatePKCECodeChallenge(flow.codeVerifier),
          code_challenge_method: 'S256',
        })
      },
      async complete(callbackQuery, flow) {
        nonceOf(flow)
        const current = await configuration()
        const tokens = await exchange(current, redirectUri, spec.displayName, callbackQuery, flow)
        // An expected nonce makes openid-client insist on an ID token, so there are claims.
        const claims = tokens.claims()
        if (claims === undefined) throw new Error('token response without an ID token')
        // Issuers that keep the ID token small put email claims only behind userinfo; then both
        // come from there, so `email_verified` always describes the `email` it came with.
        const source: Record<string, unknown> =
          typeof claims.email === 'string' ||
          current.serverMetadata().userinfo_endpoint === undefined
            ? claims
            : await userInfo(current, tokens.access_token, claims.sub)
        return {
          provider: spec.name,
          subject: claims.sub,
          email: typeof source.email === 'string' ? source.email : null,
          emailVerified: source.email_verified === true,
          name: stringOrNull(claims.name) ?? stringOrNull(source.name),
        }
      },
    }
  }

  function gitHubProvider(
    endpoints: GitHubEndpoints,
    clientId: string,
    clientSecret: string,
  ): OAuthProvider {
    const redirectUri = redirectUriOf('github')
    const displayName = 'GitHub'
    const apiBase = endpoints.apiBaseUrl.replace(/\/+$/, '')
    // GitHub has no discovery document; the default client authentication (client_secret_post)
    // is what GitHub expects.
    const configuration = prepare(
      new oidc.Configuration(
        {
          issuer: endpoints.issuer,
          authorization_endpoint: endpoints.authorizationEndpoint,
          token_endpoint: endpoints.tokenEndpoint,
        },
        clientId,
        clientSecret,
      ),
    )
    configuration[oidc.customFetch] = gitHubTokenErrorsAsHttpErrors

    async function api<T extends z.ZodType>(
      accessToken: string,
      path: string,
      schema: T,
    ): Promise<z.infer<T>> {
      let response: Response
      try {
        response = await oidc.fetchProtectedResource(
          configuration,
          accessToken,
          new URL(`${apiBase}${path}`),
          'GET',
          undefined,
          new Headers(GITHUB_API_HEADERS),
        )
      } catch (error) {
        throw unavailable(displayName, error, `GitHub ${path} request failed`)
      }
      if (!response.ok) {
        await response.body?.cancel()
        throw unavailable(
          displayName,
          new Error(`GitHub ${path} answered ${response.status}`),
          'GitHub API request failed',
        )
      }
      const parsed = schema.safeParse(await response.json().catch(() => undefined))
      if (!parsed.success)
        throw unavailable(displayName, parsed.error, `GitHub ${path} answered an unexpected body`)
      return parsed.data
    }

    return {
      name: 'github',
      displayName,
      redirectUri,
      // Plain OAuth 2.0: no ID token, so no nonce; state and PKCE bind the answer instead.
      newFlow: () => ({
        state: oidc.randomState(),
        codeVerifier: oidc.randomPKCECodeVerifier(),
        nonce: null,
      }),
      async authorizationUrl(flow) {
        return oidc.buildAuthorizationUrl(configuration, {
          redirect_uri: redirectUri,
          scope: 'user:email',
          state: flow.state,
          code_challenge: await oidc.calculatePKCECodeChallenge(flow.codeVerifier),
          code_challenge_method: 'S256',
        })
      },
      async complete(callbackQuery, flow) {
        const tokens = await exchange(configuration, redirectUri, displayName, callbackQuery, {
          ...flow,
          nonce: null,
        })
        const [user, emails] = await Promise.all([
          api(tokens.access_token, '/user', GitHubUserSchema),
          api(tokens.access_token, '/user/emails', GitHubEmailsSchema),
        ])
        // `/user`'s email is only the public one, which GitHub does not vouch for.
        const verified =
          emails.find((entry) => entry.primary && entry.verified) ??
          emails.find((entry) => entry.verified)
        const fallback = emails.find((entry) => entry.primary) ?? emails[0]
        return {
          provider: 'github',
          subject: String(user.id),
          email: verified?.email ?? fallback?.email ?? null,
          emailVerified: verified !== undefined,
          name: stringOrNull(user.name) ?? user.login,
        }
      },
    }
  }
}

const stringOrNull = (value: unknown) =>
  typeof value === 'string' && value.trim() !== '' ? value : null

const GitHubUserSchema = z.object({
  id: z.number().int(),
  login: z.string(),
  name: z.string().nullish(),
})

const GitHubEmailsSchema = z.array(
  z.object({ email: z.string(), primary: z.boolean(), verified: z.boolean() }),
)

/**
 * GitHub answers token-endpoint errors (a used or expired code, say) with HTTP 200 and an
 * `error` body. Given back as a 400, openid-client reports them as the OAuth errors they are
 * rather than as a malformed token response.
 */
async function gitHubTokenErrorsAsHttpErrors(
  url: string,
  options: oidc.CustomFetchOptions,
): Promise<Response> {
  const response = await fetch(url, options)
  if (options.method !== 'POST' || response.status !== 200) return response
  if (!response.headers.get('content-type')?.includes('json')) return response
  const body: unknown = await response
    .clone()
    .json()
    .catch(() => null)
  if (typeof body !== 'object' || body === null || !('error' in body)) return response
  return new Response(JSON.stringify(body), {
    status: 400,
    headers: { 'content-type': 'application/json' },
  })
}
