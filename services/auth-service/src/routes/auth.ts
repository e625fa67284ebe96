import { clientOf, errorResponses, isDuplicateKeyError, userOf } from '@platform/service-kit'
import {
  LimitErrorResponseSchema,
  LoginRequestSchema,
  MembershipSchema,
  PasswordSchema,
  REFRESH_COOKIE_NAME,
  RefreshRequestSchema,
  TokenPairResponseSchema,
  UserSchema,
} from '@platform/shared-types'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod'
import { z } from 'zod'
import {
  DependencyUnavailable,
  EmailTaken,
  InvalidCredentials,
  InvalidEmail,
  loginRateLimited,
  MfaInvalid,
  MfaRequired,
  RefreshInvalid,
  RefreshReused,
  SessionRevoked,
  Unauthenticated,
  UserNotFound,
} from '../errors.js'
import { InvalidEmailError, normalizeEmail } from '../lib/email.js'
import { withSessionStore } from '../lib/redis-guard.js'
import { refreshCookieOptions, writeRefreshCookie } from '../lib/refresh-cookie.js'
import { consumeSecondFactor } from '../lib/second-factor.js'
import { RefreshRejected, type SessionDocument } from '../lib/sessions.js'
import { createSignIn } from '../lib/sign-in.js'
import { publicUser, type UserDocument } from '../lib/users.js'

const RegisterBodySchema = z.strictObject({
  email: z.string().max(320),
  password: PasswordSchema,
  // Control characters (NUL, CR/LF) and bidi overrides/isolates in a name other members see would
  // truncate it downstream or make it render as someone else's ('Eve\u202Enimda' → 'Eveadmin').
  name: z
    .string()
    .trim()
    .min(1)
    .max(100)
    .regex(/^[^\p{Cc}\u202A-\u202E\u2066-\u2069]*$/u, 'must not contain control characters'),
})

const SwitchBodySchema = z.strictObject({ workspaceId: z.string().min(1).max(64) })

const MeResponseSchema = z.object({
  user: UserSchema,
  currentWorkspaceId: z.string().nullable(),
  memberships: z.array(MembershipSchema),
})

export interface AuthRoutesOptions {
  /** `Secure` on the refresh cookie: the public URL is https. */
  secureCookie: boolean
}

