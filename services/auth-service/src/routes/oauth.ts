import {
  type ClientContext,
  clientOf,
  errorResponses,
  isDuplicateKeyError,
} from '@platform/service-kit'
import { LimitErrorResponseSchema, TokenPairResponseSchema } from '@platform/shared-types'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod'
import { z } from 'zod'
import type { AuthConfig } from '../config.js'
import {
  DependencyUnavailable,
  InvalidEmail,
  loginRateLimited,
  MfaInvalid,
  OAuthEmailUnverified,
  OAuthFailed,
  OAuthProviderUnknown,
  OAuthStateInvalid,
} from '../errors.js'
import { constantTimeEqual, hashToken, randomToken } from '../lib/crypto.js'
import { InvalidEmailError, normalizeEmail } from '../lib/email.js'
import {
  createOAuthProviders,
  type OAuthEndpointOverrides,
  type OAuthProfile,
  type OAuthProvider,
} from '../lib/oauth-providers.js'
import { isRedisUnavailable, withSessionStore } from '../lib/redis-guard.js'
import { writeRefreshCookie } from '../lib/refresh-cookie.js'
import { consumeSecondFactor } from '../lib/second-factor.js'
import { createSignIn } from '../lib/sign-in.js'
import { NO_MFA, type UserDocument } from '../lib/users.js'

/** How long a started sign-in may take at the provider. */
const FLOW_TTL_SECONDS = 10 * 60
/** How long a provider sign-in waits for its second factor. */
const MFA_TICKET_TTL_SECONDS = 5 * 60

const flowKey = (state: string) => `auth:oauth-flow:${state}`
/**
 * Ties a sign-in to the browser that started it. Without it, an attacker could start a sign-in
 * as themselves, stop before the callback and lure a victim's browser to that callback URL,
 * which would sign the victim in to the attacker's account (login CSRF).
 */
const FLOW_COOKIE = 'platform_oauth_flow'
const mfaTicketKey = (ticket: string) => `auth:oauth-mfa:${ticket}`

/** What `start` keeps for `callback`, under the attempt's `state`. */
const StoredFlowSchema = z.object({
  provider: z.string(),
  /** Hash of the value in the starting browser's flow cookie: only that browser may finish. */
  browserBinding: z.string(),
  codeVerifier: z.string(),
  nonce: z.string().nullable(),
  returnTo: z.string(),
})
type StoredFlow = z.infer<typeof StoredFlowSchema>

/** A provider sign-in of an MFA user, waiting for `POST /mfa`. */
const PendingMfaSchema = z.object({
  userId: z.string(),
  provider: z.string(),
  returnTo: z.string(),
  ip: z.string(),
  userAgent: z.string().nullable(),
})
type PendingMfa = z.infer<typeof PendingMfaSchema>

// States and tickets we issue are base64url; anything else cannot be one of ours, and never
// becomes part of a Redis key.
const OPAQUE_TOKEN = /^[A-Za-z0-9_-]{16,128}$/
const PROVIDER_NAME = /^[a-z][a-z0-9-]{0,31}$/

const ProviderParamsSchema = z.object({ provider: z.string() })
const StartQuerySchema = z.object({ returnTo: z.string().optional() })
// Open on purpose: providers add parameters of their own (Google: scope, authuser, prompt).
const CallbackQuerySchema = z.object({
  state: z.string().optional(),
  error: z.string().optional(),
})
const MfaBodySchema = z.strictObject({
  ticket: z.string().regex(/^[A-Za-z0-9_-]{1,128}$/),
  code: z.string().trim().min(6).max(32),
})
/** Login's answer, plus where the browser was headed when it started. */
const MfaResponseSchema = TokenPairResponseSchema.extend({ returnTo: z.string() })

export interface OAuthRoutesOptions {
  config: AuthConfig
  /** `Secure` on the refresh cookie: the public URL is https. */
  secureCookie: boolean
  /** Test-only: lets providers be `http://`. */
  allowInsecureIssuers: boolean
  /** Test-only: GitHub's endpoints on a local server. */
  endpointOverrides?: OAuthEndpointOverrides | undefined
}

/**
 * Sign-in with Google, GitHub and configured OIDC issuers (API.md §3): `start` sends the
 * browser to the provider, `callback` takes it back, links the provider's identity to an
 * account and opens a session, or hands over to `POST /mfa` when the account has MFA on.
 */
