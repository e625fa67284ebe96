import { clientOf, errorResponses, userOf } from '@platform/service-kit'
import { LimitErrorResponseSchema } from '@platform/shared-types'
import type { FastifyRequest } from 'fastify'
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod'
import { z } from 'zod'
import { loginRateLimited, MfaConflict, MfaInvalid, SessionRevoked } from '../errors.js'
import { withSessionStore } from '../lib/redis-guard.js'
import { consumeSecondFactor } from '../lib/second-factor.js'
import { NO_MFA } from '../lib/users.js'

const CodeBodySchema = z.strictObject({ code: z.string().trim().min(6).max(32) })
const errors = { ...errorResponses(400, 401, 409), 429: LimitErrorResponseSchema }

/** A secret waiting for its first code is good for this long. */
const PENDING_SECRET_MS = 15 * 60_000

/** TOTP: set up, enable with a first code (answering the backup codes), disable (API.md §3). */
export const mfaRoutes: FastifyPluginAsyncZod = async (app) => {
  const { models, totp, audit, loginLimiter } = app.identity
  app.addHook('preHandler', app.requireUser)

  async function currentUser(userId: string) {
    const user = await models.users.findById(userId).lean()
    if (user === null) throw new SessionRevoked()
    return user
  }

  /**
   * Codes are guessable in a million tries, so wrong ones count against the same per-account and
   * per-IP limits as failed sign-ins: a stolen access token cannot brute-force MFA off.
   */
  async function checkCode<Accepted>(
    request: FastifyRequest,
    email: string,
    check: () => Promise<Accepted | null>,
  ): Promise<Accepted> {
    const { ip } = clientOf(request)
    const blocked = await withSessionStore(() => loginLimiter.reserve(ip, email))
    if (blocked !== null) throw loginRateLimited(blocked)
    const accepted = await check()
    if (accepted === null) throw new MfaInvalid()
    await withSessionStore(() => loginLimiter.release(ip, email))
    return accepted
  }

  app.post(
    '/totp/setup',
    {
      schema: {
        response: { 200: z.object({ otpauthUri: z.string(), secret: z.string() }), ...errors },
      },
    },
    async (request) => {
      const user = await currentUser(userOf(request).sub)
      if (user.mfa.enabled)
        throw new MfaConflict('Two-factor sign-in is already on; turn it off first')
      const created = totp.newSecret(user.email)
      await models.users.updateOne(
        { _id: user._id, 'mfa.enabled': false },
        { 'mfa.pendingSealedSecret': created.sealedSecret, 'mfa.pendingCreatedAt': new Date() },
      )
      return { otpauthUri: created.otpauthUri, secret: created.secret }
    },
  )

  app.post(
    '/totp/enable',
    {
      schema: {
        body: CodeBodySchema,
        response: { 200: z.object({ backupCodes: z.array(z.string()).length(10) }), ...errors },
      },
    },
    async (request) => {
      const user = await currentUser(userOf(request).sub)
      if (user.mfa.enabled) throw new MfaConflict('Two-factor sign-in is already on')
      const pending = user.mfa.pendingSealedSecret
      const pendingSince = user.mfa.pendingCreatedAt?.getTime() ?? 0
      if (pending === null || Date.now() - pendingSince > PENDING_SECRET_MS)
        throw new MfaConflict('Set up two-factor sign-in first; the last setup has expired')
      const step = await checkCode(request, user.email, async () =>
        totp.acceptedStep(pending, request.body.code, null),
      )
      const backup = totp.newBackupCodes()
      const enabled = await models.users.updateOne(
        { _id: user._id, 'mfa.enabled': false, 'mfa.pendingSealedSecret': pending },
        {
          mfa: {
            enabled: true,
            sealedSecret: pending,
            pendingSealedSecret: null,
            pendingCreatedAt: null,
            lastUsedStep: step,
            backupCodeHashes: backup.hashes,
          },
        },
      )
      if (enabled.modifiedCount === 0) throw new MfaConflict('Two-factor sign-in changed meanwhile')
      await audit.record({
        action: 'auth.mfa.enabled',
        actor: { type: 'user', id: user._id },
        target: { type: 'user', id: user._id },
        before: { mfaEnabled: false },
        after: { mfaEnabled: true },
        ...clientOf(request),
      })
      return { backupCodes: backup.codes }
    },
  )

  app.post(
    '/totp/disable',
    {
      schema: { body: CodeBodySchema, response: { 204: z.null(), ...errors } },
    },
    async (request, reply) => {
      const user = await currentUser(userOf(request).sub)
      if (!user.mfa.enabled) throw new MfaConflict('Two-factor sign-in is not on')
      const factor = await checkCode(request, user.email, () =>
        consumeSecondFactor(models.users, totp, user, request.body.code),
      )
      await models.users.updateOne({ _id: user._id }, { mfa: NO_MFA })
      await audit.record({
        action: 'auth.mfa.disabled',
        actor: { type: 'user', id: user._id },
        target: { type: 'user', id: user._id },
        before: { mfaEnabled: true },
        after: { mfaEnabled: false, confirmedWith: factor },
        ...clientOf(request),
      })
      return reply.code(204).send(null)
    },
  )
}