/** Registration, sign-in, token refresh and switch, sign-out and `me` (API.md §3). */
export const authRoutes: FastifyPluginAsyncZod<AuthRoutesOptions> = async (app, options) => {
  const { identity } = app
  const { models, passwords, loginLimiter, sessions, audit, totp, workspaces } = identity
  const signIn = createSignIn(identity, app.log)

  const cookieOptions = refreshCookieOptions(options.secureCookie)
  const setRefreshCookie = (reply: FastifyReply, refreshToken: string, session: SessionDocument) =>
    writeRefreshCookie(reply, refreshToken, session.expiresAt, options.secureCookie)

  app.post(
    '/register',
    {
      schema: {
        body: RegisterBodySchema,
        response: { 201: z.object({ user: UserSchema }), ...errorResponses(400, 409) },
      },
    },
    async (request, reply) => {
      let email: string
      try {
        email = normalizeEmail(request.body.email)
      } catch (error) {
        if (error instanceof InvalidEmailError) throw new InvalidEmail(error.message)
        throw error
      }
      // A taken address is refused before Argon2 runs, so repeated sign-ups cost no hashing.
      if ((await models.users.exists({ email })) !== null) throw new EmailTaken()
      const passwordHash = await passwords.hash(request.body.password)
      let user: UserDocument
      try {
        user = (
          await models.users.create({ email, name: request.body.name, passwordHash })
        ).toObject()
      } catch (error) {
        if (isDuplicateKeyError(error)) throw new EmailTaken()
        throw error
      }
      await audit.record({
        action: 'auth.user.registered',
        actor: { type: 'user', id: user._id },
        target: { type: 'user', id: user._id },
        ...clientOf(request),
      })
      return reply.code(201).send({ user: publicUser(user) })
    },
  )

  app.post(
    '/login',
    {
      schema: {
        body: LoginRequestSchema,
        response: {
          200: TokenPairResponseSchema,
          ...errorResponses(400, 401, 403, 503),
          429: LimitErrorResponseSchema,
        },
      },
    },
    async (request, reply) => {
      const client = clientOf(request)
      const { password, workspaceId, totp: code } = request.body
      // An address that cannot be normalized matches no account; it is refused like one. Its
      // trimmed form still keys the limiter, but is never looked up: String#trim strips a BOM
      // that normalizeEmail refuses, so '\uFEFFvictim@…' would otherwise sign in as victim@….
      let email: string
      let normalized = true
      try {
        email = normalizeEmail(request.body.email)
      } catch {
        email = request.body.email.trim().toLowerCase()
        normalized = false
      }
      const blocked = await withSessionStore(() => loginLimiter.reserve(client.ip, email))
      if (blocked !== null) throw loginRateLimited(blocked)

      const user = normalized ? await models.users.findOne({ email }).lean() : null
      const passwordMatches = await passwords.verify(user?.passwordHash ?? null, password)
      // The attempt was counted when it was reserved; a failure only leaves it counted.
      const fail = async (reason: string) => {
        await audit.record({
          action: 'auth.login.failed',
          actor: { type: 'anonymous', id: null },
          target: { type: 'user', id: user?._id ?? null },
          after: { reason },
          ...client,
        })
      }
      if (user === null || !passwordMatches) {
        await fail(user === null ? 'unknown-email' : 'wrong-password')
        throw new InvalidCredentials()
      }
      if (user.mfa.enabled) {
        if (code === undefined) {
          await withSessionStore(() => loginLimiter.release(client.ip, email))
          throw new MfaRequired()
        }
        const factor = await consumeSecondFactor(models.users, totp, user, code)
        if (factor === null) {
          await fail('wrong-mfa-code')
          throw new MfaInvalid()
        }
      }
      await withSessionStore(() => loginLimiter.succeeded(client.ip, email))
      if (user.passwordHash !== null && passwords.needsRehash(user.passwordHash))
        await models.users.updateOne(
          { _id: user._id },
          { passwordHash: await passwords.hash(password) },
        )

      const scope = await signIn.chooseScope(user, workspaceId)
      const { pair, session } = await signIn.openSession(user, scope, 'password', client, {
        mfa: user.mfa.enabled,
      })
      setRefreshCookie(reply, pair.refreshToken, session)
      return pair
    },
  )

  app.post(
    '/token/refresh',
    {
      schema: {
        // A browser posts with the cookie and no body at all.
        body: RefreshRequestSchema.nullish(),
        response: { 200: TokenPairResponseSchema, ...errorResponses(400, 401, 503) },
      },
    },
    async (request, reply) => {
      const refreshToken = request.body?.refreshToken ?? request.cookies[REFRESH_COOKIE_NAME]
      if (refreshToken === undefined || refreshToken === '') throw new RefreshInvalid()
      let sessionOfAnswer: SessionDocument | undefined
      const pair = await withSessionStore(async () => {
        try {
          return await sessions.refresh(
            refreshToken,
            async (session, nextToken) => {
              const user = await models.users.findById(session.userId).lean()
              if (user === null) throw new RefreshRejected('revoked')
              sessionOfAnswer = session
              return signIn.pairFor(user)(session, nextToken)
            },
            async (session) => ({ scope: await signIn.currentScope(session) }),
          )
        } catch (error) {
          if (!(error instanceof RefreshRejected)) throw error
          if (error.reason === 'unknown') throw new RefreshInvalid()
          if (error.reason === 'revoked') throw new SessionRevoked()
          const session = await sessions.sessionOfRefreshToken(refreshToken)
          await audit.record({
            action: 'auth.session.revoked',
            actor: { type: 'anonymous', id: null },
            target: { type: 'session', id: session?._id ?? null },
            after: { reason: 'refresh-token-reuse', userId: session?.userId ?? null },
            ...clientOf(request),
          })
          throw new RefreshReused()
        }
      })
      const session = sessionOfAnswer ?? (await sessions.sessionOfRefreshToken(pair.refreshToken))
      if (session !== null) setRefreshCookie(reply, pair.refreshToken, session)
      return pair
    },
  )

  app.post(
    '/token/switch',
    {
      preHandler: app.requireUser,
      schema: {
        body: SwitchBodySchema,
        response: { 200: TokenPairResponseSchema, ...errorResponses(400, 401, 403, 503) },
      },
    },
    async (request, reply) => {
      const claims = userOf(request)
      const user = await models.users.findById(claims.sub).lean()
      if (user === null) throw new SessionRevoked()
      const scope = await signIn.chooseScope(user, request.body.workspaceId)
      let session: SessionDocument | undefined
      const pair = await withSessionStore(async () => {
        try {
          return await sessions.reissue(claims.sid, scope, async (updated, refreshToken) => {
            session = updated
            return signIn.pairFor(user)(updated, refreshToken)
          })
        } catch (error) {
          if (error instanceof RefreshRejected) throw new SessionRevoked()
          throw error
        }
      })
      await signIn.rememberWorkspace(user, scope)
      if (session !== undefined) setRefreshCookie(reply, pair.refreshToken, session)
      return pair
    },
  )

  app.post(
    '/logout',
    {
      schema: {
        body: RefreshRequestSchema.nullish(),
        response: { 204: z.null(), ...errorResponses(400, 401, 503) },
      },
    },
    async (request, reply) => {
      const sessionId = await sessionToEnd(request)
      reply.clearCookie(REFRESH_COOKIE_NAME, cookieOptions)
      if (sessionId !== null) {
        const ended = await withSessionStore(() => sessions.revoke(sessionId))
        if (ended)
          await audit.record({
            action: 'auth.session.revoked',
            actor: { type: 'user', id: request.user?.sub ?? null },
            target: { type: 'session', id: sessionId },
            after: { reason: 'logout' },
            ...clientOf(request),
          })
      }
      return reply.code(204).send(null)
    },
  )

  /**
   * The session a logout ends: the bearer token's, else the refresh token's (body or cookie), so a
   * browser whose access token has expired can still sign out.
   */
  async function sessionToEnd(
    request: FastifyRequest<{ Body: { refreshToken?: string | undefined } | null | undefined }>,
  ) {
    let bearerSessionEnded = false
    if (request.headers.authorization !== undefined) {
      try {
        return (await app.authenticateUser(request)).sid
      } catch (error) {
        if (error instanceof DependencyUnavailable) throw error
        // An expired access token is no reason to keep the session; try the refresh token.
        bearerSessionEnded = error instanceof SessionRevoked
      }
    }
    const refreshToken = request.body?.refreshToken ?? request.cookies[REFRESH_COOKIE_NAME]
    if (refreshToken === undefined || refreshToken === '') {
      // Logging out of a session that has already ended is done, not a failure (logout twice).
      if (bearerSessionEnded) return null
      if (request.headers.authorization !== undefined)
        throw new Unauthenticated('The token is not valid')
      throw new Unauthenticated('A bearer token or a refresh token is required')
    }
    const session = await sessions.sessionOfRefreshToken(refreshToken)
    return session?._id ?? null
  }

  app.get(
    '/me',
    {
      preHandler: app.requireUser,
      schema: { response: { 200: MeResponseSchema, ...errorResponses(401, 503) } },
    },
    async (request) => {
      const claims = userOf(request)
      const user = await models.users.findById(claims.sub).lean()
      if (user === null) throw new UserNotFound(claims.sub)
      let memberships: Awaited<ReturnType<typeof workspaces.memberships>>
      try {
        memberships = await workspaces.memberships(user._id)
      } catch (error) {
        throw new DependencyUnavailable('The workspace-service', { cause: error })
      }
      return {
        user: publicUser(user),
        currentWorkspaceId: claims.wid ?? null,
        memberships: memberships.items,
      }
    },
  )
}