export const oauthRoutes: FastifyPluginAsyncZod<OAuthRoutesOptions> = async (app, options) => {
  const { identity } = app
  const { models, sessions, audit, totp, loginLimiter, issuer } = identity
  const flowCookieOptions = {
    path: '/auth/v1/oauth',
    httpOnly: true,
    sameSite: 'lax' as const,
    secure: options.secureCookie,
  }
  const signIn = createSignIn(identity, app.log)
  const providers = createOAuthProviders({
    config: options.config,
    publicUrl: issuer,
    allowInsecureRequests: options.allowInsecureIssuers,
    endpointOverrides: options.endpointOverrides,
    log: app.log,
  })
  const publicOrigin = new URL(issuer).origin

  function providerNamed(name: string): OAuthProvider {
    const provider = providers.get(name)
    if (provider === undefined)
      throw new OAuthProviderUnknown(PROVIDER_NAME.test(name) ? name : 'this provider')
    return provider
  }

  /** Reads and deletes in one step, so two requests can never both use the same key. */
  async function take<T extends z.ZodType>(key: string, schema: T): Promise<z.infer<T> | null> {
    const raw = await withSessionStore(() => app.redis.getdel(key))
    if (raw === null) return null
    let value: unknown
    try {
      value = JSON.parse(raw)
    } catch {
      return null
    }
    const parsed = schema.safeParse(value)
    return parsed.success ? parsed.data : null
  }

  /**
   * A path on our own site, or '/': one leading '/' and nothing a browser could read as
   * another host ('//evil', '/\evil') or that could break the Location header.
   */
  function safeReturnTo(value: string | undefined): string {
    if (value === undefined || value.length > 1024) return '/'
    if (!/^\/(?![/\\])/.test(value) || /[\\\p{Cc}]/u.test(value)) return '/'
    try {
      return new URL(`${issuer}${value}`).origin === publicOrigin ? value : '/'
    } catch {
      return '/'
    }
  }

  const onPublicSite = (path: string) => new URL(`${issuer}${path}`).href

  const redirect = (reply: FastifyReply, location: string) =>
    // The flow's secrets travel in these URLs; no cache may keep them.
    reply.header('cache-control', 'no-store').redirect(location, 302)

  async function recordNewIdentity(
    user: UserDocument,
    profile: OAuthProfile,
    email: string,
  ): Promise<UserDocument> {
    try {
      await models.identities.create({
        provider: profile.provider,
        subject: profile.subject,
        userId: user._id,
        email,
        linkedAt: new Date(),
      })
      return user
    } catch (error) {
      if (!isDuplicateKeyError(error)) throw error
      // A callback of the same person at the same moment linked it first; use its result.
      const linked = await models.identities
        .findOne({ provider: profile.provider, subject: profile.subject })
        .lean()
      const owner = linked === null ? null : await models.users.findById(linked.userId).lean()
      if (owner === null) throw error
      return owner
    }
  }

  async function createUser(
    profile: OAuthProfile,
    email: string,
    client: ClientContext,
  ): Promise<UserDocument> {
    // The same rule as registration: no control characters or bidi overrides in a name other
    // members see, so a provider's display name cannot render as someone else's.
    const cleaned = profile.name?.replace(/[\p{Cc}\u202A-\u202E\u2066-\u2069]/gu, '').trim()
    const name = (cleaned || email.slice(0, email.indexOf('@'))).slice(0, 100)
    try {
      const user = (
        await models.users.create({ email, name, passwordHash: null, emailVerified: true })
      ).toObject()
      await audit.record({
        action: 'auth.user.registered',
        actor: { type: 'user', id: user._id },
        target: { type: 'user', id: user._id },
        after: { method: `oauth:${profile.provider}` },
        ...client,
      })
      return user
    } catch (error) {
      if (!isDuplicateKeyError(error)) throw error
      // Created by a concurrent callback for the same address a moment ago.
      // Created a moment ago: by a concurrent callback, or by a registration that raced this
      // one, which gets the same claim as any unproven account.
      const existing = await models.users.findOne({ email }).lean()
      if (existing === null) throw error
      if (existing.emailVerified || existing.mfa.enabled) return existing
      return claimUnverifiedAccount(existing, profile, client)
    }
  }

  /**
   * Pre-account-hijacking defence: someone may have registered this address with a password
   * before its owner ever signed in, and could still hold a session or the password. The
   * provider has now proven who owns the address, so whatever that unproven registration set
   * up (password, sessions) goes before the owner's identity is linked to the account. An account
   * with MFA on is never claimed this way: a provider account alone must not get past a second
   * factor, so the sign-in goes through the MFA step instead.
   */
  async function claimUnverifiedAccount(
    user: UserDocument,
    profile: OAuthProfile,
    client: ClientContext,
  ): Promise<UserDocument> {
    const claimed = await models.users
      .findOneAndUpdate(
        { _id: user._id, emailVerified: false },
        { passwordHash: null, emailVerified: true, mfa: NO_MFA },
        { returnDocument: 'after', lean: true },
      )
      .exec()
    if (claimed === null) {
      // A concurrent callback claimed it; it also ends the sessions.
      const current = await models.users.findById(user._id).lean()
      if (current === null) throw new OAuthStateInvalid()
      return current
    }
    let revoked: string[]
    try {
      revoked = await sessions.revokeAllOfUser(user._id)
    } catch (error) {
      // The claim is not complete while the old sessions live. Marking the address unproven
      // again makes the next attempt repeat the whole claim, revocation included.
      await models.users
        .updateOne({ _id: user._id }, { emailVerified: false })
        .catch((undo: unknown) =>
          app.log.error({ err: undo, userId: user._id }, 'could not undo a partial account claim'),
        )
      throw isRedisUnavailable(error)
        ? new DependencyUnavailable('The session store', { cause: error })
        : error
    }
    await audit.record({
      action: 'auth.account.linked',
      actor: { type: 'user', id: user._id },
      target: { type: 'user', id: user._id },
      before: {
        emailVerified: false,
        hasPassword: user.passwordHash !== null,
        mfaEnabled: user.mfa.enabled,
      },
      after: {
        emailVerified: true,
        hasPassword: false,
        mfaEnabled: false,
        provider: profile.provider,
        subject: profile.subject,
        revokedSessions: revoked.length,
      },
      ...client,
    })
    return claimed
  }

  /** The account a provider identity signs in to, linking or creating it on first use. */
  async function accountFor(profile: OAuthProfile, client: ClientContext): Promise<UserDocument> {
    const known = await models.identities
      .findOne({ provider: profile.provider, subject: profile.subject })
      .lean()
    if (known !== null) {
      const user = await models.users.findById(known.userId).lean()
      if (user !== null) return user
      // Its account is gone; the identity is linked afresh below, as if new.
      await models.identities.deleteOne({ _id: known._id })
    }
    // Only an address the provider vouches for may join or create an account: anyone can put
    // any address on an account at many providers.
    if (profile.email === null || !profile.emailVerified) throw new OAuthEmailUnverified()
    let email: string
    try {
      email = normalizeEmail(profile.email)
    } catch (error) {
      // Verified, so "unverified" would be wrong; the same address is refused at registration.
      if (error instanceof InvalidEmailError)
        throw new InvalidEmail(`The provider's email address is not accepted: ${error.message}`)
      throw error
    }

    const existing = await models.users.findOne({ email }).lean()
    if (existing === null)
      return recordNewIdentity(await createUser(profile, email, client), profile, email)
    if (!existing.emailVerified && !existing.mfa.enabled) {
      const claimed = await claimUnverifiedAccount(existing, profile, client)
      return recordNewIdentity(claimed, profile, email)
    }
    const user = await recordNewIdentity(existing, profile, email)
    await audit.record({
      action: 'auth.account.linked',
      actor: { type: 'user', id: user._id },
      target: { type: 'user', id: user._id },
      after: { provider: profile.provider, subject: profile.subject },
      ...client,
    })
    return user
  }

  /** Opens the session, sets the refresh cookie and records the sign-in. */
  async function completeSignIn(
    request: FastifyRequest,
    reply: FastifyReply,
    user: UserDocument,
    provider: string,
    factor: string | null,
    details: Record<string, unknown> = {},
  ) {
    const client = clientOf(request)
    const method = `oauth:${provider}`
    const scope = await signIn.chooseScope(user)
    const { pair, session } = await signIn.openSession(user, scope, method, client, {
      mfa: factor !== null,
      ...(factor === null ? {} : { factor }),
      ...details,
    })
    writeRefreshCookie(reply, pair.refreshToken, session.expiresAt, options.secureCookie)
    return pair
  }

  /** Records a failed sign-in; losing the record must not hide the failure's own answer. */
  async function recordFailure(
    request: FastifyRequest,
    provider: string,
    userId: string | null,
    error: unknown,
  ) {
    const code = (error as { code?: unknown } | null)?.code
    await audit
      .record({
        action: 'auth.login.failed',
        actor: { type: 'anonymous', id: null },
        target: { type: 'user', id: userId },
        after: { method: `oauth:${provider}`, reason: typeof code === 'string' ? code : 'error' },
        ...clientOf(request),
      })
      .catch((failure: unknown) =>
        request.log.error({ err: failure }, 'could not record a failed sign-in'),
      )
  }

  const refusal = (provider: OAuthProvider, error: string) =>
    error === 'access_denied'
      ? `Sign-in with ${provider.displayName} was cancelled`
      : `${provider.displayName} did not complete the sign-in (${
          /^[a-z_]{1,64}$/.test(error) ? error : 'unknown error'
        })`

  app.get(
    '/:provider/start',
    {
      schema: {
        params: ProviderParamsSchema,
        querystring: StartQuerySchema,
        response: { 302: z.null(), ...errorResponses(400, 404, 503) },
      },
    },
    async (request, reply) => {
      const provider = providerNamed(request.params.provider)
      const flow = provider.newFlow()
      // Built first: while the provider cannot be discovered, nothing is stored.
      const url = await provider.authorizationUrl(flow)
      const binding = randomToken()
      const stored: StoredFlow = {
        provider: provider.name,
        browserBinding: hashToken(binding),
        codeVerifier: flow.codeVerifier,
        nonce: flow.nonce,
        returnTo: safeReturnTo(request.query.returnTo),
      }
      await withSessionStore(() =>
        app.redis.set(flowKey(flow.state), JSON.stringify(stored), 'EX', FLOW_TTL_SECONDS),
      )
      // SameSite=Lax: the provider's redirect back is a top-level navigation, which carries it.
      reply.setCookie(FLOW_COOKIE, binding, { ...flowCookieOptions, maxAge: FLOW_TTL_SECONDS })
      return redirect(reply, url.href)
    },
  )

  app.get(
    '/:provider/callback',
    {
      schema: {
        params: ProviderParamsSchema,
        querystring: CallbackQuerySchema,
        response: { 302: z.null(), ...errorResponses(400, 403, 404, 503) },
      },
    },
    async (request, reply) => {
      const provider = providerNamed(request.params.provider)
      const { state, error } = request.query
      if (state === undefined || !OPAQUE_TOKEN.test(state)) throw new OAuthStateInvalid()
      const flow = await take(flowKey(state), StoredFlowSchema)
      const binding = request.cookies[FLOW_COOKIE]
      reply.clearCookie(FLOW_COOKIE, flowCookieOptions)
      // Unknown states and other browsers' callbacks are refused before anything is recorded:
      // they are not sign-in attempts of anyone's, and must not write to the database.
      if (flow === null || flow.provider !== provider.name) throw new OAuthStateInvalid()
      if (binding === undefined || !constantTimeEqual(hashToken(binding), flow.browserBinding))
        throw new OAuthStateInvalid()
      let userId: string | null = null
      try {
        if (error !== undefined) throw new OAuthFailed(refusal(provider, error))

        const queryStart = request.url.indexOf('?')
        const query = queryStart === -1 ? '' : request.url.slice(queryStart + 1)
        const profile = await provider.complete(query, {
          state,
          codeVerifier: flow.codeVerifier,
          nonce: flow.nonce,
        })
        const user = await accountFor(profile, clientOf(request))
        userId = user._id

        if (user.mfa.enabled) {
          const ticket = randomToken()
          const client = clientOf(request)
          const pending: PendingMfa = {
            userId: user._id,
            provider: provider.name,
            returnTo: flow.returnTo,
            ip: client.ip,
            userAgent: client.userAgent,
          }
          await withSessionStore(() =>
            app.redis.set(
              mfaTicketKey(ticket),
              JSON.stringify(pending),
              'EX',
              MFA_TICKET_TTL_SECONDS,
            ),
          )
          return redirect(reply, onPublicSite(`/login/mfa?ticket=${ticket}`))
        }
        await completeSignIn(request, reply, user, provider.name, null)
        return redirect(reply, onPublicSite(flow.returnTo))
      } catch (error) {
        await recordFailure(request, provider.name, userId, error)
        throw error
      }
    },
  )

  app.post(
    '/mfa',
    {
      schema: {
        body: MfaBodySchema,
        response: {
          200: MfaResponseSchema,
          ...errorResponses(400, 401, 503),
          429: LimitErrorResponseSchema,
        },
      },
    },
    async (request, reply) => {
      const client = clientOf(request)
      const pending = await take(mfaTicketKey(request.body.ticket), PendingMfaSchema)
      if (pending === null) throw new OAuthStateInvalid()
      const user = await models.users.findById(pending.userId).lean()
      if (user === null) throw new OAuthStateInvalid()

      const blocked = await withSessionStore(() => loginLimiter.reserve(client.ip, user.email))
      if (blocked !== null) throw loginRateLimited(blocked)
      const factor = await consumeSecondFactor(models.users, totp, user, request.body.code)
      if (factor === null) {
        await recordFailure(request, pending.provider, user._id, new MfaInvalid())
        throw new MfaInvalid()
      }
      await withSessionStore(() => loginLimiter.succeeded(client.ip, user.email))
      const pair = await completeSignIn(request, reply, user, pending.provider, factor, {
        // Where the provider's callback came from, in case it differs from this request.
        callbackIp: pending.ip,
        callbackUserAgent: pending.userAgent,
      })
      return { ...pair, returnTo: pending.returnTo }
    },
  )
}
